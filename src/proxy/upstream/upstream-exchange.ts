/**
 * One request/response exchange with an upstream, as an undici dispatch handler. It turns undici's
 * callbacks into a response promise, a body source with backpressure (response-body.ts: undici's
 * parser is paused while the consumer cannot take more, so a slow HTTP/3 consumer slows the
 * upstream socket; a Readable over it on request) and a trailers promise.
 */

import type { Readable } from 'node:stream';
import { errors as undiciErrors, type Dispatcher } from 'undici';
import type { FieldList } from '../http-semantics/fields.js';
import { isValidStatus, responseHasNoContent } from '../http-semantics/status.js';
import type { ConnectionVersionSink, UpstreamHttpVersion } from './dispatcher.js';
import { classifyUpstreamError, ExchangeAbortedError, UpstreamError, type TryRecord } from './errors.js';
import type { ExchangeDeadline, ExchangeDeadlines } from './exchange-deadlines.js';
import { ResponseBody } from './response-body.js';

export const DEFAULT_RESPONSE_HIGH_WATER_MARK = 64 * 1024;

export interface UpstreamResponse {
  readonly status: number;
  /** Response fields as the upstream sent them (original case, order, duplicates). */
  readonly headers: FieldList;
  /**
   * The body as a Readable, made on first use (then it is the body's one consumer; use it or
   * `source`, not both). Iterate it (or read it) as flow control allows; a failure after the
   * headers arrives as an UpstreamError from the iterator (kind 'reset', 'body_timeout', ...).
   * Destroying it aborts the upstream exchange.
   */
  readonly body: Readable;
  /** The body without a stream: chunks, the end with its trailers, or the failure, to one sink. */
  readonly source: ResponseBody;
  /** Trailer fields, once the body ended; rejects with the same UpstreamError as the body. */
  readonly trailers: Promise<FieldList>;
  /** The target that answered (its URL, with the address when resolved from a name). */
  readonly target: string;
  /** The HTTP version the response came in (for Via): "2" from an HTTP/2 connection, else "1.1". */
  readonly httpVersion: UpstreamHttpVersion;
  /** Every try made for the request, this one last (set by the pool). */
  tries: readonly TryRecord[];
  /** Cancel the exchange (the client reset its stream). Idempotent. */
  abort(reason?: string): void;
}

type DispatchController = Dispatcher.DispatchController;
type HeaderSource = DispatchController['rawHeaders'] | Record<string, string | string[] | undefined>;

type State = 'waiting' | 'streaming' | 'done' | 'failed';

export interface UpstreamExchangeOptions {
  /** The request's method: the response to HEAD has no content (RFC 9110 §9.3.2). */
  readonly method?: string;
  /** Bytes of response body buffered before the upstream socket is paused. */
  readonly responseHighWaterMark?: number;
  /**
   * Runs response_timeout and body_timeout for this exchange (undici's own are then off for it).
   * Without it undici's per-request timers must be set.
   */
  readonly deadlines?: ExchangeDeadlines;
}

/** Which timeout the exchange's deadline is: until the response head, or the longest body silence. */
type Clock = 'none' | 'response' | 'body';

export class UpstreamExchange implements Dispatcher.DispatchHandler, ExchangeDeadline, ConnectionVersionSink {
  readonly response: Promise<UpstreamResponse>;
  /** Set by a `protocol: h2` pool's client (dispatcher.ts); null: an HTTP/1.1-only pool. */
  connection: { readonly httpVersion: UpstreamHttpVersion } | null = null;
  /** The version of the connection the request went onto. */
  #httpVersion: UpstreamHttpVersion = '1.1';
  /** See ExchangeDeadline: when the running clock expires (Infinity: none running). */
  deadline = Infinity;
  deadlinePrev: ExchangeDeadline | null = null;
  deadlineNext: ExchangeDeadline | null = null;
  #clock: Clock = 'none';
  /** The body's consumer paused undici's parser: body_timeout does not run meanwhile (as undici's). */
  #bodyPaused = false;
  readonly #deadlines: ExchangeDeadlines | undefined;
  #state: State = 'waiting';
  #controller: DispatchController | null = null;
  #pendingAbort: Error | null = null;
  #body: ResponseBody | null = null;
  #resolveResponse!: (response: UpstreamResponse) => void;
  #rejectResponse!: (err: UpstreamError) => void;
  #resolveTrailers!: (trailers: FieldList) => void;
  #rejectTrailers!: (err: UpstreamError) => void;
  readonly #trailers: Promise<FieldList>;

