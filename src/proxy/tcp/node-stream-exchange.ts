/**
 * What the HTTP/1.1 and HTTP/2 exchanges share. Both ride on Node streams (IncomingMessage and
 * ServerResponse; ServerHttp2Stream): the request body arrives as a Readable's 'data' and the
 * response body leaves through a Writable. This part holds the exchange's state and signal,
 * streams the body to the handler with backpressure (the Readable is paused while the handler's
 * buffer is full, so Node stops reading and TCP or HTTP/2 flow control slows the client), runs
 * the body idle clock, and writes the response body. h1-exchange.ts and h2-exchange.ts add what
 * their protocols frame differently: the request's end and trailers, the response head, and how
 * an exchange is cut short. (A base class rather than a composed helper: the shared code and
 * each protocol's own read and change the same exchange state, which a helper would have to be
 * handed back through callbacks.)
 */
import type { Readable, Writable } from 'node:stream';
import { Aborter, type AbortLike } from '../abort.js';
import { formatDuration } from '../config/units.js';
import { BodyLengthCounter, type FieldList, type ValidatedRequest, type ViaProtocolVersion } from '../http-semantics/index.js';
import { dispatchExchange, RequestBodyTooLargeError, RequestTimeoutError, respondText, type ClientAddress, type HttpExchange, type RequestHandler } from '../http/exchange.js';
import { overBodyLimit } from '../http/body-limit.js';
import { ExchangeAborted, type AbortReason } from '../http/exchange-abort.js';
import { Recv, Send, type ExchangeState } from '../http/exchange-state.js';
import { REFUSAL, type RefusalCounter } from '../http/refusals.js';
import { RequestBody } from '../http/request-body.js';
import { SweepTimer } from '../timers/sweep-timer.js';

const BODY_HIGH_WATER_MARK = 256 * 1024;

/** What the connection gives either exchange. */
export interface NodeExchangeOptions {
  readonly handler: RequestHandler;
  /** The listener's `alt-svc` value: every response carries it, replacing the handler's. */
  readonly altSvc: string | undefined;
  readonly requestBodyTimeoutMs: number;
  readonly connectionId: string;
  readonly onHandlerError: (err: unknown, streamId: number) => void;
  /** Called once when the exchange is over. */
  readonly onDone: () => void;
  /** The request turned out malformed (bad trailers, body length): counted by the caller. */
  readonly onMalformed: () => void;
  /** Starts the connection's graceful shutdown (HTTP/2 GOAWAY; HTTP/1.1 closes after the response). */
  readonly goAway: () => void;
  readonly refusals?: RefusalCounter;
}

export abstract class NodeStreamExchange<O extends NodeExchangeOptions = NodeExchangeOptions> implements HttpExchange {
  abstract readonly protocol: 'h1' | 'h2';
  abstract readonly httpVersion: ViaProtocolVersion;
  abstract readonly client: ClientAddress;
  abstract readonly streamId: number;
  readonly body = new RequestBody(BODY_HIGH_WATER_MARK);
  readonly earlyData = false;
  bytesReceived = 0;
  bytesSent = 0;
  protected state: ExchangeState = { phase: 'open', recv: Recv.Body, send: Send.NotStarted };
  protected readonly aborter = new Aborter();
  private readonly lengthCounter: BodyLengthCounter;
  private lastProgressAt = performance.now();
  /** The route's max_request_body, once the handler set it (limitBody). */
  private bodyLimit: number | undefined;
  /** The body was refused as too large: the client must be stopped sending the rest (stopClientBody). */
  protected bodyRefused = false;
  private readonly clock = new SweepTimer((now) => this.checkDeadline(now));

  protected constructor(
    /** The request body: paused while the handler's buffer is full. */
    private readonly source: Readable,
    /** Where the response body goes. */
    private readonly sink: Writable,
    readonly request: ValidatedRequest,
    protected readonly opts: O,
  ) {
    this.lengthCounter = new BodyLengthCounter(request.contentLength);
  }

  get connectionId(): string {
    return this.opts.connectionId;
  }

  get signal(): AbortLike {
    return this.aborter;
  }

  get headersSent(): boolean {
    return this.state.phase === 'finished' || this.state.send !== Send.NotStarted;
  }

  handshakeComplete(): Promise<boolean> {
    // TLS over TCP has no early data here: the handshake is complete before any request.
    return Promise.resolve(true);
  }

  goAway(): void {
    this.opts.goAway();
  }

  /** Hands the exchange to the handler; the subclass has wired its stream's events. */
  protected dispatch(): void {
    this.clock.ensure(this.deadline);
    dispatchExchange(this.opts.handler, this, (err) => this.opts.onHandlerError(err, this.streamId));
  }

  // ------------------------------------------------------------------ receive side

  /** Body bytes are still wanted. */
  protected get receiving(): boolean {
    return this.state.phase === 'open' && (this.state.recv === Recv.Body || this.state.recv === Recv.BodyPaused);
  }

  protected onData(chunk: Buffer): void {
    if (!this.receiving) return;
    this.bytesReceived += chunk.length;
    this.lastProgressAt = performance.now();
    const problem = this.lengthCounter.add(chunk.length);
    if (problem !== null) {
      this.failRequest(problem);
      return;
    }
    const over = this.bodyLimit === undefined ? null : overBodyLimit(this.bodyLimit, this.lengthCounter.received);
    if (over !== null) {
      this.bodyTooLarge(over);
      return;
    }
    if (!this.body.push(chunk)) this.pauseUntilDrained();
  }

