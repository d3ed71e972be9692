/**
 * A request body is a one-shot stream: bytes taken for a try that then failed are gone, and the
 * request can never be sent whole again. The gate gives each try its own view of the client's
 * stream and pulls from that stream only when undici reads the view, so "no try consumed a byte"
 * is known exactly (`started`), and while it holds, the body is intact for another try.
 *
 * Why not hand undici the client's stream: undici starts it flowing once the request is on a
 * connection (HTTP/1.1 attaches 'data', HTTP/2 pipes it) and destroys it when the exchange ends or
 * fails, even a failed connect; a flowing stream whose reader let go emits its bytes to nobody.
 * The view is what undici flows and destroys; the client's stream stays paused, in one piece.
 */
import { Readable } from 'node:stream';
import { ExchangeAbortedError } from './errors.js';

export class BodyGate {
  #started = false;
  #view: BodyView | undefined;

  constructor(private readonly source: Readable) {}

  /** A body byte was handed to some try: the request cannot be sent again. */
  get started(): boolean {
    return this.#started;
  }

  /** The body for the next try; the previous try's view is cut off from the source. */
  open(): Readable {
    this.#view?.detach();
    this.#view = new BodyView(this.source, () => (this.#started = true));
    return this.#view;
  }

  /** The request is over: the client's stream is not wanted any more (its feeder is released). */
  release(): void {
    this.#view?.detach();
    if (!this.source.destroyed) this.source.destroy();
  }
}

/**
 * Reads the source in paused mode ('readable' + read()), only while its own reader wants more
 * (after `_read`, until a push fills it): the source then fills up in turn, and its feeder stops
 * reading the client. So the two buffers, each one high-water mark, are all a request holds.
 */
class BodyView extends Readable {
  #attached = true;
  /** `_read` asked for data and no push has filled the view since. */
  #wanted = false;
  /** A 'readable' listener is on the source (at most one). */
  #waiting = false;

  constructor(
    private readonly source: Readable,
    private readonly onPull: () => void,
  ) {
    super({ highWaterMark: source.readableHighWaterMark });
    // undici drops its listeners when its exchange ends; a late failure must not go uncaught.
    this.on('error', () => {});
    source.on('end', this.#onEnd);
    source.on('error', this.#onError);
    source.on('close', this.#onClose);
  }

  override _read(): void {
    this.#wanted = true;
    this.#pull();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.detach();
    callback(err);
  }

  /** Stop touching the source; it stays as it is (paused, its buffer kept). */
  detach(): void {
    if (!this.#attached) return;
    this.#attached = false;
    this.source.off('readable', this.#onReadable);
    this.source.off('end', this.#onEnd);
    this.source.off('error', this.#onError);
    this.source.off('close', this.#onClose);
  }

  #pull(): void {
    if (!this.#attached || !this.#wanted) return;
    if (this.source.readableEnded) {
      this.push(null);
      return;
    }
    for (let chunk: unknown = this.source.read(); chunk !== null; chunk = this.source.read()) {
      this.onPull();
      if (!this.push(chunk)) {
        this.#wanted = false;
        return;
      }
    }
    // Nothing buffered: wait for the client. At the end, read() returning null emits 'end'.
    if (!this.#waiting) {
      this.#waiting = true;
      this.source.once('readable', this.#onReadable);
    }
  }

  #onReadable = (): void => {
    this.#waiting = false;
    this.#pull();
  };

  #onEnd = (): void => {
    this.push(null);
    this.detach();
  };

  #onError = (err: Error): void => {
    this.destroy(err);
  };

  #onClose = (): void => {
    if (!this.source.readableEnded) this.destroy(this.source.errored ?? new ExchangeAbortedError('request body closed before its end'));
  };
}
