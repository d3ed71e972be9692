/**
 * Relays an upstream response body to the client's exchange chunk by chunk, as the upstream
 * delivers them, pausing the body while the exchange's buffer is full.
 *
 * Not `for await`: the async iterator takes whatever is buffered as ONE Buffer (Readable.read()
 * concatenates the queued chunks: an allocation and a copy of every byte of a bulk response),
 * while flowing mode hands each pushed chunk over as it is.
 */
import { finished, type Readable } from 'node:stream';
import type { HttpExchange } from './exchange.js';

/**
 * Resolves when the body ended and every chunk went to `ex`; rejects with the body's error, or
 * with `aborted()` as soon as the exchange's signal is aborted (the client reset the stream or went
 * away, also while the upstream is silent). On rejection the body is destroyed, which cancels the
 * upstream exchange.
 */
export function relayBody(body: Readable, ex: HttpExchange, aborted: () => Error): Promise<void> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (err: unknown): void => {
      if (settled) return;
      settled = true;
      body.off('data', onData);
      ex.signal.removeEventListener('abort', onAbort);
      stopWatching();
      if (err === undefined) {
        resolve();
        return;
      }
      body.destroy();
      reject(err);
    };
    // No abort check per chunk: the abort listener below settles the relay the moment it happens
    // (the pool, watching the same signal, also cancels the upstream exchange, which ends the body).
    const onData = (chunk: Buffer): void => {
      if (ex.write(chunk)) return;
      body.pause();
      void ex.drained().then(() => {
        if (!settled) body.resume();
      });
    };
    const onAbort = (): void => settle(aborted());
    const stopWatching = finished(body, (err) => settle(err ?? undefined));
    if (ex.signal.aborted) {
      onAbort();
      return;
    }
    ex.signal.addEventListener('abort', onAbort);
    body.on('data', onData);
  });
}
