// Steering with real sockets in a private netns: Initials → working generation, spread; short
// headers → issuing socket across flips; split attempts stay on one socket; garbage, gone sockets
// and empty working generations → counted fallbacks, never the kernel's hash.
import { randomBytes } from 'node:crypto';
import type dgram from 'node:dgram';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { GRM, grm_attempt, grm_attempt_key } from '../../src/grm/abi.generated.js';
import { GrmError } from '../../src/grm/errors.js';
import type { Group } from '../../src/grm/group.js';
import { GenerationManager } from '../../src/grm/manager.js';
import { getU64, setBytes, setU } from '../../src/grm/struct-view.js';
import { enterPrivateNetns, removePinDir, uniquePinDir } from '../helpers/netns.js';
import { issueCid, longHeader, Receivers, send, shortHeader, tagOf, udpClient } from './udp.js';

enterPrivateNetns();
const pinDir = uniquePinDir('steer');
let mgr: GenerationManager;
const receivers: Receivers[] = [];
const clients: dgram.Socket[] = [];
let nextPort = 47001;

beforeAll(() => {
  mgr = GenerationManager.open({ pinDir, cidLength: 12 });
});

afterAll(() => {
  for (const r of receivers) r.closeAll();
  for (const c of clients) c.close();
  try {
    mgr?.cleanup();
  } finally {
    removePinDir(pinDir);
  }
});

interface Setup {
  group: Group;
  port: number;
  rx: Receivers;
  /** receiver indices per generation, by worker index */
  socketsOf: Map<number, number[]>;
}

/** A group on host:port with its own receivers (closed in afterAll). */
function setupAt(host: string, port: number, opts: Parameters<GenerationManager['openGroup']>[1] = {}): Setup {
  const group = mgr.openGroup({ host, port }, opts);
  const rx = new Receivers();
  receivers.push(rx);
  return { group, port, rx, socketsOf: new Map() };
}

/** A group on a fresh port of the loopback address. */
function setup(opts: Parameters<GenerationManager['openGroup']>[1] = {}, family: 4 | 6 = 4): Setup {
  return setupAt(family === 4 ? '127.0.0.1' : '::1', nextPort++, opts);
}

function addGen(s: Setup, workers: number, app = 0): number {
  const gen = s.group.addGeneration(app);
  const idx: number[] = [];
  for (let w = 0; w < workers; w++) {
    const fd = s.group.createSocket();
    s.group.register(gen, w, fd);
    idx.push(s.rx.add(fd, s.group.address.family === 2 ? 4 : 6));
  }
  s.socketsOf.set(gen, idx);
  return gen;
}

/** addGen, then make the new generation the working one for app 0. */
function addWorkingGen(s: Setup, workers: number): number {
  const gen = addGen(s, workers);
  s.group.setWorking(0, gen);
  return gen;
}

async function client(family: 4 | 6 = 4): Promise<dgram.Socket> {
  const c = await udpClient(family);
  clients.push(c);
  return c;
}

/** expires_ns of the grm_attempts record of a client DCID. */
function attemptExpiry(s: Setup, dcid: Buffer): bigint {
  const key = Buffer.alloc(grm_attempt_key.size);
  setU(key, grm_attempt_key.fields.group, s.group.id);
  setU(key, grm_attempt_key.fields.len, dcid.length);
  setBytes(key, grm_attempt_key.fields.dcid, dcid);
  const rec = mgr.maps.grm_attempts.lookup(key);
  if (!rec) throw new Error('no attempt record');
  return getU64(rec, grm_attempt.fields.expires_ns);
}

/**
 * Waits until CLOCK_MONOTONIC (bpf_ktime_get_ns in the program; process.hrtime in Node) is past
 * `ns`: from then on the program sees the record as expired. Fails after a deadline.
 */
