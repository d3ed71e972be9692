/**
 * Relays an upstream response body to the client's exchange chunk by chunk, as the upstream
 * delivers them, pausing the upstream while the exchange's buffer is full.
 *
 * It takes the body's source directly (response-body.ts), not a Readable: a small response that
 * came with its headers is written out synchronously, without the stream's events and ticks.
 */
import type { FieldList } from '../http-semantics/fields.js';
import type { ResponseBody } from '../upstream/response-body.js';
import type { HttpExchange } from './exchange.js';

/**
 * Resolves with the body's trailers when it ended and every chunk went to `ex`; rejects with the
 * body's error, or with `aborted()` as soon as the exchange's signal is aborted (the client reset
 * the stream or went away, also while the upstream is silent). On `aborted()` the body is
 * cancelled, which cancels the upstream exchange.
 */
export function relayBody(body: ResponseBody, ex: HttpExchange, aborted: () => Error): Promise<FieldList> {
  return new Promise((resolve, reject) => {
    const signal = ex.signal;
    if (signal.aborted) {
      body.cancel();
      reject(aborted());
      return;
    }
    let settled = false;
    const onAbort = (): void => {
      if (settled) return;
      settled = true;
      body.cancel();
      reject(aborted());
    };
    const resumeWhenDrained = (): void => {
      if (!settled) body.resume();
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
      end: (trailers) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        resolve(trailers);
      },
      error: (err) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    });
  });
}
