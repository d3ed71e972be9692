/**
 * Plain labelled counters and histograms: a Map lookup and an addition per event, no allocation
 * beyond the key string, so counting on the request path costs next to nothing. Bounded to
 * MAX_SERIES_PER_FAMILY label sets (beyond that: one "other" set).
 */
import { MAX_SERIES_PER_FAMILY, OVERFLOW_LABEL, type HistogramSeries, type Series } from './snapshot.js';

/** \u0000 cannot occur in a label from config or a URL, so keys never collide. */
const SEP = '\u0000';

export class LabelledCounts {
  readonly #series = new Map<string, { readonly labels: readonly string[]; value: number }>();

  constructor(
    private readonly labelCount: number,
    private readonly maxSeries = MAX_SERIES_PER_FAMILY,
  ) {}

  add(labels: readonly string[], n = 1): void {
    const key = labels.join(SEP);
    const s = this.#series.get(key);
    if (s !== undefined) s.value += n;
    else this.#overflowOr(key, labels).value += n;
  }

  series(): Series[] {
    return [...this.#series.values()].map((s) => ({ labels: s.labels, value: s.value }));
  }

  #overflowOr(key: string, labels: readonly string[]): { readonly labels: readonly string[]; value: number } {
    if (this.#series.size < this.maxSeries) {
      const s = { labels: [...labels], value: 0 };
      this.#series.set(key, s);
      return s;
    }
    const other = Array<string>(this.labelCount).fill(OVERFLOW_LABEL);
    const otherKey = other.join(SEP);
    let s = this.#series.get(otherKey);
    if (s === undefined) this.#series.set(otherKey, (s = { labels: other, value: 0 }));
    return s;
  }
}

export class LabelledHistogram {
  readonly #series = new Map<string, { readonly labels: readonly string[]; readonly counts: number[]; sum: number }>();

  constructor(
    readonly bounds: readonly number[],
    private readonly labelCount: number,
    private readonly maxSeries = MAX_SERIES_PER_FAMILY,
  ) {}

  observe(labels: readonly string[], value: number): void {
    const key = labels.join(SEP);
    let s = this.#series.get(key);
    if (s === undefined) {
      const full = this.#series.size >= this.maxSeries;
      const use = full ? Array<string>(this.labelCount).fill(OVERFLOW_LABEL) : [...labels];
      const useKey = use.join(SEP);
      s = this.#series.get(useKey);
      if (s === undefined) this.#series.set(useKey, (s = { labels: use, counts: Array<number>(this.bounds.length + 1).fill(0), sum: 0 }));
    }
    s.counts[bucketIndex(this.bounds, value)]!++;
    s.sum += value;
  }

  series(): HistogramSeries[] {
    return [...this.#series.values()].map((s) => ({ labels: s.labels, counts: [...s.counts], sum: s.sum }));
  }
}

/** The first bucket whose upper bound holds `value` (bounds.length: +Inf). */
export function bucketIndex(bounds: readonly number[], value: number): number {
  let i = 0;
  while (i < bounds.length && value > bounds[i]!) i++;
  return i;
}
