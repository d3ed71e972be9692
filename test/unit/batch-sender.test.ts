/**
 * BatchSender against the real kernel on loopback: what a receiving socket gets (sizes, bytes,
 * order) for the runs GSO must cut and the runs it must not join, the kernel's limits (64
 * segments, one datagram's 65,507 bytes), GSO off, and the fallback when the kernel refuses a
 * GSO send.
 */
import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { BatchSender, GSO_MAX_BYTES, GSO_MAX_SEGMENTS, udpGsoSupported, type BatchSenderOptions } from '../../src/proxy/net/batch-sender.js';
import { AF_INET, SOCK_DGRAM, SOCK_NONBLOCK, SOL_SOCKET, SO_NO_CHECK, libc } from '../../src/sys/libc.js';
import type { HostPort } from '../../src/proxy/net/address.js';

const cleanup: Array<() => void> = [];
afterEach(() => {
  for (const f of cleanup.splice(0)) f();
});

function senderSocket(): number {
  const fd = libc.socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0) as number;
  const sa = Buffer.alloc(16);
  sa.writeUInt16LE(AF_INET, 0);
  sa.writeUInt32BE(0x7f000001, 4);
  expect(libc.bind(fd, sa, 16)).toBe(0);
  cleanup.push(() => libc.close(fd));
  return fd;
}

interface Receiver {
  readonly to: HostPort;
  readonly got: Buffer[];
  /** Resolves once `n` datagrams arrived in all. */
  until(n: number): Promise<Buffer[]>;
}

async function receiver(): Promise<Receiver> {
  const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 * 1024 * 1024 });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  cleanup.push(() => sock.close());
  const got: Buffer[] = [];
  let waiter: { n: number; resolve: () => void } | undefined;
  sock.on('message', (m) => {
    got.push(m);
    if (waiter && got.length >= waiter.n) waiter.resolve();
  });
  return {
    to: { host: '127.0.0.1', port: sock.address().port },
    got,
    until: (n) =>
      new Promise((resolve, reject) => {
        if (got.length >= n) return resolve(got);
        // Loopback delivers within the flush; the deadline only turns a lost datagram into a message.
        const timer = setTimeout(() => reject(new Error(`${got.length} of ${n} datagrams arrived (lengths ${got.map((b) => b.length).join(' ')})`)), 5000);
        waiter = {
          n,
          resolve: () => {
            clearTimeout(timer);
            resolve(got);
          },
        };
      }),
  };
}

/** Packet k of a test: its length, every byte derived from k and the offset (so a cut in the wrong place shows). */
function packet(k: number, len: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (k * 31 + i) & 0xff;
  return b;
}

/** Same datagrams, same order: lengths compared first (where a wrong cut shows), then the bytes. */
function sameDatagrams(got: readonly Buffer[], sent: readonly Buffer[]): void {
  expect(got.map((b) => b.length)).toEqual(sent.map((b) => b.length));
  expect(Buffer.concat(got).equals(Buffer.concat(sent))).toBe(true);
}

function commitAll(sender: BatchSender, lens: readonly number[], to: HostPort | ((k: number) => HostPort), first = 0): Buffer[] {
  return lens.map((len, j) => {
    const k = first + j;
    const p = packet(k, len);
    const slot = sender.slot()!;
    p.copy(slot);
    sender.commit(len, typeof to === 'function' ? to(k) : to);
    return p;
  });
}

function newSender(slotSize = 1350, opts: BatchSenderOptions = {}): BatchSender {
  return new BatchSender(senderSocket(), slotSize, opts);
}

