/**
 * systemd's notify protocol (sd_notify(3)): datagrams like "READY=1" to $NOTIFY_SOCKET, with file
 * descriptors for FDSTORE=1. Node has no unix datagram sockets, so this goes through libc. Without
 * NOTIFY_SOCKET it does nothing.
 */
import { AF_UNIX, libc, SOCK_CLOEXEC, SOCK_DGRAM } from './libc.js';
import { sendWithFds } from './scm-rights.js';

/** sockaddr_un of $NOTIFY_SOCKET ('@' = Linux's abstract namespace), or null when unusable. */
function notifyAddress(path: string): Buffer | null {
  const name = Buffer.from(path.startsWith('@') ? `\0${path.slice(1)}` : path);
  if (name.length > 107) return null;
  const addr = Buffer.alloc(2 + name.length + (path.startsWith('@') ? 0 : 1));
  addr.writeUInt16LE(AF_UNIX, 0);
  name.copy(addr, 2);
  return addr;
}

/** Sends `state` (e.g. "READY=1\nMAINPID=123"), with `fds` attached if any (FDSTORE=1); returns
 * false when not under systemd or when the send failed. */
export function sdNotify(state: string, fds: readonly number[] = []): boolean {
  const path = process.env.NOTIFY_SOCKET;
  if (!path) return false;
  const addr = notifyAddress(path);
  if (!addr) return false;
  const fd = libc.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0) as number;
  if (fd < 0) return false;
  try {
    const msg = Buffer.from(state);
    if (fds.length) return sendWithFds(fd, addr, msg, fds) === msg.length;
    return (libc.sendto(fd, msg, msg.length, 0, addr, addr.length) as number) === msg.length;
  } finally {
    libc.close(fd);
  }
}

/** RELOADING=1 needs the monotonic time of the reload's start (systemd 253+). */
export function monotonicUsec(): string {
  return (process.hrtime.bigint() / 1000n).toString();
}
