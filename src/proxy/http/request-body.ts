/**
 * A request body between the protocol that receives it and whoever consumes it: the HTTP/3 (or
 * HTTP/2, HTTP/1.1) layer pushes payload bytes in as they arrive, the upstream reads them out of
 * `stream`. `push` reports when the buffer is full; the producer then stops reading its transport
 * (so flow control pushes back on the client) until `drained()`.
 *
 * The stream is made on first use (a push with bytes, or a consumer asking for it): most requests
 * have no body and nobody reads one, and a Readable per request costs its construction, its
 * events and its ticks. A body nobody will read is `discard`ed: its bytes are counted and dropped.
 */

import { Readable } from 'node:stream';
import type { FieldList } from '../http-semantics/fields.js';
import { ExchangeAbortedError } from '../upstream/errors.js';

export const DEFAULT_BODY_HIGH_WATER_MARK = 64 * 1024;

export class RequestBody {
  #stream: Readable | null = null;
  readonly #highWaterMark: number;
  /** Why the body was aborted before its stream existed (then a stream made later is destroyed with it). */
  #abortedEarly: Error | null = null;
  /** Nobody will read it: bytes are dropped as they come. */
  #discarding = false;
  #ended = false;
  #trailers: FieldList | undefined;
  #drainWaiters: Array<() => void> = [];
  /** Node asked for data (called _read) and no push happened since. */
  #consumerWaiting = false;
  #bytesPushed = 0;
  #contentWaiters: Array<(hasContent: boolean) => void> = [];
  /** Called once, when the consumer first asks for bytes (then dropped). */
  #onFirstRead: (() => void) | undefined;

  constructor(highWaterMark: number = DEFAULT_BODY_HIGH_WATER_MARK) {
    this.#highWaterMark = highWaterMark;
  }

  /** What the consumer (undici) reads. Do not read it yourself. */
  get stream(): Readable {
    return this.#stream ?? this.#makeStream();
  }

  #makeStream(): Readable {
    const highWaterMark = this.#highWaterMark;
    const stream = new Readable({
      highWaterMark,
      // _read means "push more": Node calls it once and again only after the next push.
      read: () => {
        const onFirstRead = this.#onFirstRead;
        this.#onFirstRead = undefined;
        onFirstRead?.();
        this.#consumerWaiting = true;
        this.#releaseAll();
      },
      destroy: (err, callback) => {
        this.#onDestroyed();
        callback(err);
      },
    });
    // undici drops its error listener once the exchange settles; a late abort() must not become
    // an uncaught 'error' event.
    stream.on('error', () => {});
    this.#stream = stream;
    // What happened before anybody asked for the stream.
    if (this.#abortedEarly !== null) stream.destroy(this.#abortedEarly);
    else if (this.#ended) stream.push(null);
    if (this.#discarding) stream.resume();
    return stream;
  }

  get #destroyed(): boolean {
    return this.#stream === null ? this.#abortedEarly !== null : this.#stream.destroyed;
  }

  /**
   * Queue a chunk (ownership passes to the body: do not reuse its memory). Returns false when the
   * buffer is at or above its high-water mark: await `drained()` before pushing more. After the
   * exchange ended or failed, chunks are discarded and true is returned, so a feeder never stalls.
   */
  push(chunk: Uint8Array): boolean {
    if (this.#ended) throw new Error('RequestBody.push after end()');
    if (this.#destroyed) return true;
    if (chunk.byteLength === 0) return !this.needsDrain;
    this.#bytesPushed += chunk.byteLength;
    if (this.#discarding && this.#stream === null) {
      this.#settleContent(true);
      return true;
    }
    this.#consumerWaiting = false;
    const more = this.stream.push(chunk);
    this.#settleContent(true);
    return more;
  }

  /**
   * Whether the request has content: true once a body byte arrived, false once the body ended (or
   * failed) without one. Without Content-Length only this tells an empty GET from one with a body:
   * an HTTP/3 request may carry DATA without announcing a length. Never rejects.
   */
  hasContent(): Promise<boolean> {
    const known = this.contentKnown;
    if (known !== undefined) return Promise.resolve(known);
    return new Promise((resolve) => this.#contentWaiters.push(resolve));
  }

  /** What `hasContent()` will say, when that is known already; undefined while it is not. */
  get contentKnown(): boolean | undefined {
    if (this.#bytesPushed > 0) return true;
    if (this.#ended || this.#destroyed) return false;
    return undefined;
  }

  /** True while the buffer is full and the consumer has not asked for more. */
  get needsDrain(): boolean {
    const stream = this.#stream;
    if (stream === null || stream.destroyed || this.#ended || this.#consumerWaiting) return false;
    return stream.readableLength >= stream.readableHighWaterMark;
  }

  /** Resolves when pushing may continue (immediately when it already may). Never rejects. */
  drained(): Promise<void> {
    if (!this.needsDrain) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /**
   * The client finished the body. Trailers are kept for the record (`trailers`) but undici's
   * HTTP/1.1 client cannot send request trailers, so they are not forwarded.
   */
  end(trailers?: FieldList): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#trailers = trailers;
    if (this.#stream !== null && !this.#stream.destroyed) this.#stream.push(null);
    this.#releaseAll();
    this.#settleContent(this.#bytesPushed > 0);
  }

  /** The client reset its stream: fail the upstream request. */
  abort(reason = 'client aborted the request body'): void {
    if (this.#destroyed) return;
    const err = new ExchangeAbortedError(reason);
    if (this.#stream !== null) {
      this.#stream.destroy(err);
      return;
    }
    this.#abortedEarly = err;
    this.#onDestroyed();
  }

  /**
   * Runs `cb` when the consumer first asks for bytes: the moment an HTTP/1.1 client waiting on
   * `Expect: 100-continue` may send its body. Never, for a body nobody reads.
   */
  onFirstRead(cb: () => void): void {
    this.#onFirstRead = cb;
  }

  /**
   * Nobody will read the body: what comes is dropped (and counted for `hasContent`), so the
   * client's flow control never stalls on it.
   */
  discard(): void {
    if (this.#discarding) return;
    this.#discarding = true;
    this.#stream?.resume();
    this.#releaseAll();
  }

  get trailers(): FieldList | undefined {
    return this.#trailers;
  }

  /** True when the body no longer forwards anything (ended, or the exchange is over). */
  get closed(): boolean {
    return this.#ended || this.#destroyed;
  }

  #settleContent(hasContent: boolean): void {
    const waiters = this.#contentWaiters;
    this.#contentWaiters = [];
    for (const resolve of waiters) resolve(hasContent);
  }

  /** The body failed (its stream destroyed, or aborted before it had one): nobody waits on it any more. */
  #onDestroyed(): void {
    this.#releaseAll();
    this.#settleContent(false);
  }

  #releaseAll(): void {
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
