/**
 * Upstream failures as one typed error: what went wrong (`kind`), which status the proxy answers
 * with when no response headers were sent yet, and a short reason for the access log.
 */

export type UpstreamErrorKind =
  | 'connect_refused'
  | 'connect_timeout'
  | 'response_timeout'
  | 'body_timeout'
  /** Every connection of the pool stayed busy for queue_timeout: the request was never sent. */
  | 'queue_timeout'
  | 'reset'
  /** The upstream answered something that is not an HTTP response we may relay (parse error, status 999). */
  | 'invalid_response'
  /** The exchange was cancelled from our side (client reset the stream, abort(), signal). */
  | 'aborted'
  | 'other';

const STATUS_BY_KIND: Readonly<Record<UpstreamErrorKind, UpstreamErrorStatus>> = {
  connect_refused: 502,
  connect_timeout: 504,
  response_timeout: 504,
  body_timeout: 504,
  // Overloaded rather than broken: the upstream may well answer a retry (RFC 9110 §15.6.4).
  queue_timeout: 503,
  reset: 502,
  invalid_response: 502,
  aborted: 502,
  other: 502,
};

export type UpstreamErrorStatus = 502 | 503 | 504;

export class UpstreamError extends Error {
  override readonly name = 'UpstreamError';
  /** Status to send when response headers have not gone out yet (502, 503 or 504). */
  readonly status: UpstreamErrorStatus;

  constructor(
    readonly kind: UpstreamErrorKind,
    /** Short, log-friendly reason, e.g. "connect ECONNREFUSED". */
    readonly reason: string,
    /** The target origin involved, when one was chosen. */
    readonly target: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(target === undefined ? reason : `${reason} (${target})`, options);
    this.status = STATUS_BY_KIND[kind];
  }
}

/** The cancellation we hand to undici when our side gives up on an exchange. */
export class ExchangeAbortedError extends Error {
  override readonly name = 'ExchangeAbortedError';
}

const CONNECT_FAILURES: ReadonlySet<string> = new Set([
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EADDRNOTAVAIL',
]);
const RESET_CODES: ReadonlySet<string> = new Set([
  'UND_ERR_SOCKET',
  'ECONNRESET',
  'EPIPE',
  'ECONNABORTED',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
]);

function codeOf(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

/** Map whatever undici or the socket raised to an UpstreamError. Never throws. */
export function classifyUpstreamError(err: unknown, target: string | undefined): UpstreamError {
  if (err instanceof UpstreamError) return err;
  if (err instanceof ExchangeAbortedError) return new UpstreamError('aborted', err.message, target, { cause: err });
  // Happy-eyeballs connects fail with one error per address: the first tells the story.
  if (err instanceof AggregateError && err.errors.length > 0) {
    const inner = classifyUpstreamError(err.errors[0], target);
    return new UpstreamError(inner.kind, inner.reason, target, { cause: err });
  }
  const code = codeOf(err);
  const message = err instanceof Error ? err.message : String(err);
  const make = (kind: UpstreamErrorKind, reason: string): UpstreamError => new UpstreamError(kind, reason, target, { cause: err });

  if (code === 'ECONNREFUSED') return make('connect_refused', 'connect ECONNREFUSED');
  if (code === 'UND_ERR_CONNECT_TIMEOUT') return make('connect_timeout', 'connect timeout');
  if (code === 'UND_ERR_HEADERS_TIMEOUT') return make('response_timeout', 'response headers timeout');
  if (code === 'UND_ERR_BODY_TIMEOUT') return make('body_timeout', 'response body timeout');
  if (code === 'UND_ERR_ABORTED' || code === 'UND_ERR_ABORT') return make('aborted', 'aborted');
  if (code !== undefined && RESET_CODES.has(code)) return make('reset', `upstream reset: ${code === 'UND_ERR_SOCKET' ? message : code}`);
  if (code !== undefined && CONNECT_FAILURES.has(code)) return make('other', `connect ${code}`);
  if (code === 'UND_ERR_CLOSED' || code === 'UND_ERR_DESTROYED') return make('other', 'upstream pool closed');
  if (code !== undefined && code.startsWith('HPE_')) return make('invalid_response', `invalid upstream response: ${code}`);
  return make('other', code === undefined ? message : `${code}: ${message}`);
}
