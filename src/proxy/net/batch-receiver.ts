/**
 * Reads the datagrams queued on a UDP socket in batches with recvmmsg(2). Node's dgram costs
 * ~10 µs of CPU per datagram (a syscall, a 64 KiB allocation, a JS callback with its scope and
 * microtask checkpoint, an rinfo object); one recvmmsg takes up to 64 into preallocated slots
 * for ~1 µs each (bench/send-path.ts receive).
 *
 * Readiness still comes from dgram: Node has no way to watch an fd, and a threadpool thread
 * blocked in epoll_wait would add a hop per wakeup. The endpoint drains the queue from inside the
 * 'message' callback of the datagram dgram just read; libuv's next read then finds the queue empty
 * and stops. Datagrams keep their arrival order (dgram's first, then the batch).
 *
 * A datagram read here is a view into a slot that the next drain overwrites: whoever keeps one
 * past the callback copies it. A datagram longer than a slot arrives cut (MSG_TRUNC): it is
 * counted, not delivered (slots of 64 KiB, as the endpoint's, hold any UDP datagram).
 *
 * Layout (x86-64 / aarch64 Linux): struct mmsghdr = 64 B (msghdr 56 B, msg_len at 56); iovec 16 B;
 * each source address lands in a 28-byte sockaddr_in/in6 slot.
 */
import koffi from 'koffi';
import type { HostPort } from './address.js';

import { AF_INET, AF_INET6, EINTR, MSG_DONTWAIT, MSG_TRUNC, libc } from '../../sys/libc.js';

const MMSGHDR_SIZE = 64;
const IOVEC_SIZE = 16;
const SOCKADDR_SLOT = 28;
const INET6_ADDRSTRLEN = 46;
/**
 * Datagrams read in batches per event-loop turn, on top of dgram's own 32 per readiness event:
 * past it the turn ends (timers, upstream sockets) and dgram reads on the next one.
 */
const MAX_BATCHED_PER_TURN = 256;
/** After a batch read found the queue empty, this many datagrams come through dgram alone before the next try. */
const IDLE_DRAIN_SKIPS = 7;

const c_recvmmsg = libc.recvmmsg;
const c_inet_ntop = libc.inet_ntop;

export interface BatchReceiverCounters {
  /** recvmmsg calls, and datagrams they returned. */
  syscalls: number;
  datagrams: number;
  /** Datagrams longer than a slot: cut by the kernel, not delivered. */
  truncated: number;
}

export class BatchReceiver {
  readonly counters: BatchReceiverCounters = { syscalls: 0, datagrams: 0, truncated: 0 };
  private readonly data: Buffer;
  private readonly views: Buffer[];
  private readonly headers: Buffer;
  private readonly iovecs: Buffer;
  private readonly addrs: Buffer;
  private readonly text = Buffer.alloc(INET6_ADDRSTRLEN);
  /** Batched datagrams this turn; datagrams dgram delivers alone before the next batch read. */
  private batchedThisTurn = 0;
  private turnResetScheduled = false;
  private skipDrains = 0;
  /** Source addresses already turned into {host, port}: peers are few and send many datagrams. */
  private readonly v4Peers = new Map<number, HostPort>();
  private readonly v6Peers = new Map<string, HostPort>();

  constructor(
    private readonly fd: number,
    readonly slotSize: number,
    readonly slots = 64,
  ) {
    // allocUnsafeSlow: own, never-moving memory whose addresses go into the kernel structs.
    this.data = Buffer.allocUnsafeSlow(slots * slotSize);
    this.views = Array.from({ length: slots }, (_, i) => this.data.subarray(i * slotSize, (i + 1) * slotSize));
    this.headers = Buffer.alloc(slots * MMSGHDR_SIZE);
    this.iovecs = Buffer.alloc(slots * IOVEC_SIZE);
    this.addrs = Buffer.alloc(slots * SOCKADDR_SLOT);
    const dataAt = koffi.address(this.data);
    const iovAt = koffi.address(this.iovecs);
    const addrAt = koffi.address(this.addrs);
    for (let i = 0; i < slots; i++) {
      this.iovecs.writeBigUInt64LE(dataAt + BigInt(i * slotSize), i * IOVEC_SIZE);
      this.iovecs.writeBigUInt64LE(BigInt(slotSize), i * IOVEC_SIZE + 8);
      const h = i * MMSGHDR_SIZE;
      this.headers.writeBigUInt64LE(addrAt + BigInt(i * SOCKADDR_SLOT), h); // msg_name
      this.headers.writeBigUInt64LE(iovAt + BigInt(i * IOVEC_SIZE), h + 16); // msg_iov
      this.headers.writeBigUInt64LE(1n, h + 24); // msg_iovlen
    }
  }

