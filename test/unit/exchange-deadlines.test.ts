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

  it('many entries expiring together behind live ones cost one walk each, not one walk per expiry', async () => {
    const table = new ExchangeDeadlines(1_000, 1_000);
    const start = performance.now();
    let reads = 0;
    /** An entry whose deadline reads are counted: the sweep's steps. */
    const counted = (deadline: number): ExchangeDeadline & { expired: number } => {
      const e = {
        expired: 0,
        deadlinePrev: null,
        deadlineNext: null,
        get deadline(): number {
          reads++;
          return deadline;
        },
        expire(): void {
          e.expired++;
        },
      };
      return e;
    };
    const N = 2_000;
    // Live ones first: walking again from the head after each expiry passes all of them each time.
    const live = Array.from({ length: N }, () => counted(start + 60_000));
    const due = Array.from({ length: N }, () => counted(start + 20));
    for (const e of [...live, ...due]) table.watch(e);
    reads = 0;
    await settle(60);
    expect(due.every((e) => e.expired === 1)).toBe(true);
    expect(live.every((e) => e.expired === 0)).toBe(true);
    expect(table.size).toBe(N);
    // Linear: a walk (2N reads), one re-check per due entry (N) and a last walk (N). Walking from
    // the head after each expiry reads ~N² = 4,000,000.
    expect(reads).toBeLessThanOrEqual(6 * N);
    for (const e of live) table.unwatch(e);
    table.stop();
  });

  it('an entry due in the same sweep that an earlier expiry ended, or ended and watched again for later, is not expired then', async () => {
    const table = new ExchangeDeadlines(1_000, 1_000);
    const start = performance.now();
    const ended = entry(start + 20);
    const rewatched = entry(start + 20);
    const first = entry(start + 20, () => {
      table.unwatch(ended);
      // As a retried exchange would be: unlinked, then watched with a fresh clock.
      table.unwatch(rewatched);
      rewatched.deadline = performance.now() + 60;
      table.watch(rewatched);
    });
    const last = entry(start + 20);
    for (const e of [first, ended, rewatched, last]) table.watch(e);
    await settle(50);
    expect(first.expiredAt).toBeDefined();
    expect(last.expiredAt).toBeDefined();
    expect(ended.expiredAt).toBeUndefined();
    expect(rewatched.expiredAt).toBeUndefined();
    expect(table.size).toBe(1);
    await settle(80);
    expect(rewatched.expiredAt).toBeGreaterThanOrEqual(rewatched.deadline);
    expect(table.size).toBe(0);
    table.stop();
  });
});