describe.runIf(udpGsoSupported(senderSocket()))('BatchSender with UDP GSO', () => {
  it('sends a run of full packets and a shorter last one as one GSO send, cut into the same datagrams', async () => {
    const rx = await receiver();
    const sender = newSender();
    const sent = commitAll(sender, [...Array<number>(10).fill(1350), 377], rx.to);
    sender.flush();
    sameDatagrams(await rx.until(11), sent);
    expect(sender.counters).toMatchObject({ packets: 11, syscalls: 1, gsoSends: 1, gsoPackets: 11, dropped: 0 });
  });

  it('sends a burst of one as a plain datagram', async () => {
    const rx = await receiver();
    const sender = newSender();
    const sent = commitAll(sender, [1350], rx.to);
    sender.flush();
    sameDatagrams(await rx.until(1), sent);
    expect(sender.counters).toMatchObject({ packets: 1, gsoSends: 0 });
  });

  it(`splits a run at the kernel's ${GSO_MAX_SEGMENTS} segments`, async () => {
    const rx = await receiver();
    const sender = newSender(1000, { slots: 150 });
    const sent = commitAll(sender, Array<number>(150).fill(1000), rx.to);
    sender.flush();
    sameDatagrams(await rx.until(150), sent);
    // 64 + 64 + 22 segments of 1000 bytes (64,000 ≤ 65,507).
    expect(sender.counters).toMatchObject({ packets: 150, syscalls: 1, gsoSends: 3, gsoPackets: 150 });
  });

  it(`splits a run at one datagram's ${GSO_MAX_BYTES} bytes`, async () => {
    const rx = await receiver();
    const sender = newSender(1350);
    const sent = commitAll(sender, [...Array<number>(60).fill(1350)], rx.to);
    sender.flush();
    sameDatagrams(await rx.until(60), sent);
    // 48 × 1350 = 64,800 fits, 49 would not: 48 + 12.
    expect(sender.counters).toMatchObject({ packets: 60, gsoSends: 2, gsoPackets: 60 });
  });

  it('never joins a packet longer than the segment size, nor one after the shorter last segment', async () => {
    const rx = await receiver();
    const sender = newSender();
    // [100] [1350 1350 500] [1350 1350]: a longer packet does not join the ACK-sized one before it,
    // and a full one does not join the run its shorter last segment ended.
    const lens = [100, 1350, 1350, 500, 1350, 1350];
    const sent = commitAll(sender, lens, rx.to);
    sender.flush();
    sameDatagrams(await rx.until(lens.length), sent);
    expect(sender.counters).toMatchObject({ packets: 6, syscalls: 1, gsoSends: 2, gsoPackets: 5 });
  });

  it('keeps runs to different peers apart, in the order committed', async () => {
    const a = await receiver();
    const b = await receiver();
    const sender = newSender();
    const peers = [a.to, a.to, b.to, b.to, b.to, a.to];
    const sent = commitAll(sender, [1350, 1350, 1350, 1350, 900, 1350], (k) => peers[k]!);
    sender.flush();
    sameDatagrams(await a.until(3), [sent[0], sent[1], sent[5]]);
    sameDatagrams(await b.until(3), [sent[2], sent[3], sent[4]]);
    expect(sender.counters).toMatchObject({ packets: 6, gsoSends: 2, gsoPackets: 5 });
  });

  it('offers no slot once the batch is full, and every slot again after a flush', async () => {
    const rx = await receiver();
    const sender = newSender(1350, { slots: 4 });
    const sent = commitAll(sender, [1350, 1350, 1350, 1350], rx.to);
    expect(sender.slot()).toBeUndefined();
    sender.flush();
    sent.push(...commitAll(sender, [1350, 1350, 1350, 10], rx.to, 4));
    expect(sender.slot()).toBeUndefined();
    sender.flush();
    sameDatagrams(await rx.until(8), sent);
    expect(sender.counters).toMatchObject({ packets: 8, syscalls: 2, gsoSends: 2 });
  });

  it('with gso off, sends one datagram per entry', async () => {
    const rx = await receiver();
    const sender = newSender(1350, { gso: 'off' });
    expect(sender.gsoEnabled).toBe(false);
    const sent = commitAll(sender, [1350, 1350, 1350, 200], rx.to);
    sender.flush();
    sameDatagrams(await rx.until(4), sent);
    expect(sender.counters).toMatchObject({ packets: 4, syscalls: 1, gsoSends: 0 });
  });

  it('sends the packets one by one when the kernel refuses the GSO send', async () => {
    const rx = await receiver();
    const fd = senderSocket();
    // Without UDP checksums the kernel refuses GSO sends; plain datagrams still go.
    const one = Buffer.alloc(4);
    one.writeInt32LE(1);
    expect(libc.setsockopt(fd, SOL_SOCKET, SO_NO_CHECK, one, 4)).toBe(0);
    const failures: Array<[number, boolean]> = [];
    const sender = new BatchSender(fd, 1350, { onGsoFailure: (errno, disabled) => failures.push([errno, disabled]) });
    const sent = commitAll(sender, [1350, 1350, 1350, 40], rx.to);
    sender.flush();
    sameDatagrams(await rx.until(4), sent);
    expect(failures.length).toBe(1);
    expect(sender.counters).toMatchObject({ packets: 4, gsoSends: 0, gsoFallbacks: 1, dropped: 0 });
  });
});
