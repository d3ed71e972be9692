/**
 * Checks a worker's metrics snapshot as it arrives over IPC. A worker may run a newer binary than
 * its master (a reload after the files changed; families the master does not know are ignored)
 * or an older one (a reload after older files were put back): what does not fit is refused as a
 * whole rather than mixed into the totals, but a counter family added since is merely absent, and
 * QUIC drops labelled the earlier way are relabelled.
 */
import { WORKER_COUNTERS, WORKER_GAUGES, WORKER_HISTOGRAMS, type HistogramSeries, type Series, type WorkerCounterName, type WorkerMetricsSnapshot } from '../metrics/snapshot.js';
import { dropMetricLabel } from '../quic/drop-reasons.js';
import { DecodeError, array, isPlainObject, number, string, type Decoder } from './json-decode.js';

function labels(count: number): Decoder<readonly string[]> {
  const decode = array(string);
  return (v, at) => {
    const out = decode(v, at);
    if (out.length !== count) throw new DecodeError(`${at}: expected ${count} labels, got ${out.length}`);
    return out;
  };
}

const nonNegative: Decoder<number> = (v, at) => {
  const n = number(v, at);
  if (n < 0) throw new DecodeError(`${at}: expected a count, got ${n}`);
  return n;
};

function field(v: unknown, key: string, at: string): unknown {
  if (!isPlainObject(v)) throw new DecodeError(`${at}: expected an object`);
  return v[key];
}

function series(labelCount: number): Decoder<readonly Series[]> {
  const l = labels(labelCount);
  return array((v, at) => ({ labels: l(field(v, 'labels', at), `${at}.labels`), value: nonNegative(field(v, 'value', at), `${at}.value`) }));
}

function histogramSeries(labelCount: number): Decoder<readonly HistogramSeries[]> {
  const l = labels(labelCount);
  const counts = array(nonNegative);
  return array((v, at) => ({
    labels: l(field(v, 'labels', at), `${at}.labels`),
    counts: counts(field(v, 'counts', at), `${at}.counts`),
    sum: nonNegative(field(v, 'sum', at), `${at}.sum`),
  }));
}

/**
 * Counter families workers of an earlier version do not send: absent, they decode as no series
 * (nothing counted), so such a worker's other counts still reach the totals. Every family added
 * after the first metrics belongs here: an older worker runs on through a reload or an upgrade.
 */
const ADDED_COUNTERS: ReadonlySet<WorkerCounterName> = new Set(['misdirected', 'httpRefused']);

function family<F extends Record<string, readonly string[]>, T>(families: F, decodeOne: (labelCount: number) => Decoder<T>, absent?: (name: keyof F) => T | undefined): Decoder<{ readonly [N in keyof F]: T }> {
  return (v, at) => {
    const out: Partial<Record<keyof F, T>> = {};
    for (const [name, labelNames] of Object.entries(families) as Array<[keyof F & string, readonly string[]]>) {
      const value = field(v, name, at);
      const instead = value === undefined ? absent?.(name) : undefined;
      out[name] = instead ?? decodeOne(labelNames.length)(value, `${at}.${name}`);
    }
    return out as { readonly [N in keyof F]: T };
  };
}

const bounds = array(number);

/** Drops as an earlier worker labelled them (`list`'s wording) take the label newer workers use. */
function withDropMetricLabels(counters: WorkerMetricsSnapshot['counters']): WorkerMetricsSnapshot['counters'] {
  return { ...counters, quicDropped: counters.quicDropped.map((s) => ({ labels: s.labels.map(dropMetricLabel), value: s.value })) };
}

export const decodeSnapshot: Decoder<WorkerMetricsSnapshot> = (v, at) => ({
  counters: withDropMetricLabels(family(WORKER_COUNTERS, series, (name) => (ADDED_COUNTERS.has(name) ? [] : undefined))(field(v, 'counters', at), `${at}.counters`)),
  gauges: family(WORKER_GAUGES, series)(field(v, 'gauges', at), `${at}.gauges`),
  histograms: family(WORKER_HISTOGRAMS, (n) => {
    const decodeSeries = histogramSeries(n);
    return (h: unknown, hat: string) => ({ bounds: bounds(field(h, 'bounds', hat), `${hat}.bounds`), series: decodeSeries(field(h, 'series', hat), `${hat}.series`) });
  })(field(v, 'histograms', at), `${at}.histograms`),
});
