/**
 * Sends a burst of QUIC packets with one sendmmsg(2) call. dgram.send costs ~11 µs of CPU per
 * datagram (JS, libuv, a callback each); quiche writes its packets straight into the slots of a
 * preallocated buffer here, and one FFI call hands them all to the kernel.
 *
 * With UDP GSO (UDP_SEGMENT, Linux ≥ 4.18) a run of packets to one peer travels as ONE entry: the
 * kernel (or the NIC) cuts it into datagrams of the segment size, the last one may be shorter. A
 * connection's flush is such a run (quiche fills every packet to the peer's max payload until the
 * data runs out), and one entry costs the stack one traversal instead of one per packet
 * (bench/send-path.ts: ~1.1 µs → ~0.35 µs per 1350-byte packet on loopback).
 *
 * An entry's packets stay in their own slots: its iovecs are consecutive, one per packet, and the
 * kernel joins them. Layout (x86-64 / aarch64 Linux): struct mmsghdr { struct msghdr (56 B);
 * unsigned msg_len; pad } = 64 B; struct iovec = 16 B; the destination sockaddr_in/in6 sits in a
 * 28-byte slot; one cmsghdr with a u16 (CMSG_SPACE(2) = 24 B) per entry.
 */
import net from 'node:net';
import koffi from 'koffi';
import type { HostPort } from './address.js';

import { AF_INET, AF_INET6, EAGAIN, EINTR, EIO, ENOBUFS, SOL_UDP, UDP_SEGMENT, libc } from '../../sys/libc.js';

const MMSGHDR_SIZE = 64;
const IOVEC_SIZE = 16;
const SOCKADDR_SLOT = 28;
/** CMSG_SPACE(sizeof(uint16_t)) and CMSG_LEN(sizeof(uint16_t)) on 64-bit Linux. */
const CMSG_SPACE_U16 = 24;
const CMSG_LEN_U16 = 18;

/** UDP_MAX_SEGMENTS (include/linux/udp.h): the kernel refuses a GSO send of more segments. */
export const GSO_MAX_SEGMENTS = 64;
/** One GSO send is one UDP datagram to the stack: at most 0xffff − 20 (IPv4) − 8 (UDP) bytes of payload. */
export const GSO_MAX_BYTES = 65_507;

const c_sendmmsg = libc.sendmmsg;
const c_sendto = libc.sendto;
const c_inet_pton = libc.inet_pton;

/** `auto`: GSO where the kernel supports it; `off`: one datagram per entry. */
export type GsoMode = 'auto' | 'off';

export interface BatchSenderCounters {
  /** Packets the kernel took. */
  packets: number;
  syscalls: number;
  /** Packets the kernel refused (send buffer full): quiche sees them as lost and retransmits. */
  dropped: number;
  /** Entries sent with UDP_SEGMENT (two packets or more), and the packets they carried. */
  gsoSends: number;
  gsoPackets: number;
  /** GSO entries the kernel refused and that were sent again packet by packet. */
  gsoFallbacks: number;
}

export interface BatchSenderOptions {
  /** Packets per batch (each a slot of `slotSize` bytes); the batch is sent when full. */
  readonly slots?: number;
  readonly gso?: GsoMode;
  /**
   * The kernel refused a GSO send (errno): its packets were sent one by one. `disabled`: the
   * failure is the socket's, not the destination's (EIO: no checksum offload on the way out), so
   * GSO is off for this sender from now on.
   */
  readonly onGsoFailure?: (errno: number, disabled: boolean) => void;
}

/** True when the kernel knows UDP_SEGMENT (asked once per socket: getsockopt, no side effect). */
export function udpGsoSupported(fd: number): boolean {
  const value = Buffer.alloc(4);
  return (libc.getsockopt(fd, SOL_UDP, UDP_SEGMENT, value, [4]) as number) === 0;
}

export class BatchSender {
  readonly counters: BatchSenderCounters = { packets: 0, syscalls: 0, dropped: 0, gsoSends: 0, gsoPackets: 0, gsoFallbacks: 0 };
  readonly slots: number;
  private readonly data: Buffer;
  /** slot i as a view of `data`, made once (a subarray per packet is an allocation per packet). */
  private readonly views: Buffer[];
  private readonly headers: Buffer;
  private readonly iovecs: Buffer;
  private readonly addrs: Buffer;
  private readonly cmsgs: Buffer;
  /** Address of iovec i, for an entry that starts at packet i. */
  private readonly iovecAt: bigint[];
  private gso: boolean;
  private readonly onGsoFailure: ((errno: number, disabled: boolean) => void) | undefined;
  /** Packets committed. */
  private count = 0;
  /** Entries (mmsghdrs) in use; the last one is open for more segments. */
  private entries = 0;
  /** Per entry: its first packet and how many packets it carries. */
  private readonly entryFirst: Uint16Array;
  private readonly entrySegments: Uint16Array;
  /** The open entry: its peer's sockaddr, segment size, bytes, and whether a shorter (last) segment closed it. */
  private entryPeer: Buffer | undefined;
  private entrySegmentSize = 0;
  private entryBytes = 0;
  private entryClosed = true;
  /** sockaddr bytes by "host|port": peers are few and long-lived, parsing each packet is not. */
  private readonly sockaddrs = new Map<string, Buffer>();
  /** The last peer looked up: a flush sends to one peer many times in a row. */
  private lastHost = '';
  private lastPort = -1;
  private lastSockaddr: Buffer | undefined;

