/**
 * An upstream response body between undici's callbacks and its one consumer, without a Node
 * Readable in between: the proxy's relay takes chunks as undici delivers them (a small response
 * that arrived with its headers goes through synchronously, with no stream events or ticks), and
 * pauses the upstream parser while its client cannot take more. Whoever wants a stream (tests,
 * other consumers) gets a Readable made on first use (`readable`) over the same source.
 *
 * Chunks the consumer cannot take yet (it is not attached, or it said it is full) are queued; once
 * the queue reaches the high-water mark the upstream is paused, so nothing grows without bound
 * whether or not anybody reads, and a consumer that is briefly full does not stop the upstream at
 * once (as a Readable's buffer did not).
 */
import { Readable } from 'node:stream';
import type { FieldList } from '../http-semantics/fields.js';

/** Where the body goes. Called synchronously, in order; nothing after `end` or `error`. */
export interface BodySink {
  /** A chunk. Return false to stop delivery until `ResponseBody.resume()`. */
  data(chunk: Buffer): boolean;
  /** The body is complete; its trailer fields (empty when none). */
  end(trailers: FieldList): void;
  /** The body failed (an UpstreamError, or the exchange was aborted); what was queued is dropped. */
  error(err: Error): void;
}

/** What the body drives upstream: undici's parser, and cancelling the exchange. */
export interface BodyUpstream {
  pause(): void;
  resume(): void;
  /** The consumer gave up before the end. */
  cancel(): void;
}

type State =
  | { readonly kind: 'open' }
  | { readonly kind: 'ended'; readonly trailers: FieldList }
  | { readonly kind: 'failed'; readonly error: Error }
  /** The consumer cancelled it: nothing more is delivered. */
  | { readonly kind: 'cancelled' };

const OPEN: State = { kind: 'open' };

export class ResponseBody {
  #state: State = OPEN;
  #queue: Buffer[] = [];
  #queued = 0;
  #sink: BodySink | null = null;
  /** The sink returned false and has not called resume() since. */
  #sinkPaused = false;
  /** The end or failure was handed to the sink. */
  #finished = false;
  #readable: Readable | null = null;

  constructor(
    private readonly upstream: BodyUpstream,
    private readonly highWaterMark: number,
  ) {}

  /** Producer: a chunk from the upstream. */
  push(chunk: Buffer): void {
    if (this.#state.kind !== 'open') return;
    if (this.#sink !== null && !this.#sinkPaused && this.#queue.length === 0) {
      if (!this.#sink.data(chunk)) this.#sinkPaused = true;
      return;
    }
    this.#queue.push(chunk);
    this.#queued += chunk.length;
    if (this.#queued >= this.highWaterMark) this.upstream.pause();
  }

  /** Producer: the body is complete. */
  end(trailers: FieldList): void {
    if (this.#state.kind !== 'open') return;
    this.#state = { kind: 'ended', trailers };
    this.#flush();
  }

  /** Producer: the exchange failed; queued chunks are dropped (as a destroyed stream drops them). */
  fail(error: Error): void {
    if (this.#state.kind !== 'open') return;
    this.#state = { kind: 'failed', error };
    this.#queue = [];
    this.#queued = 0;
    this.#flush();
  }

  /** Consumer: attach the one sink; what is queued is delivered at once. */
  pipe(sink: BodySink): void {
    if (this.#sink !== null) throw new Error('ResponseBody: the body already has a consumer');
    this.#sink = sink;
    this.#flush();
  }

  /** Consumer: the sink can take more. */
  resume(): void {
    this.#sinkPaused = false;
    this.#flush();
    if (this.#state.kind === 'open' && this.#queued < this.highWaterMark) this.upstream.resume();
  }

  /** Consumer: give up; the upstream exchange is cancelled unless the body already ended. */
  cancel(): void {
    if (this.#state.kind === 'cancelled') return;
    const wasOpen = this.#state.kind === 'open';
    this.#state = { kind: 'cancelled' };
    this.#queue = [];
    this.#queued = 0;
    this.#finished = true;
    if (wasOpen) this.upstream.cancel();
  }

  /** The body as a Readable (made on first use; then it is the body's consumer). */
  get readable(): Readable {
    if (this.#readable !== null) return this.#readable;
    const readable = new Readable({
      highWaterMark: this.highWaterMark,
      read: () => this.resume(),
      destroy: (err, callback) => {
        this.cancel();
        callback(err);
      },
    });
    // Errors are delivered through the iterator/`errored`; never as an unhandled 'error' event.
    readable.on('error', () => {});
    this.#readable = readable;
    this.pipe({
      data: (chunk) => readable.push(chunk),
      end: () => readable.push(null),
      error: (err) => readable.destroy(err),
    });
    return readable;
  }

  /** Hands the sink what is queued, then the end or failure, as far as it takes them. */
  #flush(): void {
    const sink = this.#sink;
    if (sink === null || this.#finished) return;
    const failed = this.#state;
    if (failed.kind === 'failed') {
      // A failure is not held back by a paused sink: it ends the relay at once.
      this.#finished = true;
      sink.error(failed.error);
      return;
    }
    while (this.#queue.length > 0 && !this.#sinkPaused) {
      const chunk = this.#queue.shift()!;
      this.#queued -= chunk.length;
      if (!sink.data(chunk)) this.#sinkPaused = true;
      // The sink may have cancelled the body from inside data().
      if (this.#finished) return;
    }
    if (this.#queue.length > 0 || this.#sinkPaused) return;
    const state = this.#state;
    if (state.kind === 'ended') {
      this.#finished = true;
      sink.end(state.trailers);
    }
  }
}
