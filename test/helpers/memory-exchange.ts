/**
 * An in-memory HttpExchange for tests (a "recording client"): no sockets, no QUIC, no root. It
 * feeds a request body into a RequestBody the way a protocol layer does (honouring push()'s
 * backpressure), records what the handler does with the response in order, can play a slow
 * client (write() returns false above a buffered amount until the test reads), and can give up
 * on the exchange the way a client reset does.
 *
 * It follows the HttpExchange contract as h3/request-stream.ts implements it: respond() twice
 * throws; write()/end() before respond() or after the response is over are ignored; nothing has
 * an effect once the exchange is over (ended, reset or aborted); a complete response ends the
 * request body (the rest is not wanted, as after STOP_SENDING); reset() and a client abort fail
 * the body so the upstream request is cancelled. bytesReceived counts request body bytes handed
 * to the body, bytesSent counts response body bytes accepted by write().
 */
import { validateRequest, type FieldList, type ValidatedRequest, type ViaProtocolVersion } from '../../src/proxy/http-semantics/index.js';
import { dispatchExchange, type ClientAddress, type HttpExchange, type HttpProtocol, type RequestHandler } from '../../src/proxy/http/exchange.js';
import { ABORT, ExchangeAborted, type AbortReason } from '../../src/proxy/http/exchange-abort.js';
import { DEFAULT_BODY_HIGH_WATER_MARK, RequestBody } from '../../src/proxy/http/request-body.js';

export interface MemoryRequest {
  readonly method?: string;
  readonly scheme?: string;
  readonly authority?: string;
  readonly path?: string;
  /** Regular fields, lowercase names (validated as the h3 layer would). */
  readonly headers?: FieldList;
  /** Sent as a content-length field; must match the body when the body ends. */
  readonly contentLength?: number;
  /** Body chunks, pushed in order once the exchange is dispatched. Ownership passes to the body. */
  readonly body?: ReadonlyArray<Buffer | string>;
  /** Whether the client finishes the body after the chunks (default true). */
  readonly bodyEnds?: boolean;
  readonly trailers?: FieldList;
}

export interface MemoryExchangeOptions {
  readonly protocol?: HttpProtocol;
  /** Default: the protocol's ("1.1" for h1). */
  readonly httpVersion?: ViaProtocolVersion;
  readonly client?: ClientAddress;
  readonly connectionId?: string;
  /** Default: 0, 4, 8, ... (client-initiated bidirectional stream ids), one per exchange. */
  readonly streamId?: number;
  readonly bodyHighWaterMark?: number;
  /** Unread response bytes at or above which write() returns false (default 256 KiB, as h3). */
  readonly writeHighWaterMark?: number;
  /** false: a slow client that reads nothing until read() or resume() (default true). */
  readonly reading?: boolean;
  /** The request arrived in 0-RTT; the handshake then completes when the test says (`completeHandshake`, `closeBeforeHandshake`). */
  readonly earlyData?: boolean;
}

export type ResponseEvent =
  | { readonly type: 'respond'; readonly status: number; readonly headers: FieldList; readonly endStream: boolean }
  | { readonly type: 'write'; readonly chunk: Buffer }
  | { readonly type: 'end'; readonly trailers: FieldList | undefined }
  | { readonly type: 'reset' };

/** How the exchange finished: the handler ended or reset the response, or the client aborted. */
export type Outcome = 'ended' | 'reset' | 'aborted';

let nextStreamId = 0;

export class MemoryExchange implements HttpExchange {
  readonly protocol: HttpProtocol;
  readonly httpVersion: ViaProtocolVersion;
  readonly request: ValidatedRequest;
  readonly body: RequestBody;
  readonly client: ClientAddress;
  readonly connectionId: string;
  readonly streamId: number;
  /** Everything the handler did to the response, in order (ignored calls are not recorded). */
  readonly events: ResponseEvent[] = [];
  /** Resolves once the response is over. */
  readonly finished: Promise<Outcome>;
  /** Resolves once the request body is over: ended by the client, or closed by the exchange. */
  readonly requestFed: Promise<void>;
  bytesReceived = 0;
  bytesSent = 0;
  readonly earlyData: boolean;

  readonly #init: MemoryRequest;
  readonly #abort = new AbortController();
  readonly #writeHighWaterMark: number;
  #send: 'none' | 'body' | 'done' = 'none';
  #outcome: Outcome | undefined;
  #reading: boolean;
  #unread: Buffer[] = [];
  #buffered = 0;
  #bytesRead = 0;
  #drainWaiters: Array<() => void> = [];
  #watchers: Array<() => void> = [];
  #dispatched = false;
  #feeding: Promise<void> = Promise.resolve();
  #resolveFinished!: (outcome: Outcome) => void;
  #resolveFed!: () => void;
  #handshake: 'pending' | 'complete' | 'closed';
  #handshakeWaiters: Array<(complete: boolean) => void> = [];

