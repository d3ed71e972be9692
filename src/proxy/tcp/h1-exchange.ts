/**
 * One HTTP/1.1 request and its response over Node's IncomingMessage/ServerResponse: the HTTP/1.1
 * implementation of the protocol-neutral HttpExchange (h3/request-stream.ts is the HTTP/3 one; the
 * states and rules mirror it). Node's parser does the framing (Content-Length or chunked) and has
 * refused the ambiguous cases; this streams the body to the handler with backpressure (the
 * request is paused, so Node stops reading the socket and TCP slows the client), runs the body
 * idle clock, passes trailers both ways, and writes the response the handler produces.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { formatDuration } from '../config/units.js';
import { BodyLengthCounter, validateTrailers, type FieldList, type ValidatedRequest } from '../http-semantics/index.js';
import { dispatchExchange, RequestTimeoutError, respondText, type ClientAddress, type HttpExchange, type RequestHandler } from '../http/exchange.js';
import { withListenerAltSvc } from '../http/alt-svc.js';
import { REFUSAL, type RefusalCounter } from '../http/refusals.js';
import { RequestBody } from '../http/request-body.js';
import { SweepTimer } from '../timers/sweep-timer.js';

const enum Recv {
  Body,
  /** The body buffer is full: the request is paused (Node stops reading the socket) until it drains. */
  BodyPaused,
  /** Read to the end, or no longer wanted. */
  Done,
}

const enum Send {
  NotStarted,
  Body,
  /** Complete (maybe still flushing to the socket) or abandoned. */
  Done,
}

type State = { readonly phase: 'open'; recv: Recv; send: Send } | { readonly phase: 'finished' };

const BODY_HIGH_WATER_MARK = 256 * 1024;

export interface H1ExchangeOptions {
  readonly handler: RequestHandler;
  /** The listener's `alt-svc` value: every response carries it, replacing the handler's. */
  readonly altSvc: string | undefined;
  readonly requestBodyTimeoutMs: number;
  readonly connectionId: string;
  /** The request's number on its connection (1, 2, ...). */
  readonly requestNumber: number;
  /** Whether this response must close the connection (drain, request limit); asked when it starts. */
  readonly closeAfterResponse: () => boolean;
  readonly onHandlerError: (err: unknown, streamId: number) => void;
  /** Called once when the exchange is over. */
  readonly onDone: () => void;
  /** The request turned out malformed (bad trailers): counted by the caller. */
  readonly onMalformed: () => void;
  readonly refusals?: RefusalCounter;
}

export class H1Exchange implements HttpExchange {
  readonly protocol = 'h1';
  readonly httpVersion: '1.0' | '1.1';
  readonly body = new RequestBody(BODY_HIGH_WATER_MARK);
  readonly client: ClientAddress;
  readonly earlyData = false;
  bytesReceived = 0;
  bytesSent = 0;
  private state: State = { phase: 'open', recv: Recv.Body, send: Send.NotStarted };
  private readonly abortController = new AbortController();
  private readonly lengthCounter: BodyLengthCounter;
  private lastProgressAt = performance.now();
  private readonly clock = new SweepTimer((now) => this.checkDeadline(now));
  /** Node sends a chunked body (and so can carry trailers) when the response states no length. */
  private chunked = false;

  constructor(
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    readonly request: ValidatedRequest,
    private readonly opts: H1ExchangeOptions,
  ) {
    this.client = { host: req.socket.remoteAddress ?? '', port: req.socket.remotePort ?? 0 };
    // A higher 1.x minor version is served as 1.1 (RFC 9110 §2.5).
    this.httpVersion = req.httpVersionMinor === 0 ? '1.0' : '1.1';
    this.lengthCounter = new BodyLengthCounter(request.contentLength);
    // Node adds Date only when the response has none, as node:http2 does for HTTP/2.
  }

  get connectionId(): string {
    return this.opts.connectionId;
  }

  get streamId(): number {
    return this.opts.requestNumber;
  }

  get signal(): AbortSignal {
    return this.abortController.signal;
  }

  get headersSent(): boolean {
    return this.state.phase === 'finished' || this.state.send !== Send.NotStarted;
  }

  handshakeComplete(): Promise<boolean> {
    // TLS over TCP has no early data here: the handshake is complete before any request.
    return Promise.resolve(true);
  }

  /** Wire the request and response events, then hand the exchange to the handler. */
  start(): void {
    const { req, res } = this;
    req.on('data', (chunk: Buffer) => this.onData(chunk));
    req.on('end', () => this.onEnd());
    req.on('error', () => {}); // a cut connection: seen as the response's 'close' below
    res.on('finish', () => this.onResponseFlushed());
    res.on('close', () => this.abort('client closed the connection'));
    this.clock.ensure(this.deadline);
    dispatchExchange(this.opts.handler, this, (err) => this.opts.onHandlerError(err, this.streamId));
  }

