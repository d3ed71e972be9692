/**
 * One HTTP/2 request stream over Node's core http2 API (ServerHttp2Stream, not the compatibility
 * layer): the HTTP/2 implementation of the protocol-neutral HttpExchange, mirroring
 * h3/request-stream.ts. nghttp2 does the framing and the protocol checks it owns (pseudo-header
 * order, uppercase names, connection-specific fields, content-length against DATA); this streams
 * the body to the handler with backpressure (the stream is paused, so its flow-control window
 * is not reopened and the client waits), runs the body idle clock, and passes trailers both ways.
 */
import http2, { type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { formatDuration } from '../config/units.js';
import { BodyLengthCounter, validateTrailers, type FieldList, type ValidatedRequest } from '../http-semantics/index.js';
import { dispatchExchange, RequestTimeoutError, respondText, type ClientAddress, type HttpExchange, type RequestHandler } from '../http/exchange.js';
import { withListenerAltSvc } from '../http/alt-svc.js';
import { REFUSAL, type RefusalCounter } from '../http/refusals.js';
import { RequestBody } from '../http/request-body.js';
import { SweepTimer } from '../timers/sweep-timer.js';

const { NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR, NGHTTP2_PROTOCOL_ERROR } = http2.constants;

const enum Recv {
  Body,
  /** The body buffer is full: the stream is paused, its window stays closed, until it drains. */
  BodyPaused,
  Trailers,
  Done,
}

const enum Send {
  NotStarted,
  Body,
  Done,
}

type State = { readonly phase: 'open'; recv: Recv; send: Send } | { readonly phase: 'finished' };

const BODY_HIGH_WATER_MARK = 256 * 1024;

export interface H2ExchangeOptions {
  readonly handler: RequestHandler;
  /** The listener's `alt-svc` value: every response carries it, replacing the handler's. */
  readonly altSvc: string | undefined;
  readonly requestBodyTimeoutMs: number;
  readonly connectionId: string;
  readonly client: ClientAddress;
  readonly onHandlerError: (err: unknown, streamId: number) => void;
  /** Called once when the stream is over. */
  readonly onDone: () => void;
  /** The request turned out malformed (bad trailers, body length): counted by the caller. */
  readonly onMalformed: () => void;
  /** Reset the stream with `code` (the connection tells our resets from the client's). */
  readonly resetStream: (stream: ServerHttp2Stream, code: number) => void;
  readonly refusals?: RefusalCounter;
}

export class H2Exchange implements HttpExchange {
  readonly protocol = 'h2';
  readonly httpVersion = '2';
  readonly body = new RequestBody(BODY_HIGH_WATER_MARK);
  readonly earlyData = false;
  bytesReceived = 0;
  bytesSent = 0;
  private state: State = { phase: 'open', recv: Recv.Body, send: Send.NotStarted };
  private readonly abortController = new AbortController();
  private readonly lengthCounter: BodyLengthCounter;
  private requestTrailers: FieldList | undefined;
  /** What 'wantTrailers' sends once the body is out (nothing: an empty DATA frame with END_STREAM). */
  private responseTrailers: FieldList = [];
  private lastProgressAt = performance.now();
  private readonly clock = new SweepTimer((now) => this.checkDeadline(now));

  constructor(
    private readonly stream: ServerHttp2Stream,
    readonly request: ValidatedRequest,
    private readonly opts: H2ExchangeOptions,
  ) {
    this.lengthCounter = new BodyLengthCounter(request.contentLength);
  }

  get client(): ClientAddress {
    return this.opts.client;
  }

  get connectionId(): string {
    return this.opts.connectionId;
  }

  get streamId(): number {
    // Defined for every stream the client opened (only pushed streams start without one).
    return this.stream.id ?? 0;
  }

  get signal(): AbortSignal {
    return this.abortController.signal;
  }

  get headersSent(): boolean {
    return this.state.phase === 'finished' || this.state.send !== Send.NotStarted;
  }

  handshakeComplete(): Promise<boolean> {
    return Promise.resolve(true);
  }

  start(): void {
    const s = this.stream;
    s.on('data', (chunk: Buffer) => this.onData(chunk));
    s.on('trailers', (headers: IncomingHttpHeaders) => this.onTrailers(headers));
    s.on('end', () => this.onEnd());
    s.on('wantTrailers', () => this.sendTrailers());
    s.on('error', () => {}); // reported through 'close' (rstCode) below
    s.on('close', () => this.onClose());
    if (s.readableEnded || s.endAfterHeaders) this.onEnd();
    this.clock.ensure(this.deadline);
    dispatchExchange(this.opts.handler, this, (err) => this.opts.onHandlerError(err, this.streamId));
  }

  // ------------------------------------------------------------------ receive side

  private get receiving(): boolean {
    return this.state.phase === 'open' && (this.state.recv === Recv.Body || this.state.recv === Recv.BodyPaused);
  }

  private onData(chunk: Buffer): void {
    if (!this.receiving) return;
    this.bytesReceived += chunk.length;
    this.lastProgressAt = performance.now();
    const problem = this.lengthCounter.add(chunk.length);
    if (problem !== null) {
      this.streamError(problem);
      return;
    }
    if (!this.body.push(chunk)) this.pauseUntilDrained();
  }

  private pauseUntilDrained(): void {
    if (this.state.phase !== 'open') return;
    this.state.recv = Recv.BodyPaused;
    this.stream.pause();
    void this.body.drained().then(() => {
      if (this.state.phase !== 'open' || this.state.recv !== Recv.BodyPaused) return;
      this.state.recv = Recv.Body;
      this.lastProgressAt = performance.now();
      this.clock.ensure(this.deadline);
      this.stream.resume();
    });
  }

  private onTrailers(headers: IncomingHttpHeaders): void {
    if (!this.receiving) return;
    const v = validateTrailers(headerObjectFields(headers));
    if (!v.ok) {
      this.streamError(v.reason);
      return;
    }
    this.requestTrailers = v.trailers;
    if (this.state.phase === 'open') this.state.recv = Recv.Trailers;
  }

  private onEnd(): void {
    if (this.state.phase !== 'open' || this.state.recv === Recv.Done) return;
    const problem = this.lengthCounter.finish();
    if (problem !== null) {
      this.streamError(problem);
      return;
    }
    this.state.recv = Recv.Done;
    this.clock.stop();
    this.body.end(this.requestTrailers);
  }

  private get deadline(): number | undefined {
    if (this.state.phase !== 'open' || (this.state.recv !== Recv.Body && this.state.recv !== Recv.Trailers)) return undefined;
    return this.lastProgressAt + this.opts.requestBodyTimeoutMs;
  }

  private checkDeadline(now: number): number | undefined {
    const at = this.deadline;
    if (at === undefined || now < at) return at;
    const reason = `request body timeout: no bytes for ${formatDuration(this.opts.requestBodyTimeoutMs)}`;
    this.opts.refusals?.add(REFUSAL.bodyTimeout);
    this.body.abort(reason);
    if (!this.headersSent) respondText(this, 408, 'request body timeout\n');
    else this.closeStream(NGHTTP2_CANCEL);
    this.abortController.abort(new RequestTimeoutError(reason));
    return undefined;
  }

  /** A malformed request (RFC 9113 §8.1.1): stream error PROTOCOL_ERROR; the connection lives on. */
  private streamError(reason: string): void {
    this.opts.onMalformed();
    this.body.abort(reason);
    this.abortController.abort(new Error(reason));
    this.closeStream(NGHTTP2_PROTOCOL_ERROR);
  }

  // ------------------------------------------------------------------ send side

  respond(status: number, headers: FieldList, endStream = false): void {
    if (this.state.phase === 'finished' || this.abortController.signal.aborted) return;
    if (this.state.send !== Send.NotStarted) throw new Error('response headers already sent');
    this.state.send = endStream ? Send.Done : Send.Body;
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
    if (endStream) this.responseComplete();
  }

  private get sendingBody(): boolean {
    return this.state.phase === 'open' && this.state.send === Send.Body;
  }

  write(chunk: Buffer): boolean {
    if (!this.sendingBody || chunk.length === 0) return this.state.phase === 'open';
    this.bytesSent += chunk.length;
    return this.stream.write(chunk);
  }

  drained(): Promise<void> {
    if (this.state.phase !== 'open' || !this.stream.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.stream.off('drain', done);
        this.stream.off('close', done);
        resolve();
      };
      this.stream.on('drain', done);
      this.stream.on('close', done);
    });
  }

  end(trailers?: FieldList): void {
    if (!this.sendingBody || this.state.phase !== 'open') return;
    this.state.send = Send.Done;
    this.responseTrailers = trailers ?? [];
    this.stream.end();
    this.responseComplete();
  }

  private sendTrailers(): void {
    try {
      this.stream.sendTrailers(fieldsToHeaderObject(this.responseTrailers));
    } catch {
      this.closeStream(NGHTTP2_INTERNAL_ERROR);
    }
  }

  /** The response is complete: the rest of the request body (if any) is not needed. */
  private responseComplete(): void {
    if (this.state.phase !== 'open' || this.state.recv === Recv.Done) return;
    this.state.recv = Recv.Done;
    this.clock.stop();
    this.body.end();
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
    if (this.state.phase === 'finished') return;
    if (this.state.send !== Send.Done) {
      const reason = `client reset stream (code ${this.stream.rstCode ?? 'none'})`;
      this.body.abort(reason);
      this.abortController.abort(new Error(reason));
    }
    this.finish();
  }

  private finish(): void {
    if (this.state.phase === 'finished') return;
    this.state = { phase: 'finished' };
    this.clock.stop();
    this.opts.onDone();
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
