/** Makes sure the pin dir lives on a mounted bpffs (mounting /sys/fs/bpf if needed). */
import { mkdirSync, readFileSync } from 'node:fs';
import { EPERM, errno, errnoText, libc } from '../sys/libc.js';
import { GrmError } from './errors.js';

export const BPFFS_ROOT = '/sys/fs/bpf';

function bpfMounts(): string[] {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f[2] === 'bpf')
    .map((f) => f[1]!);
}

export function ensureBpffs(pinDir: string): void {
  const covered = (): boolean => bpfMounts().some((m) => pinDir === m || pinDir.startsWith(`${m}/`));
  if (!covered()) {
    if (!pinDir.startsWith(`${BPFFS_ROOT}/`)) {
      throw new GrmError('BPFFS', `pin dir ${pinDir} is not on a bpf filesystem (mount one, or use a dir under ${BPFFS_ROOT})`);
    }
    if ((libc.mount('bpf', BPFFS_ROOT, 'bpf', 0, null) as number) < 0) {
      const e = errno();
      const hint = e === EPERM ? ' (needs root or CAP_SYS_ADMIN; or mount it: mount -t bpf bpf /sys/fs/bpf)' : '';
      throw new GrmError('BPFFS', `bpffs is not mounted on ${BPFFS_ROOT} and mounting it failed: ${errnoText(e)}${hint}`, e);
    }
    if (!covered()) throw new GrmError('BPFFS', `mounted bpffs on ${BPFFS_ROOT} but ${pinDir} is still not on it`);
  }
  try {
    mkdirSync(pinDir, { recursive: true, mode: 0o700 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') {
      throw new GrmError('PERMISSION', `cannot create pin dir ${pinDir}: ${code}: needs root or CAP_BPF+CAP_NET_ADMIN`);
    }
    throw new GrmError('BPFFS', `cannot create pin dir ${pinDir}: ${(err as Error).message}`);
  }
}