  // ------------------------------------------------------------------ receive side

  private onData(chunk: Buffer): void {
    if (this.state.phase !== 'open' || this.state.recv === Recv.Done) return;
    this.bytesReceived += chunk.length;
    this.lastProgressAt = performance.now();
    const problem = this.lengthCounter.add(chunk.length);
    if (problem !== null) {
      // Node frames the body itself; this would be a parser bug, not a client's doing.
      this.failRequest(problem);
      return;
    }
    if (!this.body.push(chunk)) this.pauseUntilDrained();
  }

  private pauseUntilDrained(): void {
    if (this.state.phase !== 'open') return;
    this.state.recv = Recv.BodyPaused;
    this.req.pause();
    void this.body.drained().then(() => {
      if (this.state.phase !== 'open' || this.state.recv !== Recv.BodyPaused) return;
      this.state.recv = Recv.Body;
      // The client was not the one waiting: its idle clock starts again now.
      this.lastProgressAt = performance.now();
      this.clock.ensure(this.deadline);
      this.req.resume();
    });
  }

  private onEnd(): void {
    if (this.state.phase !== 'open' || this.state.recv === Recv.Done) return;
    const raw = this.req.rawTrailers;
    let trailers: FieldList | undefined;
    if (raw.length > 0) {
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
    const problem = this.lengthCounter.finish();
    if (problem !== null) {
      this.failRequest(problem);
      return;
    }
    this.state.recv = Recv.Done;
    this.clock.stop();
    this.body.end(trailers);
  }

  /** While the body is incomplete and the client is the one we wait for: its idle clock. */
  private get deadline(): number | undefined {
    if (this.state.phase !== 'open' || this.state.recv !== Recv.Body) return undefined;
    return this.lastProgressAt + this.opts.requestBodyTimeoutMs;
  }

  private checkDeadline(now: number): number | undefined {
    const at = this.deadline;
    if (at === undefined || now < at) return at;
    const reason = `request body timeout: no bytes for ${formatDuration(this.opts.requestBodyTimeoutMs)}`;
    this.opts.refusals?.add(REFUSAL.bodyTimeout);
    // The body fails first, so the 408 completing the response does not end it as if whole.
    this.body.abort(reason);
    // The request is unfinished: the 408 closes the connection (respond() sees it incomplete).
    if (!this.headersSent) respondText(this, 408, 'request body timeout\n');
    else this.reset();
    this.abortController.abort(new RequestTimeoutError(reason));
    return undefined;
  }

  /** The request cannot go on (bad trailers): 400 if nothing was answered yet, else the connection is cut. */
  private failRequest(reason: string): void {
    this.body.abort(reason);
    if (!this.headersSent) respondText(this, 400, 'bad request\n');
    else this.reset();
    this.abortController.abort(new Error(reason));
  }

  // ------------------------------------------------------------------ send side

  respond(status: number, headers: FieldList, endStream = false): void {
    if (this.state.phase === 'finished' || this.abortController.signal.aborted) return;
    if (this.state.send !== Send.NotStarted) throw new Error('response headers already sent');
    this.state.send = Send.Body;
    const flat: string[] = [];
    let length = false;
    for (const [name, value] of withListenerAltSvc(headers, this.opts.altSvc)) {
      flat.push(name, value);
      if (name === 'content-length') length = true;
    }
    // An unfinished request body would have to be read to its end to find the next request:
    // close instead (so would a drain or the request limit).
    if (!this.requestComplete || this.opts.closeAfterResponse()) flat.push('connection', 'close');
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

  private get sendingBody(): boolean {
    return this.state.phase === 'open' && this.state.send === Send.Body;
  }

  write(chunk: Buffer): boolean {
    if (!this.sendingBody || chunk.length === 0) return this.state.phase === 'open';
    this.bytesSent += chunk.length;
    return this.res.write(chunk);
  }

  drained(): Promise<void> {
    if (this.state.phase !== 'open' || !this.res.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.res.off('drain', done);
        this.res.off('close', done);
        resolve();
      };
      this.res.on('drain', done);
      this.res.on('close', done);
    });
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
    if (this.state.recv !== Recv.Done) {
      this.state.recv = Recv.Done;
      this.body.end();
    }
    this.finish();
  }

  /**
   * The connection answers for this exchange (the parser refused the rest of its request): the
   * handler's work is cancelled and nothing more is written through the response.
   */
  abandon(reason: string): void {
    this.abort(reason);
  }

  /** The connection closed under the exchange (client gone, or our reset). */
  private abort(reason: string): void {
    if (this.state.phase === 'finished') return;
    this.body.abort(reason);
    this.abortController.abort(new Error(reason));
    this.finish();
  }

  private finish(): void {
    if (this.state.phase === 'finished') return;
    this.state = { phase: 'finished' };
    this.clock.stop();
    this.opts.onDone();
  }
}
