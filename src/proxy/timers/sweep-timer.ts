/**
 * One Node timer for many deadlines (an HTTP/3 session's request clocks, an upstream pool's wait
 * queue). It is armed for the earliest deadline anyone announced; when it fires, the owner sweeps
 * what it holds (each item acts on its own expired deadline) and reports the earliest deadline
 * left, which re-arms it. A deadline that moves later (a body byte arrived) needs no call at all:
 * the sweep finds it not yet due. So an item costs nothing per event and no timer of its own.
 */
export class SweepTimer {
  #timer: NodeJS.Timeout | undefined;
  #armedAt = Infinity;

  /** `sweep(now)` handles what expired by `now` and returns the next deadline, if any. */
  constructor(private readonly sweep: (now: number) => number | undefined) {}

  /** Fire no later than `at` (performance.now() ms); undefined: nothing to add. */
  ensure(at: number | undefined): void {
    if (at === undefined || at >= this.#armedAt) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#armedAt = at;
    // A timer that fires a fraction early finds nothing due and re-arms for the rest. Not unref'd:
    // a cleared unref'd timer still wakes the event loop at its expiry (see TimerQueue.arm).
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, Math.ceil(at - performance.now())));
  }

  stop(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedAt = Infinity;
  }

  #fire(): void {
    this.#timer = undefined;
    this.#armedAt = Infinity;
    this.ensure(this.sweep(performance.now()));
  }
}