  constructor(init: MemoryRequest = {}, options: MemoryExchangeOptions = {}) {
    const headers: FieldList = [...(init.headers ?? [])];
    if (init.contentLength !== undefined) headers.push(['content-length', String(init.contentLength)]);
    const validated = validateRequest([
      [':method', init.method ?? 'GET'],
      [':scheme', init.scheme ?? 'https'],
      [':authority', init.authority ?? 'app.example'],
      [':path', init.path ?? '/'],
      ...headers,
    ]);
    if (!validated.ok) throw new Error(`MemoryExchange: invalid request: ${validated.reason}`);
    const bodyLength = (init.body ?? []).reduce((n, c) => n + Buffer.byteLength(c), 0);
    if (init.contentLength !== undefined && (init.bodyEnds ?? true) && bodyLength !== init.contentLength) {
      throw new Error(`MemoryExchange: body of ${bodyLength} bytes but content-length ${init.contentLength}`);
    }
    this.#init = init;
    this.request = validated.request;
    this.body = new RequestBody(options.bodyHighWaterMark ?? DEFAULT_BODY_HIGH_WATER_MARK);
    this.protocol = options.protocol ?? 'h3';
    this.httpVersion = options.httpVersion ?? ({ h1: '1.1', h2: '2', h3: '3' } as const)[this.protocol];
    this.client = options.client ?? { host: '192.0.2.10', port: 50_000 };
    this.connectionId = options.connectionId ?? 'mem-1';
    this.streamId = options.streamId ?? (nextStreamId += 4) - 4;
    this.#writeHighWaterMark = options.writeHighWaterMark ?? 256 * 1024;
    this.#reading = options.reading ?? true;
    this.earlyData = options.earlyData ?? false;
    this.#handshake = this.earlyData ? 'pending' : 'complete';
    this.finished = new Promise((resolve) => (this.#resolveFinished = resolve));
    this.requestFed = new Promise((resolve) => (this.#resolveFed = resolve));
  }

  /** The handler asked the client to take further requests to a new connection. */
  wentAway = false;
  /** What the handler set with limitBody (recorded only: the protocol layers enforce it, tested with real clients). */
  bodyLimit: number | undefined;

  limitBody(maxBytes: number): void {
    this.bodyLimit = maxBytes;
  }

  goAway(): void {
    this.wentAway = true;
  }

  handshakeComplete(): Promise<boolean> {
    if (this.#handshake !== 'pending') return Promise.resolve(this.#handshake === 'complete');
    return new Promise((resolve) => this.#handshakeWaiters.push(resolve));
  }

  /** Has the handler waited for the handshake (a request held back from early data)? */
  get waitingForHandshake(): boolean {
    return this.#handshakeWaiters.length > 0;
  }

  // ------------------------------------------------------------------ the test's side

  /** The client's handshake completes: requests held back from early data go on. */
  completeHandshake(): void {
    this.#settleHandshake('complete');
  }

  /** The connection ends before the handshake completes (a replayed first flight does). */
  closeBeforeHandshake(): void {
    this.#settleHandshake('closed');
    this.abort(ABORT.connectionClosed);
  }

  #settleHandshake(to: 'complete' | 'closed'): void {
    if (this.#handshake !== 'pending') return;
    this.#handshake = to;
    const waiters = this.#handshakeWaiters;
    this.#handshakeWaiters = [];
    for (const w of waiters) w(to === 'complete');
  }

  /** Hand the exchange to a handler (through dispatchExchange), then start feeding the body. */
  dispatch(handler: RequestHandler, onError: (err: unknown) => void = (err) => { throw err; }): Promise<Outcome> {
    if (this.#dispatched) throw new Error('MemoryExchange: dispatched twice');
    this.#dispatched = true;
    dispatchExchange(handler, this, onError);
    this.#feeding = this.#feed(this.#init.body ?? [], this.#init.bodyEnds ?? true, this.#init.trailers);
    return this.finished;
  }

  /** The client sends more of the body (after what it sent before), and ends it when `end`. */
  sendBody(chunks: ReadonlyArray<Buffer | string>, end = false, trailers?: FieldList): Promise<void> {
    if (!this.#dispatched) throw new Error('MemoryExchange: sendBody before dispatch');
    this.#feeding = this.#feeding.then(() => this.#feed(chunks, end, trailers));
    return this.#feeding;
  }

  /**
   * The client gives up (stream reset, connection gone): signal aborted, body failed. A reason
   * (ABORT) becomes an ExchangeAborted, as the protocol layers make it; an Error is the signal's
   * reason as given, e.g. a RequestTimeoutError as a protocol layer's timeout sets it.
   */
  abort(reason: AbortReason | Error = ABORT.clientReset): void {
    if (this.#outcome !== undefined) return;
    const err = typeof reason === 'string' ? new ExchangeAborted(reason) : reason;
    this.body.abort(err.message);
    this.#abort.abort(err);
    this.#finish('aborted');
  }

  /** The client reads every response byte that arrived so far; returns them. */
  read(): Buffer {
    const data = Buffer.concat(this.#unread);
    this.#unread = [];
    this.#bytesRead += this.#buffered;
    this.#buffered = 0;
    this.#releaseDrainWaiters();
    this.#changed();
    return data;
  }

  /** The client reads from now on as fast as bytes arrive. */
  resume(): Buffer {
    this.#reading = true;
    return this.read();
  }

  /** Resolves once `predicate` holds (checked now and after every change of the exchange). */
  until(predicate: (ex: this) => boolean): Promise<void> {
    if (predicate(this)) return Promise.resolve();
    return new Promise((resolve) => {
      const check = (): void => {
        if (predicate(this)) resolve();
        else this.#watchers.push(check);
      };
      this.#watchers.push(check);
    });
  }

  get outcome(): Outcome | undefined {
    return this.#outcome;
  }

  /** Response bytes written and not yet read by the client. */
  get bufferedAmount(): number {
    return this.#buffered;
  }

  /** Response bytes the client has read. */
  get bytesRead(): number {
    return this.#bytesRead;
  }

  /** The handler is waiting in drained() for the client to read. */
  get waitingForDrain(): boolean {
    return this.#drainWaiters.length > 0;
  }

  get status(): number | undefined {
    const head = this.events.find((e) => e.type === 'respond');
    return head?.type === 'respond' ? head.status : undefined;
  }

  get responseHeaders(): FieldList | undefined {
    const head = this.events.find((e) => e.type === 'respond');
    return head?.type === 'respond' ? head.headers : undefined;
  }

  /** Every body byte the handler wrote (read by the client or not). */
  get responseBody(): Buffer {
    return Buffer.concat(this.events.flatMap((e) => (e.type === 'write' ? [e.chunk] : [])));
  }

  /** Trailers passed to end(), when end() was called. */
  get responseTrailers(): FieldList | undefined {
    const end = this.events.find((e) => e.type === 'end');
    return end?.type === 'end' ? end.trailers : undefined;
  }

  // ------------------------------------------------------------------ HttpExchange

  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  get headersSent(): boolean {
    return this.#outcome !== undefined || this.#send !== 'none';
  }

  respond(status: number, headers: FieldList, endStream = false): void {
    if (this.#outcome !== undefined) return;
    if (this.#send !== 'none') throw new Error('response headers already sent');
    this.#send = 'body';
    this.events.push({ type: 'respond', status, headers: headers.map(([n, v]) => [n, v] as [string, string]), endStream });
    if (endStream) this.#finish('ended');
    else this.#changed();
  }

  write(chunk: Buffer): boolean {
    if (this.#outcome !== undefined || this.#send !== 'body' || chunk.length === 0) return !this.#failed;
    this.bytesSent += chunk.length;
    this.events.push({ type: 'write', chunk });
    if (this.#reading) {
      this.#bytesRead += chunk.length;
    } else {
      this.#unread.push(chunk);
      this.#buffered += chunk.length;
    }
    this.#changed();
    return this.#buffered < this.#writeHighWaterMark;
  }

  drained(): Promise<void> {
    if (this.#buffered < this.#writeHighWaterMark || this.#failed) return Promise.resolve();
    const waiting = new Promise<void>((resolve) => this.#drainWaiters.push(resolve));
    this.#changed();
    return waiting;
  }

  end(trailers?: FieldList): void {
    if (this.#outcome !== undefined || this.#send !== 'body') return;
    this.events.push({ type: 'end', trailers: trailers?.map(([n, v]) => [n, v] as [string, string]) });
    this.#finish('ended');
  }

  reset(): void {
    if (this.#outcome !== undefined) return;
    this.events.push({ type: 'reset' });
    this.body.abort('response reset');
    this.#finish('reset');
  }

  // ------------------------------------------------------------------ internals

  /** Writes can no longer reach the client. */
  get #failed(): boolean {
    return this.#outcome === 'reset' || this.#outcome === 'aborted';
  }

  async #feed(chunks: ReadonlyArray<Buffer | string>, end: boolean, trailers: FieldList | undefined): Promise<void> {
    for (const piece of chunks) {
      // A finished response ends or fails the body: the rest is discarded, as the h3 layer does.
      if (this.body.closed) break;
      const chunk = typeof piece === 'string' ? Buffer.from(piece) : piece;
      this.bytesReceived += chunk.length;
      if (!this.body.push(chunk)) await this.body.drained();
    }
    if (end && !this.body.closed) this.body.end(trailers);
    if (this.body.closed) this.#resolveFed();
  }

  #finish(outcome: Outcome): void {
    if (this.#outcome !== undefined) return;
    this.#outcome = outcome;
    this.#send = 'done';
    // A complete response needs no more of the request (h3 sends STOP_SENDING and ends the body).
    if (!this.body.closed) this.body.end();
    this.#resolveFed();
    if (outcome !== 'ended') {
      this.#unread = [];
      this.#buffered = 0;
    }
    this.#releaseDrainWaiters();
    this.#resolveFinished(outcome);
    this.#changed();
  }

  #releaseDrainWaiters(): void {
    if (this.#buffered >= this.#writeHighWaterMark && !this.#failed) return;
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const resolve of waiters) resolve();
  }

  #changed(): void {
    const watchers = this.#watchers;
    this.#watchers = [];
    for (const check of watchers) check();
  }
}