async function clockPast(ns: bigint, deadlineMs = 5_000): Promise<void> {
  const deadline = process.hrtime.bigint() + BigInt(deadlineMs) * 1_000_000n;
  for (let now = process.hrtime.bigint(); now <= ns; now = process.hrtime.bigint()) {
    if (now > deadline) throw new Error(`clock did not pass ${ns} within ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, Math.ceil(Number(ns - now) / 1e6)));
  }
}

function genOfReceiver(s: Setup, receiver: number): number {
  for (const [gen, idx] of s.socketsOf) if (idx.includes(receiver)) return gen;
  return -1;
}

describe('new connections', () => {
  test('Initials land in the working generation and spread over its sockets', async () => {
    const s = setup();
    const old = addWorkingGen(s, 4);
    const gen = addWorkingGen(s, 4);
    const n = 100;
    for (let i = 0; i < n; i++) {
      const c = await client(); // a new 4-tuple per attempt: the kernel hash differs
      await send(c, longHeader(0, randomBytes(8), i), s.port);
    }
    await s.rx.waitFor(n);
    const perSocket = new Map<number, number>();
    for (const a of s.rx.arrivals) perSocket.set(a.receiver, (perSocket.get(a.receiver) ?? 0) + 1);
    expect([...perSocket.keys()].every((r) => s.socketsOf.get(gen)!.includes(r))).toBe(true);
    expect(perSocket.size).toBe(4); // every socket of the working generation got some
    const st = s.group.stats();
    expect(st.group.new_conns).toBe(BigInt(n));
    expect(st.generations.find((g) => g.gen === gen)!.counters.new_conns).toBe(BigInt(n));
    expect(st.generations.find((g) => g.gen === old)!.counters.packets).toBe(0n);
  });

  test('setWorking refuses a generation without sockets, and an app mismatch', () => {
    const s = setup();
    const gen = s.group.addGeneration();
    expect(() => s.group.setWorking(0, gen)).toThrow(expect.objectContaining({ code: 'EMPTY_GENERATION' }));
    const g1 = addGen(s, 1, 1);
    expect(() => s.group.setWorking(0, g1)).toThrow(GrmError);
  });
});

describe('short headers', () => {
  test('reach the issuing socket across 5 generation flips', async () => {
    const s = setup();
    const c = await client();
    const issued: Array<{ cid: Buffer; receiver: number }> = [];
    let tag = 0;
    let expectedTotal = 0;
    for (let flip = 0; flip < 5; flip++) {
      const gen = addWorkingGen(s, 2);
      for (let w = 0; w < 2; w++) {
        for (let k = 0; k < 5; k++) issued.push({ cid: issueCid(s.group, gen, w), receiver: s.socketsOf.get(gen)![w]! });
      }
      const expectedByTag = new Map<number, number>();
      for (const { cid, receiver } of issued) {
        expectedByTag.set(tag, receiver);
        await send(c, shortHeader(cid, tag++), s.port);
      }
      expectedTotal += issued.length;
      await s.rx.waitFor(expectedTotal);
      for (const a of s.rx.arrivals.slice(expectedTotal - issued.length)) {
        expect(a.receiver).toBe(expectedByTag.get(tagOf(a.msg, 12, false)));
      }
    }
    expect(s.group.stats().group.cid_ok).toBe(BigInt(expectedTotal));
    expect(s.group.generations().filter((g) => g.working).length).toBe(1);
  });

  test('a Handshake packet carrying our CID routes like a short header', async () => {
    const s = setup();
    const g1 = addWorkingGen(s, 2);
    const g2 = addWorkingGen(s, 2);
    const c = await client();
    await send(c, longHeader(2, issueCid(s.group, g1, 1), 7), s.port);
    await s.rx.waitFor(1);
    expect(s.rx.arrivals[0]!.receiver).toBe(s.socketsOf.get(g1)![1]);
  });
});

describe('connection attempts', () => {
  test('a two-datagram attempt split by a flip stays on one socket', async () => {
    const s = setup();
    const g1 = addWorkingGen(s, 3);
    const c = await client();
    const dcid = randomBytes(17); // client-chosen, not ours
    await send(c, longHeader(0, dcid, 1), s.port);
    await s.rx.waitFor(1);
    const first = s.rx.arrivals[0]!.receiver;
    const g2 = addWorkingGen(s, 3);
    await send(c, longHeader(0, dcid, 2), s.port); // second half of the ClientHello
    await send(c, longHeader(1, dcid, 3), s.port); // 0-RTT of the same attempt
    const other = await client();
    await send(other, longHeader(0, dcid, 4), s.port); // same DCID from another port: same attempt record
    await send(c, longHeader(0, randomBytes(8), 5), s.port); // a new attempt: new generation
    await s.rx.waitFor(5);
    const byTag = new Map(s.rx.arrivals.map((a) => [tagOf(a.msg, a.msg[5]!, true), a.receiver]));
    expect(byTag.get(2)).toBe(first);
    expect(byTag.get(3)).toBe(first);
    expect(byTag.get(4)).toBe(first);
    expect(genOfReceiver(s, byTag.get(5)!)).toBe(g2);
    expect(s.group.stats().group.attempt_hits).toBe(3n);
  });

  test('attempt records expire after attemptTtlMs', async () => {
    const ttlMs = 50;
    const s = setup({ attemptTtlMs: ttlMs });
    const g1 = addWorkingGen(s, 1);
    const c = await client();
    const dcid = randomBytes(8);
    const sentAt = process.hrtime.bigint();
    await send(c, longHeader(0, dcid, 1), s.port);
    await s.rx.waitFor(1);
    const arrivedAt = process.hrtime.bigint();
    const expires = attemptExpiry(s, dcid);
    const ttlNs = BigInt(ttlMs) * 1_000_000n;
    expect(expires >= sentAt + ttlNs && expires <= arrivedAt + ttlNs).toBe(true); // the program's clock + TTL
    const g2 = addWorkingGen(s, 1);
    await clockPast(expires);
    await send(c, longHeader(0, dcid, 2), s.port);
    await s.rx.waitFor(2);
    expect(genOfReceiver(s, s.rx.arrivals[1]!.receiver)).toBe(g2);
  });
});

describe('fallbacks', () => {
  test('garbage goes to the working generation, counted', async () => {
    const s = setup();
    const g1 = addWorkingGen(s, 2);
    const g2 = addWorkingGen(s, 2);
    const c = await client();
    const garbage = [
      Buffer.alloc(0),
      Buffer.from([0x00]),
      Buffer.from([0xc0, 0, 0, 0, 1, 200, 1, 2, 3]), // DCID length 200
      Buffer.from([0xc0, 0, 0]), // truncated long header
      Buffer.from('GET / HTTP/1.1\r\n'), // short-header shaped, foreign CID
      randomBytes(40).fill(0x41, 0, 1),
    ];
    for (const [i, g] of garbage.entries()) await send(c, g, s.port);
    await s.rx.waitFor(garbage.length);
    expect(s.rx.arrivals.every((a) => genOfReceiver(s, a.receiver) === g2)).toBe(true);
    const st = s.group.stats().group;
    expect(st.unparseable).toBe(4n);
    expect(st.cid_fail).toBe(2n);
    expect(st.drops).toBe(0n);
  });

  test('dropUnparseable drops garbage (counted) and still serves QUIC', async () => {
    const s = setup({ dropUnparseable: true });
    const g1 = addWorkingGen(s, 2);
    const c = await client();
    await send(c, Buffer.from([0x00]), s.port);
    await send(c, Buffer.alloc(0), s.port);
    await send(c, longHeader(0, randomBytes(8), 9), s.port);
    await s.rx.waitFor(1);
    expect(s.group.stats().group.drops).toBe(2n);
    expect(s.rx.arrivals.length).toBe(1);
  });

  test('gone sockets and an empty working generation fall back to the newest live one, never to the kernel hash', async () => {
    const s = setup();
    const g1 = addWorkingGen(s, 2);
    const g2 = addWorkingGen(s, 2);
    const stray = s.rx.add(s.group.createSocket()); // in the group, never registered
    const cid = issueCid(s.group, g2, 0);
    for (const r of s.socketsOf.get(g2)!) s.rx.close(r); // the working generation dies
    const c = await client();
    for (let i = 0; i < 20; i++) await send(c, longHeader(0, randomBytes(8), i), s.port);
    for (let i = 20; i < 40; i++) await send(c, shortHeader(cid, i), s.port);
    await s.rx.waitFor(40);
    expect(s.rx.arrivals.every((a) => genOfReceiver(s, a.receiver) === g1 && a.receiver !== stray)).toBe(true);
    const st = s.group.stats();
    expect(st.group.fallbacks).toBe(40n);
    expect(st.group.cid_gone).toBe(20n);
    expect(st.generations.find((g) => g.gen === g2)!.counters.cid_gone).toBe(20n);
    expect(st.generations.find((g) => g.gen === g1)!.counters.fallbacks).toBe(40n);
    // Nothing registered is alive: drop (counted) rather than hand datagrams to the stray socket.
    for (const r of s.socketsOf.get(g1)!) s.rx.close(r);
    for (let i = 0; i < 5; i++) await send(c, longHeader(0, randomBytes(8), 100 + i), s.port);
    expect(s.group.stats().group.drops).toBe(5n);
    expect(s.rx.arrivals.some((a) => a.receiver === stray)).toBe(false);
  });
});

describe('generation slots', () => {
  test('retire frees the slot, refuses the working generation, and slots never wrap onto live ones', async () => {
    const s = setup();
    const g1 = addWorkingGen(s, 1);
    expect(() => s.group.retire(g1)).toThrow(expect.objectContaining({ code: 'WORKING_GENERATION' }));
    const gens = [g1];
    while (gens.length < GRM.MAX_SLOTS) gens.push(s.group.addGeneration());
    expect(() => s.group.addGeneration()).toThrow(expect.objectContaining({ code: 'NO_FREE_SLOT' }));
    const g2 = addGenAfterRetire(s, gens);
    expect(g2).toBe(GRM.MAX_SLOTS + 1); // numbers are never reused
    s.group.setWorking(0, g2);
    s.group.retire(g1);
    expect(() => s.group.slotOf(g1)).toThrow(expect.objectContaining({ code: 'NO_SUCH_GENERATION' }));
    // A CID of the retired generation no longer reaches its old socket: it falls back (counted).
    const c = await client();
    const stale = issueCid(s.group, g2, 0);
    await send(c, shortHeader(stale, 1), s.port);
    await s.rx.waitFor(1);
    expect(genOfReceiver(s, s.rx.arrivals[0]!.receiver)).toBe(g2);
  });
});

function addGenAfterRetire(s: Setup, gens: number[]): number {
  s.group.retire(gens[1]!); // never had sockets
  return addGen(s, 1);
}

test('IPv6 groups steer the same way', async () => {
  const s = setup({}, 6);
  const g1 = addWorkingGen(s, 2);
  const c = await client(6);
  await send(c, shortHeader(issueCid(s.group, g1, 1), 1), s.port, '::1');
  await send(c, longHeader(0, randomBytes(8), 2), s.port, '::1');
  await s.rx.waitFor(2);
  expect(s.rx.arrivals.find((a) => tagOf(a.msg, 12, false) === 1 && a.msg[0]! < 0x80)!.receiver).toBe(s.socketsOf.get(g1)![1]);
  expect(s.group.stats().group.cid_ok).toBe(1n);
  expect(s.group.stats().group.new_conns).toBe(1n);
});

test('groups sharing a port on different addresses, and an unmanaged address on it, stay apart', async () => {
  const port = nextPort++;
  const a = setupAt('127.0.0.1', port);
  const b = setupAt('127.0.0.2', port);
  const ga = addWorkingGen(a, 2);
  const gb = addWorkingGen(b, 2);
  // A plain reuseport socket on 127.0.0.3, not managed: its datagrams are the kernel's business.
  const { createReuseportSocket, toSocketAddress } = await import('../../src/grm/sockets.js');
  const plain = new Receivers();
  receivers.push(plain);
  plain.add(createReuseportSocket(toSocketAddress({ host: '127.0.0.3', port })));
  const c = await client();
  await send(c, shortHeader(issueCid(a.group, ga, 1), 1), port, '127.0.0.1');
  await send(c, shortHeader(issueCid(b.group, gb, 0), 2), port, '127.0.0.2');
  await send(c, shortHeader(issueCid(a.group, ga, 1), 3), port, '127.0.0.3');
  await a.rx.waitFor(1);
  await b.rx.waitFor(1);
  await plain.waitFor(1);
  expect(a.rx.arrivals[0]!.receiver).toBe(a.socketsOf.get(ga)![1]);
  expect(b.rx.arrivals[0]!.receiver).toBe(b.socketsOf.get(gb)![0]);
  expect(tagOf(plain.arrivals[0]!.msg, 12, false)).toBe(3);
});

test('re-registering a worker index (respawned worker) moves its CIDs to the new socket', async () => {
  const s = setup();
  const g1 = addWorkingGen(s, 2);
  const cid = issueCid(s.group, g1, 1);
  const fd = s.group.createSocket();
  s.group.register(g1, 1, fd);
  const fresh = s.rx.add(fd);
  s.rx.close(s.socketsOf.get(g1)![1]!); // the old worker is gone
  const c = await client();
  await send(c, shortHeader(cid, 1), s.port);
  await s.rx.waitFor(1);
  expect(s.rx.arrivals[0]!.receiver).toBe(fresh);
  expect(s.group.generations()[0]!.sockets.map((k) => k.worker)).toEqual([0, 1]);
});
