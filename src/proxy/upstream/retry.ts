/**
 * When a failed try may be repeated on another target. Only a request that cannot have taken
 * effect is sent again (RFC 9110 §9.2.2):
 * - the connection failed (refused, timed out, TLS): nothing was sent, any method may go again;
 * - the connection was reset before response headers: the target may have acted on the request,
 *   so only an idempotent method goes again, or a request whose body had not begun (the target
 *   never had the whole request);
 * and in both cases never once a body byte was handed over: the body is a one-shot stream
 * (body-gate.ts). Nothing is retried after response headers, and a retry starts only within
 * try_timeout of the first try.
 */
import { requestNeverSent, type TryRecord, type UpstreamError } from './errors.js';
import type { BodyGate } from './body-gate.js';

/** RFC 9110 §9.2.2 (TRACE included: it has no effect at all). */
const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

export interface RetryPolicy {
  /** Tries after the first. */
  readonly retries: number;
  readonly tryTimeoutMs: number;
}

/** The tries of one request: what was tried where, and whether one more is allowed. */
export class Tries<T> {
  readonly records: TryRecord[] = [];
  /** Targets already tried: a retry goes elsewhere. */
  readonly tried = new Set<T>();
  /** When the first try started (time spent queued before it does not count). */
  #firstStarted: number | undefined;

  constructor(
    private readonly method: string,
    private readonly body: BodyGate | undefined,
    private readonly policy: RetryPolicy,
  ) {}

  /** A try starts on `target`; call the returned function with its outcome when it ends. */
  begin(target: T, label: string): (outcome: string) => void {
    this.tried.add(target);
    const started = performance.now();
    this.#firstStarted ??= started;
    return (outcome) => this.records.push({ target: label, outcome, ms: Math.round((performance.now() - started) * 10) / 10 });
  }

  /** Whether the request may be sent again after a try failed with `err` before response headers. */
  allowRetry(err: UpstreamError): boolean {
    if (this.records.length > this.policy.retries) return false;
    if (performance.now() - (this.#firstStarted ?? 0) >= this.policy.tryTimeoutMs) return false;
    if (this.body?.started === true) return false;
    if (requestNeverSent(err.kind)) return true;
    if (err.kind !== 'reset') return false;
    return IDEMPOTENT.has(this.method) || this.body !== undefined;
  }
}
