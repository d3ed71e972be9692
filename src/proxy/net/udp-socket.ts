/**
 * UDP sockets for the QUIC endpoint. Node's dgram ignores `reusePort` on Node 20, so the socket is
 * created through libc (koffi) with SO_REUSEPORT and large buffers, then handed to dgram by fd.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import koffi from 'koffi';

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_DGRAM = 2;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_SNDBUF = 7;
const SO_RCVBUF = 8;
const SO_REUSEPORT = 15;
const SO_SNDBUFFORCE = 32;
const SO_RCVBUFFORCE = 33;
const IPPROTO_IPV6 = 41;
const IPV6_V6ONLY = 26;

const libc = koffi.load('libc.so.6');
const c_socket = libc.func('int socket(int domain, int type, int protocol)');
const c_setsockopt = libc.func('int setsockopt(int fd, int level, int name, const void *val, uint32_t len)');
const c_bind = libc.func('int bind(int fd, const void *addr, uint32_t len)');
const c_close = libc.func('int close(int fd)');
const c_strerror = libc.func('const char *strerror(int errnum)');
const c_inet_pton = libc.func('int inet_pton(int af, const char *src, void *dst)');

export class SocketError extends Error {
  constructor(
    readonly op: string,
    readonly errno: number,
    readonly address: string,
  ) {
    super(`${op} ${address}: ${c_strerror(errno) as string} (errno ${errno})`);
    this.name = 'SocketError';
  }
}

export interface UdpAddress {
  readonly host: string;
  readonly port: number;
}

/** Default kernel buffers drop QUIC bursts (DESIGN.md §3): ask for 4 MiB each way. */
export const SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;

export function formatAddress(addr: UdpAddress): string {
  return net.isIPv6(addr.host) ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`;
}

function sockaddr(addr: UdpAddress): Buffer {
  if (net.isIPv4(addr.host)) {
    const sa = Buffer.alloc(16);
    sa.writeUInt16LE(AF_INET, 0);
    sa.writeUInt16BE(addr.port, 2);
    ipBytes(addr.host).copy(sa, 4);
    return sa;
  }
  if (net.isIPv6(addr.host)) {
    const sa = Buffer.alloc(28);
    sa.writeUInt16LE(AF_INET6, 0);
    sa.writeUInt16BE(addr.port, 2);
    ipBytes(addr.host).copy(sa, 8);
    return sa;
  }
  throw new Error(`not an IP address: ${addr.host}`);
}

/** Network-order address bytes of an IP literal, parsed by libc (4 or 16 bytes). */
export function ipBytes(host: string): Buffer {
  const v6 = net.isIPv6(host);
  const out = Buffer.alloc(v6 ? 16 : 4);
  if ((c_inet_pton(v6 ? AF_INET6 : AF_INET, host, out) as number) !== 1) throw new Error(`not an IP address: ${host}`);
  return out;
}

function setIntOption(fd: number, level: number, name: number, value: number): number {
  const v = Buffer.alloc(4);
  v.writeInt32LE(value);
  return c_setsockopt(fd, level, name, v, 4) as number;
}

/**
 * Creates a non-blocking UDP socket bound to `addr` with SO_REUSEPORT and 4 MiB buffers.
 * Returns the raw fd (the caller owns it: hand it to `openDgramSocket` or to a worker).
 */
export function createReusePortSocket(addr: UdpAddress): number {
  const v6 = net.isIPv6(addr.host);
  const where = formatAddress(addr);
  const fd = c_socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) as number;
  if (fd < 0) throw new SocketError('socket', koffi.errno(), where);
  const fail = (op: string): never => {
    const errno = koffi.errno();
    c_close(fd);
    throw new SocketError(op, errno, where);
  };
  if (setIntOption(fd, SOL_SOCKET, SO_REUSEPORT, 1) < 0) fail('setsockopt(SO_REUSEPORT)');
  if (v6 && setIntOption(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1) < 0) fail('setsockopt(IPV6_V6ONLY)');
  // The FORCE variants exceed net.core.[rw]mem_max as root; fall back to the capped ones otherwise.
  if (setIntOption(fd, SOL_SOCKET, SO_RCVBUFFORCE, SOCKET_BUFFER_BYTES) < 0) setIntOption(fd, SOL_SOCKET, SO_RCVBUF, SOCKET_BUFFER_BYTES);
  if (setIntOption(fd, SOL_SOCKET, SO_SNDBUFFORCE, SOCKET_BUFFER_BYTES) < 0) setIntOption(fd, SOL_SOCKET, SO_SNDBUF, SOCKET_BUFFER_BYTES);
  const sa = sockaddr(addr);
  if ((c_bind(fd, sa, sa.length) as number) < 0) fail('bind');
  return fd;
}

/** Wraps an already bound UDP fd in a dgram socket (normal 'message' events, async sends). */
export function openDgramSocket(fd: number, family: 4 | 6): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4' });
    sock.once('error', reject);
    sock.bind({ fd }, () => {
      sock.off('error', reject);
      resolve(sock);
    });
  });
}

export function closeFd(fd: number): void {
  c_close(fd);
}
