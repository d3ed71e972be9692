// Generations and their slots (reference §1.5 step 4, §3): the kernel's hash serves datagrams
// before any socket registers, for a working generation without sockets (counted
// dispatch_error) and for an unknown dissector; dead entries in the working slot are probed past
// (a listed difference: udpgrm falls back for them); holes are reused and max_idx follows the last
// live socket (it may shrink); a socket re-registered to another generation keeps its old slot,
// so cookies it handed out there still reach it, and the cookie read right after SOCKET_GEN is
// the new generation's with the stale index; a closed socket's cookie counts rx_flow_other_error;
// a 257th socket in a generation never registers.
import dgram from 'node:dgram';
import { once } from 'node:events';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { GRM } from '../../src/grm/abi.generated.js';
import { Agent } from '../../src/grm/compat/agent.js';
import { cookiePack } from '../../src/grm/compat/cookie.js';
import { install } from '../../src/grm/compat/install.js';
import { listCompat, parseAddress } from '../../src/grm/compat/list.js';
import { decodeAgentStats, decodeSlot, decodeStats, emptySlot, encodeSlot, slotKey } from '../../src/grm/compat/records.js';
import { CompatState } from '../../src/grm/compat/state.js';
import { waitUntil } from '../helpers/deadline.js';
import { enterPrivateNetns } from '../helpers/netns.js';
import { TAGGED_PROGRAM } from './cbpf-programs.js';
import { receiver, removeCompatPinDir, serve, type Served, TestCgroup, uniqueCompatPinDir } from './harness.js';

enterPrivateNetns();
const pinDir = uniqueCompatPinDir('slots');
const NONE = 0xffffffff;
let cg: TestCgroup;
let state: CompatState;
let agent: Agent;
const log: string[] = [];
const clients: dgram.Socket[] = []; // 16 source ports: 16 kernel hashes

beforeAll(async () => {
  cg = new TestCgroup('slots');
  state = CompatState.open(pinDir);
  install(state, cg.path);
  agent = new Agent(state, (l) => log.push(l));
  agent.start();
  for (let i = 0; i < 16; i++) {
    const c = dgram.createSocket('udp4');
    c.bind(0, '127.0.0.1');
    await once(c, 'listening');
    clients.push(c);
  }
});

afterAll(async () => {
  for (const c of clients) c.close();
  await agent?.stop();
  state?.close();
  removeCompatPinDir(pinDir);
  await cg?.remove();
});

let n = 0;
/** One datagram from each client (tag + a unique suffix); the payloads. */
function fromEach(port: number, tag: string): string[] {
  return clients.map((c) => {
    const p = `${tag}-${n++}`;
    c.send(p, port, '127.0.0.1');
    return p;
  });
}
const receivers = (servers: Served[], payloads: string[]): Promise<number[]> => Promise.all(payloads.map((p) => receiver(servers, p)));
const stats = (port: number): Record<string, bigint | bigint[]> => decodeStats(state.maps.grmc_stats.lookup(parseAddress(`127.0.0.1:${port}`)));
const slot = (port: number, s: number) => decodeSlot(state.maps.grmc_slots.lookup(slotKey(parseAddress(`127.0.0.1:${port}`), s))!);

/** Registers a served socket into `gen` (stdin "regen"), then waits until the agent gave it an index. */
async function regen(s: Served, gen: number): Promise<number> {
  await s.command(`regen ${gen}`, (l) => l.step === 'regen');
  let idx = NONE;
  await waitUntil(`registration into gen ${gen}`, async () => (idx = (await s.command('read', (l) => l.step === 'read')).idx as number) !== NONE, { timeoutMs: 10_000 });
  return idx;
}

async function quit(s: Served): Promise<void> {
  s.proc.stdin!.write('quit\n');
  expect(await s.exited).toBe(0);
}

