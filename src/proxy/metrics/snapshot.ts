/**
 * What a worker reports to the master for /metrics: its counters since it started, its live gauges
 * and its histograms, as plain JSON (it crosses the IPC channel). The master adds the generation,
 * folds the counts of exited workers into its own totals and names the Prometheus families
 * (process/metrics.ts); a worker only counts.
 */

/** One labelled value; `labels` in the family's label order (WORKER_FAMILIES). */
export interface Series {
  readonly labels: readonly string[];
  readonly value: number;
}

/** One labelled histogram: per-bucket counts (not cumulative; the last is +Inf) and the sum. */
export interface HistogramSeries {
  readonly labels: readonly string[];
  readonly counts: readonly number[];
  readonly sum: number;
}

/** Label names of every family a worker reports, by kind: the master relies on this order. */
export const WORKER_COUNTERS = {
  requests: ['protocol', 'route', 'status_class'],
  upstreamRequests: ['upstream', 'target', 'outcome'],
  handshakes: ['transport', 'result'],
  quicDropped: ['reason'],
  /** Requests answered 421: the answering worker's site, and the protocol that carried them. */
  misdirected: ['site', 'protocol'],
  /** Requests and connections the HTTP layer refused, by http/refusals.ts's REFUSAL_METRIC_LABEL. */
  httpRefused: ['reason'],
} as const;
export const WORKER_GAUGES = {
  connections: ['protocol'],
  upstreamHealth: ['upstream', 'target'],
} as const;
export const WORKER_HISTOGRAMS = {
  requestDuration: ['route'],
} as const;

export type WorkerCounterName = keyof typeof WORKER_COUNTERS;
export type WorkerGaugeName = keyof typeof WORKER_GAUGES;
export type WorkerHistogramName = keyof typeof WORKER_HISTOGRAMS;

/** Request duration buckets in seconds (upper bounds; +Inf implied), the same in master and workers. */
export const DURATION_BUCKETS_S: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120];

export interface WorkerMetricsSnapshot {
  readonly counters: { readonly [N in WorkerCounterName]: readonly Series[] };
  readonly gauges: { readonly [N in WorkerGaugeName]: readonly Series[] };
  /** `bounds` travel along: a worker started from a newer binary may bucket differently. */
  readonly histograms: { readonly [N in WorkerHistogramName]: { readonly bounds: readonly number[]; readonly series: readonly HistogramSeries[] } };
}

/**
 * Most distinct label sets one family keeps; past it new ones are counted under every label
 * "other". Labels come from the config and DNS answers, so this only bites on churn, but the
 * counts must never grow without bound in a process that runs for months.
 */
export const MAX_SERIES_PER_FAMILY = 1000;
export const OVERFLOW_LABEL = 'other';
