/**
 * What a request received in TLS early data (0-RTT) may do (RFC 8470, RFC 9114 §10.9). Early
 * data can be replayed by anyone who captured it, to this worker or another one, so only requests
 * whose replay is harmless are served from it: safe methods (RFC 9110 §9.2.1) without a body.
 * Anything else waits until the handshake completes, which a replay never does. Waiting rather
 * than answering 425 Too Early (RFC 8470 §5.2): a genuine client completes the handshake within
 * about one round trip, and is spared a retry it may not even make (a 425 to an unsafe request
 * sent by a client library that does not retry is a failed request).
 */

/** How an exchange was treated with respect to early data (for the access log). */
export type EarlyDataHandling =
  /** Nothing of it arrived in early data. */
  | 'not-early'
  /** Arrived in early data and served at once (forwarded with `Early-Data: 1`). */
  | 'served-early'
  /** Arrived in early data, dispatched only after the handshake (still with `Early-Data: 1`). */
  | 'held-for-handshake';

const SERVABLE_EARLY: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);

export function earlyDataHandling(request: { readonly method: string }, earlyData: boolean, hasBody: boolean): EarlyDataHandling {
  if (!earlyData) return 'not-early';
  return SERVABLE_EARLY.has(request.method) && !hasBody ? 'served-early' : 'held-for-handshake';
}