  limitBody(maxBytes: number): void {
    this.bodyLimit = maxBytes;
    const over = overBodyLimit(maxBytes, this.lengthCounter.received, this.request.contentLength);
    if (over !== null) this.bodyTooLarge(over);
  }

  /**
   * The body is larger than max_request_body: it fails first (so does its upstream request), then
   * 413 and the client is stopped sending, or the exchange is cut once the response has started.
   */
  private bodyTooLarge(detail: string): void {
    if (this.state.phase !== 'open') return;
    this.opts.refusals?.add(REFUSAL.bodyTooLarge);
    this.body.abort(detail);
    this.bodyRefused = true;
    // Nothing more of the body is counted or forwarded.
    this.bodyNotWanted();
    if (!this.headersSent) {
      respondText(this, 413, 'request body too large\n');
      this.stopClientBody();
    } else {
      this.cutShort();
    }
    this.aborter.abort(new RequestBodyTooLargeError(`request body too large: ${detail}`));
  }

  private pauseUntilDrained(): void {
    if (this.state.phase !== 'open') return;
    this.state.recv = Recv.BodyPaused;
    this.source.pause();
    void this.body.drained().then(() => {
      if (this.state.phase !== 'open' || this.state.recv !== Recv.BodyPaused) return;
      this.state.recv = Recv.Body;
      // The client was not the one waiting: its idle clock starts again now.
      this.lastProgressAt = performance.now();
      this.clock.ensure(this.deadline);
      this.source.resume();
    });
  }

  /** The request's end: its length checked, the body (with the trailers, if any) completed. */
  protected endBody(trailers: FieldList | undefined): void {
    if (this.state.phase !== 'open' || this.state.recv === Recv.Done) return;
    const problem = this.lengthCounter.finish();
    if (problem !== null) {
      this.failRequest(problem);
      return;
    }
    this.state.recv = Recv.Done;
    this.clock.stop();
    this.body.end(trailers);
  }

  /** The response is complete: the rest of the request body (if any) is not needed. */
  protected bodyNotWanted(): void {
    if (this.state.phase !== 'open' || this.state.recv === Recv.Done) return;
    this.state.recv = Recv.Done;
    this.clock.stop();
    this.body.end();
  }

  /** While the body is incomplete and the client is the one we wait for: its idle clock. */
  private get deadline(): number | undefined {
    if (this.state.phase !== 'open' || (this.state.recv !== Recv.Body && this.state.recv !== Recv.Trailers)) return undefined;
    return this.lastProgressAt + this.opts.requestBodyTimeoutMs;
  }

  private checkDeadline(now: number): number | undefined {
    const at = this.deadline;
    if (at === undefined || now < at) return at;
    const reason = `request body timeout: no bytes for ${formatDuration(this.opts.requestBodyTimeoutMs)}`;
    this.opts.refusals?.add(REFUSAL.bodyTimeout);
    // The body fails first, so the 408 completing the response does not end it as if whole.
    this.body.abort(reason);
    if (!this.headersSent) respondText(this, 408, 'request body timeout\n');
    else this.cutShort();
    this.aborter.abort(new RequestTimeoutError(reason));
    return undefined;
  }

  /** The request cannot go on (its body's length or trailers are wrong): answer or cut it, and end the exchange. */
  protected abstract failRequest(reason: string): void;

  /** The body timed out or grew too large after the response started: end the exchange, the response incomplete. */
  protected abstract cutShort(): void;

  /** The complete answer to a refused body is under way: tell the client to stop sending the rest. */
  protected abstract stopClientBody(): void;

  // ------------------------------------------------------------------ send side

  abstract respond(status: number, headers: FieldList, endStream?: boolean): void;
  abstract end(trailers?: FieldList): void;
  abstract reset(): void;

  /** The response head may go out (`send` is the state it leaves); false if the exchange is over or cancelled. */
  protected startResponse(send: Send.Body | Send.Done): boolean {
    if (this.state.phase === 'finished' || this.aborter.aborted) return false;
    if (this.state.send !== Send.NotStarted) throw new Error('response headers already sent');
    this.state.send = send;
    return true;
  }

  protected get sendingBody(): boolean {
    return this.state.phase === 'open' && this.state.send === Send.Body;
  }

  write(chunk: Buffer): boolean {
    if (!this.sendingBody || chunk.length === 0) return this.state.phase === 'open';
    this.bytesSent += chunk.length;
    return this.sink.write(chunk);
  }

  drained(): Promise<void> {
    if (this.state.phase !== 'open') return Promise.resolve();
    return waitDrained(this.sink);
  }

  // ------------------------------------------------------------------ end

  /**
   * The connection is about to be cut by us (at drain_timeout): the handler's work is cancelled
   * now, with `reason`, before the socket's close would make it look like the client's doing and
   * before the upstream pools close under it.
   */
  cut(reason: AbortReason): void {
    this.abort(reason);
  }

  /** The stream closed under the exchange (client gone, reset, or the connection cut): the handler's work is cancelled. */
  protected abort(reason: AbortReason, detail?: string): void {
    if (this.state.phase === 'finished') return;
    this.body.abort(detail ?? reason);
    this.aborter.abort(new ExchangeAborted(reason, detail));
    this.finish();
  }

  protected finish(): void {
    if (this.state.phase === 'finished') return;
    this.state = { phase: 'finished' };
    this.clock.stop();
    this.opts.onDone();
  }
}

/** Resolves once `writable` takes more, or closes (then nothing more is written). */
function waitDrained(writable: Writable): Promise<void> {
  if (!writable.writableNeedDrain) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      writable.off('drain', done);
      writable.off('close', done);
      resolve();
    };
    writable.on('drain', done);
    writable.on('close', done);
  });
}
