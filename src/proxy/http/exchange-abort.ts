/**
 * Why an exchange was aborted: the protocol layer puts it in the exchange's signal (its reason),
 * the handler logs it. A closed set, as REFUSAL in refusals.ts: a typo cannot make a new reason
 * in the access log, where operators grep these strings.
 */
export const ABORT = {
  /**
   * The client cancelled this request: HTTP/3 RESET_STREAM or STOP_SENDING, HTTP/2 RST_STREAM,
   * HTTP/1.1 its connection closed (the only way an HTTP/1.1 client can cancel).
   */
  clientReset: 'client reset',
  /** The client's HTTP/2 or HTTP/3 connection went away: closed by the client, timed out, reset. */
  connectionClosed: 'connection closed',
  /** We closed the connection at drain_timeout, the request still in progress. */
  drainTimeout: 'drain timeout',
  /**
   * The request broke the protocol or a limit on it (malformed frames, body or trailers, a trailer
   * section too large): we ended it.
   */
  badRequest: 'bad request',
} as const;

export type AbortReason = (typeof ABORT)[keyof typeof ABORT];

/** The signal's reason for every abort but a timeout (RequestTimeoutError): `reason` is what is logged, the message has the detail. */
export class ExchangeAborted extends Error {
  override readonly name = 'ExchangeAborted';

  constructor(
    readonly reason: AbortReason,
    detail?: string,
  ) {
    super(detail === undefined ? reason : `${reason}: ${detail}`);
  }
}
