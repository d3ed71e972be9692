/**
 * One HTTP/2 request stream over Node's core http2 API (ServerHttp2Stream, not the compatibility
 * layer): the HTTP/2 implementation of the protocol-neutral HttpExchange, mirroring
 * h3/request-stream.ts. nghttp2 does the framing and the protocol checks it owns (pseudo-header
 * order, uppercase names, connection-specific fields, content-length against DATA);
 * node-stream-exchange.ts streams the body to the handler with backpressure (the stream is
 * paused, so its flow-control window is not reopened and the client waits) and runs the body
 * idle clock; this passes trailers both ways and answers with HTTP/2's stream resets.
 */
import http2, { type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { validateTrailers, type FieldList, type ValidatedRequest } from '../http-semantics/index.js';
import type { ClientAddress } from '../http/exchange.js';
import { ABORT, ExchangeAborted } from '../http/exchange-abort.js';
import { withListenerAltSvc } from '../http/alt-svc.js';
import { Recv, Send } from '../http/exchange-state.js';
import { REFUSAL } from '../http/refusals.js';
import { headerListSize } from './header-list-size.js';
import { NodeStreamExchange, type NodeExchangeOptions } from './node-stream-exchange.js';

const { NGHTTP2_CANCEL, NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_INTERNAL_ERROR, NGHTTP2_NO_ERROR, NGHTTP2_PROTOCOL_ERROR } = http2.constants;

export interface H2ExchangeOptions extends NodeExchangeOptions {
  readonly client: ClientAddress;
  /** Largest trailer section (http.max_header_bytes), by the measure of headerListSize (header-list-size.ts). */
  readonly maxHeaderBytes: number;
  /** Reset the stream with `code` (the connection tells our resets from the client's). */
  readonly resetStream: (stream: ServerHttp2Stream, code: number) => void;
  /** The connection itself is gone (its session destroyed): a stream closing now was not reset by the client. */
  readonly connectionGone: () => boolean;
}

export class H2Exchange extends NodeStreamExchange<H2ExchangeOptions> {
  readonly protocol = 'h2';
  readonly httpVersion = '2';
  private requestTrailers: FieldList | undefined;
  /** What 'wantTrailers' sends once the body is out (nothing: an empty DATA frame with END_STREAM). */
  private responseTrailers: FieldList = [];

  constructor(
    private readonly stream: ServerHttp2Stream,
    request: ValidatedRequest,
    opts: H2ExchangeOptions,
  ) {
    super(stream, stream, request, opts);
  }

  get client(): ClientAddress {
    return this.opts.client;
  }

  get streamId(): number {
    // Defined for every stream the client opened (only pushed streams start without one).
    return this.stream.id ?? 0;
  }

  start(): void {
    const s = this.stream;
    s.on('data', (chunk: Buffer) => this.onData(chunk));
    s.on('trailers', (headers: IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => this.onTrailers(headers, rawHeaders));
    s.on('end', () => this.onEnd());
    s.on('wantTrailers', () => this.sendTrailers());
    s.on('error', () => {}); // reported through 'close' (rstCode) below
    s.on('close', () => this.onClose());
    if (s.readableEnded || s.endAfterHeaders) this.onEnd();
    this.dispatch();
  }

  // ------------------------------------------------------------------ receive side

  private onTrailers(headers: IncomingHttpHeaders, rawHeaders: readonly string[]): void {
    if (!this.receiving) return;
    // nghttp2 applies our SETTINGS_MAX_HEADER_LIST_SIZE to trailers only once the client has
    // acknowledged our SETTINGS; before that (or never, from a client that does not) we do. The
    // request may already be upstream: a reset, as HTTP/3's H3_EXCESSIVE_LOAD (RFC 9114 A.4.1)
    // and as Node's own answer to too many trailer fields.
    if (headerListSize(rawHeaders) > this.opts.maxHeaderBytes) {
      // Counted as the header section is, on all three protocols (one limit, one remedy).
      this.opts.refusals?.add(REFUSAL.headerTooLarge);
      this.refuse(`request trailers above ${this.opts.maxHeaderBytes} bytes`, NGHTTP2_ENHANCE_YOUR_CALM);
      return;
    }
    const v = validateTrailers(headerObjectFields(headers));
    if (!v.ok) {
      this.failRequest(v.reason);
      return;
    }
    this.requestTrailers = v.trailers;
    if (this.state.phase === 'open') this.state.recv = Recv.Trailers;
  }

  private onEnd(): void {
    this.endBody(this.requestTrailers);
  }

  /** A malformed request (RFC 9113 §8.1.1): stream error PROTOCOL_ERROR; the connection lives on. */
  protected failRequest(reason: string): void {
    this.opts.onMalformed();
    this.refuse(reason, NGHTTP2_PROTOCOL_ERROR);
  }

  /** The request cannot go on: its body and exchange fail, the stream is reset with `code`. */
  private refuse(reason: string, code: number): void {
    this.body.abort(reason);
    this.aborter.abort(new ExchangeAborted(ABORT.badRequest, reason));
    this.closeStream(code);
  }

  protected cutShort(): void {
    this.closeStream(NGHTTP2_CANCEL);
  }

  /**
   * RST_STREAM NO_ERROR once the response is out (RFC 9113 §8.1): Node sends it after the
   * stream's last DATA, and the stream's 'close' finishes the exchange.
   */
  protected stopClientBody(): void {
    this.opts.resetStream(this.stream, NGHTTP2_NO_ERROR);
  }

  // ------------------------------------------------------------------ send side

  respond(status: number, headers: FieldList, endStream = false): void {
    if (!this.startResponse(endStream ? Send.Done : Send.Body)) return;
    const out: OutgoingHttpHeaders = fieldsToHeaderObject(withListenerAltSvc(headers, this.opts.altSvc));
    out[':status'] = status;
    try {
      // Trailers may follow any body: 'wantTrailers' sends them, or ends the stream without.
      this.stream.respond(out, { endStream, waitForTrailers: !endStream });
    } catch {
      // Node refused a field the translation let through: the client must not see half a response.
      this.reset();
      return;
    }
    if (endStream) this.bodyNotWanted();
  }

  end(trailers?: FieldList): void {
    if (!this.sendingBody || this.state.phase !== 'open') return;
    this.state.send = Send.Done;
    this.responseTrailers = trailers ?? [];
    this.stream.end();
    this.bodyNotWanted();
  }

  private sendTrailers(): void {
    try {
      this.stream.sendTrailers(fieldsToHeaderObject(this.responseTrailers));
    } catch {
      this.closeStream(NGHTTP2_INTERNAL_ERROR);
    }
  }

  reset(): void {
    if (this.state.phase === 'finished') return;
    this.body.abort('response reset');
    this.closeStream(NGHTTP2_INTERNAL_ERROR);
  }

  private closeStream(code: number): void {
    this.opts.resetStream(this.stream, code);
    this.finish();
  }

  /** The stream closed: normally after both sides ended; early when the client reset it or the connection went. */
  private onClose(): void {
    if (this.state.phase !== 'open' || this.state.send === Send.Done) this.finish();
    // Node destroys the session (marked destroyed at once) before its streams close: the connection went, not this stream.
    else if (this.opts.connectionGone()) this.abort(ABORT.connectionClosed);
    else this.abort(ABORT.clientReset, `client reset stream (code ${this.stream.rstCode ?? 'none'})`);
  }
}

/** Node's header object (names lowercase, repeated fields as arrays) as a field list. */
export function headerObjectFields(headers: IncomingHttpHeaders): FieldList {
  const out: FieldList = [];
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) out.push([name, v]);
    else out.push([name, String(value)]);
  }
  return out;
}

/** A field list as Node's header object: a repeated name becomes an array, in order. */
function fieldsToHeaderObject(fields: FieldList): OutgoingHttpHeaders {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of fields) {
    const prev = out[name];
    if (prev === undefined) out[name] = value;
    else if (Array.isArray(prev)) prev.push(value);
    else out[name] = [prev, value];
  }
  return out;
}
