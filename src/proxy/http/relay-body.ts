/**
 * Relays an upstream response body to the client's exchange chunk by chunk, as the upstream
 * delivers them, pausing the upstream while the exchange's buffer is full.
 *
 * It takes the body's source directly (response-body.ts), not a Readable: a small response that
 * came with its headers is written out synchronously, without the stream's events and ticks, and
 * then its trailers are returned as they are, without a promise to wait on.
 */
import type { FieldList } from '../http-semantics/fields.js';
import type { ResponseBody } from '../upstream/response-body.js';
import type { HttpExchange } from './exchange.js';

/** How a relay ended: the body's trailers, or why it failed. */
type Outcome = { readonly ok: true; readonly trailers: FieldList } | { readonly ok: false; readonly error: unknown };

/**
 * The body's trailers once it ended and every chunk went to `ex`: at once when that happened
 * while piping (the body had arrived whole), else a promise. Fails (a rejected promise) with the
 * body's error, or with `aborted()` as soon as the exchange's signal is aborted (the client reset
 * the stream or went away, also while the upstream is silent). On `aborted()` the body is
 * cancelled, which cancels the upstream exchange.
 */
export function relayBody(body: ResponseBody, ex: HttpExchange, aborted: () => Error): FieldList | Promise<FieldList> {
  const signal = ex.signal;
  if (signal.aborted) {
    body.cancel();
    return Promise.reject(aborted());
  }
  let outcome: Outcome | undefined;
  /** Set once the body outlived the pipe call: the promise the caller waits on settles here. */
  let settle: ((o: Outcome) => void) | undefined;
  const finish = (o: Outcome): void => {
    if (outcome !== undefined) return;
    outcome = o;
    signal.removeEventListener('abort', onAbort);
    settle?.(o);
  };
  const onAbort = (): void => {
    if (outcome !== undefined) return;
    finish({ ok: false, error: aborted() });
    body.cancel();
  };
  const resumeWhenDrained = (): void => {
    if (outcome === undefined) body.resume();
  };
  signal.addEventListener('abort', onAbort);
  body.pipe({
    // No abort check per chunk: the abort listener settles the relay the moment it happens (the
    // pool, watching the same signal, also cancels the upstream exchange, which fails the body).
    data: (chunk) => {
      if (ex.write(chunk)) return true;
      void ex.drained().then(resumeWhenDrained);
      return false;
    },
    end: (trailers) => finish({ ok: true, trailers }),
    error: (error) => finish({ ok: false, error }),
  });
  if (outcome !== undefined) return outcome.ok ? outcome.trailers : Promise.reject(outcome.error);
  return new Promise((resolve, reject) => {
    settle = (o) => (o.ok ? resolve(o.trailers) : reject(o.error));
  });
}
