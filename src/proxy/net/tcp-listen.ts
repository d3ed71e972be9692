/**
 * TCP listening sockets by fd. The master opens one per TCP listener and keeps it for its whole
 * life (and hands it to the next master in a binary upgrade); every worker of every generation
 * accepts on an inherited copy. One socket, one accept queue: a connection the kernel queued is
 * accepted by whichever worker still listens, so a reload or an upgrade never refuses or resets
 * one (a worker that stops accepting closes only its own copy).
 */
import {
  AF_INET,
  AF_INET6,
  errno,
  errnoText,
  F_SETFD,
  FD_CLOEXEC,
  IPPROTO_IPV6,
  IPV6_V6ONLY,
  libc as c,
  SO_ACCEPTCONN,
  SO_REUSEADDR,
  SO_REUSEPORT,
  SO_TYPE,
  SOCK_CLOEXEC,
  SOCK_STREAM,
  SOL_SOCKET,
} from '../../sys/libc.js';
import { ipAddressBytes, sockaddrBytes } from '../../sys/sockaddr.js';
import type { HostPort } from './address.js';

/** Accept queue length asked of listen(); the kernel caps it at net.core.somaxconn. */
export const DEFAULT_TCP_BACKLOG = 4096;

export interface TcpListenAddress extends HostPort {
  readonly family: 4 | 6;
}

/**
 * A listening TCP socket bound to addr (port 0: the kernel picks one; read it with `boundPort`).
 * SO_REUSEADDR so a restart binds despite TIME_WAIT; SO_REUSEPORT so a master restarted after a
 * crash can bind while the old one's draining workers still hold theirs.
 */
export function openTcpListenSocket(addr: TcpListenAddress, backlog = DEFAULT_TCP_BACKLOG): number {
  const family = addr.family === 6 ? AF_INET6 : AF_INET;
  const where = addr.family === 6 ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`;
  const fd = check(c.socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0) as number, `socket for TCP ${where}`);
  try {
    setInt(fd, SOL_SOCKET, SO_REUSEADDR, 1, where);
    setInt(fd, SOL_SOCKET, SO_REUSEPORT, 1, where);
    if (family === AF_INET6) setInt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1, where);
    const sa = sockaddrBytes(family, addr.port, ipAddressBytes(addr.host));
    check(c.bind(fd, sa, sa.length) as number, `bind TCP ${where}`);
    check(c.listen(fd, backlog) as number, `listen TCP ${where}`);
    return fd;
  } catch (err) {
    c.close(fd);
    throw err;
  }
}

/** The port a socket is bound to (after binding port 0). */
export function boundPort(fd: number): number {
  const sa = Buffer.alloc(28);
  const len = [sa.length];
  check(c.getsockname(fd, sa, len) as number, `getsockname(fd ${fd})`);
  return sa.readUInt16BE(2);
}

/** True when fd is a listening TCP socket (for adopting fds handed over by another master). */
export function isTcpListenSocket(fd: number): boolean {
  return getInt(fd, SO_TYPE) === SOCK_STREAM && getInt(fd, SO_ACCEPTCONN) === 1;
}

/**
 * Marks an inherited fd close-on-exec, so it reaches only the processes we hand it to explicitly
 * (an fd a parent passed us is inherited without the flag).
 */
export function setCloseOnExec(fd: number): void {
  check(c.fcntl(fd, F_SETFD, 'int', FD_CLOEXEC) as number, `fcntl(FD_CLOEXEC) on fd ${fd}`);
}

export function closeTcpSocket(fd: number): void {
  c.close(fd);
}

function setInt(fd: number, level: number, name: number, value: number, where: string): void {
  const v = Buffer.alloc(4);
  v.writeInt32LE(value);
  check(c.setsockopt(fd, level, name, v, 4) as number, `setsockopt(${name}) on TCP ${where}`);
}

function getInt(fd: number, name: number): number | undefined {
  const v = Buffer.alloc(4);
  const len = [4];
  if ((c.getsockopt(fd, SOL_SOCKET, name, v, len) as number) !== 0) return undefined;
  return v.readInt32LE(0);
}

function check(rc: number, what: string): number {
  if (rc < 0) throw new Error(`${what}: ${errnoText(errno())}`);
  return rc;
}
