/**
 * Sends a burst of QUIC packets with one sendmmsg(2) call. dgram.send costs ~11 µs of CPU per
 * datagram (JS, libuv, a callback each); quiche writes its packets straight into the slots of a
 * preallocated buffer here, and one FFI call hands them all to the kernel.
 *
 * Layout (x86-64 / aarch64 Linux): struct mmsghdr { struct msghdr (56 B); unsigned msg_len; pad }
 * = 64 B; struct iovec = 16 B; the destination sockaddr_in/in6 sits in a 28-byte slot.
 */
import net from 'node:net';
import koffi from 'koffi';
import type { HostPort } from './address.js';

import { AF_INET, AF_INET6, EINTR, libc } from '../../sys/libc.js';

const MMSGHDR_SIZE = 64;
const IOVEC_SIZE = 16;
const SOCKADDR_SLOT = 28;

const c_sendmmsg = libc.sendmmsg;
const c_inet_pton = libc.inet_pton;

export interface BatchSenderCounters {
  packets: number;
  syscalls: number;
  /** Packets the kernel refused (send buffer full): quiche sees them as lost and retransmits. */
  dropped: number;
}

export class BatchSender {
  readonly counters: BatchSenderCounters = { packets: 0, syscalls: 0, dropped: 0 };
  private readonly data: Buffer;
  private readonly headers: Buffer;
  private readonly iovecs: Buffer;
  private readonly addrs: Buffer;
  private count = 0;
  /** sockaddr bytes by "host|port": peers are few and long-lived, parsing each packet is not. */
  private readonly sockaddrs = new Map<string, Buffer>();

  constructor(
    private readonly fd: number,
    readonly slotSize: number,
    readonly slots = 64,
  ) {
    // allocUnsafeSlow: own, never-moving memory whose addresses go into the kernel structs.
    this.data = Buffer.allocUnsafeSlow(slots * slotSize);
    this.headers = Buffer.alloc(slots * MMSGHDR_SIZE);
    this.iovecs = Buffer.alloc(slots * IOVEC_SIZE);
    this.addrs = Buffer.alloc(slots * SOCKADDR_SLOT);
    const dataAt = koffi.address(this.data);
    const iovAt = koffi.address(this.iovecs);
    const addrAt = koffi.address(this.addrs);
    for (let i = 0; i < slots; i++) {
      this.iovecs.writeBigUInt64LE(dataAt + BigInt(i * slotSize), i * IOVEC_SIZE);
      const h = i * MMSGHDR_SIZE;
      this.headers.writeBigUInt64LE(addrAt + BigInt(i * SOCKADDR_SLOT), h); // msg_name
      this.headers.writeBigUInt64LE(iovAt + BigInt(i * IOVEC_SIZE), h + 16); // msg_iov
      this.headers.writeBigUInt64LE(1n, h + 24); // msg_iovlen
    }
  }

  /** Where the next packet goes (quiche's send buffer), or undefined when the batch is full. */
  slot(): Buffer | undefined {
    if (this.count === this.slots) return undefined;
    const at = this.count * this.slotSize;
    return this.data.subarray(at, at + this.slotSize);
  }

  /** The packet just written into `slot()` is `len` bytes long and goes to `to`. */
  commit(len: number, to: HostPort): void {
    const sa = this.sockaddr(to); // may throw: nothing is committed then
    const i = this.count++;
    this.iovecs.writeBigUInt64LE(BigInt(len), i * IOVEC_SIZE + 8);
    sa.copy(this.addrs, i * SOCKADDR_SLOT);
    this.headers.writeUInt32LE(sa.length, i * MMSGHDR_SIZE + 8); // msg_namelen
  }

  get pending(): number {
    return this.count;
  }

  /** Sends every committed packet. */
  flush(): void {
    let sent = 0;
    while (sent < this.count) {
      const n = c_sendmmsg(this.fd, this.headers.subarray(sent * MMSGHDR_SIZE), this.count - sent, 0) as number;
      this.counters.syscalls++;
      if (n < 0) {
        if (koffi.errno() === EINTR) continue;
        // EAGAIN (send buffer full) or an error for this destination: skip the packet; QUIC
        // loss recovery retransmits what it carried.
        this.counters.dropped++;
        sent++;
        continue;
      }
      sent += n;
      this.counters.packets += n;
    }
    this.count = 0;
  }

  private sockaddr(to: HostPort): Buffer {
    const key = `${to.host}|${to.port}`;
    let sa = this.sockaddrs.get(key);
    if (sa) return sa;
    const v6 = net.isIPv6(to.host);
    sa = Buffer.alloc(v6 ? 28 : 16);
    sa.writeUInt16LE(v6 ? AF_INET6 : AF_INET, 0);
    sa.writeUInt16BE(to.port, 2);
    if ((c_inet_pton(v6 ? AF_INET6 : AF_INET, to.host, sa.subarray(v6 ? 8 : 4)) as number) !== 1) {
      throw new Error(`not an IP address: ${to.host}`);
    }
    if (this.sockaddrs.size > 4096) this.sockaddrs.clear();
    this.sockaddrs.set(key, sa);
    return sa;
  }
}
