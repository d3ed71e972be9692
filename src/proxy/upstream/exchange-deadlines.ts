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

  /**
   * Expires every watched entry due by `now` and returns the earliest deadline left. An expiry
   * can end other exchanges (they unlink themselves) or start new ones, so the due entries are
   * collected in one walk and each is expired only if it is still watched and still due; the walk
   * is repeated until it finds none due (twice in all, normally): O(n) for n entries expiring
   * together, where walking again from the head after each expiry was O(n²).
   */
  #sweep(now: number): number | undefined {
    for (;;) {
      let next = Infinity;
      let due: ExchangeDeadline[] | undefined;
      for (let entry = this.#head.deadlineNext!; entry !== this.#head; entry = entry.deadlineNext!) {
        const at = entry.deadline;
        if (at <= now) (due ??= []).push(entry);
        else if (at < next) next = at;
      }
      if (due === undefined) return next === Infinity ? undefined : next;
      for (const entry of due) {
        // Ended (or given a later deadline) by an expiry earlier in this batch: not due any more.
        if (entry.deadlineNext === null || entry.deadline > now) continue;
        this.unwatch(entry);
        entry.expire();
      }
    }
  }
}