test('kernel hash before registration and for an empty working generation; dead entries probed past; holes reused; max_idx shrinks', async () => {
  const P = 46701;
  const noop = { dissector: 'noop' };
  // Two bound, unregistered sockets: no program is attached yet, the kernel's hash spreads.
  const [u0, u1] = await Promise.all([serve(cg, P, { ...noop, noregister: true }), serve(cg, P, { ...noop, noregister: true })]);
  expect([u0.gen, u1.gen]).toEqual([NONE, NONE]);
  await receivers([u0, u1], fromEach(P, 'before'));
  expect(stats(P).rx_processed_total).toBe(0n);

  // One registered socket (gen 1) made working: the program steers every new flow to it.
  const w1 = await serve(cg, P, noop);
  await w1.flip();
  expect(new Set(await receivers([u0, u1, w1], fromEach(P, 'gen1')))).toEqual(new Set([2]));
  expect(stats(P).rx_new_flow_working_gen_dispatch_ok).toBe(16n);

  // Working generation 5 has no socket: dispatch_error, and the kernel's hash over the whole
  // group, unregistered and draining sockets included.
  await w1.command('working 5', (l) => l.step === 'working');
  const spread = new Set(await receivers([u0, u1, w1], fromEach(P, 'empty')));
  expect(spread.size).toBeGreaterThan(1); // 16 hashes over 3 sockets
  let st = stats(P);
  expect(st.rx_new_flow_working_gen_dispatch_error).toBe(16n);
  expect(st.rx_new_flow_total).toBe(32n);

  // Gen 6 with three sockets, the middle one closed: new flows skip its dead entry.
  const x = await Promise.all([serve(cg, P, noop), serve(cg, P, noop), serve(cg, P, noop)]);
  x.sort((a, b) => a.cookie - b.cookie); // cookie = idx << 8 | ...: by index
  expect(x.map((s) => [s.gen, (s.cookie >> 8) & 0xff])).toEqual([[6, 0], [6, 1], [6, 2]]);
  await x[0]!.flip();
  await quit(x[1]!);
  const got = await receivers([u0, u1, x[0]!, x[2]!], fromEach(P, 'hole'));
  expect(got.every((i) => i === 2 || i === 3)).toBe(true);
  st = stats(P);
  expect(st.rx_new_flow_working_gen_dispatch_error).toBe(16n); // unchanged: udpgrm would fall back for idx 1
  expect(st.rx_new_flow_working_gen_dispatch_ok).toBe(32n);
  expect(slot(P, 6).maxIdx).toBe(3);

  // A new socket of gen 6 takes the dead index 1; max_idx stays 3.
  expect(await regen(u0, 6)).toBe(1);
  expect(slot(P, 6).maxIdx).toBe(3);
  // Indices 1 and 2 closed: the next registration takes 1 and max_idx shrinks to 2 (udpgrm's
  // cookies_find_empty: up to the last live socket or the chosen index).
  await quit(x[2]!);
  await quit(u0);
  expect(await regen(u1, 6)).toBe(1);
  expect(slot(P, 6).maxIdx).toBe(2);
  expect(new Set(await receivers([x[0]!, u1], fromEach(P, 'shrunk')))).toEqual(new Set([0, 1]));

  // A dissector type the program does not know (only a corrupted map can hold one):
  // rx_internal_state_error, kernel hash.
  const key = parseAddress(`127.0.0.1:${P}`);
  const g = state.maps.grmc_groups.lookup(key)!;
  g.writeUInt32LE(2, 0); // dissector_type
  state.maps.grmc_groups.update(key, g);
  clients[0]!.send('corrupt', P, '127.0.0.1');
  await receiver([x[0]!, u1, w1], 'corrupt');
  expect(stats(P).rx_internal_state_error).toBe(1n);
});

