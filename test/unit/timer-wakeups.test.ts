import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { TimerQueue, type TimerOwner } from '../../src/proxy/quic/timer-queue.js';
import { SweepTimer } from '../../src/proxy/timers/sweep-timer.js';

/**
 * Real timers, real event loop: how often this thread blocked and was woken (each wake-up of the
 * event loop is one voluntary context switch of the thread that runs it). Node keeps the timer
 * list of a cleared *unref'd* timer and wakes the loop at its expiry anyway; a cleared ref'd one is
 * dropped. Each wake-up costs a worker ~0.1–0.3 ms on this VM, a few per new connection.
 */
function wakeUps(): number {
  const m = /voluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync('/proc/thread-self/status', 'utf8'));
  if (!m) throw new Error('no voluntary_ctxt_switches in /proc/thread-self/status');
  return Number(m[1]);
}

const idle = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

class Owner implements TimerOwner {
  deadline: number | undefined;
  fired = 0;
  onDeadline(): void {
    this.fired++;
  }
}

const N = 20;

describe('deadlines moved later wake nothing', () => {
  it('TimerQueue: the timers it armed for deadlines that moved do not fire the event loop', async () => {
    const q = new TimerQueue<Owner>(() => {});
    const owners = Array.from({ length: N }, () => new Owner());
    // Each deadline earlier than the last: the queue re-arms its Node timer N times, 3 ms apart.
    owners.forEach((o, i) => q.schedule(o, 100 - 3 * i));
    await new Promise((resolve) => setImmediate(resolve));
    // Then every one moves far out (as an ACK moves a loss timer later), at the end of a batch.
    for (const o of owners) q.schedule(o, 10_000);
    q.settle();
    const before = wakeUps();
    await idle(150);
    const woken = wakeUps() - before;
    q.close();
    expect(owners.every((o) => o.fired === 0)).toBe(true);
    // Ours: the earliest (Node's libuv timer cannot move later) and the idle() timer. Unref'd: ~N.
    expect(woken).toBeLessThanOrEqual(5);
  });

  it('SweepTimer: stopping it leaves nothing that fires the event loop', async () => {
    const sweep = new SweepTimer(() => undefined);
    const now = performance.now();
    for (let i = 0; i < N; i++) sweep.ensure(now + 100 - 3 * i);
    await new Promise((resolve) => setImmediate(resolve));
    sweep.stop();
    const before = wakeUps();
    await idle(150);
    expect(wakeUps() - before).toBeLessThanOrEqual(5);
  });
});
