/**
 * One HTTP/1.1 request and its response over Node's IncomingMessage/ServerResponse: the HTTP/1.1
 * implementation of the protocol-neutral HttpExchange (h3/request-stream.ts is the HTTP/3 one; the
 * states and rules mirror it). Node's parser does the framing (Content-Length or chunked) and has
 * refused the ambiguous cases; node-stream-exchange.ts streams the body to the handler with
 * backpressure (the request is paused, so Node stops reading the socket and TCP slows the client)
 * and runs the body idle clock; this passes trailers both ways and writes the response head.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { validateTrailers, type FieldList, type ValidatedRequest } from '../http-semantics/index.js';
import { respondText, type ClientAddress } from '../http/exchange.js';
import { ABORT, ExchangeAborted } from '../http/exchange-abort.js';
import { withListenerAltSvc } from '../http/alt-svc.js';
import { Recv, Send } from '../http/exchange-state.js';
import { REFUSAL } from '../http/refusals.js';
import { headerListSize } from './header-list-size.js';
import { NodeStreamExchange, type NodeExchangeOptions } from './node-stream-exchange.js';

export interface H1ExchangeOptions extends NodeExchangeOptions {
  /** The request's number on its connection (1, 2, ...). */
  readonly requestNumber: number;
  /** Whether this response must close the connection (drain, request limit); asked when it starts. */
  readonly closeAfterResponse: () => boolean;
  /** Largest trailer section (http.max_header_bytes), by the measure of headerListSize (header-list-size.ts). */
  readonly maxHeaderBytes: number;
}

export class H1Exchange extends NodeStreamExchange<H1ExchangeOptions> {
  readonly protocol = 'h1';
  readonly httpVersion: '1.0' | '1.1';
  readonly client: ClientAddress;
  /** Node sends a chunked body (and so can carry trailers) when the response states no length. */
  private chunked = false;

  constructor(
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    request: ValidatedRequest,
    opts: H1ExchangeOptions,
  ) {
    super(req, res, request, opts);
    this.client = { host: req.socket.remoteAddress ?? '', port: req.socket.remotePort ?? 0 };
    // A higher 1.x minor version is served as 1.1 (RFC 9110 §2.5).
    this.httpVersion = req.httpVersionMinor === 0 ? '1.0' : '1.1';
    // Node adds Date only when the response has none, as node:http2 does for HTTP/2.
  }

  get streamId(): number {
    return this.opts.requestNumber;
  }

  /** Wire the request and response events, then hand the exchange to the handler. */
  start(): void {
    const { req, res } = this;
    req.on('data', (chunk: Buffer) => this.onData(chunk));
    req.on('end', () => this.onEnd());
    req.on('error', () => {}); // a cut connection: seen as the response's 'close' below
    res.on('finish', () => this.onResponseFlushed());
    // The only way an HTTP/1.1 client cancels a request.
    res.on('close', () => this.abort(ABORT.clientReset, 'client closed the connection'));
    // `Expect: 100-continue` (Node leaves the 100 to us: tls-listener.ts): the client may send
    // its body once the upstream reads it, not before; a request refused first (413, 404, 421...)
    // is answered without the client having sent a byte of it (RFC 9110 §10.1.1).
    if (expectsContinue(req)) this.body.onFirstRead(() => this.sendContinue());
    this.dispatch();
  }

  private sendContinue(): void {
    if (this.headersSent || !this.receiving) return;
    try {
      this.res.writeContinue();
    } catch {
      // The connection went away meanwhile: its 'close' ends the exchange.
    }
  }

  // ------------------------------------------------------------------ receive side

