/**
 * prom-client metrics whose values are computed at scrape time from sums the master holds
 * (worker snapshots, kernel counters) rather than incremented in this process. prom-client
 * formats them like its own; the values come from `source()` at each collect.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { HistogramSeries, Series } from '../metrics/snapshot.js';

interface Spec {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  readonly registry: Registry;
}

function labelsOf(names: readonly string[], values: readonly string[]): Record<string, string> {
  return Object.fromEntries(names.map((n, i) => [n, values[i] ?? '']));
}

export function derivedCounter(spec: Spec, source: () => readonly Series[]): Counter<string> {
  return new Counter(derivedOptions<Counter<string>>(spec, source, (counter, labels, value) => counter.inc(labels, value)));
}

export function derivedGauge(spec: Spec, source: () => readonly Series[]): Gauge<string> {
  return new Gauge(derivedOptions<Gauge<string>>(spec, source, (gauge, labels, value) => gauge.set(labels, value)));
}

/** A counter's or gauge's options whose collect() replaces every value with `source()`'s, through `put`. */
function derivedOptions<M extends Counter<string> | Gauge<string>>(
  spec: Spec,
  source: () => readonly Series[],
  put: (metric: M, labels: Record<string, string>, value: number) => void,
) {
  return {
    name: spec.name,
    help: spec.help,
    labelNames: [...spec.labelNames],
    registers: [spec.registry],
    collect(this: M) {
      this.reset();
      for (const s of source()) put(this, labelsOf(spec.labelNames, s.labels), s.value);
    },
  };
}

interface BucketValue {
  readonly metricName: string;
  readonly labels: Record<string, string | number>;
  readonly sharedLabels: Record<string, never>;
  readonly value: number;
}

/**
 * A histogram from bucket counts summed elsewhere. prom-client's Histogram can only observe single
 * values, so this one replaces the method its registry reads values through (getForPromString,
 * which its own get() also uses) with one that lays out the summed buckets the same way.
 */
export class DerivedHistogram extends Histogram<string> {
  constructor(
    private readonly spec: Spec & { readonly bounds: readonly number[] },
    private readonly source: () => readonly HistogramSeries[],
  ) {
    super({ name: spec.name, help: spec.help, labelNames: [...spec.labelNames], buckets: [...spec.bounds], registers: [spec.registry] });
  }

  async getForPromString(): Promise<{ name: string; help: string; type: 'histogram'; values: BucketValue[]; aggregator: 'sum' }> {
    const { name, bounds, labelNames } = this.spec;
    const values: BucketValue[] = [];
    for (const s of this.source()) {
      const labels = labelsOf(labelNames, s.labels);
      let cumulative = 0;
      bounds.forEach((le, i) => {
        cumulative += s.counts[i] ?? 0;
        values.push({ metricName: `${name}_bucket`, labels: { ...labels, le }, sharedLabels: {}, value: cumulative });
      });
      cumulative += s.counts[bounds.length] ?? 0;
      values.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, sharedLabels: {}, value: cumulative });
      values.push({ metricName: `${name}_sum`, labels, sharedLabels: {}, value: s.sum });
      values.push({ metricName: `${name}_count`, labels, sharedLabels: {}, value: cumulative });
    }
    return { name, help: this.spec.help, type: 'histogram', values, aggregator: 'sum' };
  }
}
