/** Reuseport UDP sockets by fd (through libc): create, inspect, attach/detach the steering program. */
import { isIP } from 'node:net';
import {
  AF_INET,
  AF_INET6,
  EPERM,
  errno,
  errnoText,
  IPPROTO_IPV6,
  IPV6_V6ONLY,
  libc as c,
  SO_ATTACH_REUSEPORT_EBPF,
  SO_COOKIE,
  SO_DETACH_REUSEPORT_BPF,
  SO_RCVBUF,
  SO_RCVBUFFORCE,
  SO_REUSEPORT,
  SO_SNDBUF,
  SO_SNDBUFFORCE,
  SO_TYPE,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOL_SOCKET,
} from '../sys/libc.js';
import { ipAddressBytes, sockaddrBytes } from '../sys/sockaddr.js';
import { checkLibc, GrmError } from './errors.js';

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
  /** 4 or 6; taken from host when omitted. */
  readonly family?: 4 | 6;
}

/** A listen address in kernel form: family, port (host order), address bytes (network order). */
export interface SocketAddress {
  readonly family: typeof AF_INET | typeof AF_INET6;
  readonly port: number;
  readonly addr: Buffer; // 4 or 16 bytes
}

export const DEFAULT_SOCKET_BUFFER = 4 * 1024 * 1024;

export function toSocketAddress(a: ListenAddress): SocketAddress {
  const kind = isIP(a.host);
  if (kind === 0) throw new GrmError('BAD_ARGUMENT', `listen host must be an IP address, got '${a.host}'`);
  if (a.family !== undefined && a.family !== kind) throw new GrmError('BAD_ARGUMENT', `host ${a.host} is not IPv${a.family}`);
  if (!Number.isInteger(a.port) || a.port < 1 || a.port > 65535) throw new GrmError('BAD_ARGUMENT', `bad port ${a.port}`);
  if (kind === 4) return { family: AF_INET, port: a.port, addr: Buffer.from(a.host.split('.').map(Number)) };
  return { family: AF_INET6, port: a.port, addr: ipAddressBytes(a.host) };
}

export function formatAddress(a: SocketAddress): string {
  if (a.family === AF_INET) return `${[...a.addr.subarray(0, 4)].join('.')}:${a.port}`;
  const words: string[] = [];
  for (let i = 0; i < 16; i += 2) words.push(a.addr.readUInt16BE(i).toString(16));
  return `[${words.join(':').replace(/(^|:)0(:0)+(:|$)/, '::')}]:${a.port}`;
}

function sockaddr(a: SocketAddress): Buffer {
  return sockaddrBytes(a.family, a.port, a.addr);
}

function setInt(fd: number, level: number, name: number, value: number, what: string): void {
  const v = Buffer.alloc(4);
  v.writeInt32LE(value);
  checkLibc(c.setsockopt(fd, level, name, v, 4) as number, `setsockopt(${what})`);
}

function getRaw(fd: number, level: number, name: number, size: number, what: string): Buffer {
  const v = Buffer.alloc(size);
  const len = [size];
  checkLibc(c.getsockopt(fd, level, name, v, len) as number, `getsockopt(${what})`);
  return v;
}

/** A non-blocking, close-on-exec UDP socket with SO_REUSEPORT and large buffers, bound to addr. */
export function createReuseportSocket(addr: SocketAddress, bufferBytes = DEFAULT_SOCKET_BUFFER): number {
  const fd = checkLibc(c.socket(addr.family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) as number, 'socket');
  try {
    setInt(fd, SOL_SOCKET, SO_REUSEPORT, 1, 'SO_REUSEPORT');
    if (addr.family === AF_INET6) setInt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1, 'IPV6_V6ONLY');
    setBuffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, bufferBytes, 'SO_RCVBUF');
    setBuffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, bufferBytes, 'SO_SNDBUF');
    const sa = sockaddr(addr);
    checkLibc(c.bind(fd, sa, sa.length) as number, `bind ${formatAddress(addr)}`);
    return fd;
  } catch (err) {
    c.close(fd);
    throw err;
  }
}

/** The FORCE variant passes net.core.[rw]mem_max when privileged; plain option otherwise. */
function setBuffer(fd: number, force: number, plain: number, bytes: number, what: string): void {
  const v = Buffer.alloc(4);
  v.writeInt32LE(bytes);
  if ((c.setsockopt(fd, SOL_SOCKET, force, v, 4) as number) === 0) return;
  setInt(fd, SOL_SOCKET, plain, bytes, what);
}

/** The address a socket is bound to. */
export function boundAddress(fd: number): SocketAddress {
  const sa = Buffer.alloc(28);
  const len = [28];
  checkLibc(c.getsockname(fd, sa, len) as number, 'getsockname');
  const family = sa.readUInt16LE(0);
  const port = sa.readUInt16BE(2);
  if (family === AF_INET) return { family, port, addr: Buffer.from(sa.subarray(4, 8)) };
  if (family === AF_INET6) return { family, port, addr: Buffer.from(sa.subarray(8, 24)) };
  throw new GrmError('BAD_ARGUMENT', `fd ${fd} is not an IPv4/IPv6 socket (family ${family})`);
}

/** Checks that fd is a UDP socket with SO_REUSEPORT bound to addr (for adopting given fds). */
export function checkAdoptable(fd: number, addr: SocketAddress): void {
  const type = getRaw(fd, SOL_SOCKET, SO_TYPE, 4, 'SO_TYPE').readInt32LE();
  if (type !== SOCK_DGRAM) throw new GrmError('BAD_ARGUMENT', `fd ${fd} is not a datagram socket`);
  if (getRaw(fd, SOL_SOCKET, SO_REUSEPORT, 4, 'SO_REUSEPORT').readInt32LE() !== 1) {
    throw new GrmError('BAD_ARGUMENT', `fd ${fd} does not have SO_REUSEPORT set`);
  }
  const b = boundAddress(fd);
  if (b.family !== addr.family || b.port !== addr.port || !b.addr.equals(addr.addr)) {
    throw new GrmError('BAD_ARGUMENT', `fd ${fd} is bound to ${formatAddress(b)}, not ${formatAddress(addr)}`);
  }
}

/** SO_COOKIE: the id bpf_get_socket_cookie() sees and a grm_socks lookup returns. */
export function socketCookie(fd: number): bigint {
  return getRaw(fd, SOL_SOCKET, SO_COOKIE, 8, 'SO_COOKIE').readBigUInt64LE();
}

/** Attaches the steering program to the socket's whole reuseport group (replacing any other). */
export function attachReuseportProgram(fd: number, progFd: number): void {
  const v = Buffer.alloc(4);
  v.writeInt32LE(progFd);
  if ((c.setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, v, 4) as number) < 0) {
    const e = errno();
    throw new GrmError(
      e === EPERM ? 'PERMISSION' : 'UNSUPPORTED',
      `SO_ATTACH_REUSEPORT_EBPF: ${errnoText(e)}${e === EPERM ? ': needs root or CAP_NET_ADMIN' : ': kernel lacks reuseport BPF?'}`,
      e,
    );
  }
}

/** Detaches whatever program the socket's reuseport group has. */
export function detachReuseportProgram(fd: number): void {
  const v = Buffer.alloc(4);
  checkLibc(c.setsockopt(fd, SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, v, 4) as number, 'SO_DETACH_REUSEPORT_BPF');
}

export function closeFd(fd: number): void {
  c.close(fd);
}
