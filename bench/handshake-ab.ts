/**
 * CPU per new connection, this checkout's build against another's, side by side: both proxies run
 * at once (same upstream, certificate and config as the side-by-side bench), each gets the same
 * warm-up, then rounds of gtlsclient connections (one process per connection, 2 at a time, one
 * 1 KiB request via the upstream each, as the bench's "new connection" row) alternate between
 * them. CPU is the proxy tree's from /proc/PID/task/TID/schedstat (ns, not 10 ms ticks). On a
 * noisy machine the interleaved rounds see the same load, where two bench runs do not.
 *   npx tsx bench/handshake-ab.ts OTHER_CHECKOUT [rounds=6] [connections per round=20] [warm-up requests=4000] [gap ms=0]
 * `gap`: each of the 2 lanes waits this long after each connection, for the low-rate case (e.g.
 * 1000: ~2 connections/s), where timers that tick while a request is open cost a wake-up each.
 * OTHER_CHECKOUT must have its dist/ built (npx tsc -p tsconfig.json there).
 */
import { gtlsclient } from '../test/helpers/gtlsclient.js';
import { enterPrivateNetns } from '../test/helpers/netns.js';
import { h3Load } from './h3-load.js';
import { median, treeMainThreadSlices, treeRssBytes, treeSchedCpuMicros } from './proc-stats.js';
import { benchCertificate, startAbSides, startUpstreamProcess, type AbSide } from './targets.js';

const [other, roundsArg, perArg, warmArg, gapArg] = process.argv.slice(2);
if (!other) throw new Error('usage: handshake-ab.ts OTHER_CHECKOUT [rounds] [connections per round] [warm-up requests] [gap ms]');
const ROUNDS = Number(roundsArg ?? 6);
const PER_ROUND = Number(perArg ?? 20);
const WARM_REQUESTS = Number(warmArg ?? 4000);
const GAP_MS = Number(gapArg ?? 0);
const KIB_URL = 'https://localhost/bytes?n=1024';

enterPrivateNetns();
const cert = benchCertificate();
const upstream = await startUpstreamProcess();
const opts = { upstreamPort: upstream.port, cert, workers: 2 };
const targets: Array<AbSide & { perConn: number[]; slicesPerConn: number[] }> = [];
try {
  for (const side of await startAbSides(other, opts)) targets.push({ ...side, perConn: [], slicesPerConn: [] });
  for (const t of targets) {
    for (let n = 0; n < WARM_REQUESTS; ) n += (await h3Load(t.port, '/bytes?n=1024', { connections: 4, inFlight: 32, durationMs: 1000 })).requests;
    for (let i = 0; i < 10; i++) await Promise.all([0, 1].map(() => gtlsclient('127.0.0.1', t.port, [KIB_URL], { sni: 'localhost' })));
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (const t of round % 2 ? [...targets].reverse() : targets) {
      const cpu0 = treeSchedCpuMicros(t.proxy.proc.pid!);
      const slices0 = treeMainThreadSlices(t.proxy.proc.pid!);
      const started = performance.now();
      let ok = 0;
      await Promise.all(
        [0, 1].map(async () => {
          for (let i = 0; i < PER_ROUND / 2; i++) {
            if ((await gtlsclient('127.0.0.1', t.port, [KIB_URL], { sni: 'localhost' })).statuses[0] === 200) ok++;
            if (GAP_MS > 0) await new Promise((resolve) => setTimeout(resolve, GAP_MS));
          }
        }),
      );
      const perConn = (treeSchedCpuMicros(t.proxy.proc.pid!) - cpu0) / Math.max(1, ok);
      t.perConn.push(perConn);
      const slices = (treeMainThreadSlices(t.proxy.proc.pid!) - slices0) / Math.max(1, ok);
      t.slicesPerConn.push(slices);
      process.stdout.write(`round ${round} ${t.name.padEnd(5)} ${(perConn / 1000).toFixed(2)} ms/conn, ${slices.toFixed(1)} main-thread wake-ups/conn (${ok} of ${PER_ROUND} connections, ${(ok / ((performance.now() - started) / 1000)).toFixed(1)}/s)\n`);
    }
  }
  const [o, t] = targets.map((x) => median(x.perConn));
  process.stdout.write(`medians: other ${(o! / 1000).toFixed(2)} ms/conn, this ${(t! / 1000).toFixed(2)} ms/conn, this/other ${(t! / o!).toFixed(3)}\n`);
  const [os, ts] = targets.map((x) => median(x.slicesPerConn));
  process.stdout.write(`main-thread wake-ups per connection (master and workers, schedstat): other ${os!.toFixed(1)}, this ${ts!.toFixed(1)}\n`);
  const lower = targets[1]!.perConn.filter((v, i) => v < targets[0]!.perConn[i]!).length;
  process.stdout.write(`rounds where this was lower: ${lower} of ${ROUNDS}\n`);
  // Memory a change may trade for CPU (a V8 flag that collects less often keeps a larger heap).
  process.stdout.write(`RSS of the process trees after the rounds: ${targets.map((x) => `${x.name} ${(treeRssBytes(x.proxy.proc.pid!) / 1048576).toFixed(1)} MiB`).join(', ')}\n`);
} finally {
  for (const t of targets) await t.proxy.stop();
  upstream.stop();
}
