import { describe, expect, it } from 'vitest';
import { ExchangeDeadlines, type ExchangeDeadline } from '../../src/proxy/upstream/exchange-deadlines.js';

/** An entry that records when it expired. */
function entry(deadline: number, onExpire?: () => void): ExchangeDeadline & { deadline: number; expiredAt: number | undefined } {
  const e = {
    deadline,
    expiredAt: undefined as number | undefined,
    deadlinePrev: null,
    deadlineNext: null,
    expire(): void {
      e.expiredAt = performance.now();
      onExpire?.();
    },
  };
  return e;
}

const settle = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('ExchangeDeadlines', () => {
  it('expires each entry at its deadline, once, and forgets it', async () => {
    const table = new ExchangeDeadlines(1_000, 1_000);
    const start = performance.now();
    const late = entry(start + 120);
    const early = entry(start + 40);
    table.watch(late);
    table.watch(early);
    expect(table.size).toBe(2);
    await settle(80);
    expect(early.expiredAt).toBeGreaterThanOrEqual(start + 40);
    expect(late.expiredAt).toBeUndefined();
    expect(table.size).toBe(1);
    await settle(100);
    expect(late.expiredAt).toBeGreaterThanOrEqual(start + 120);
    expect(table.size).toBe(0);
    table.stop();
  });

  it('a deadline moved later (no call) is not expired at the old one; Infinity never expires', async () => {
    const table = new ExchangeDeadlines(1_000, 1_000);
    const start = performance.now();
    const moved = entry(start + 30);
    const paused = entry(Infinity);
    table.watch(moved);
    table.watch(paused);
    moved.deadline = start + 100;
    await settle(60);
    expect(moved.expiredAt).toBeUndefined();
    await settle(80);
    expect(moved.expiredAt).toBeGreaterThanOrEqual(start + 100);
    expect(paused.expiredAt).toBeUndefined();
    expect(table.size).toBe(1);
    table.unwatch(paused);
    expect(table.size).toBe(0);
    table.stop();
  });

  it('an expiry that ends other entries (unwatch from expire) leaves the sweep and the list whole', async () => {
    const table = new ExchangeDeadlines(1_000, 1_000);
    const start = performance.now();
    const others = [entry(start + 500), entry(start + 500)];
    const first = entry(start + 20, () => others.forEach((o) => table.unwatch(o)));
    const second = entry(start + 20);
    const third = entry(start + 60);
    for (const e of [first, ...others, second, third]) table.watch(e);
    table.unwatch(third);
    table.unwatch(third); // twice: a no-op
    await settle(100);
    expect(first.expiredAt).toBeDefined();
    expect(second.expiredAt).toBeDefined();
    expect(third.expiredAt).toBeUndefined();
    expect(others.map((o) => o.expiredAt)).toEqual([undefined, undefined]);
    expect(table.size).toBe(0);
    // Watched again after being dropped: expires normally.
    third.deadline = performance.now() + 10;
    table.watch(third);
    await settle(50);
    expect(third.expiredAt).toBeDefined();
    table.stop();
  });
});