  constructor(
    private readonly fd: number,
    readonly slotSize: number,
    opts: BatchSenderOptions = {},
  ) {
    const slots = (this.slots = opts.slots ?? 64);
    this.gso = (opts.gso ?? 'auto') === 'auto' && udpGsoSupported(fd);
    this.onGsoFailure = opts.onGsoFailure;
    // allocUnsafeSlow: own, never-moving memory whose addresses go into the kernel structs.
    this.data = Buffer.allocUnsafeSlow(slots * slotSize);
    this.views = Array.from({ length: slots }, (_, i) => this.data.subarray(i * slotSize, (i + 1) * slotSize));
    this.headers = Buffer.alloc(slots * MMSGHDR_SIZE);
    this.iovecs = Buffer.alloc(slots * IOVEC_SIZE);
    this.addrs = Buffer.alloc(slots * SOCKADDR_SLOT);
    this.cmsgs = Buffer.alloc(slots * CMSG_SPACE_U16);
    this.entryFirst = new Uint16Array(slots);
    this.entrySegments = new Uint16Array(slots);
    const dataAt = koffi.address(this.data);
    const iovAt = koffi.address(this.iovecs);
    const addrAt = koffi.address(this.addrs);
    const cmsgAt = koffi.address(this.cmsgs);
    this.iovecAt = Array.from({ length: slots }, (_, i) => iovAt + BigInt(i * IOVEC_SIZE));
    for (let i = 0; i < slots; i++) {
      this.iovecs.writeBigUInt64LE(dataAt + BigInt(i * slotSize), i * IOVEC_SIZE);
      const h = i * MMSGHDR_SIZE;
      // Entry i's fixed parts: its sockaddr slot and its cmsg (read by the kernel only while
      // msg_controllen is non-zero, i.e. while the entry carries two packets or more).
      this.headers.writeBigUInt64LE(addrAt + BigInt(i * SOCKADDR_SLOT), h); // msg_name
      this.headers.writeBigUInt64LE(cmsgAt + BigInt(i * CMSG_SPACE_U16), h + 32); // msg_control
      const c = i * CMSG_SPACE_U16;
      this.cmsgs.writeBigUInt64LE(BigInt(CMSG_LEN_U16), c); // cmsg_len
      this.cmsgs.writeInt32LE(SOL_UDP, c + 8);
      this.cmsgs.writeInt32LE(UDP_SEGMENT, c + 12);
    }
  }

  /** Whether runs of packets to one peer go out as GSO entries (false once the kernel refused it for the socket). */
  get gsoEnabled(): boolean {
    return this.gso;
  }

  /** Where the next packet goes (quiche's send buffer), or undefined when the batch is full. */
  slot(): Buffer | undefined {
    return this.views[this.count];
  }

  /** The packet just written into `slot()` is `len` bytes long and goes to `to`. */
  commit(len: number, to: HostPort): void {
    const sa = this.sockaddr(to); // may throw: nothing is committed then
    const i = this.count++;
    // iov_len is a size_t: the high half stays 0.
    this.iovecs.writeUInt32LE(len, i * IOVEC_SIZE + 8);
    if (this.joinsOpenEntry(sa, len)) {
      const e = this.entries - 1;
      const h = e * MMSGHDR_SIZE;
      const segments = ++this.entrySegments[e]!;
      this.entryBytes += len;
      if (len < this.entrySegmentSize) this.entryClosed = true;
      this.headers.writeUInt32LE(segments, h + 24); // msg_iovlen (size_t, high half 0)
      if (segments === 2) {
        this.cmsgs.writeUInt16LE(this.entrySegmentSize, e * CMSG_SPACE_U16 + 16);
        this.headers.writeUInt32LE(CMSG_SPACE_U16, h + 40); // msg_controllen
      }
      return;
    }
    const e = this.entries++;
    const h = e * MMSGHDR_SIZE;
    sa.copy(this.addrs, e * SOCKADDR_SLOT);
    this.headers.writeUInt32LE(sa.length, h + 8); // msg_namelen
    this.headers.writeBigUInt64LE(this.iovecAt[i]!, h + 16); // msg_iov
    this.headers.writeUInt32LE(1, h + 24); // msg_iovlen
    this.headers.writeUInt32LE(0, h + 40); // msg_controllen: no GSO for a single packet
    this.entryFirst[e] = i;
    this.entrySegments[e] = 1;
    this.entryPeer = sa;
    this.entrySegmentSize = len;
    this.entryBytes = len;
    this.entryClosed = false;
  }

