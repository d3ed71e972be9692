/**
 * Upstream failures as one typed error: what went wrong (`kind`), which status the proxy answers
 * with when no response headers were sent yet, and a short reason for the access log.
 */

export type UpstreamErrorKind =
  | 'connect_refused'
  | 'connect_timeout'
  /** No route, no address, name not resolved: the connection was never made. */
  | 'connect_failed'
  /** TLS handshake or certificate verification failed: the request was never sent. */
  | 'tls'
  | 'response_timeout'
  | 'body_timeout'
  /** Every connection of the pool stayed busy for queue_timeout: the request was never sent. */
  | 'queue_timeout'
  /** max_pending requests were already waiting: refused at once. */
  | 'queue_full'
  /** Every target of the pool is ejected or failing its health checks (or none resolved). */
  | 'no_healthy_target'
  | 'reset'
  /** The upstream answered something that is not an HTTP response we may relay (parse error, status 999). */
  | 'invalid_response'
  /** The exchange was cancelled from our side (client reset the stream, abort(), signal). */
  | 'aborted'
  | 'other';

const STATUS_BY_KIND: Readonly<Record<UpstreamErrorKind, UpstreamErrorStatus>> = {
  connect_refused: 502,
  connect_timeout: 504,
  connect_failed: 502,
  tls: 502,
  response_timeout: 504,
  body_timeout: 504,
  // Overloaded rather than broken: the upstream may well answer a retry (RFC 9110 §15.6.4).
  queue_timeout: 503,
  queue_full: 503,
  no_healthy_target: 503,
  reset: 502,
  invalid_response: 502,
  aborted: 502,
  other: 502,
};

export type UpstreamErrorStatus = 502 | 503 | 504;

/** One try of a forwarded request (several when it was retried), for the access log. */
export interface TryRecord {
  readonly target: string;
  /** The response status ("200", "503") or the failure kind ("connect_refused", "reset"). */
  readonly outcome: string;
  /** From dispatch to response headers or failure. */
  readonly ms: number;
}

/** The failure kinds that happen before the request left us: safe to send elsewhere, whatever it is. */
const NEVER_SENT: ReadonlySet<UpstreamErrorKind> = new Set(['connect_refused', 'connect_timeout', 'connect_failed', 'tls']);

export function requestNeverSent(kind: UpstreamErrorKind): boolean {
  return NEVER_SENT.has(kind);
}

/** The short text body the client gets with a 502/503/504 we answer ourselves. */
export function clientMessage(err: UpstreamError): string {
  if (err.kind === 'no_healthy_target') return 'no healthy upstream target\n';
  return err.status === 504 ? 'upstream timed out\n' : 'upstream unavailable\n';
}

export class UpstreamError extends Error {
  override readonly name = 'UpstreamError';
  /** Status to send when response headers have not gone out yet (502, 503 or 504). */
  readonly status: UpstreamErrorStatus;
  /** Every try made for the request, set by the pool (empty when none was made). */
  tries: readonly TryRecord[] = [];

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
  // unix: targets: no socket file, or not ours to open.
  'ENOENT',
  'EACCES',
]);
/** OpenSSL's certificate verification results (X509_V_ERR_* names), as Node reports them in `code`. */
const CERT_CODES: ReadonlySet<string> = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_REVOKED',
  'CERT_SIGNATURE_FAILURE',
  'INVALID_CA',
  'PATH_LENGTH_EXCEEDED',
  'INVALID_PURPOSE',
  'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
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
  if (code !== undefined && CONNECT_FAILURES.has(code)) return make('connect_failed', `connect ${code}`);
  if (code !== undefined && CERT_CODES.has(code)) return make('tls', `TLS certificate verification failed: ${code} (${message})`);
  if (code !== undefined && (code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_'))) return make('tls', `TLS handshake failed: ${code} (${message})`);
  if (code === 'UND_ERR_CLOSED' || code === 'UND_ERR_DESTROYED') return make('other', 'upstream pool closed');
  if (code !== undefined && code.startsWith('HPE_')) return make('invalid_response', `invalid upstream response: ${code}`);
  return make('other', code === undefined ? message : `${code}: ${message}`);
}