  /** Node hands over the trailers (if any) with the request's end. */
  private onEnd(): void {
    if (this.state.phase !== 'open' || this.state.recv === Recv.Done) return;
    const raw = this.req.rawTrailers;
    let trailers: FieldList | undefined;
    if (raw.length > 0) {
      // Node's parser bounded the bytes it read (maxHeaderSize); the fields are held to the
      // measure of HTTP/2 and HTTP/3 too, counted as the header section is.
      if (headerListSize(raw) > this.opts.maxHeaderBytes) {
        this.opts.refusals?.add(REFUSAL.headerTooLarge);
        this.failRequest(`request trailers above ${this.opts.maxHeaderBytes} bytes`, 431);
        return;
      }
      const fields: FieldList = [];
      for (let i = 0; i + 1 < raw.length; i += 2) fields.push([raw[i]!.toLowerCase(), raw[i + 1]!]);
      const v = validateTrailers(fields);
      if (!v.ok) {
        this.opts.onMalformed();
        this.failRequest(v.reason);
        return;
      }
      trailers = v.trailers;
    }
    this.endBody(trailers);
  }

  /**
   * 400 if nothing was answered yet, else the connection is cut. (A wrong body length would be a
   * bug in Node's parser, which frames the body itself, not a client's doing.)
   */
  protected failRequest(reason: string, status: 400 | 431 = 400): void {
    this.body.abort(reason);
    if (!this.headersSent) respondText(this, status, status === 400 ? 'bad request\n' : 'request header fields too large\n');
    else this.reset();
    this.aborter.abort(new ExchangeAborted(ABORT.badRequest, reason));
  }

  /** HTTP/1.1 cannot end a started response early except by closing the connection. */
  protected cutShort(): void {
    this.reset();
  }

  /** The response said `Connection: close`: the connection ends after it, the body's rest unread. */
  protected stopClientBody(): void {}

  // ------------------------------------------------------------------ send side

  respond(status: number, headers: FieldList, endStream = false): void {
    if (!this.startResponse(Send.Body)) return;
    const flat: string[] = [];
    let length = false;
    for (const [name, value] of withListenerAltSvc(headers, this.opts.altSvc)) {
      flat.push(name, value);
      if (name === 'content-length') length = true;
    }
    // An unfinished request body would have to be read to its end to find the next request:
    // close instead (so would a drain or the request limit).
    // So would a refused body (its rest is not read, however much of it has arrived).
    if (this.bodyRefused || !this.requestComplete || this.opts.closeAfterResponse()) flat.push('connection', 'close');
    this.chunked = !length && this.req.httpVersion === '1.1';
    try {
      this.res.writeHead(status, flat);
    } catch {
      // Node refused a field the translation let through: the client must not see half a response.
      this.reset();
      return;
    }
    if (endStream) this.endResponse();
  }

  /**
   * The whole request has arrived. (Node sets `req.complete` only after the 'request' event, even
   * for a request without a body, so a response started at once would look premature.)
   */
  private get requestComplete(): boolean {
    if (this.state.phase !== 'open' || this.state.recv === Recv.Done || this.req.complete) return true;
    const length = this.request.contentLength;
    return this.req.headers['transfer-encoding'] === undefined && (length === undefined || length === 0);
  }

  end(trailers?: FieldList): void {
    if (!this.sendingBody) return;
    // Only a chunked body has room for trailers (RFC 9112 §7.1.2); otherwise they are dropped.
    if (trailers && trailers.length > 0 && this.chunked) this.res.addTrailers(trailers);
    this.endResponse();
  }

  private endResponse(): void {
    if (this.state.phase !== 'open') return;
    this.state.send = Send.Done;
    this.res.end();
  }

  reset(): void {
    if (this.state.phase === 'finished') return;
    this.body.abort('response reset');
    // HTTP/1.1 has no stream to reset: closing the connection is the only way to say "incomplete".
    this.res.destroy();
    this.finish();
  }

  /** The response went to the socket: the exchange is over; an unread request rest is not wanted. */
  private onResponseFlushed(): void {
    if (this.state.phase !== 'open') return;
    this.bodyNotWanted();
    this.finish();
  }

  /**
   * The connection answers for this exchange (the parser refused the rest of its request): the
   * handler's work is cancelled and nothing more is written through the response.
   */
  abandon(detail: string): void {
    this.abort(ABORT.badRequest, detail);
  }
}

/** A request whose client waits for `100 Continue` before sending its body (Node emitted it as 'checkContinue'). */
function expectsContinue(req: IncomingMessage): boolean {
  return req.httpVersionMinor >= 1 && /^\s*100-continue\s*$/i.test(req.headers.expect ?? '');
}
