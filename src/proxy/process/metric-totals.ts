/**
 * Labelled sums the master builds from worker snapshots: the totals of workers that exited (kept
 * for the master's life, so counters never go backwards when a generation retires) and, on each
 * scrape, those totals plus every live worker's latest counts. Bounded like the workers' own
 * counts: past MAX_SERIES_PER_FAMILY label sets, new ones add up under "other".
 */
import { MAX_SERIES_PER_FAMILY, OVERFLOW_LABEL, type HistogramSeries, type Series } from '../metrics/snapshot.js';

const SEP = '\u0000';

export class SeriesSums {
  readonly #sums = new Map<string, { readonly labels: readonly string[]; value: number }>();

  add(s: Series): void {
    this.#slot(s.labels).value += s.value;
  }

  /** Keeps the smallest value seen per label set (a gauge where any 0 must show, e.g. health). */
  min(s: Series): void {
    const key = s.labels.join(SEP);
    const have = this.#sums.get(key);
    if (have === undefined) this.#slot(s.labels).value = s.value;
    else have.value = Math.min(have.value, s.value);
  }

  series(): Series[] {
    return [...this.#sums.values()].map((s) => ({ labels: s.labels, value: s.value }));
  }

  copy(): SeriesSums {
    const out = new SeriesSums();
    for (const s of this.#sums.values()) out.add(s);
    return out;
  }

  #slot(labels: readonly string[]): { readonly labels: readonly string[]; value: number } {
    let key = labels.join(SEP);
    let s = this.#sums.get(key);
    if (s !== undefined) return s;
    let use = labels;
    if (this.#sums.size >= MAX_SERIES_PER_FAMILY) {
      use = labels.map(() => OVERFLOW_LABEL);
      key = use.join(SEP);
      s = this.#sums.get(key);
      if (s !== undefined) return s;
    }
    s = { labels: [...use], value: 0 };
    this.#sums.set(key, s);
    return s;
  }
}

export class HistogramSums {
  readonly #sums = new Map<string, { readonly labels: readonly string[]; readonly counts: number[]; sum: number }>();

  constructor(readonly bounds: readonly number[]) {}

  /** Adds a series bucketed with `bounds`; one bucketed otherwise cannot be merged and is skipped. */
  add(s: HistogramSeries, bounds: readonly number[] = this.bounds): boolean {
    if (bounds.length !== this.bounds.length || bounds.some((b, i) => b !== this.bounds[i]) || s.counts.length !== bounds.length + 1) return false;
    let key = s.labels.join(SEP);
    let have = this.#sums.get(key);
    if (have === undefined) {
      let labels = s.labels;
      if (this.#sums.size >= MAX_SERIES_PER_FAMILY) {
        labels = labels.map(() => OVERFLOW_LABEL);
        key = labels.join(SEP);
        have = this.#sums.get(key);
      }
      if (have === undefined) this.#sums.set(key, (have = { labels: [...labels], counts: Array<number>(this.bounds.length + 1).fill(0), sum: 0 }));
    }
    s.counts.forEach((n, i) => (have.counts[i]! += n));
    have.sum += s.sum;
    return true;
  }

  series(): HistogramSeries[] {
    return [...this.#sums.values()].map((s) => ({ labels: s.labels, counts: [...s.counts], sum: s.sum }));
  }

  copy(): HistogramSums {
    const out = new HistogramSums(this.bounds);
    for (const s of this.#sums.values()) out.add(s);
    return out;
  }
}
