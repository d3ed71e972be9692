/**
 * IP addresses in the kernel's form: address bytes and `struct sockaddr_in` / `sockaddr_in6`, for
 * the libc socket calls (grm's reuseport UDP sockets, the master's TCP listening sockets).
 */
import { isIP } from 'node:net';
import { AF_INET, AF_INET6 } from './libc.js';

/** The 4 or 16 bytes (network order) of a literal IPv4 or IPv6 address; throws for anything else. */
export function ipAddressBytes(host: string): Buffer {
  const kind = isIP(host);
  if (kind === 4) return Buffer.from(host.split('.').map(Number));
  if (kind !== 6) throw new Error(`not an IP address: '${host}'`);
  let text = host;
  const out = Buffer.alloc(16);
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = v4[1]!.split('.').map(Number);
    text = text.slice(0, -v4[1]!.length) + `${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const words = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  words.forEach((w, i) => out.writeUInt16BE(parseInt(w, 16), i * 2));
  return out;
}

/** `struct sockaddr_in` (16 bytes) or `struct sockaddr_in6` (28 bytes) for bind() and connect(). */
export function sockaddrBytes(family: typeof AF_INET | typeof AF_INET6, port: number, addr: Buffer): Buffer {
  if (family === AF_INET) {
    const b = Buffer.alloc(16);
    b.writeUInt16LE(AF_INET, 0);
    b.writeUInt16BE(port, 2);
    addr.copy(b, 4, 0, 4);
    return b;
  }
  const b = Buffer.alloc(28);
  b.writeUInt16LE(AF_INET6, 0);
  b.writeUInt16BE(port, 2);
  addr.copy(b, 8, 0, 16);
  return b;
}
