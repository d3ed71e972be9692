/**
 * The NOOP soak with a process per generation: a UDP echo service written against
 * udpgrm's socket API (Python, standard socket module) restarted across 64 generation flips, slots
 * wrapping past 31, under ~2,000 datagrams/s; prints datagrams sent, echoed, lost, dispatch errors
 * and the time a flip takes. test/compat/noop.test.ts runs udpgrm's own test_noop in the suite
 * (64 flips at ~2,000/s, the generations being new sockets of one process).
 * Root only; private netns, throwaway cgroup and pin dir.
 *   npx tsx bench/compat-noop-soak.ts [flips] [datagramsPerSecond]
 */
import dgram from 'node:dgram';
import { once } from 'node:events';
import { Agent } from '../src/grm/compat/agent.js';
import { install } from '../src/grm/compat/install.js';
import { parseAddress } from '../src/grm/compat/list.js';
import { decodeStats } from '../src/grm/compat/records.js';
import { CompatState } from '../src/grm/compat/state.js';
import { removeCompatPinDir, TestCgroup, uniqueCompatPinDir, type JsonChild } from '../test/compat/harness.js';
import { waitUntil } from '../test/helpers/deadline.js';
import { enterPrivateNetns } from './burst.js';

const FLIPS = Number(process.argv[2] ?? 64);
const RATE = Number(process.argv[3] ?? 2000);
const PORT = 47101;

async function main(): Promise<void> {
  enterPrivateNetns();
  const pinDir = uniqueCompatPinDir('soak');
  const cg = new TestCgroup('soak');
  const state = CompatState.open(pinDir);
  const agent = new Agent(state, () => {});
  const client = dgram.createSocket('udp4');
  try {
    install(state, cg.path);
    agent.start();
    client.bind(0, '127.0.0.1');
    await once(client, 'listening');
    const echoed = new Set<number>();
    client.on('message', (m) => echoed.add(m.readUInt32BE(0)));

    // Each generation's interpreter is started ahead: its start-up is not part of a flip.
    let ahead = cg.python(['echo', '127.0.0.1', String(PORT)]);
    const flipMs: number[] = [];
    const generation = async (): Promise<JsonChild> => {
      const g = ahead;
      ahead = cg.python(['echo', '127.0.0.1', String(PORT)]);
      const t0 = performance.now();
      g.proc.stdin!.write('go\n');
      await g.line((l) => l.step === 'serving'); // registered and flipped
      flipMs.push(performance.now() - t0);
      return g;
    };
    let current = await generation();
    let sent = 0;
    const started = performance.now();
    // Paced by the clock: every 2 ms, as many as the rate owes by now.
    const timer = setInterval(() => {
      const due = Math.floor(((performance.now() - started) * RATE) / 1000);
      for (; sent < due; sent++) {
        const b = Buffer.alloc(4);
        b.writeUInt32BE(sent);
        client.send(b, PORT, '127.0.0.1');
      }
    }, 2);
    let drainedEchoes = 0;
    try {
      for (let flip = 0; flip < FLIPS; flip++) {
        const next = await generation();
        current.proc.stdin!.write('drain\n');
        drainedEchoes += (await current.line((l) => l.step === 'drained')).echoed as number;
        if ((await current.exited) !== 0) throw new Error(`generation ${flip + 1} exited with an error: ${current.stderr}`);
        current = next;
      }
    } finally {
      clearInterval(timer);
    }
    const seconds = (performance.now() - started) / 1000;
    await waitUntil('the last echoes', () => echoed.size === sent, { timeoutMs: 5_000 }).catch(() => {});
    current.proc.stdin!.write('drain\n');
    await current.line((l) => l.step === 'drained');
    ahead.proc.kill();
    const stats = decodeStats(state.maps.grmc_stats.lookup(parseAddress(`127.0.0.1:${PORT}`)));
    flipMs.sort((a, b) => a - b);
    const pct = (p: number): string => flipMs[Math.min(flipMs.length - 1, Math.floor(p * flipMs.length))]!.toFixed(1);
    process.stdout.write(
      `NOOP soak: ${FLIPS} flips in ${seconds.toFixed(1)} s, ${sent} datagrams (${(sent / seconds).toFixed(0)}/s)\n` +
        `  echoed ${echoed.size}, lost ${sent - echoed.size}; echoed by drained generations ${drainedEchoes}\n` +
        `  rx_new_flow_working_gen_dispatch_ok ${stats.rx_new_flow_working_gen_dispatch_ok}, dispatch_error ${stats.rx_new_flow_working_gen_dispatch_error}\n` +
        `  register+flip (ms): p50 ${pct(0.5)}  p90 ${pct(0.9)}  max ${pct(1)}\n`,
    );
    if (sent !== echoed.size) process.exitCode = 1;
  } finally {
    client.close();
    await agent.stop();
    state.close();
    removeCompatPinDir(pinDir);
    await cg.remove();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`compat-noop-soak bench: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
