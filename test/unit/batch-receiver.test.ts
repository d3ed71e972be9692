/**
 * BatchReceiver against the real kernel on loopback: the datagrams queued on a socket come out of
 * a drain with their bytes, order and sources as dgram would give them ({host, port}, IPv4 and
 * IPv6 text as libuv writes it), bounded by `max`, and a datagram longer than a slot is counted,
 * not delivered.
 */
import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { BatchReceiver } from '../../src/proxy/net/batch-receiver.js';
import type { HostPort } from '../../src/proxy/net/address.js';
import { AF_INET, AF_INET6, IPPROTO_IPV6, IPV6_V6ONLY, SOCK_DGRAM, SOCK_NONBLOCK, SOL_SOCKET, SO_RCVBUFFORCE, libc } from '../../src/sys/libc.js';

const cleanup: Array<() => void> = [];
afterEach(() => {
  for (const f of cleanup.splice(0)) f();
});

/** A bound, non-blocking UDP socket read only through BatchReceiver; its port. */
function receivingSocket(family: 4 | 6): { fd: number; port: number } {
  const fd = libc.socket(family === 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK, 0) as number;
  cleanup.push(() => libc.close(fd));
  const sa = Buffer.alloc(family === 4 ? 16 : 28);
  sa.writeUInt16LE(family === 4 ? AF_INET : AF_INET6, 0);
  if (family === 4) sa.writeUInt32BE(0x7f000001, 4);
  else {
    const on = Buffer.alloc(4);
    on.writeInt32LE(1);
    libc.setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, on, 4);
    sa[23] = 1; // ::1
  }
  // Room for a few hundred small datagrams (each costs the queue ~1 KiB): SO_RCVBUFFORCE, as root.
  const size = Buffer.alloc(4);
  size.writeInt32LE(4 * 1024 * 1024);
  expect(libc.setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, size, 4)).toBe(0);
  expect(libc.bind(fd, sa, sa.length)).toBe(0);
  const len = [sa.length];
  libc.getsockname(fd, sa, len);
  return { fd, port: sa.readUInt16BE(2) };
}

/** A dgram sender; resolves once every datagram was handed to the kernel (loopback: queued at the receiver). */
async function sender(family: 4 | 6): Promise<{ send(port: number, msgs: Buffer[]): Promise<void>; address: HostPort }> {
  const sock = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
  const host = family === 4 ? '127.0.0.1' : '::1';
  await new Promise<void>((r) => sock.bind(0, host, r));
  cleanup.push(() => sock.close());
  return {
    address: { host, port: sock.address().port },
    send: async (port, msgs) => {
      for (const m of msgs) await new Promise<void>((resolve, reject) => sock.send(m, port, host, (err) => (err ? reject(err) : resolve())));
    },
  };
}

function datagrams(n: number, seed: number, size = (i: number) => 20 + ((i * 97) % 1300)): Buffer[] {
  return Array.from({ length: n }, (_, i) => Buffer.alloc(size(i), (seed + i) & 0xff));
}

