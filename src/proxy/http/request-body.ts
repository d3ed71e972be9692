/**
 * A request body between the protocol that receives it and whoever consumes it: the HTTP/3 (or
 * HTTP/2, HTTP/1.1) layer pushes payload bytes in as they arrive, the upstream reads them out of
 * `stream`. `push` reports when the buffer is full; the producer then stops reading its transport
 * (so flow control pushes back on the client) until `drained()`.
 */

import { Readable } from 'node:stream';
import type { FieldList } from '../http-semantics/fields.js';
import { ExchangeAbortedError } from '../upstream/errors.js';

export const DEFAULT_BODY_HIGH_WATER_MARK = 64 * 1024;

export class RequestBody {
  /** What the consumer (undici) reads. Do not read it yourself. */
  readonly stream: Readable;
  #ended = false;
  #trailers: FieldList | undefined;
  #drainWaiters: Array<() => void> = [];
  /** Node asked for data (called _read) and no push happened since. */
  #consumerWaiting = false;
  #bytesPushed = 0;
  #contentWaiters: Array<(hasContent: boolean) => void> = [];

  constructor(highWaterMark: number = DEFAULT_BODY_HIGH_WATER_MARK) {
    this.stream = new Readable({
      highWaterMark,
      // _read means "push more": Node calls it once and again only after the next push.
      read: () => {
        this.#consumerWaiting = true;
        this.#releaseAll();
      },
      destroy: (err, callback) => {
        this.#releaseAll();
        this.#settleContent(false);
        callback(err);
      },
    });
    // undici drops its error listener once the exchange settles; a late abort() must not become
    // an uncaught 'error' event.
    this.stream.on('error', () => {});
  }

  /**
   * Queue a chunk (ownership passes to the body: do not reuse its memory). Returns false when the
   * buffer is at or above its high-water mark: await `drained()` before pushing more. After the
   * exchange ended or failed, chunks are discarded and true is returned, so a feeder never stalls.
   */
  push(chunk: Uint8Array): boolean {
    if (this.#ended) throw new Error('RequestBody.push after end()');
    if (this.stream.destroyed) return true;
    if (chunk.byteLength === 0) return !this.needsDrain;
    this.#consumerWaiting = false;
    this.#bytesPushed += chunk.byteLength;
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
    if (this.#bytesPushed > 0) return Promise.resolve(true);
    if (this.#ended || this.stream.destroyed) return Promise.resolve(false);
    return new Promise((resolve) => this.#contentWaiters.push(resolve));
  }

  /** True while the buffer is full and the consumer has not asked for more. */
  get needsDrain(): boolean {
    if (this.stream.destroyed || this.#ended || this.#consumerWaiting) return false;
    return this.stream.readableLength >= this.stream.readableHighWaterMark;
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
    if (!this.stream.destroyed) this.stream.push(null);
    this.#releaseAll();
    this.#settleContent(this.#bytesPushed > 0);
  }

  /** The client reset its stream: fail the upstream request. */
  abort(reason = 'client aborted the request body'): void {
    if (this.stream.destroyed) return;
    this.stream.destroy(new ExchangeAbortedError(reason));
  }

  get trailers(): FieldList | undefined {
    return this.#trailers;
  }

  /** True when the body no longer forwards anything (ended, or the exchange is over). */
  get closed(): boolean {
    return this.#ended || this.stream.destroyed;
  }

  #settleContent(hasContent: boolean): void {
    const waiters = this.#contentWaiters;
    this.#contentWaiters = [];
    for (const resolve of waiters) resolve(hasContent);
  }

  #releaseAll(): void {
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
