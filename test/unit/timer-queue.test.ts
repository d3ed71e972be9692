/**
 * TimerQueue: one Node timer for many deadlines, entries of rescheduled owners left behind (lazy
 * deletion). Fake timers, and the queue's clock is the fake one.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { TimerQueue, type TimerOwner } from '../../src/proxy/quic/timer-queue.js';

function owner(onDeadline: () => void = () => {}): TimerOwner {
  return { deadline: undefined, onDeadline };
}

describe('TimerQueue', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('calls each owner at its current deadline, once, in order', () => {
    const q = new TimerQueue<TimerOwner>(() => {}, () => Date.now());
    const calls: string[] = [];
    const a = owner(() => calls.push('a'));
    const b = owner(() => calls.push('b'));
    q.schedule(a, 30);
    q.schedule(b, 10);
    q.schedule(a, 20); // moved earlier
    vi.advanceTimersByTime(15);
    expect(calls).toEqual(['b']);
    vi.advanceTimersByTime(20);
    expect(calls).toEqual(['b', 'a']);
    q.schedule(b, 5);
    q.schedule(b, undefined); // cleared
    vi.advanceTimersByTime(50);
    expect(calls).toEqual(['b', 'a']);
  });

  it('an owner whose deadline keeps moving on wakes the timer about once per deadline, not once per stale entry', () => {
    const q = new TimerQueue<TimerOwner>(() => {}, () => Date.now());
    let due = 0;
    const o = owner(() => due++);
    const setTimeoutSpy = vi.spyOn(globalThis, 'setTimeout');
    // A busy connection: its deadline is 30 ms ahead after every flush, one flush per millisecond.
    for (let t = 0; t < 300; t++) {
      q.schedule(o, 30);
      vi.advanceTimersByTime(1);
    }
    expect(due).toBe(0);
    // Armed at the first deadline, then at most once per 30 ms moved on (stale entries skipped).
    expect(setTimeoutSpy.mock.calls.length).toBeLessThanOrEqual(300 / 30 + 2);
    vi.advanceTimersByTime(31);
    expect(due).toBe(1);
    q.close();
  });
});
