/**
 * Test isolation for files that touch sockets or BPF state: a private network namespace for this
 * test process (vitest runs each file in its own fork; the netns is per thread and our sockets are
 * created on the main thread; children spawned from it inherit it) and a unique bpffs pin dir.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, rmdirSync, unlinkSync } from 'node:fs';
import { CLONE_NEWNET, errno, errnoText, libc } from '../../src/sys/libc.js';

export function enterPrivateNetns(): void {
  if ((libc.unshare(CLONE_NEWNET) as number) !== 0) throw new Error(`unshare(CLONE_NEWNET) failed: ${errnoText(errno())}`);
  execFileSync('ip', ['link', 'set', 'lo', 'up']);
  // Ephemeral ports (client sockets) below the fixed ports the tests bind (45000..50000).
  execFileSync('sysctl', ['-q', '-w', 'net.ipv4.ip_local_port_range=20000 29999']);
}

export function uniquePinDir(tag: string): string {
  return `/sys/fs/bpf/grm-test-${tag}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

export function removePinDir(dir: string): void {
  if (!existsSync(dir)) return;
  for (const f of readdirSync(dir)) unlinkSync(`${dir}/${f}`);
  rmdirSync(dir);
}
