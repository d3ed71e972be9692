/**
 * The protocol-neutral HTTP exchange: one request and its response as routing, built-in responses,
 * header rules, upstream dispatch and the access log see them. An HTTP/3 request stream implements
 * it (h3/request-stream.ts); HTTP/1.1 and HTTP/2 over TCP implement the same interface, so nothing
 * from here down knows which protocol carried the request.
 */
import type { AbortLike } from '../abort.js';
import type { FieldList, ValidatedRequest, ViaProtocolVersion } from '../http-semantics/index.js';
import type { RequestBody } from './request-body.js';

export type HttpProtocol = 'h1' | 'h2' | 'h3';

export interface ClientAddress {
  readonly host: string;
  readonly port: number;
}

export interface HttpExchange {
  readonly protocol: HttpProtocol;
  /**
   * The version the request message arrived in ("1.0" or "1.1" over h1), which Via names
   * (RFC 9110 §7.6.3).
   */
  readonly httpVersion: ViaProtocolVersion;
  readonly request: ValidatedRequest;
  /** The request body as it arrives (ends after trailers, if any, were received). */
  readonly body: RequestBody;
  readonly client: ClientAddress;
  /** Names the connection in logs. */
  readonly connectionId: string;
  /** The stream (HTTP/2, HTTP/3) or the request's number on its connection (HTTP/1.1). */
  readonly streamId: number;
  /**
   * Aborted when the client gives up on the exchange or the connection goes away; its reason says
   * why: an ExchangeAborted (exchange-abort.ts) or a RequestTimeoutError.
   */
  readonly signal: AbortLike;
  readonly headersSent: boolean;
  readonly bytesReceived: number;
  readonly bytesSent: number;
  /**
   * Some of the request arrived in TLS early data (0-RTT), so it may be a replay (RFC 8446 §8,
   * RFC 8470): true even when the handshake has completed since.
   */
  readonly earlyData: boolean;
  /** Resolves true once the client's handshake completed (at once if it has), false if the connection ended first. */
  handshakeComplete(): Promise<boolean>;
  /**
   * Tell the client to send its further requests on a new connection: GOAWAY on this exchange's
   * connection (HTTP/3, HTTP/2), `Connection: close` on a response not yet started (HTTP/1.1).
   * Requests in flight, this one included, are still answered.
   */
  goAway(): void;
  /**
   * The request body may not exceed `maxBytes` (the route's max_request_body). A declared
   * Content-Length above it is refused at once; a body without one, as soon as it grows past it.
   * Refused: the body fails (so does its upstream request), the client gets 413 and is told to
   * stop sending (HTTP/3 STOP_SENDING, HTTP/2 RST_STREAM NO_ERROR after the response, HTTP/1.1
   * `Connection: close`), or, once the response has started, its stream is reset (its connection
   * closed on HTTP/1.1); the refusal is counted and the signal aborted with a
   * RequestBodyTooLargeError. Call it before anything else is done with the exchange.
   */
  limitBody(maxBytes: number): void;
  respond(status: number, headers: FieldList, endStream?: boolean): void;
  /** Sends body bytes; false means wait for `drained()` before writing more. */
  write(chunk: Buffer): boolean;
  drained(): Promise<void>;
  end(trailers?: FieldList): void;
  /**
   * Abandon a response whose headers are out (e.g. the upstream failed mid-body), so the client
   * cannot mistake it for complete: a stream reset in HTTP/3 and HTTP/2, a closed connection in HTTP/1.1.
   */
  reset(): void;
}

/**
 * The signal's reason when the protocol layer refused the request itself and ended the exchange
 * (its answer sent, or a reset once the response had started): the handler only cancels its work
 * and logs `status` and the message.
 */
export abstract class RequestRefusedError extends Error {
  abstract readonly status: number;
}

/** The client was too slow sending its request (e.g. the request body timeout): 408. */
export class RequestTimeoutError extends RequestRefusedError {
  override readonly name = 'RequestTimeoutError';
  readonly status = 408;
}

/** The request body is larger than max_request_body (declared, or as it arrived): 413. */
export class RequestBodyTooLargeError extends RequestRefusedError {
  override readonly name = 'RequestBodyTooLargeError';
  readonly status = 413;
}

/** What the proxy does with a request: route it, answer it, forward it. */
export interface RequestHandler {
  /** Must not throw; `dispatchExchange` still guards against it. */
  handle(exchange: HttpExchange): void;
}

/** A short plain-text response, or a reset when the response has already started. */
export function respondText(ex: HttpExchange, status: number, text: string): void {
  if (ex.headersSent) {
    ex.reset();
    return;
  }
  const body = Buffer.from(text);
  ex.respond(status, [
    ['content-type', 'text/plain; charset=utf-8'],
    ['content-length', String(body.length)],
  ]);
  ex.write(body);
  ex.end();
}

/** Hands an exchange to the handler; a handler that throws is reported and the client gets a 500. */
export function dispatchExchange(handler: RequestHandler, ex: HttpExchange, onError: (err: unknown) => void): void {
  try {
    handler.handle(ex);
  } catch (err) {
    onError(err);
    respondText(ex, 500, 'internal error\n');
  }
}
