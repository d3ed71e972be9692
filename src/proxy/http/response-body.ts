/**
 * An upstream response body copied to the client as it arrives, paused while the client's side is
 * full. Events rather than `for await`: the async iterator costs its setup per response and a
 * promise per chunk, on every proxied request.
 */
import type { Readable } from 'node:stream';
import { UpstreamError } from '../upstream/errors.js';
import type { HttpExchange } from './exchange.js';

/**
 * Resolves at the body's end. Rejects with the body's error, or with an 'aborted' UpstreamError
 * as soon as the client gives up; the body is destroyed then (which cancels the upstream exchange).
 */
export function copyBody(body: Readable, ex: HttpExchange, target: string | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    let state: 'copying' | 'settled' = 'copying';
    const settle = (err?: unknown): void => {
      if (state === 'settled') return;
      state = 'settled';
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', settle);
      ex.signal.removeEventListener('abort', onAbort);
      if (err === undefined) {
        resolve();
        return;
      }
      body.destroy();
      reject(err);
    };
    const onData = (chunk: Buffer): void => {
      if (ex.write(chunk)) return;
      body.pause();
      ex.drained().then(() => {
        if (state === 'copying') body.resume();
      }, settle);
    };
    const onEnd = (): void => settle();
    const onAbort = (): void => settle(new UpstreamError('aborted', 'client reset', target));
    if (ex.signal.aborted) {
      onAbort();
      return;
    }
    ex.signal.addEventListener('abort', onAbort);
    body.on('error', settle);
    body.on('end', onEnd);
    body.on('data', onData);
  });
}
