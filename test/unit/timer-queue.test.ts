import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { TimerQueue, type TimerOwner } from '../../src/proxy/quic/timer-queue.js';

class Owner implements TimerOwner {
  deadline: number | undefined;
  readonly fired: number[] = [];
  constructor(private readonly clock: () => number) {}
  onDeadline(): void {
    this.fired.push(this.clock());
  }
}

describe('TimerQueue', () => {
  let wakeUps = 0;
  beforeEach(() => {
    vi.useFakeTimers();
    wakeUps = 0;
    // Counts the Node timers that fire: each is a wake-up of the event loop.
    const real = globalThis.setTimeout;
    vi.spyOn(globalThis, 'setTimeout').mockImplementation(((fn: () => void, ms?: number) =>
      real(() => {
        wakeUps++;
        fn();
      }, ms)) as typeof setTimeout);
  });
  afterEach(() => {
    vi.restoreAllMocks();
    vi.useRealTimers();
  });

  const setup = (): { queue: TimerQueue<Owner>; owner: () => Owner; errors: unknown[] } => {
    const errors: unknown[] = [];
    const queue = new TimerQueue<Owner>((_, err) => errors.push(err), () => Date.now());
    return { queue, owner: () => new Owner(() => Date.now()), errors };
  };

  it('fires each owner once at its latest deadline, and never a cleared one', () => {
    const { queue, owner } = setup();
    const t0 = Date.now();
    const [a, b, c] = [owner(), owner(), owner()];
    queue.schedule(a, 30);
    queue.schedule(b, 10);
    queue.schedule(c, 20);
    queue.schedule(a, 50); // moved later
    queue.schedule(c, undefined); // cleared
    vi.advanceTimersByTime(100);
    expect(b.fired.map((t) => t - t0)).toEqual([11]); // +1 ms: never early
    expect(a.fired.map((t) => t - t0)).toEqual([51]);
    expect(c.fired).toEqual([]);
    expect(a.deadline).toBeUndefined();
  });

  it('wakes once for a deadline that moved later, not once per stale entry left behind', () => {
    const { queue, owner } = setup();
    const [a, b] = [owner(), owner()];
    queue.schedule(a, 10);
    for (const ms of [20, 30, 40, 5000]) queue.schedule(a, ms); // e.g. a loss timer an ACK cancelled
    queue.schedule(b, 500);
    vi.advanceTimersByTime(1000);
    expect(b.fired).toHaveLength(1);
    expect(a.fired).toEqual([]);
    // The wake-up armed for a's first deadline, then b's.
    expect(wakeUps).toBe(2);
    vi.advanceTimersByTime(5000);
    expect(a.fired).toHaveLength(1);
    expect(wakeUps).toBe(3);
  });

  it('settle() re-arms for the earliest live deadline, so a moved or cleared one wakes nothing', () => {
    const { queue, owner } = setup();
    const [a, b] = [owner(), owner()];
    queue.schedule(a, 10);
    queue.schedule(a, 5000); // e.g. the loss timer an ACK cancelled: the idle timeout is next
    queue.settle();
    vi.advanceTimersByTime(4000);
    expect(wakeUps).toBe(0);
    queue.schedule(b, 10);
    queue.schedule(b, undefined); // e.g. a connection that closed
    queue.settle();
    vi.advanceTimersByTime(1001);
    expect(wakeUps).toBe(1);
    expect(a.fired).toHaveLength(1);
    expect(b.fired).toEqual([]);
    // A deadline that moved by less than the slack keeps the timer: one early wake-up, then the deadline's.
    queue.schedule(b, 10);
    queue.schedule(b, 12);
    queue.settle();
    vi.advanceTimersByTime(20);
    expect(b.fired).toHaveLength(1);
    expect(wakeUps).toBe(3);
  });

  it('keeps firing the others when one owner throws', () => {
    const { queue, owner, errors } = setup();
    const a = owner();
    const b = owner();
    a.onDeadline = () => {
      throw new Error('boom');
    };
    queue.schedule(a, 10);
    queue.schedule(b, 10);
    vi.advanceTimersByTime(20);
    expect(errors).toHaveLength(1);
    expect(b.fired).toHaveLength(1);
  });
});
