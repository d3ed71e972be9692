/**
 * Deadlines for many QUIC connections behind one Node timer: a binary min-heap keyed by deadline
 * with lazy deletion (an entry is stale when its owner's current deadline differs). Re-arming a
 * connection after every packet is O(log n) and never touches Node's timer list.
 */
export interface TimerOwner {
  /** Absolute deadline in ms (performance.now() clock), or undefined when none is set. */
  deadline: number | undefined;
  onDeadline(): void;
}

interface Entry<T> {
  at: number;
  owner: T;
}

export class TimerQueue<T extends TimerOwner> {
  private heap: Array<Entry<T>> = [];
  private timer: NodeJS.Timeout | undefined;
  private armedAt = Infinity;
  /** Owners with a deadline set: the heap holds at most this many live entries. */
  private pending = 0;

  /**
   * `onError` gets what an owner's `onDeadline` throws, so one failing owner neither stops the
   * others' deadlines nor escapes into Node's timer (where it would end the process).
   */
  constructor(
    private readonly onError: (owner: T, err: unknown) => void,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Sets (or clears, with undefined) `owner`'s deadline to `delayMs` from now. */
  schedule(owner: T, delayMs: number | undefined | null): void {
    if (delayMs === undefined || delayMs === null) {
      if (owner.deadline !== undefined) this.pending--;
      owner.deadline = undefined;
      return;
    }
    const at = this.now() + delayMs;
    if (owner.deadline === at) return;
    if (owner.deadline === undefined) this.pending++;
    owner.deadline = at;
    this.push({ at, owner });
    if (this.heap.length > 1024 + 4 * this.pending) this.compact();
    if (at < this.armedAt) this.arm(at);
  }

  /**
   * Re-arms the Node timer when it is set well before the earliest live deadline (the owner it was
   * armed for moved its deadline later or cleared it, e.g. an ACK cancelled a loss timer, or the
   * connection closed): otherwise it would wake the event loop for nothing. Meant to be called
   * once per batch of work, not per owner; a deadline moved by less than `slackMs` keeps the
   * timer as it is (under load the earliest deadline creeps later on every batch, and an early
   * wake-up in a busy loop costs less than re-arming each time).
   */
  settle(slackMs = 5): void {
    if (this.armedAt === Infinity) return;
    this.dropStaleTop();
    if (this.heap.length === 0) this.disarm();
    else if (this.heap[0]!.at - this.armedAt > slackMs) this.arm(this.heap[0]!.at);
  }

  get size(): number {
    return this.heap.length;
  }

  close(): void {
    this.disarm();
    this.heap = [];
    this.pending = 0;
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.armedAt = Infinity;
  }

  private arm(at: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.armedAt = at;
    // +1 ms: Node timers may fire a fraction early, and quiche ignores a timeout that is not yet due.
    // Not unref'd: Node keeps the timer list of a cleared unref'd timer and wakes the event loop at
    // its expiry anyway (lib/internal/timers.js unenroll drops only ref'd lists), and this timer is
    // cleared whenever a deadline moves (an ACK cancels a loss timer). Workers end by process.exit.
    this.timer = setTimeout(() => this.fire(), Math.max(0, Math.ceil(at - this.now())) + 1);
  }

  private fire(): void {
    this.timer = undefined;
    this.armedAt = Infinity;
    const now = this.now();
    while (this.heap.length > 0 && this.heap[0]!.at <= now) {
      const entry = this.pop()!;
      if (entry.owner.deadline !== entry.at) continue; // stale: rescheduled or cleared since
      entry.owner.deadline = undefined;
      this.pending--;
      try {
        entry.owner.onDeadline();
      } catch (err) {
        this.onError(entry.owner, err);
      }
    }
    this.armForLive();
  }

  /**
   * Arms the timer for the earliest live deadline. Stale entries on top are dropped first: a busy
   * connection leaves one behind per flush (its deadline moved), and arming for them woke the event
   * loop every millisecond or two for nothing.
   */
  private armForLive(): void {
    this.dropStaleTop();
    if (this.heap.length > 0) this.arm(this.heap[0]!.at);
  }

  private dropStaleTop(): void {
    const h = this.heap;
    while (h.length > 0 && h[0]!.owner.deadline !== h[0]!.at) this.pop();
  }

  /** Lazy deletion leaves stale entries behind busy connections: drop them once they dominate. */
  private compact(): void {
    const live = this.heap.filter((e) => e.owner.deadline === e.at);
    this.heap = [];
    for (const e of live) this.push(e);
  }

  private push(entry: Entry<T>): void {
    const h = this.heap;
    h.push(entry);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (h[parent]!.at <= entry.at) break;
      h[i] = h[parent]!;
      i = parent;
    }
    h[i] = entry;
  }

  private pop(): Entry<T> | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length === 0 || last === undefined) return top;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= h.length) break;
      const r = l + 1;
      const c = r < h.length && h[r]!.at < h[l]!.at ? r : l;
      if (h[c]!.at >= last.at) break;
      h[i] = h[c]!;
      i = c;
    }
    h[i] = last;
    return top;
  }
}
