/**
 * Requests waiting for a free upstream connection, oldest first. Every entry may wait the same
 * time, so the oldest always expires first: one timer, armed for the oldest live entry, serves the
 * whole queue (no timer per request). A cancelled entry stays in place, dead, until it reaches the
 * front.
 */
import { SweepTimer } from '../timers/sweep-timer.js';

interface Entry<T> {
  readonly item: T;
  readonly deadline: number;
  live: boolean;
}

export class WaitQueue<T> {
  #entries: Array<Entry<T>> = [];
  #head = 0;
  #live = 0;
  readonly #timer = new SweepTimer((now) => this.#expire(now));

  constructor(
    readonly timeoutMs: number,
    /** Called for an entry that waited `timeoutMs`; it is out of the queue by then. */
    private readonly onExpired: (item: T) => void,
  ) {}

  /** Entries still waiting. */
  get size(): number {
    return this.#live;
  }

  /** Queues `item`; the returned function takes it out again (no effect once it left). */
  push(item: T): () => void {
    const entry: Entry<T> = { item, deadline: performance.now() + this.timeoutMs, live: true };
    this.#entries.push(entry);
    this.#live++;
    this.#timer.ensure(entry.deadline);
    return () => {
      if (!entry.live) return;
      entry.live = false;
      this.#live--;
      if (this.#live === 0) this.#timer.stop();
    };
  }

  /** The oldest waiting entry, taken out of the queue. */
  shift(): T | undefined {
    const entry = this.#next();
    if (entry === undefined) return undefined;
    entry.live = false;
    this.#live--;
    this.#head++;
    this.#compact();
    if (this.#live === 0) this.#timer.stop();
    return entry.item;
  }

  /** Takes every waiting entry out (oldest first), e.g. to fail them all. */
  drain(): T[] {
    const out: T[] = [];
    for (let item = this.shift(); item !== undefined; item = this.shift()) out.push(item);
    return out;
  }

  /** The oldest live entry, dropping dead ones in front of it. */
  #next(): Entry<T> | undefined {
    while (this.#head < this.#entries.length && !this.#entries[this.#head]!.live) this.#head++;
    this.#compact();
    return this.#entries[this.#head];
  }

  #compact(): void {
    if (this.#head === this.#entries.length) {
      this.#entries = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#entries.length) {
      this.#entries = this.#entries.slice(this.#head);
      this.#head = 0;
    }
  }

  /** The timer fired: expire what waited long enough; the oldest left re-arms it. */
  #expire(now: number): number | undefined {
    for (let entry = this.#next(); entry !== undefined && entry.deadline <= now; entry = this.#next()) {
      this.shift();
      this.onExpired(entry.item);
    }
    return this.#next()?.deadline;
  }
}
