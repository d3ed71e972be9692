/**
 * Active health checks of one target: a GET of the configured path every interval, judged by its
 * status. Each worker checks on its own, so checks stay cheap: one at a time per target, over the
 * target's pooled keep-alive connections, the body read up to a small limit and dropped. The first
 * check waits a random part of the interval, so the workers of a generation (and the pools of a
 * worker) do not all check at the same instant.
 */
import type { HealthCheckConfig } from '../config/types.js';
import { classifyUpstreamError } from './errors.js';

/** Sends one check; resolves with the response status once the body was read (or dropped). */
export type Probe = (signal: AbortSignal) => Promise<number>;

export type CheckResult = (pass: boolean, detail: string) => void;

export function statusExpected(status: number, ranges: HealthCheckConfig['expectStatus']): boolean {
  return ranges.some(([low, high]) => status >= low && status <= high);
}

export class ActiveHealthCheck {
  #timer: NodeJS.Timeout | undefined;
  #inFlight: AbortController | undefined;
  #stopped = false;

  constructor(
    private readonly config: HealthCheckConfig,
    private readonly probe: Probe,
    private readonly onResult: CheckResult,
    private readonly random: () => number = Math.random,
  ) {}

  start(): void {
    this.#schedule(this.random() * this.config.intervalMs);
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#inFlight?.abort(new Error('health check stopped'));
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#run(), delayMs);
    // Checks alone do not keep a process alive.
    this.#timer.unref();
  }

  async #run(): Promise<void> {
    const started = performance.now();
    const { timeoutMs, intervalMs, expectStatus } = this.config;
    const controller = (this.#inFlight = new AbortController());
    const timer = setTimeout(() => controller.abort(new Error('health check timed out')), timeoutMs);
    let pass: boolean;
    let detail: string;
    try {
      const status = await this.probe(controller.signal);
      pass = statusExpected(status, expectStatus);
      detail = `health check status ${status}`;
    } catch (err) {
      pass = false;
      detail = controller.signal.aborted ? `health check: no answer within ${timeoutMs}ms` : `health check: ${classifyUpstreamError(err, undefined).reason}`;
    } finally {
      clearTimeout(timer);
      this.#inFlight = undefined;
    }
    if (this.#stopped) return;
    this.onResult(pass, detail);
    // A fixed rhythm: the next check starts an interval after this one started (timeout ≤ interval).
    this.#schedule(Math.max(0, intervalMs - (performance.now() - started)));
  }
}
