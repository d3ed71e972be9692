/**
 * systemd's notify protocol (sd_notify(3)): datagrams like "READY=1" to $NOTIFY_SOCKET. Node has
 * no unix datagram sockets, so this goes through libc. Without NOTIFY_SOCKET it does nothing.
 */
import { AF_UNIX, libc, SOCK_CLOEXEC, SOCK_DGRAM } from '../../sys/libc.js';

/** Sends `state` (e.g. "READY=1\nMAINPID=123") to systemd; returns false when not under systemd. */
export function sdNotify(state: string): boolean {
  const path = process.env.NOTIFY_SOCKET;
  if (!path) return false;
  // sockaddr_un: family, then the path; '@' means Linux's abstract namespace (leading NUL).
  const name = Buffer.from(path.startsWith('@') ? `\0${path.slice(1)}` : path);
  if (name.length > 107) return false;
  const addr = Buffer.alloc(2 + name.length + (path.startsWith('@') ? 0 : 1));
  addr.writeUInt16LE(AF_UNIX, 0);
  name.copy(addr, 2);
  const c = libc;
  const fd = c.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0) as number;
  if (fd < 0) return false;
  try {
    const msg = Buffer.from(state);
    return (c.sendto(fd, msg, msg.length, 0, addr, addr.length) as number) === msg.length;
  } finally {
    c.close(fd);
  }
}

/** RELOADING=1 needs the monotonic time of the reload's start (systemd 253+). */
export function monotonicUsec(): string {
  return (process.hrtime.bigint() / 1000n).toString();
}
