/**
 * The writers' lock of a pin dir: every read-modify-write of the pinned state (group records, the
 * group table, CID keys) holds it, so two managers on the same pins (the old and the new master
 * during a binary upgrade) never lose each other's updates. bpffs holds no regular files, so the
 * lock is flock(2) on the pin dir itself. Readers take no lock: each map lookup is atomic.
 */
import { closeSync, constants, openSync } from 'node:fs';
import { EINTR, LOCK_EX, LOCK_UN, errno, errnoText, libc } from '../sys/libc.js';
import { GrmError } from './errors.js';

export class StateLock {
  /** Opened on first use (O_CLOEXEC, Node's default: a forked worker never holds the lock). */
  private fd: number | undefined;
  /** Nesting depth: a locked operation may call another one of the same manager. */
  private depth = 0;

  constructor(private readonly dir: string) {}

  /**
   * Runs `fn` holding the lock. `fn` must be synchronous: the lock blocks other processes' writers
   * (and, while it waits, this process's event loop), so it is held for one short update only.
   */
  run<T>(fn: () => T): T {
    if (this.depth === 0) this.acquire();
    this.depth++;
    try {
      return fn();
    } finally {
      this.depth--;
      if (this.depth === 0) libc.flock(this.fd!, LOCK_UN);
    }
  }

  close(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }

  private acquire(): void {
    this.fd ??= openSync(this.dir, constants.O_RDONLY | constants.O_DIRECTORY);
    while ((libc.flock(this.fd, LOCK_EX) as number) !== 0) {
      const e = errno();
      if (e !== EINTR) throw new GrmError('SYSCALL', `cannot lock ${this.dir}: ${errnoText(e)}`, e);
    }
  }
}
