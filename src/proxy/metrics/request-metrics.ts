/**
 * A worker's request counters: one call per finished exchange, made where its access-log line is
 * written, so the counts and the access log always agree.
 */
import type { HttpProtocol } from '../http/exchange.js';
import { LabelledCounts, LabelledHistogram } from './labelled-counts.js';
import { DURATION_BUCKETS_S, WORKER_COUNTERS, WORKER_HISTOGRAMS } from './snapshot.js';

export interface FinishedExchange {
  readonly protocol: HttpProtocol;
  /** The route's name; undefined when none matched. */
  readonly route: string | undefined;
  readonly status: number;
  readonly durationMs: number;
  /** The upstream pool the route proxies to, if it does. */
  readonly pool: string | undefined;
  /** Every upstream try: its target and outcome (a status code, or an error kind). */
  readonly tries: ReadonlyArray<{ readonly target: string; readonly outcome: string }> | undefined;
}

/** Label of a request that matched no route. */
export const NO_ROUTE = 'none';

export class RequestMetrics {
  readonly requests = new LabelledCounts(WORKER_COUNTERS.requests.length);
  readonly upstreamRequests = new LabelledCounts(WORKER_COUNTERS.upstreamRequests.length);
  readonly duration = new LabelledHistogram(DURATION_BUCKETS_S, WORKER_HISTOGRAMS.requestDuration.length);
  /** [site, protocol] of requests answered 421 (also counted in `requests`, as every exchange is). */
  readonly misdirected = new LabelledCounts(WORKER_COUNTERS.misdirected.length);

  record(ex: FinishedExchange): void {
    const route = ex.route ?? NO_ROUTE;
    this.requests.add([ex.protocol, route, statusClass(ex.status)]);
    this.duration.observe([route], ex.durationMs / 1000);
    if (ex.pool === undefined || ex.tries === undefined) return;
    for (const t of ex.tries) this.upstreamRequests.add([ex.pool, t.target, tryOutcome(t.outcome)]);
  }
}

/** The label of each status class, by its first digit: constant strings, none built per request. */
const STATUS_CLASSES = ['0xx', '1xx', '2xx', '3xx', '4xx', '5xx'] as const;

/** 2xx, 4xx, …; "0xx" for a status-less end (the handler failed before answering). */
export function statusClass(status: number): string {
  return status >= 100 && status <= 599 ? STATUS_CLASSES[Math.floor(status / 100)]! : '0xx';
}

const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;

/** A response's status class, or the error kind (connect_refused, reset, …) of a failed try. */
export function tryOutcome(outcome: string): string {
  // A status is three digits, the first 1..5 (as /^[1-5]\d\d$/, without a regex per try).
  if (outcome.length !== 3) return outcome;
  const first = outcome.charCodeAt(0) - DIGIT_0;
  const second = outcome.charCodeAt(1);
  const third = outcome.charCodeAt(2);
  const isStatus = first >= 1 && first <= 5 && second >= DIGIT_0 && second <= DIGIT_9 && third >= DIGIT_0 && third <= DIGIT_9;
  return isStatus ? STATUS_CLASSES[first]! : outcome;
}
