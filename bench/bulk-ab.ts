/**
 * CPU per MiB of the side-by-side bench's two 1 MiB rows, this checkout's build against another's:
 * both proxies run at once (same upstream, certificate and config as the side-by-side bench), and
 * each round samples them in turn (the order alternating): N × 1 MiB on one gtlsclient connection
 * ("1 MiB, gtlsclient, 200 on one connection", shorter) and S seconds of 1 MiB requests one at a
 * time on one connection of our client ("1 MiB sequential"). CPU is the proxy tree's from
 * /proc/PID/task/TID/schedstat; receive-buffer drops are the namespace's RcvbufErrors (the
 * client's: the proxies' sockets drop none in these rows). On a noisy machine the interleaved
 * rounds see the same load, where two bench runs do not; the per-round ratios this/other are the
 * figure to read.
 *   npx tsx bench/bulk-ab.ts OTHER_CHECKOUT [rounds=6] [gtlsclient MiB per round=50] [seconds of our client=3]
 * OTHER_CHECKOUT must have its dist/ built (npx tsc -p tsconfig.json there).
 */
import { gtlsclient } from '../test/helpers/gtlsclient.js';
import { enterPrivateNetns } from '../test/helpers/netns.js';
import { h3Load } from './h3-load.js';
import { median, treeSchedCpuMicros, udpCounters } from './proc-stats.js';
import { benchCertificate, startAbSides, startUpstreamProcess, type AbSide } from './targets.js';

const [other, roundsArg, gtlsArg, secondsArg] = process.argv.slice(2);
if (!other) throw new Error('usage: bulk-ab.ts OTHER_CHECKOUT [rounds] [gtlsclient MiB per round] [seconds of our client]');
const ROUNDS = Number(roundsArg ?? 6);
const GTLS_MIB = Number(gtlsArg ?? 50);
const SECONDS = Number(secondsArg ?? 3);
const MIB_PATH = '/bytes?n=1048576';

interface Samples {
  gtlsCpu: number[];
  gtlsRate: number[];
  gtlsDrops: number[];
  seqCpu: number[];
  seqRate: number[];
}

async function gtlsSample(t: AbSide, s: Samples): Promise<string> {
  const cpu0 = treeSchedCpuMicros(t.proxy.proc.pid!);
  const drops0 = udpCounters().rcvbufErrors;
  const t0 = performance.now();
  const r = await gtlsclient('127.0.0.1', t.port, [`https://localhost${MIB_PATH}`], { requests: GTLS_MIB, timeoutMs: 120_000 });
  const secs = (performance.now() - t0) / 1000;
  const ok = r.statuses.filter((st) => st === 200).length;
  if (ok !== GTLS_MIB) throw new Error(`${GTLS_MIB - ok} of ${GTLS_MIB} gtlsclient downloads failed`);
  s.gtlsCpu.push((treeSchedCpuMicros(t.proxy.proc.pid!) - cpu0) / 1000 / ok);
  s.gtlsRate.push((ok * 2 ** 20) / secs / 1e6);
  s.gtlsDrops.push(udpCounters().rcvbufErrors - drops0);
  return `gtlsclient ${s.gtlsCpu.at(-1)!.toFixed(1)} ms/MiB ${s.gtlsRate.at(-1)!.toFixed(1)} MB/s ${s.gtlsDrops.at(-1)} drops`;
}

async function seqSample(t: AbSide, s: Samples): Promise<string> {
  let cpu0 = 0;
  const r = await h3Load(t.port, MIB_PATH, { connections: 1, inFlight: 1, durationMs: SECONDS * 1000, onStart: () => (cpu0 = treeSchedCpuMicros(t.proxy.proc.pid!)) });
  const mib = r.bytes / 2 ** 20;
  s.seqCpu.push((treeSchedCpuMicros(t.proxy.proc.pid!) - cpu0) / 1000 / mib);
  s.seqRate.push(r.bytes / SECONDS / 1e6);
  return `sequential ${s.seqCpu.at(-1)!.toFixed(1)} ms/MiB ${s.seqRate.at(-1)!.toFixed(1)} MB/s`;
}

enterPrivateNetns();
const cert = benchCertificate();
const upstream = await startUpstreamProcess();
const opts = { upstreamPort: upstream.port, cert, workers: 2 };
const targets: Array<AbSide & { s: Samples }> = [];
try {
  for (const side of await startAbSides(other, opts)) targets.push({ ...side, s: { gtlsCpu: [], gtlsRate: [], gtlsDrops: [], seqCpu: [], seqRate: [] } });
  // Warm-up: the bulk path through the JIT in both.
  for (const t of targets) {
    await h3Load(t.port, MIB_PATH, { connections: 1, inFlight: 1, durationMs: 3000 });
    await gtlsclient('127.0.0.1', t.port, [`https://localhost${MIB_PATH}`], { requests: 30, timeoutMs: 120_000 });
  }
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 ? [...targets].reverse() : targets;
    for (const t of order) process.stdout.write(`round ${round} ${t.name.padEnd(5)} ${await gtlsSample(t, t.s)}\n`);
    for (const t of [...order].reverse()) process.stdout.write(`round ${round} ${t.name.padEnd(5)} ${await seqSample(t, t.s)}\n`);
  }
  const [o, t] = targets.map((x) => x.s);
  const line = (label: string, key: keyof Samples, digits: number, withRatio = true): void => {
    const ratios = withRatio ? t![key].map((x, i) => x / o![key][i]!) : [];
    process.stdout.write(
      `${label.padEnd(22)} other ${median(o![key]).toFixed(digits)} [${Math.min(...o![key]).toFixed(digits)}..${Math.max(...o![key]).toFixed(digits)}]` +
        `  this ${median(t![key]).toFixed(digits)} [${Math.min(...t![key]).toFixed(digits)}..${Math.max(...t![key]).toFixed(digits)}]` +
        (ratios.length ? `  this/other per round ${median(ratios).toFixed(3)} [${Math.min(...ratios).toFixed(2)}..${Math.max(...ratios).toFixed(2)}]` : '') +
        '\n',
    );
  };
  process.stdout.write(`medians of ${ROUNDS} rounds [min..max]\n`);
  line('gtlsclient ms CPU/MiB', 'gtlsCpu', 1);
  line('gtlsclient MB/s', 'gtlsRate', 1);
  line('gtlsclient drops', 'gtlsDrops', 0, false);
  line('sequential ms CPU/MiB', 'seqCpu', 1);
  line('sequential MB/s', 'seqRate', 1);
} finally {
  for (const t of targets) await t.proxy.stop();
  upstream.stop();
}
