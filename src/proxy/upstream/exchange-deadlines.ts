/**
 * response_timeout and body_timeout of a pool's exchanges on one SweepTimer, instead of undici's
 * headersTimeout/bodyTimeout. undici runs those on its FastTimer, a 499 ms tick that keeps waking
 * the worker while any request is open and once more after the last (about one wake-up per
 * request at low rates), and builds a timer object per request. Here an exchange only writes its
 * deadline into a field; the pool's one timer fires at the earliest deadline it was told of, and
 * the sweep finds the ones that moved later (a body chunk arrived) not yet due.
 */
import { SweepTimer } from '../timers/sweep-timer.js';

/** An exchange as the table sees it. */
export interface ExchangeDeadline {
  /** performance.now() ms at which `expire` runs; Infinity while none runs (a paused body). */
  readonly deadline: number;
  /** The deadline passed: fail the exchange. Called once; the entry is no longer watched. */
  expire(): void;
  /** The table's links, null while not watched (start both as null). */
  deadlinePrev: ExchangeDeadline | null;
  deadlineNext: ExchangeDeadline | null;
}

/**
 * The watched exchanges are a list threaded through the exchanges themselves: adding and removing
 * one allocates nothing and touches no hash table. (A Set of the exchanges cost ~30 µs more per
 * request in a pool bench, with 7 major GCs instead of 1 over the run; see bench/README.md.)
 */
export class ExchangeDeadlines {
  /** Sentinel of the circular list. */
  readonly #head: ExchangeDeadline = { deadline: Infinity, expire: () => {}, deadlinePrev: null, deadlineNext: null };
  #size = 0;
  readonly #timer = new SweepTimer((now) => this.#sweep(now));

  constructor(
    readonly responseTimeoutMs: number,
    readonly bodyTimeoutMs: number,
  ) {
    this.#head.deadlinePrev = this.#head;
    this.#head.deadlineNext = this.#head;
  }

  /** Watch `entry` (or keep watching it), for a deadline that may be earlier than any announced so far. */
  watch(entry: ExchangeDeadline): void {
    if (entry.deadlineNext === null) {
      const last = this.#head.deadlinePrev!;
      entry.deadlinePrev = last;
      entry.deadlineNext = this.#head;
      last.deadlineNext = entry;
      this.#head.deadlinePrev = entry;
      this.#size++;
    }
    if (entry.deadline !== Infinity) this.#timer.ensure(entry.deadline);
  }

  unwatch(entry: ExchangeDeadline): void {
    const next = entry.deadlineNext;
    if (next === null) return;
    const prev = entry.deadlinePrev!;
    prev.deadlineNext = next;
    next.deadlinePrev = prev;
    entry.deadlinePrev = null;
    entry.deadlineNext = null;
    this.#size--;
  }

  /** Exchanges watched (tests). */
  get size(): number {
    return this.#size;
  }

  stop(): void {
    this.#timer.stop();
  }

  #sweep(now: number): number | undefined {
    let next = Infinity;
    let entry = this.#head.deadlineNext!;
    while (entry !== this.#head) {
      if (entry.deadline <= now) {
        this.unwatch(entry);
        entry.expire();
        // expire() may have ended other exchanges (unlinked): walk again from the start.
        entry = this.#head.deadlineNext!;
        next = Infinity;
        continue;
      }
      if (entry.deadline < next) next = entry.deadline;
      entry = entry.deadlineNext!;
    }
    return next === Infinity ? undefined : next;
  }
}
