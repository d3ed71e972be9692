/**
 * Counts events in a sliding time window with bounded memory: HTTP/2 rapid-reset protection asks
 * "did this client reset more than `limit` streams within the last `windowMs`?". It keeps at most
 * `limit + 1` timestamps (a ring), so a flood costs no more memory than a legitimate client.
 */
export class ResetWindow {
  readonly #times: Float64Array;
  /** Index of the oldest kept timestamp, and how many are kept. */
  #head = 0;
  #size = 0;

  constructor(
    readonly limit: number,
    readonly windowMs: number,
  ) {
    this.#times = new Float64Array(limit + 1);
  }

  /** Record one event at `now` (ms, non-decreasing); true when more than `limit` fell within the window. */
  record(now: number): boolean {
    while (this.#size > 0 && this.#times[this.#head]! <= now - this.windowMs) {
      this.#head = (this.#head + 1) % this.#times.length;
      this.#size--;
    }
    if (this.#size === this.#times.length) {
      // Full: the oldest is dropped; the window already holds more than `limit`.
      this.#head = (this.#head + 1) % this.#times.length;
      this.#size--;
    }
    this.#times[(this.#head + this.#size) % this.#times.length] = now;
    this.#size++;
    return this.#size > this.limit;
  }
}
