/**
 * `npm run bench`: starts an HTTP/1.1 upstream (its own process) and the real proxy, drives them
 * with our HTTP/3 client, and prints requests/s, p50/p99 latency, proxy CPU µs per request for
 * 1 KiB responses (32 in flight), and MB/s for 1 MiB bodies (with our client and with ngtcp2's
 * gtlsclient, 20 requests on one connection), then the same over HTTP/2 on the same listener's TCP
 * side with nghttp2's h2load. Numbers are for comparing runs on one machine; the client, the proxy
 * and the upstream share its cores.
 *
 * `npm run bench -- --peer caddy [--quick] [--repeats N] [--seconds S] [--only TEXT] [--with-floor]`: the
 * side-by-side bench against Caddy (bench/peer-bench.ts), `--with-floor` with the stack's floor
 * (bench/stack-floor.ts) as two more targets. `npm run bench -- --profile [--quick]`: CPU profiles of our
 * workers under load, summarised (bench/profile.ts). See bench/README.md.
 */
import { parseArgs } from 'node:util';
import { gtlsclient } from '../test/helpers/gtlsclient.js';
import { h2load } from '../test/helpers/h2load.js';
import { freeUdpPort, startProxy } from '../test/helpers/proxy.js';
import { h3Load, percentile } from './h3-load.js';
import { runPeerBench } from './peer-bench.js';
import { treeCpuMicros } from './proc-stats.js';
import { runProfile } from './profile.js';
import { startUpstreamProcess } from './targets.js';

const IN_FLIGHT = Number(process.env.BENCH_IN_FLIGHT ?? 32);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 4);
const DURATION_MS = Number(process.env.BENCH_SECONDS ?? 5) * 1000;

/** utime + stime of the master and its workers, in microseconds. */
const cpuMicros = treeCpuMicros;

function load(port: number, path: string, inFlight: number, durationMs: number): ReturnType<typeof h3Load> {
  return h3Load(port, path, { connections: CONNECTIONS, inFlight, durationMs });
}

