/**
 * Takes a copy of a socket another process holds, named by its SO_COOKIE: pidfd_open, then
 * pidfd_getfd on each of the process's socket fds (listed in /proc/PID/fd, so sparse fd tables
 * are searched whole, unlike udpgrm's stop after 8 missing fds) until the cookie matches.
 */
import { readdirSync, readlinkSync } from 'node:fs';
import { errno, errnoText, libc } from '../../sys/libc.js';
import { socketCookie } from '../sockets.js';

export type Found = { readonly fd: number } | { readonly error: string };

/** At most this many fds are inspected per request: a process with more is not searched further. */
const MAX_FDS = 16384;

export function takeSocket(pid: number, cookie: bigint): Found {
  if (!Number.isInteger(pid) || pid <= 0) return { error: `bad pid ${pid}` };
  let candidates: number[];
  try {
    // Only socket fds: skips files, pipes and the like without copying them.
    candidates = readdirSync(`/proc/${pid}/fd`)
      .slice(0, MAX_FDS)
      .filter((name) => {
        try {
          return readlinkSync(`/proc/${pid}/fd/${name}`).startsWith('socket:');
        } catch {
          return false; // closed meanwhile
        }
      })
      .map(Number);
  } catch (err) {
    return { error: `process ${pid} is gone or not visible: ${(err as Error).message}` };
  }
  const pidfd = libc.pidfd_open(pid, 0) as number;
  if (pidfd < 0) return { error: `pidfd_open(${pid}): ${errnoText(errno())}` };
  try {
    for (const target of candidates) {
      const fd = libc.pidfd_getfd(pidfd, target, 0) as number;
      if (fd < 0) continue; // closed since the listing
      let match = false;
      try {
        match = socketCookie(fd) === cookie;
      } catch {
        /* not a socket we can ask */
      }
      if (match) return { fd };
      libc.close(fd);
    }
    return { error: `process ${pid} holds no socket with cookie 0x${cookie.toString(16)} (closed?)` };
  } finally {
    libc.close(pidfd);
  }
}