test('re-registration: the socket keeps its old slot (old cookies reach it), the cookie read at once is stale; a dead cookie counts rx_flow_other_error', async () => {
  const P = 46702;
  const spec = { dissector: 'cbpf', cbpf: TAGGED_PROGRAM };
  const a = await serve(cg, P, spec); // gen 1
  await a.flip();
  const b = await serve(cg, P, spec); // gen 2
  await b.flip();
  const c = await serve(cg, P, spec); // gen 3, idx 0 (not flipped: W = 2)
  expect([a.gen, b.gen, c.gen]).toEqual([1, 2, 3]);

  // While no agent serves: SOCKET_GEN is set at once, the index is the old registration's, so
  // the cookie read now names gen 3 index 0 (c's). udpgrm's tests wait for the cookie to change.
  await agent.stop();
  expect(await a.command('regen 3', (l) => l.step === 'regen')).toMatchObject({ gen: 3, idx: 0, cookie: cookiePack(3, 0) });
  agent = new Agent(state, (l) => log.push(l));
  agent.start();
  await waitUntil('a to be registered again', async () => (await a.command('read', (l) => l.step === 'read')).cookie === cookiePack(3, 1), { timeoutMs: 10_000 });
  await a.flip(); // W = 3

  const all = [a, b, c];
  const send = (cookie: number): string => {
    const p = Buffer.concat([Buffer.from('c'), Buffer.from([cookie >> 8, cookie & 0xff]), Buffer.from(`-${n++}`)]);
    clients[0]!.send(p, P, '127.0.0.1');
    return p.toString('latin1');
  };
  expect(await receiver(all, send(cookiePack(1, 0)))).toBe(0); // a's cookie of gen 1 still reaches it
  expect(await receiver(all, send(cookiePack(3, 1)))).toBe(0);
  expect(await receiver(all, send(cookiePack(3, 0)))).toBe(2);
  const hex = (s: Served): string => `0x${s.soCookie.toString(16)}`;
  const listed = listCompat(state.maps, false, `127.0.0.1:${P}`);
  expect(listed).toMatch(/^127\.0\.0\.1:46702\n\tnetns 0x[0-9a-f]+  dissector cbpf  apps 0  filter_len 12\n\tsocket generations:\n/);
  expect(listed).toContain(`\t\tgen  1  ${hex(a)} \n`);
  expect(listed).toContain(`\t\tgen  2  ${hex(b)} \n`);
  expect(listed).toContain(`\t\tgen  3  ${hex(c)} ${hex(a)}  <=  app 0  gen 3\n`);

  // b closed: its cookie names a dead entry; the select fails (rx_flow_other_error) and the
  // datagram is a new flow of the working generation.
  await quit(b);
  expect([0, 2]).toContain(await receiver(all, send(cookiePack(2, 0))));
  const st = stats(P);
  expect(st.rx_flow_ok).toBe(3n);
  expect(st.rx_flow_other_error).toBe(1n);
  expect(st.rx_new_flow_working_gen_dispatch_ok).toBe(1n);
  expect(st.rx_new_flow_total).toBe(1n);

  // An index never used before a live one (written here: the agent fills indices in order) does
  // not hide the sockets after it.
  const rec = emptySlot();
  rec.cookies[1] = a.soCookie;
  rec.maxIdx = 2;
  state.maps.grmc_slots.update(slotKey(parseAddress(`127.0.0.1:${P}`), 20), encodeSlot(rec));
  expect(listCompat(state.maps, false, `127.0.0.1:${P}`)).toContain(`\t\tgen 20  ${hex(a)} \n`);
  expect(listCompat(state.maps, true, `127.0.0.1:${P}`)).toContain(`\t\tgen 20  1:${hex(a)} \n`);
});

test('a generation holds 256 sockets: the 257th never registers (too many sockets, socket_critical)', async () => {
  const P = 46703;
  const m = cg.python(['many', '127.0.0.1', String(P), '257']);
  const r = await m.line((l) => l.registered !== undefined, 30_000);
  expect(r).toEqual({ registered: GRM.COMPAT_MAX_SOCKETS_IN_GEN, gen: 0 }); // no group yet: W = -1
  await waitUntil('the agent to refuse the 257th', () => log.some((l) => l.includes(`127.0.0.1:${P}: too many sockets in generation 0`)), { timeoutMs: 10_000 });
  m.proc.stdin!.write('report\n');
  const idx = (await m.line((l) => l.idx !== undefined)).idx as number[];
  expect([...idx].sort((p, q) => p - q)).toEqual([...Array.from({ length: 256 }, (_, i) => i), NONE]);
  expect(slot(P, 0).maxIdx).toBe(256);
  expect(decodeAgentStats(state.maps.grmc_agent.lookup(parseAddress(`127.0.0.1:${P}`))).socket_critical).toBe(1n);
  m.proc.stdin!.write('\n');
  expect(await m.exited).toBe(0);
}, 60_000);