  /**
   * A packet joins the open entry when it goes to the same peer, is no longer than the entry's
   * segment size (a shorter one is the entry's last), and the kernel's limits leave room.
   */
  private joinsOpenEntry(sa: Buffer, len: number): boolean {
    return (
      this.gso &&
      !this.entryClosed &&
      sa === this.entryPeer &&
      len <= this.entrySegmentSize &&
      this.entrySegments[this.entries - 1]! < GSO_MAX_SEGMENTS &&
      this.entryBytes + len <= GSO_MAX_BYTES
    );
  }

  /** Packets committed and not yet flushed. */
  get pending(): number {
    return this.count;
  }

  /** Sends every committed packet. */
  flush(): void {
    const entries = this.entries;
    let sent = 0;
    while (sent < entries) {
      const n = c_sendmmsg(this.fd, sent === 0 ? this.headers : this.headers.subarray(sent * MMSGHDR_SIZE), entries - sent, 0) as number;
      this.counters.syscalls++;
      if (n > 0) {
        for (let e = sent; e < sent + n; e++) this.countSent(e);
        sent += n;
        continue;
      }
      const err = koffi.errno();
      if (err === EINTR) continue;
      const segments = this.entrySegments[sent]!;
      if (segments > 1 && err !== EAGAIN && err !== ENOBUFS) {
        // Refused as a GSO send (no checksum offload, segment over the route's MTU, …): the same
        // packets as plain datagrams may pass.
        this.sendSingly(sent, err);
      } else {
        // EAGAIN (send buffer full) or an error for this destination: skip the entry; QUIC loss
        // recovery retransmits what it carried.
        this.counters.dropped += segments;
      }
      sent++;
    }
    this.count = 0;
    this.entries = 0;
    this.entryClosed = true;
    this.entryPeer = undefined;
  }

  private countSent(e: number): void {
    const segments = this.entrySegments[e]!;
    this.counters.packets += segments;
    if (segments > 1) {
      this.counters.gsoSends++;
      this.counters.gsoPackets += segments;
    }
  }

  /** Sends entry `e`'s packets one datagram each, after the kernel refused them as one GSO send. */
  private sendSingly(e: number, err: number): void {
    const disabled = err === EIO;
    if (disabled) this.gso = false;
    this.counters.gsoFallbacks++;
    this.onGsoFailure?.(err, disabled);
    const first = this.entryFirst[e]!;
    const namelen = this.headers.readUInt32LE(e * MMSGHDR_SIZE + 8);
    const name = this.addrs.subarray(e * SOCKADDR_SLOT, e * SOCKADDR_SLOT + namelen);
    for (let i = first; i < first + this.entrySegments[e]!; i++) {
      const len = this.iovecs.readUInt32LE(i * IOVEC_SIZE + 8);
      let r: number;
      do {
        r = c_sendto(this.fd, this.views[i]!, len, 0, name, namelen) as number;
        this.counters.syscalls++;
      } while (r < 0 && koffi.errno() === EINTR);
      if (r < 0) this.counters.dropped++;
      else this.counters.packets++;
    }
  }

  private sockaddr(to: HostPort): Buffer {
    if (to.port === this.lastPort && to.host === this.lastHost) return this.lastSockaddr!;
    const key = `${to.host}|${to.port}`;
    let sa = this.sockaddrs.get(key);
    if (!sa) {
      const v6 = net.isIPv6(to.host);
      sa = Buffer.alloc(v6 ? 28 : 16);
      sa.writeUInt16LE(v6 ? AF_INET6 : AF_INET, 0);
      sa.writeUInt16BE(to.port, 2);
      if ((c_inet_pton(v6 ? AF_INET6 : AF_INET, to.host, sa.subarray(v6 ? 8 : 4)) as number) !== 1) {
        throw new Error(`not an IP address: ${to.host}`);
      }
      if (this.sockaddrs.size > 4096) this.sockaddrs.clear();
      this.sockaddrs.set(key, sa);
    }
    this.lastHost = to.host;
    this.lastPort = to.port;
    this.lastSockaddr = sa;
    return sa;
  }
}