  readonly #method: string;
  readonly #responseHighWaterMark: number;

  constructor(
    readonly target: string,
    private readonly onSettled: () => void,
    options: UpstreamExchangeOptions = {},
  ) {
    this.#method = options.method ?? 'GET';
    this.#responseHighWaterMark = options.responseHighWaterMark ?? DEFAULT_RESPONSE_HIGH_WATER_MARK;
    this.#deadlines = options.deadlines;
    this.response = new Promise((resolve, reject) => {
      this.#resolveResponse = resolve;
      this.#rejectResponse = reject;
    });
    this.#trailers = new Promise((resolve, reject) => {
      this.#resolveTrailers = resolve;
      this.#rejectTrailers = reject;
    });
    // The body already reports the failure; an unobserved trailers promise must not crash us.
    this.#trailers.catch(() => {});
  }

  /** Response headers arrived (later failures surface from the body, not the response promise). */
  get responded(): boolean {
    return this.#body !== null;
  }

  get settled(): boolean {
    return this.#state === 'done' || this.#state === 'failed';
  }

  /** Cancel from our side, in any state. */
  abort(reason = 'aborted by the proxy'): void {
    if (this.settled) return;
    const err = new ExchangeAbortedError(reason);
    if (this.#controller === null) {
      // Not on a socket yet: undici will call onRequestStart later, or never if it is queued and
      // we fail here first.
      this.#pendingAbort = err;
      this.fail(err);
      return;
    }
    this.#controller.abort(err);
  }

  /** Fail the exchange with an error raised outside undici's callbacks (e.g. dispatch threw). */
  fail(err: unknown): void {
    if (this.settled) return;
    const mapped = classifyUpstreamError(err, this.target);
    const wasStreaming = this.#state === 'streaming';
    this.#state = 'failed';
    if (wasStreaming && this.#body !== null) {
      this.#body.fail(mapped);
    } else {
      this.#rejectResponse(mapped);
    }
    this.#rejectTrailers(mapped);
    this.#settle();
  }

  /** The exchange is over: no clock runs for it any more. */
  #settle(): void {
    if (this.#clock !== 'none') {
      this.#clock = 'none';
      this.#deadlines!.unwatch(this);
    }
    this.onSettled();
  }

  /** Start (or restart) a clock: response_timeout until the head, then body_timeout between chunks. */
  #startClock(clock: 'response' | 'body'): void {
    const deadlines = this.#deadlines;
    if (deadlines === undefined) return;
    this.#clock = clock;
    this.deadline = performance.now() + (clock === 'response' ? deadlines.responseTimeoutMs : deadlines.bodyTimeoutMs);
    deadlines.watch(this);
  }

  /** ExchangeDeadline: the running clock ran out. Fails as undici's own timeout would (same error, the socket closed). */
  expire(): void {
    const clock = this.#clock;
    this.#clock = 'none';
    if (this.settled || this.#controller === null) return;
    this.#controller.abort(clock === 'response' ? new undiciErrors.HeadersTimeoutError() : new undiciErrors.BodyTimeoutError());
  }

  onRequestStart(controller: DispatchController): void {
    this.#controller = controller;
    // The request is being written to the client's current connection: its response comes on it.
    if (this.connection !== null) this.#httpVersion = this.connection.httpVersion;
    if (this.#pendingAbort !== null) {
      controller.abort(this.#pendingAbort);
      return;
    }
    // The request is on a connection now, where undici would start headersTimeout.
    this.#startClock('response');
  }

  onResponseStart(controller: DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    // undici's parser takes any three digits; 600..999 is no HTTP status (RFC 9110 §15) and the
    // client could not make sense of it: a 502 names the upstream's fault instead.
    if (!isValidStatus(statusCode)) {
      const err = new UpstreamError('invalid_response', `invalid upstream response: status ${statusCode} is outside 100..599`, this.target);
      this.fail(err);
      controller.abort(err);
      return;
    }
    if (this.#state !== 'waiting') return;
    // 1xx interim responses are not relayed; the final response follows. Each restarts
    // response_timeout, as it does undici's headersTimeout.
    if (statusCode < 200) {
      if (this.#clock === 'response') this.#startClock('response');
      return;
    }
    this.#controller = controller;
    this.#state = 'streaming';
    const body = new ResponseBody(
      {
        pause: () => {
          this.#bodyPaused = true;
          this.deadline = Infinity;
          controller.pause();
        },
        resume: () => {
          if (this.#bodyPaused) {
            this.#bodyPaused = false;
            if (this.#clock === 'body') this.#startClock('body');
          }
          controller.resume();
        },
        // The consumer gave up before the end: stop the upstream exchange too.
        cancel: () => {
          if (this.#state === 'streaming') controller.abort(new ExchangeAbortedError('response body destroyed by the consumer'));
        },
      },
      this.#responseHighWaterMark,
    );
    this.#body = body;
    // HEAD, 204 and 304 end with their headers (RFC 9110 §6.4.1), whatever Content-Length says. The
    // exchange is complete now: undici's later complaint that a 304's content-length went unmet
    // (ResponseContentLengthMismatchError, it closes that connection) must not fail it.
    const complete = responseHasNoContent(this.#method, statusCode);
    if (complete) {
      this.#state = 'done';
      body.end([]);
      this.#resolveTrailers([]);
    } else {
      this.#startClock('body');
    }
    this.#resolveResponse(new ExchangeResponse(statusCode, toFieldList(controller.rawHeaders ?? headers), body, this.#trailers, this, this.target, this.#httpVersion));
    if (complete) this.#settle();
  }

  onResponseData(controller: DispatchController, chunk: Buffer): void {
    if (this.#body === null || this.#state !== 'streaming') return;
    // A chunk restarts body_timeout; the sweep finds the later deadline (no timer call).
    if (this.#clock === 'body' && !this.#bodyPaused) this.deadline = performance.now() + this.#deadlines!.bodyTimeoutMs;
    this.#body.push(chunk);
  }

  onResponseEnd(controller: DispatchController, trailers: Record<string, string | string[] | undefined>): void {
    if (this.#state !== 'streaming' || this.#body === null) return;
    this.#state = 'done';
    const fields = toFieldList(controller.rawTrailers ?? trailers);
    this.#resolveTrailers(fields);
    this.#body.end(fields);
    this.#settle();
  }

  onResponseError(_controller: DispatchController, error: Error): void {
    this.fail(error);
  }
}

/** One class for every response (one object shape at the sites that read it); the pool sets `tries`. */
class ExchangeResponse implements UpstreamResponse {
  tries: readonly TryRecord[] = [];
  constructor(
    readonly status: number,
    readonly headers: FieldList,
    readonly source: ResponseBody,
    readonly trailers: Promise<FieldList>,
    private readonly exchange: UpstreamExchange,
    readonly target: string,
    readonly httpVersion: UpstreamHttpVersion,
  ) {}

  get body(): Readable {
    return this.source.readable;
  }

  abort(reason?: string): void {
    this.exchange.abort(reason);
  }
}

/** undici hands headers as raw [name, value, ...] Buffers/strings or as a parsed object. */
function toFieldList(source: HeaderSource): FieldList {
  const out: FieldList = [];
  if (source === null || source === undefined) return out;
  if (Array.isArray(source)) {
    for (let i = 0; i + 1 < source.length; i += 2) {
      out.push([text(source[i]), text(source[i + 1])]);
    }
    return out;
  }
  for (const [name, value] of Object.entries(source)) {
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const item of value) out.push([name, item]);
    else out.push([name, value]);
  }
  return out;
}

function text(value: unknown): string {
  return Buffer.isBuffer(value) ? value.toString('latin1') : String(value);
}
