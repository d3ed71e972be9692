// NOOP dissector, udpgrm's test_noop: a service flips through 64 generations (each a new socket,
// registered, made working, the old one read empty and closed) under ~2,000 datagrams/s and loses
// nothing; generations 33..65 wrap around into the slots of 1..32. Every datagram is a new flow of
// the working generation. bench/compat-noop-soak.ts runs the same soak with a process per
// generation (an echo service restarted 64 times) and prints its timings.
import dgram from 'node:dgram';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { parseAddress } from '../../src/grm/compat/list.js';
import { decodeStats } from '../../src/grm/compat/records.js';
import { waitUntil } from '../helpers/deadline.js';
import { enterPrivateNetns } from '../helpers/netns.js';
import { useCompatAgent } from './harness.js';

enterPrivateNetns();
const fx = useCompatAgent('noop');
const PORT = 46101;
const FLIPS = 64;
const RATE = 2000; // datagrams/s

const udpStats = (): string =>
  readFileSync('/proc/self/net/snmp', 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('Udp:'))
    .join(' / ');

test(`${FLIPS} generation flips under ~${RATE} datagrams/s, slots wrapping past 31: not a datagram lost`, async () => {
  const client = dgram.createSocket('udp4');
  client.bind(0, '127.0.0.1');
  await once(client, 'listening');
  const py = fx.cg.python(['noop-flips', '127.0.0.1', String(PORT), String(FLIPS)]);
  const first = await py.line((l) => l.step === 'serving');
  let sent = 0;
  let handed = 0; // sends the kernel took (callback without error)
  const started = performance.now();
  // Paced by the clock: every 2 ms, as many as the rate owes by now.
  const timer = setInterval(() => {
    const due = Math.floor(((performance.now() - started) * RATE) / 1000);
    for (; sent < due; sent++) {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(sent);
      client.send(b, PORT, '127.0.0.1', (err) => void (err ? undefined : handed++));
    }
  }, 2);
  let flips: Record<string, unknown>;
  try {
    py.proc.stdin!.write('go\n');
    flips = await py.line((l) => l.step === 'flips', 30_000);
  } finally {
    clearInterval(timer);
  }
  await waitUntil('every send to complete', () => handed === sent, { timeoutMs: 5_000, detail: () => `${handed} of ${sent}` });
  client.close();
  py.proc.stdin!.write('stop\n');
  const r = await py.line((l) => l.received !== undefined);
  expect(await py.exited).toBe(0);

  expect(first.gen).toBe(1);
  expect(flips.gens).toEqual(Array.from({ length: FLIPS }, (_, i) => i + 2));
  expect(sent).toBeGreaterThan(FLIPS * 10); // traffic throughout
  expect({ received: r.received, distinct: r.distinct, udp: udpStats() }).toEqual({ received: sent, distinct: sent, udp: udpStats() });
  const stats = decodeStats(fx.state.maps.grmc_stats.lookup(parseAddress(`127.0.0.1:${PORT}`)));
  expect(stats.rx_processed_total).toBe(BigInt(sent));
  expect(stats.rx_flow_new_unseen).toBe(BigInt(sent));
  expect(stats.rx_new_flow_total).toBe(BigInt(sent));
  expect(stats.rx_new_flow_working_gen_dispatch_ok).toBe(BigInt(sent));
  expect(stats.rx_new_flow_working_gen_dispatch_error).toBe(0n);
  // Per-slot counters: every slot served, slots 0..31 by gens n and n + 32.
  expect((stats.slot_rx_new_flow as bigint[]).every((n) => n > 0n)).toBe(true);
}, 60_000);