  /**
   * Called after dgram delivered a datagram (its read was the readiness signal): reads what else is
   * queued. Bounded per turn; after an empty read the next few datagrams skip the try (a lone
   * datagram would pay a syscall for nothing).
   */
  drainAfterRead(deliver: (msg: Buffer, peer: HostPort) => void): void {
    if (this.skipDrains > 0) {
      this.skipDrains--;
      return;
    }
    const budget = MAX_BATCHED_PER_TURN - this.batchedThisTurn;
    if (budget <= 0) return;
    const n = this.drain(deliver, Math.min(this.slots, budget));
    if (n === 0) {
      this.skipDrains = IDLE_DRAIN_SKIPS;
      return;
    }
    this.batchedThisTurn += n;
    if (!this.turnResetScheduled) {
      this.turnResetScheduled = true;
      setImmediate(() => {
        this.batchedThisTurn = 0;
        this.turnResetScheduled = false;
      });
    }
  }

  /**
   * Reads up to `max` queued datagrams (never waits) and hands each to `deliver` with its source.
   * Returns how many were read (0: the queue was empty, or the socket failed).
   */
  drain(deliver: (msg: Buffer, peer: HostPort) => void, max: number = this.slots): number {
    let read = 0;
    while (read < max) {
      const want = Math.min(this.slots, max - read);
      // msg_namelen is in/out: room for either family again.
      for (let i = 0; i < want; i++) this.headers.writeUInt32LE(SOCKADDR_SLOT, i * MMSGHDR_SIZE + 8);
      const n = c_recvmmsg(this.fd, this.headers, want, MSG_DONTWAIT, null) as number;
      this.counters.syscalls++;
      if (n < 0) {
        if (koffi.errno() === EINTR) continue;
        // EAGAIN: nothing (more) queued. Anything else (a pending ICMP error surfacing, …) ends
        // this drain too; dgram's next read meets the socket as it is, as without batching.
        break;
      }
      this.counters.datagrams += n;
      for (let i = 0; i < n; i++) {
        const h = i * MMSGHDR_SIZE;
        if ((this.headers.readInt32LE(h + 48) & MSG_TRUNC) !== 0) {
          this.counters.truncated++;
          continue;
        }
        const peer = this.peer(i);
        if (peer) deliver(this.views[i]!.subarray(0, this.headers.readUInt32LE(h + 56)), peer);
      }
      read += n;
      if (n < want) break; // the queue is empty now
    }
    return read;
  }

  /** The source of datagram `i` of the last batch (undefined for a family we do not speak). */
  private peer(i: number): HostPort | undefined {
    const a = i * SOCKADDR_SLOT;
    const family = this.addrs.readUInt16LE(a);
    const port = this.addrs.readUInt16BE(a + 2);
    if (family === AF_INET) {
      const key = this.addrs.readUInt32BE(a + 4) * 65536 + port;
      let peer = this.v4Peers.get(key);
      if (!peer) {
        if (this.v4Peers.size >= 4096) this.v4Peers.clear();
        peer = { host: this.ntop(AF_INET, a + 4), port };
        this.v4Peers.set(key, peer);
      }
      return peer;
    }
    if (family === AF_INET6) {
      const key = this.addrs.toString('latin1', a + 2, a + 24);
      let peer = this.v6Peers.get(key);
      if (!peer) {
        if (this.v6Peers.size >= 4096) this.v6Peers.clear();
        peer = { host: this.ntop(AF_INET6, a + 8), port };
        this.v6Peers.set(key, peer);
      }
      return peer;
    }
    return undefined;
  }

  /** The address's text as libuv gives it to dgram (inet_ntop: no scope id, compressed IPv6). */
  private ntop(family: number, at: number): string {
    const len = family === AF_INET ? 4 : 16;
    const text = c_inet_ntop(family, this.addrs.subarray(at, at + len), this.text, INET6_ADDRSTRLEN) as string | null;
    if (text === null) throw new Error('inet_ntop failed');
    return text;
  }
}
