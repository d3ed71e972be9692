import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { TimerQueue, type TimerOwner } from '../../src/proxy/quic/timer-queue.js';

class Owner implements TimerOwner {
  deadline: number | undefined;
  fired: number[] = [];
  constructor(private readonly clock: () => number) {}
  onDeadline(): void {
    this.fired.push(this.clock());
  }
}

describe('TimerQueue', () => {
  /** The fake timers' clock: deadlines and Node's timers move together. */
  const clock = (): number => Date.now();
  const advance = (ms: number): void => {
    vi.advanceTimersByTime(ms);
  };

  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(0);
  });
  afterEach(() => {
    vi.restoreAllMocks();
    vi.useRealTimers();
  });

  it('fires each owner at its latest deadline, in order, and not after it was cleared', () => {
    const q = new TimerQueue<Owner>(() => {}, clock);
    const a = new Owner(clock);
    const b = new Owner(clock);
    const c = new Owner(clock);
    q.schedule(a, 30);
    q.schedule(b, 10);
    q.schedule(c, 20);
    q.schedule(a, 5); // earlier: re-armed
    q.schedule(b, 50); // later: its 10 ms entry is stale
    q.schedule(c, undefined); // cleared
    advance(100);
    expect(a.fired).toEqual([6]); // +1 ms: Node timers may fire a fraction early
    expect(b.fired).toEqual([51]);
    expect(c.fired).toEqual([]);
    expect(a.deadline).toBeUndefined();
  });

  it('arms no timer for deadlines that moved: only the live one wakes the loop', () => {
    const q = new TimerQueue<Owner>(() => {}, clock);
    const busy = new Owner(clock);
    const idle = new Owner(clock);
    q.schedule(idle, 1000);
    // A busy connection re-arms after every flush: 25 ms ahead each time, 1 ms apart; then its
    // deadline moves far out (its packets were acknowledged).
    for (let i = 0; i < 20; i++) {
      q.schedule(busy, 25);
      advance(1);
    }
    q.schedule(busy, 30_000);
    const setTimeoutSpy = vi.spyOn(globalThis, 'setTimeout');
    advance(6); // t = 26: the timer armed for busy's first deadline (25) fires, its later ones are stale too
    // One re-arm, straight for the live deadline (idle's), not one per stale entry 1 ms apart.
    expect(setTimeoutSpy).toHaveBeenCalledTimes(1);
    expect(setTimeoutSpy.mock.calls[0]![1]).toBe(1000 - 26 + 1);
    advance(1000);
    expect(idle.fired).toEqual([1001]);
    expect(busy.fired).toEqual([]);
    expect(setTimeoutSpy).toHaveBeenCalledTimes(2); // then armed for busy's 30 s
    q.close();
  });

  it('hands what an owner throws to onError and still fires the others', () => {
    const errors: unknown[] = [];
    const q = new TimerQueue<Owner>((_, err) => errors.push(err), clock);
    const bad = new Owner(clock);
    bad.onDeadline = () => {
      throw new Error('boom');
    };
    const good = new Owner(clock);
    q.schedule(bad, 10);
    q.schedule(good, 10);
    advance(20);
    expect(errors).toHaveLength(1);
    expect(good.fired).toEqual([11]);
  });
  it('settle() re-arms for the earliest live deadline, so a moved or cleared one wakes nothing', () => {
    const q = new TimerQueue<Owner>(() => {}, clock);
    const a = new Owner(clock);
    const b = new Owner(clock);
    let wakeUps = 0;
    const real = globalThis.setTimeout;
    // Counts the Node timers that fire: each is a wake-up of the event loop.
    vi.spyOn(globalThis, 'setTimeout').mockImplementation(((fn: () => void, ms?: number) =>
      real(() => {
        wakeUps++;
        fn();
      }, ms)) as typeof setTimeout);
    q.schedule(a, 10);
    q.schedule(a, 5000); // e.g. the loss timer an ACK cancelled: the idle timeout is next
    q.settle();
    advance(4000);
    expect(wakeUps).toBe(0);
    q.schedule(b, 10);
    q.schedule(b, undefined); // e.g. a connection that closed
    q.settle();
    advance(1001);
    expect(wakeUps).toBe(1);
    expect(a.fired).toEqual([5001]);
    expect(b.fired).toEqual([]);
    // A deadline that moved by less than the slack keeps the timer: one early wake-up, then the deadline's.
    q.schedule(b, 10);
    q.schedule(b, 12);
    q.settle();
    advance(20);
    expect(b.fired).toHaveLength(1);
    expect(wakeUps).toBe(3);
    q.close();
  });
});
