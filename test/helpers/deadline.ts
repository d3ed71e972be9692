/**
 * Waiting in tests without fixed sleeps: every wait has a deadline and, when it passes, fails
 * saying what it waited for (and what it saw last), instead of running into the test's timeout.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';

export interface PollOptions {
  readonly timeoutMs: number;
  /** Between checks (the condition has no event to wait on). */
  readonly intervalMs?: number;
  /** What was seen, for the failure message. */
  readonly detail?: () => string | Promise<string>;
}

/** Checks `done` until it returns true; throws "timed out … waiting for `what`" after `timeoutMs`. */
export async function waitUntil(what: string, done: () => boolean | Promise<boolean>, opts: PollOptions): Promise<void> {
  const until = Date.now() + opts.timeoutMs;
  for (;;) {
    if (await done()) return;
    if (Date.now() >= until) {
      const detail = opts.detail ? ` (${await opts.detail()})` : '';
      throw new Error(`timed out after ${opts.timeoutMs} ms waiting for ${what}${detail}`);
    }
    await new Promise((resolve) => setTimeout(resolve, opts.intervalMs ?? 50));
  }
}

/** Resolves once our child process has exited (at once if it already has). */
export function waitForExit(proc: ChildProcess, what: string, timeoutMs: number): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.off('exit', onExit);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what} (pid ${proc.pid}) to exit`));
    }, timeoutMs);
    const onExit = (): void => {
      clearTimeout(timer);
      resolve();
    };
    proc.once('exit', onExit);
  });
}

/** A process that is not our child gives no exit event: wait for its /proc entry to go. */
export function waitForPidGone(pid: number, what: string, timeoutMs: number): Promise<void> {
  return waitUntil(`${what} (pid ${pid}) to exit`, () => !existsSync(`/proc/${pid}`), { timeoutMs });
}
