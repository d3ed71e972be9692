/**
 * The part of AbortSignal the data path uses (an exchange's "the client gave up", watched by the
 * upstream pool), and a cheap implementation of it. In Node 20 reading an AbortController's
 * `signal` costs ~11 µs (an EventTarget and its machinery), and every request needs one; an
 * Aborter is a small object. A real AbortSignal fits the interface, so callers may still pass one.
 */
export interface AbortLike {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: 'abort', listener: () => void, options?: { readonly once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

type AbortState = { readonly kind: 'live' } | { readonly kind: 'aborted'; readonly reason: unknown };

const LIVE: AbortState = { kind: 'live' };

export class Aborter implements AbortLike {
  #state: AbortState = LIVE;
  /** Made on the first listener: most exchanges end without anyone listening. */
  #listeners: Array<() => void> | undefined;

  get aborted(): boolean {
    return this.#state.kind === 'aborted';
  }

  get reason(): unknown {
    return this.#state.kind === 'aborted' ? this.#state.reason : undefined;
  }

  /**
   * As AbortController.abort: the first call sets the reason and runs each listener once, in the
   * order added; later calls do nothing. A listener that throws does not stop the others; the first
   * error is thrown to the caller once all have run.
   */
  abort(reason: unknown): void {
    if (this.#state.kind === 'aborted') return;
    this.#state = { kind: 'aborted', reason };
    const listeners = this.#listeners;
    this.#listeners = undefined;
    if (!listeners) return;
    let failure: { err: unknown } | undefined;
    for (const listener of listeners) {
      try {
        listener();
      } catch (err) {
        failure ??= { err };
      }
    }
    if (failure) throw failure.err;
  }

  /** Listeners run at most once (as with `{ once: true }`); one added after the abort never runs, as with AbortSignal. */
  addEventListener(_type: 'abort', listener: () => void): void {
    if (this.#state.kind === 'aborted') return;
    (this.#listeners ??= []).push(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    const listeners = this.#listeners;
    if (!listeners) return;
    const i = listeners.indexOf(listener);
    if (i >= 0) listeners.splice(i, 1);
  }
}