async function main(): Promise<void> {
  const upstream = await startUpstreamProcess();
  const port = await freeUdpPort();
  const proxy = await startProxy(`
listeners: ["127.0.0.1:${port}"]
workers: 1
tls: { state_dir: state }
routes:
  - path: /static-1m
    respond: { status: 200, body: "${'x'.repeat(1024 * 1024)}" }
  - path: /static
    respond: { status: 200, body: "${'x'.repeat(1024)}" }
  - path: /
    upstream: app
upstreams:
  app: { targets: ["http://127.0.0.1:${upstream.port}"], max_connections: 64 }
quic: { initial_max_data: 64MiB, initial_max_stream_data: 8MiB }
logging: { level: info, access_log: false }
`);
  const pid = proxy.proc.pid!;
  const rows: string[] = [];
  const run = async (label: string, path: string, inFlight: number): Promise<void> => {
    // Warm up (JIT, connection pools), then measure.
    await load(port, path, inFlight, 1000);
    const cpu0 = cpuMicros(pid);
    const r = await load(port, path, inFlight, DURATION_MS);
    const cpu = cpuMicros(pid) - cpu0;
    const secs = r.elapsedMs / 1000;
    rows.push(
      [
        label.padEnd(26),
        `${Math.round(r.requests / secs)} req/s`.padStart(12),
        `p50 ${percentile(r.latencies, 50).toFixed(2)} ms`.padStart(14),
        `p99 ${percentile(r.latencies, 99).toFixed(2)} ms`.padStart(14),
        `${Math.round(cpu / Math.max(1, r.requests))} µs CPU/req`.padStart(18),
        `${(r.bytes / secs / 1e6).toFixed(1)} MB/s`.padStart(12),
        `${r.failures} failed`.padStart(10),
      ].join(' '),
    );
    process.stdout.write(`${rows.at(-1)}\n`);
  };
  process.stdout.write(`udpgrm-proxy bench: ${CONNECTIONS} connections, ${DURATION_MS / 1000}s per row, node ${process.version}\n`);
  await run('1 KiB built-in respond', '/static', IN_FLIGHT);
  await run('1 KiB via upstream', '/bytes?n=1024', IN_FLIGHT);
  await run('1 MiB via upstream (4 fl.)', `/bytes?n=${1024 * 1024}`, 4);
  // The same bulk path with a C client (ngtcp2), which our JS client cannot saturate.
  for (const [label, path] of [
    ['1 MiB built-in, gtlsclient', '/static-1m'],
    ['1 MiB upstream, gtlsclient', `/bytes?n=${1024 * 1024}`],
  ] as const) {
    const n = 20;
    const cpu0 = cpuMicros(pid);
    const t0 = performance.now();
    const r = await gtlsclient('127.0.0.1', port, [`https://localhost${path}`], { requests: n, timeoutMs: 120_000 });
    const secs = (performance.now() - t0) / 1000;
    const bytes = r.statuses.filter((s) => s === 200).length * 1024 * 1024;
    const line = `${label.padEnd(26)} ${`${n} x 1 MiB`.padStart(12)} ${`${(secs * 1000).toFixed(0)} ms`.padStart(14)} ${''.padStart(14)} ${`${Math.round((cpuMicros(pid) - cpu0) / n)} µs CPU/req`.padStart(18)} ${`${(bytes / secs / 1e6).toFixed(1)} MB/s`.padStart(12)} ${`${n - r.statuses.filter((s) => s === 200).length} failed`.padStart(10)}`;
    process.stdout.write(`${line}\n`);
  }
  // HTTP/2 over TLS on the same listener (TCP), driven by h2load: 4 connections, streams split so
  // the same number of requests is in flight as in the HTTP/3 rows. h2load reports the mean latency.
  for (const [label, path, n, clients, streams] of [
    ['h2: 1 KiB built-in respond', '/static', 20_000, CONNECTIONS, Math.max(1, Math.round(IN_FLIGHT / CONNECTIONS))],
    ['h2: 1 KiB via upstream', '/bytes?n=1024', 20_000, CONNECTIONS, Math.max(1, Math.round(IN_FLIGHT / CONNECTIONS))],
    ['h2: 1 MiB via upstream', `/bytes?n=${1024 * 1024}`, 200, 1, 4],
  ] as const) {
    const url = `https://127.0.0.1:${port}${path}`;
    const args = ['-n', String(n), '-c', String(clients), '-m', String(streams)];
    await h2load(url, ['-n', String(Math.max(clients, n / 10)), '-c', String(clients), '-m', String(streams)]); // warm-up
    const cpu0 = cpuMicros(pid);
    const r = await h2load(url, args);
    const cpu = cpuMicros(pid) - cpu0;
    const mean = /time for request:\s+\S+\s+\S+\s+(\S+)/.exec(r.output)?.[1] ?? '?';
    const line = [
      label.padEnd(26),
      `${Math.round(r.reqPerSec)} req/s`.padStart(12),
      `mean ${mean}`.padStart(14),
      ''.padStart(14),
      `${Math.round(cpu / Math.max(1, r.succeeded))} µs CPU/req`.padStart(18),
      `${r.mbPerSec.toFixed(1)} MB/s`.padStart(12),
      `${r.total - r.succeeded} failed`.padStart(10),
    ].join(' ');
    process.stdout.write(`${line}\n`);
  }
  await proxy.stop();
  upstream.stop();
}

const { values: args } = parseArgs({
  options: {
    peer: { type: 'string' },
    profile: { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
    repeats: { type: 'string' },
    seconds: { type: 'string' },
    workers: { type: 'string', default: '2' },
    only: { type: 'string' },
    'with-floor': { type: 'boolean', default: false },
  },
});
const quick = args.quick;
const workers = Number(args.workers);
if (args.peer !== undefined) {
  if (args.peer !== 'caddy') throw new Error(`--peer ${args.peer}: only caddy is known`);
  await runPeerBench({ repeats: Number(args.repeats ?? (quick ? 1 : 3)), seconds: Number(args.seconds ?? (quick ? 2 : 3)), workers, withFloor: args['with-floor'], ...(args.only !== undefined && { only: args.only }) });
} else if (args.profile) {
  await runProfile({ seconds: Number(args.seconds ?? (quick ? 4 : 10)), workers, ...(args.only !== undefined && { only: args.only }) });
} else {
  await main();
}