describe('BatchReceiver', () => {
  it('reads what is queued in one drain: bytes, order and sources, from two peers', async () => {
    const rx = receivingSocket(4);
    const a = await sender(4);
    const b = await sender(4);
    const fromA = datagrams(10, 1);
    const fromB = datagrams(5, 100);
    await a.send(rx.port, fromA.slice(0, 5));
    await b.send(rx.port, fromB);
    await a.send(rx.port, fromA.slice(5));
    const receiver = new BatchReceiver(rx.fd, 1500);
    const got: Array<[string, HostPort]> = [];
    expect(receiver.drain((msg, peer) => got.push([msg.toString('hex'), peer]))).toBe(15);
    const expected = [...fromA.slice(0, 5).map((m) => [m, a.address]), ...fromB.map((m) => [m, b.address]), ...fromA.slice(5).map((m) => [m, a.address])] as Array<[Buffer, HostPort]>;
    expect(got).toEqual(expected.map(([m, p]) => [m.toString('hex'), p]));
    // One {host, port} object per peer, reused: the endpoint compares peers on every datagram.
    expect(got[0]![1]).toBe(got[1]![1]);
    expect(receiver.drain(() => expect.unreachable())).toBe(0);
    expect(receiver.counters).toMatchObject({ datagrams: 15, truncated: 0 });
  });

  it('gives IPv6 sources as dgram does', async () => {
    const rx = receivingSocket(6);
    const a = await sender(6);
    await a.send(rx.port, datagrams(3, 7));
    const receiver = new BatchReceiver(rx.fd, 1500);
    const peers: HostPort[] = [];
    expect(receiver.drain((_, peer) => peers.push(peer))).toBe(3);
    expect(peers).toEqual([a.address, a.address, a.address]);
    expect(peers[0]!.host).toBe('::1');
  });

  it('reads no more than max, leaving the rest queued, and more than one batch when asked', async () => {
    const rx = receivingSocket(4);
    const a = await sender(4);
    const sent = datagrams(40, 3);
    await a.send(rx.port, sent);
    const receiver = new BatchReceiver(rx.fd, 1500, 16);
    const got: string[] = [];
    expect(receiver.drain((m) => got.push(m.toString('hex')), 10)).toBe(10);
    expect(receiver.drain((m) => got.push(m.toString('hex')), 100)).toBe(30);
    expect(got).toEqual(sent.map((m) => m.toString('hex')));
    // 10 in one call; then 16 + 14 (the short batch says the queue is empty).
    expect(receiver.counters.syscalls).toBe(3);
  });

  it('counts a datagram longer than a slot as truncated and delivers the others', async () => {
    const rx = receivingSocket(4);
    const a = await sender(4);
    const sent = [Buffer.alloc(100, 1), Buffer.alloc(1501, 2), Buffer.alloc(1500, 3)];
    await a.send(rx.port, sent);
    const receiver = new BatchReceiver(rx.fd, 1500);
    const got: Buffer[] = [];
    expect(receiver.drain((m) => got.push(Buffer.from(m)))).toBe(3);
    expect(got).toEqual([sent[0], sent[2]]);
    expect(receiver.counters.truncated).toBe(1);
  });

  it('delivers a 60,000-byte datagram whole into 64 KiB slots (what the endpoint uses)', async () => {
    const rx = receivingSocket(4);
    const a = await sender(4);
    const sent = [Buffer.alloc(60_000, 5), Buffer.alloc(1350, 6)];
    await a.send(rx.port, sent);
    const receiver = new BatchReceiver(rx.fd, 65_536, 32);
    const got: Buffer[] = [];
    expect(receiver.drain((m) => got.push(Buffer.from(m)))).toBe(2);
    expect(got).toEqual(sent);
  });

  it('after dgram reads: at most 256 batched per event-loop turn, and after an empty read the next 7 calls skip the syscall', async () => {
    const rx = receivingSocket(4);
    const a = await sender(4);
    const sent = datagrams(300, 9, () => 40);
    await a.send(rx.port, sent);
    const receiver = new BatchReceiver(rx.fd, 1500);
    const got: Buffer[] = [];
    for (let i = 0; i < 10; i++) receiver.drainAfterRead((m) => got.push(Buffer.from(m)));
    expect(got.length).toBe(256);
    await new Promise((r) => setImmediate(r));
    receiver.drainAfterRead((m) => got.push(Buffer.from(m)));
    expect(got).toEqual(sent);
    const syscalls = receiver.counters.syscalls;
    receiver.drainAfterRead(() => expect.unreachable()); // empty: one syscall
    for (let i = 0; i < 7; i++) receiver.drainAfterRead(() => expect.unreachable());
    expect(receiver.counters.syscalls).toBe(syscalls + 1);
    receiver.drainAfterRead(() => expect.unreachable());
    expect(receiver.counters.syscalls).toBe(syscalls + 2);
  });
});
