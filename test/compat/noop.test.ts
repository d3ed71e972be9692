// NOOP dissector: a UDP echo service restarted across 16 generation flips under steady datagrams
// loses nothing (each new generation registers and flips, then the old one drains and exits).
// The long soak (64 flips at ~2,000/s) belongs in bench/.
import dgram from 'node:dgram';
import { once } from 'node:events';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { Agent } from '../../src/grm/compat/agent.js';
import { install } from '../../src/grm/compat/install.js';
import { parseAddress } from '../../src/grm/compat/list.js';
import { decodeStats } from '../../src/grm/compat/records.js';
import { CompatState } from '../../src/grm/compat/state.js';
import { waitUntil } from '../helpers/deadline.js';
import { enterPrivateNetns } from '../helpers/netns.js';
import { removeCompatPinDir, TestCgroup, uniqueCompatPinDir, type JsonChild } from './harness.js';

enterPrivateNetns();
const pinDir = uniqueCompatPinDir('noop');
const PORT = 46101;
const FLIPS = 16;
let cg: TestCgroup;
let state: CompatState;
let agent: Agent;

beforeAll(() => {
  cg = new TestCgroup('noop');
  state = CompatState.open(pinDir);
  install(state, cg.path);
  agent = new Agent(state, () => {});
  agent.start();
});

afterAll(async () => {
  await agent?.stop();
  state?.close();
  removeCompatPinDir(pinDir);
  await cg?.remove();
});

test(`an echo service survives ${FLIPS} generation flips under traffic without losing a datagram`, async () => {
  const client = dgram.createSocket('udp4');
  client.bind(0, '127.0.0.1');
  await once(client, 'listening');
  const echoed = new Set<number>();
  client.on('message', (m) => echoed.add(m.readUInt32BE(0)));

  // The next generation's process is started ahead (its interpreter start is not part of a flip).
  let ahead = cg.python(['echo', '127.0.0.1', String(PORT)]);
  async function generation(): Promise<JsonChild> {
    const g = ahead;
    ahead = cg.python(['echo', '127.0.0.1', String(PORT)]);
    g.proc.stdin!.write('go\n');
    await g.line((l) => l.step === 'serving');
    return g;
  }

  let current = await generation();
  let sent = 0;
  const timer = setInterval(() => {
    // ~1,000 datagrams/s, a few per tick.
    for (let i = 0; i < 2; i++) {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(sent++);
      client.send(b, PORT, '127.0.0.1');
    }
  }, 2);
  const gens: number[] = [];
  try {
    for (let flip = 0; flip < FLIPS; flip++) {
      const next = await generation(); // registered and flipped: new datagrams go to it
      current.proc.stdin!.write('drain\n');
      const drained = await current.line((l) => l.step === 'drained');
      gens.push(drained.gen as number);
      expect(await current.exited).toBe(0);
      current = next;
    }
  } finally {
    clearInterval(timer);
  }
  await waitUntil(`every one of ${sent} datagrams to be echoed`, () => echoed.size === sent, {
    timeoutMs: 5_000,
    detail: () => `${echoed.size} echoed`,
  });
  current.proc.stdin!.write('drain\n');
  await current.line((l) => l.step === 'drained');
  ahead.proc.kill();
  client.close();

  expect(gens).toEqual(Array.from({ length: FLIPS }, (_, i) => i + 1)); // gens wrap past slot 31 in the soak
  const stats = decodeStats(state.maps.grmc_stats.lookup(parseAddress(`127.0.0.1:${PORT}`)));
  expect(stats.rx_new_flow_working_gen_dispatch_error).toBe(0n);
  expect(stats.rx_new_flow_working_gen_dispatch_ok).toBe(BigInt(sent));
  // Per-generation counters: every generation got its share.
  const perSlot = stats.slot_rx_new_flow as bigint[];
  expect(perSlot.slice(1, FLIPS + 1).every((n) => n > 0n)).toBe(true);
}, 60_000);
