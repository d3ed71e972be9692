/**
 * Unix datagrams carrying file descriptors (SCM_RIGHTS), which Node cannot send or receive: one
 * message with its fds, through sendmsg(2)/recvmsg(2). Layouts for 64-bit Linux:
 * struct msghdr (56 B) { name @0, namelen @8, iov @16, iovlen @24, control @32, controllen @40,
 * flags @48 }, struct iovec (16 B), struct cmsghdr (16 B) { len @0, level @8, type @12 } + data.
 */
import koffi from 'koffi';
import { libc, SCM_RIGHTS, SOL_SOCKET } from './libc.js';

const MSGHDR = 56;
const IOVEC = 16;
const CMSGHDR = 16;
/** At most this many fds per message (systemd's SCM_MAX_FD is 253; ours send a few). */
export const MAX_FDS = 64;
const MSG_CMSG_CLOEXEC = 0x40000000;

const cmsgSpace = (n: number): number => CMSGHDR + Math.ceil((4 * n) / 8) * 8;

/** Sends `data` with `fds` to `addr` (a sockaddr, or null on a connected socket). Returns sendmsg's result. */
export function sendWithFds(fd: number, addr: Buffer | null, data: Buffer, fds: readonly number[]): number {
  if (fds.length > MAX_FDS) throw new RangeError(`at most ${MAX_FDS} fds per message`);
  const msg = Buffer.alloc(MSGHDR);
  const iov = Buffer.alloc(IOVEC);
  const body = Buffer.from(data); // own memory: its address goes into the iovec
  iov.writeBigUInt64LE(BigInt(koffi.address(body)), 0);
  iov.writeBigUInt64LE(BigInt(body.length), 8);
  if (addr) {
    msg.writeBigUInt64LE(BigInt(koffi.address(addr)), 0);
    msg.writeUInt32LE(addr.length, 8);
  }
  msg.writeBigUInt64LE(BigInt(koffi.address(iov)), 16);
  msg.writeBigUInt64LE(1n, 24);
  let control: Buffer | undefined;
  if (fds.length) {
    control = Buffer.alloc(cmsgSpace(fds.length));
    control.writeBigUInt64LE(BigInt(CMSGHDR + 4 * fds.length), 0);
    control.writeInt32LE(SOL_SOCKET, 8);
    control.writeInt32LE(SCM_RIGHTS, 12);
    fds.forEach((f, i) => control!.writeInt32LE(f, CMSGHDR + 4 * i));
    msg.writeBigUInt64LE(BigInt(koffi.address(control)), 32);
    msg.writeBigUInt64LE(BigInt(control.length), 40);
  }
  const r = libc.sendmsg(fd, msg, 0) as number;
  void [body, iov, control]; // alive until here
  return r;
}

export interface Received {
  readonly data: Buffer;
  /** Close-on-exec copies, owned by the caller. */
  readonly fds: number[];
}

/** One message of at most `maxBytes` with its fds (at most MAX_FDS), or null (errno set) when none. */
export function recvWithFds(fd: number, maxBytes: number, flags: number): Received | null {
  const msg = Buffer.alloc(MSGHDR);
  const iov = Buffer.alloc(IOVEC);
  const body = Buffer.alloc(maxBytes);
  const control = Buffer.alloc(cmsgSpace(MAX_FDS));
  iov.writeBigUInt64LE(BigInt(koffi.address(body)), 0);
  iov.writeBigUInt64LE(BigInt(maxBytes), 8);
  msg.writeBigUInt64LE(BigInt(koffi.address(iov)), 16);
  msg.writeBigUInt64LE(1n, 24);
  msg.writeBigUInt64LE(BigInt(koffi.address(control)), 32);
  msg.writeBigUInt64LE(BigInt(control.length), 40);
  const n = libc.recvmsg(fd, msg, flags | MSG_CMSG_CLOEXEC) as number;
  if (n < 0) return null;
  const fds: number[] = [];
  const controlLen = Number(msg.readBigUInt64LE(40));
  for (let at = 0; at + CMSGHDR <= controlLen; ) {
    const len = Number(control.readBigUInt64LE(at));
    if (len < CMSGHDR) break;
    if (control.readInt32LE(at + 8) === SOL_SOCKET && control.readInt32LE(at + 12) === SCM_RIGHTS) {
      for (let p = at + CMSGHDR; p + 4 <= at + len; p += 4) fds.push(control.readInt32LE(p));
    }
    at += Math.ceil(len / 8) * 8;
  }
  return { data: body.subarray(0, n), fds };
}
