/**
 * `npm run bench -- --peer caddy`: our proxy and Caddy side by side, in front of the same upstream
 * with the same certificate and the same clients, 2 workers against GOMAXPROCS=2. Every row runs
 * against both, interleaved (the order alternates per repeat), repeated; it prints each run, then
 * per row the median and spread of both, the ratio ours/Caddy of the medians, and the busy cores
 * (all of the machine, and the part that was not this bench) so a disturbed row is visible.
 * Ends with a Markdown table of the primary figures (for bench/README.md).
 *
 * `--with-floor` adds the stack's floor (bench/stack-floor.ts) as two more targets, `floor-undici`
 * and `floor-net`, run in every row in turn with the other two; each row then also prints each
 * floor's figures, floor/Caddy and ours/floor, and a second Markdown table holds those.
 */
import { rmSync } from 'node:fs';
import path from 'node:path';
import { gtlsclient } from '../test/helpers/gtlsclient.js';
import { H3Client } from '../test/helpers/h3-client.js';
import { enterPrivateNetns } from '../test/helpers/netns.js';
import { ensureCaddy } from './caddy.js';
import { h3Load, percentile } from './h3-load.js';
import { Meter, type WindowResult } from './meter.js';
import { median, treeRssBytes } from './proc-stats.js';
import { benchCertificate, startCaddyTarget, startFloor, startOurs, startUpstreamProcess, type Target } from './targets.js';

const KIB_PATH = '/bytes?n=1024';
const MIB_PATH = `/bytes?n=${1024 * 1024}`;
const MIB = 1024 * 1024;

export interface PeerBenchOptions {
  readonly repeats: number;
  /** Length of each timed load (our client's rows). */
  readonly seconds: number;
  readonly workers: number;
  /** Only the rows whose label contains this (or one of its `|`-separated parts). */
  readonly only?: string;
  /** Also the stack's floor, with undici and with raw sockets upstream. */
  readonly withFloor?: boolean;
}

/** One figure of a row: how it is named, shown, and whether it goes into the summary table. */
interface Metric {
  readonly key: string;
  readonly label: string;
  readonly show: (v: number) => string;
  readonly summary?: boolean;
}

interface Sample {
  readonly values: Record<string, number>;
  readonly window: WindowResult;
  readonly failures: number;
}

interface Row {
  readonly label: string;
  readonly metrics: readonly Metric[];
  /** Fresh processes before each run (memory rows). */
  readonly fresh?: boolean;
  run(t: Target): Promise<Sample>;
}

const us = (v: number): string => `${Math.round(v)} µs`;
const ms = (v: number): string => `${v.toFixed(v < 10 ? 2 : 1)} ms`;
const mbps = (v: number): string => `${v.toFixed(1)} MB/s`;
const rate = (v: number): string => `${Math.round(v)}/s`;
const kib = (v: number): string => `${Math.round(v)} KiB`;
const count = (v: number): string => (v < 100 ? v.toFixed(1) : String(Math.round(v)));

export async function runPeerBench(opts: PeerBenchOptions): Promise<void> {
  const caddyVersion = ensureCaddy(); // before the private netns: apt may need the network
  // Our own network namespace (inherited by every process we start): the UDP counters are ours
  // alone, and ports cannot clash with other benches or tests on the machine.
  enterPrivateNetns();
  const cert = benchCertificate();
  const upstream = await startUpstreamProcess();
  const targetOpts = { upstreamPort: upstream.port, cert, workers: opts.workers };
  const targets: Target[] = [];
  try {
    // Ours first, Caddy second: the summaries below rely on that order.
    targets.push(await startOurs(targetOpts), await startCaddyTarget(targetOpts));
    if (opts.withFloor) targets.push(await startFloor(targetOpts, 'undici'), await startFloor(targetOpts, 'net'));
    const meter = new Meter(() => [upstream.pid, ...targets.map((t) => t.pid)]);
    process.stdout.write(
      `side-by-side bench: udpgrm-proxy (workers: ${opts.workers}) vs Caddy ${caddyVersion} (GOMAXPROCS=${opts.workers})${opts.withFloor ? ' and the stack floor (undici, net)' : ''}, ` +
        `same upstream (Node HTTP/1.1) and certificate; ${opts.repeats} repeat(s), ${opts.seconds} s per timed load; node ${process.version}\n`,
    );
    for (const t of targets) await checkServesH3(t);
    for (const t of targets) await warmUp(t, meter);

    const only = opts.only?.split('|');
    const rows = makeRows(opts, meter).filter((r) => !only || only.some((part) => r.label.includes(part)));
    const results: Array<{ row: Row; samples: Map<string, Sample[]> }> = [];
    for (const row of rows) {
      process.stdout.write(`\n${row.label}\n`);
      const samples = new Map<string, Sample[]>(targets.map((t) => [t.name, []]));
      for (let rep = 0; rep < opts.repeats; rep++) {
        // Alternate who goes first, so a drift in the machine's load does not favour one side.
        for (const t of rep % 2 === 0 ? targets : [...targets].reverse()) {
          if (row.fresh) {
            await t.restart();
            await checkServesH3(t);
          }
          const s = await row.run(t);
          samples.get(t.name)!.push(s);
          process.stdout.write(`  run ${rep + 1} ${t.name.padEnd(12)} ${row.metrics.map((m) => `${m.label} ${m.show(s.values[m.key]!)}`).join(', ')}; ${busyText(s.window)}${s.failures ? `; ${s.failures} FAILED` : ''}\n`);
        }
      }
      results.push({ row, samples });
      printRowSummary(row, targets, samples);
    }
    printMarkdown(results, targets);
    if (opts.withFloor) printFloorMarkdown(results, targets);
  } finally {
    for (const t of targets) await t.stop();
    upstream.stop();
    rmSync(path.dirname(cert.cert), { recursive: true, force: true });
  }
}

function busyText(w: WindowResult): string {
  return `busy ${w.busyCores.toFixed(2)} cores (kernel threads ${w.kernelCores.toFixed(2)}, others ${w.otherCores.toFixed(2)})${w.udpDrops > 0 ? `, UDP receive-buffer drops: ${w.udpDropsAtProxy} at the proxy, ${w.udpDrops - w.udpDropsAtProxy} at clients` : ''}`;
}

/** A request over HTTP/3 with gtlsclient: it must say the handshake was QUIC and get a 200. */
async function checkServesH3(t: Target): Promise<void> {
  const r = await gtlsclient('127.0.0.1', t.port, [`https://localhost${KIB_PATH}`], { sni: 'localhost' });
  const body = [...r.bodies.values()][0];
  if (!r.output.includes('QUIC handshake has completed') || r.statuses[0] !== 200 || body?.length !== 1024) {
    throw new Error(`${t.name} did not serve HTTP/3 to gtlsclient (statuses ${r.statuses.join(',')}):\n${r.output.slice(-2000)}`);
  }
}

/**
 * JIT (V8 optimises a function after many calls, and compiles on threads whose CPU counts as the
 * proxy's), upstream connection pools, Go's heap. Our side needs ~10,000 requests before its CPU
 * per request settles: 1 KiB loads of 2 s repeat until that many were served and the last two
 * agree within 15% (at most 40 s), then 500 new connections (our client, 10 at a time, one request
 * each), then bulk transfers.
 */
const WARM_HANDSHAKES = 500;

async function warmUp(t: Target, meter: Meter): Promise<void> {
  const started = performance.now();
  await Promise.all([0, 1].map(() => gtlsclient('127.0.0.1', t.port, [`https://localhost${KIB_PATH}`], { sni: 'localhost', requests: 1500, timeoutMs: 120_000 })));
  let requests = 0;
  const perRequest: number[] = [];
  const settled = (): boolean => {
    const [a, b] = perRequest.slice(-2);
    return requests >= 10_000 && a !== undefined && b !== undefined && Math.abs(a - b) / Math.min(a, b) <= 0.15;
  };
  while (!settled() && performance.now() - started < 40_000) {
    let end: (() => WindowResult) | undefined;
    let w: WindowResult | undefined;
    const r = await h3Load(t.port, KIB_PATH, { connections: 4, inFlight: 32, durationMs: 2000, onStart: () => (end = meter.start(t.pid, t.port)), onEnd: () => (w = end!()) });
    requests += r.requests;
    perRequest.push(w!.cpuMicros / Math.max(1, r.requests));
  }
  // The handshake path too: a busy edge runs it all day, and without this our side would meet the
  // new-connection row with that code barely compiled (Caddy's Go is compiled ahead of time).
  for (let i = 0; i < WARM_HANDSHAKES; i += 10) {
    await Promise.all(
      Array.from({ length: 10 }, async () => {
        const c = await H3Client.connect({ host: '127.0.0.1', port: t.port, sni: 'localhost', timeoutMs: 20_000 });
        try {
          await c.get('localhost', KIB_PATH);
        } finally {
          await c.close();
        }
      }),
    );
  }
  let bytes = 0;
  while (bytes < 16 * MIB) bytes += (await h3Load(t.port, MIB_PATH, { connections: 1, inFlight: 2, durationMs: 1000 })).bytes;
  await gtlsclient('127.0.0.1', t.port, [`https://localhost${MIB_PATH}`], { sni: 'localhost', requests: 16, timeoutMs: 120_000 });
  process.stdout.write(
    `warmed up ${t.name} in ${((performance.now() - started) / 1000).toFixed(1)} s: 3,000 + ${requests} requests of 1 KiB ` +
      `(CPU per request along the way: ${perRequest.map((v) => Math.round(v)).join(', ')} µs), ${WARM_HANDSHAKES} new connections, 32 of 1 MiB\n`,
  );
}

function makeRows(opts: PeerBenchOptions, meter: Meter): Row[] {
  const durationMs = opts.seconds * 1000;

  const ownClientRow = (label: string, p: string, connections: number, inFlight: number, perMiB: boolean): Row => ({
    label,
    metrics: perMiB
      ? [
          { key: 'cpu', label: 'CPU/MiB', show: ms, summary: true },
          { key: 'mbps', label: 'throughput', show: mbps, summary: true },
          { key: 'p50', label: 'p50', show: ms },
          { key: 'p99', label: 'p99', show: ms },
          { key: 'dgrams', label: 'UDP dgrams/MiB', show: count },
        ]
      : [
          { key: 'cpu', label: 'CPU/req', show: us, summary: true },
          { key: 'rps', label: 'req/s', show: rate },
          { key: 'p50', label: 'p50', show: ms },
          { key: 'p99', label: 'p99', show: ms },
          { key: 'dgrams', label: 'UDP dgrams/req', show: count },
        ],
    async run(t) {
      // Short warm-up on fresh connections (pools to the upstream may have idled out).
      await h3Load(t.port, p, { connections, inFlight, durationMs: 500 });
      let end: (() => WindowResult) | undefined;
      let window: WindowResult | undefined;
      const r = await h3Load(t.port, p, { connections, inFlight, durationMs, onStart: () => (end = meter.start(t.pid, t.port)), onEnd: () => (window = end!()) });
      for (const why of r.closedEarly) process.stdout.write(`  (${t.name}: a connection ${why})\n`);
      const secs = r.elapsedMs / 1000;
      const mib = r.bytes / MIB;
      return {
        values: {
          cpu: perMiB ? window!.cpuMicros / 1000 / Math.max(mib, 1e-9) : window!.cpuMicros / Math.max(1, r.requests),
          mbps: r.bytes / secs / 1e6,
          rps: r.requests / secs,
          p50: percentile(r.latencies, 50),
          p99: percentile(r.latencies, 99),
          dgrams: window!.udpDatagrams / (perMiB ? Math.max(mib, 1e-9) : Math.max(1, r.requests)),
        },
        window: window!,
        failures: r.failures,
      };
    },
  });

  const gtlsRequests = 4000;
  const gtlsKiB: Row = {
    label: `1 KiB via upstream, gtlsclient × 2 connections (${gtlsRequests} requests each)`,
    metrics: [
      { key: 'cpu', label: 'CPU/req', show: us, summary: true },
      { key: 'rps', label: 'req/s', show: rate },
      { key: 'dgrams', label: 'UDP dgrams/req', show: count },
    ],
    async run(t) {
      const end = meter.start(t.pid, t.port);
      const runs = await Promise.all([0, 1].map(() => gtlsclient('127.0.0.1', t.port, [`https://localhost${KIB_PATH}`], { sni: 'localhost', requests: gtlsRequests, timeoutMs: 120_000 })));
      const window = end();
      const ok = runs.reduce((n, r) => n + r.statuses.filter((s) => s === 200).length, 0);
      return { values: { cpu: window.cpuMicros / Math.max(1, ok), rps: ok / window.seconds, dgrams: window.udpDatagrams / Math.max(1, ok) }, window, failures: 2 * gtlsRequests - ok };
    },
  };

  const handshakes = 60;
  const newConnection: Row = {
    label: `new connection per request (gtlsclient, 1 KiB via upstream, ${handshakes} connections, 2 at a time)`,
    metrics: [
      { key: 'cpu', label: 'CPU/conn', show: (v) => ms(v / 1000), summary: true },
      { key: 'rate', label: 'conn/s', show: rate },
      { key: 'dgrams', label: 'UDP dgrams/conn', show: count },
    ],
    async run(t) {
      let ok = 0;
      const end = meter.start(t.pid, t.port);
      await Promise.all(
        [0, 1].map(async () => {
          for (let i = 0; i < handshakes / 2; i++) {
            const r = await gtlsclient('127.0.0.1', t.port, [`https://localhost${KIB_PATH}`], { sni: 'localhost' });
            if (r.statuses[0] === 200) ok++;
          }
        }),
      );
      const window = end();
      return { values: { cpu: window.cpuMicros / Math.max(1, ok), rate: ok / window.seconds, dgrams: window.udpDatagrams / Math.max(1, ok) }, window, failures: handshakes - ok };
    },
  };

  const bulk = 200;
  const gtlsMiB: Row = {
    label: `1 MiB via upstream, gtlsclient, ${bulk} requests on one connection`,
    metrics: [
      { key: 'cpu', label: 'CPU/MiB', show: ms, summary: true },
      { key: 'mbps', label: 'throughput', show: mbps, summary: true },
      { key: 'dgrams', label: 'UDP dgrams/MiB', show: count },
    ],
    async run(t) {
      const end = meter.start(t.pid, t.port);
      const r = await gtlsclient('127.0.0.1', t.port, [`https://localhost${MIB_PATH}`], { sni: 'localhost', requests: bulk, timeoutMs: 300_000 });
      const window = end();
      const ok = r.statuses.filter((s) => s === 200).length;
      return { values: { cpu: window.cpuMicros / 1000 / Math.max(1, ok), mbps: (ok * MIB) / window.seconds / 1e6, dgrams: window.udpDatagrams / Math.max(1, ok) }, window, failures: bulk - ok };
    },
  };

  const idleConnections = 1000;
  const idle: Row = {
    label: `idle connections: RSS per connection (${idleConnections} connections, one 1 KiB request each; fresh processes)`,
    fresh: true,
    metrics: [{ key: 'rss', label: 'RSS/conn', show: kib, summary: true }],
    async run(t) {
      const warm = await h3Load(t.port, KIB_PATH, { connections: 2, inFlight: 8, durationMs: 1000 });
      for (const why of warm.closedEarly) process.stdout.write(`  (${t.name}, warm-up: a connection ${why})\n`);
      await settle();
      const rss0 = treeRssBytes(t.pid);
      const end = meter.start(t.pid, t.port);
      const clients: H3Client[] = [];
      const closed = new Set<H3Client>();
      const keepAlive: NodeJS.Timeout[] = [];
      const reasons = new Map<string, number>();
      let failures = 0;
      try {
        // 50 handshakes at a time: below our per-worker Retry threshold (100 in progress).
        for (let i = 0; i < idleConnections; i += 50) {
          const wave = await Promise.allSettled(
            Array.from({ length: Math.min(50, idleConnections - i) }, async () => {
              const c = await H3Client.connect({ host: '127.0.0.1', port: t.port, sni: 'localhost', timeoutMs: 20_000 });
              clients.push(c);
              void c.closed.then(() => closed.add(c));
              const r = await c.get('localhost', KIB_PATH);
              if (r.status !== 200) throw new Error(`status ${r.status}`);
              // Opening them all can take longer than the 30 s idle timeout on a busy machine.
              keepAlive.push(setInterval(() => closed.has(c) || void c.get('localhost', KIB_PATH).catch(() => {}), 15_000));
            }),
          );
          for (const w of wave) {
            if (w.status === 'fulfilled') continue;
            failures++;
            const why = String(w.reason instanceof Error ? w.reason.message : w.reason);
            reasons.set(why, (reasons.get(why) ?? 0) + 1);
          }
        }
        for (const [why, n] of reasons) process.stdout.write(`  (${t.name}: ${n} connection(s) failed: ${why})\n`);
        await settle();
        const rss = treeRssBytes(t.pid);
        // A connection that closed before the reading holds nothing: counted as failed, not divided by.
        const open = clients.length - closed.size;
        return { values: { rss: (rss - rss0) / 1024 / Math.max(1, open) }, window: end(), failures: failures + closed.size };
      } finally {
        for (const k of keepAlive) clearInterval(k);
        await Promise.all(clients.filter((c) => !closed.has(c)).map((c) => c.close()));
      }
    },
  };

  return [
    ownClientRow('1 KiB via upstream, 32 in flight (our client, 4 connections)', KIB_PATH, 4, 32, false),
    ownClientRow('1 KiB via upstream, 128 in flight (our client, 4 connections)', KIB_PATH, 4, 128, false),
    gtlsKiB,
    newConnection,
    ownClientRow('1 MiB via upstream, sequential on one connection (our client)', MIB_PATH, 1, 1, true),
    gtlsMiB,
    idle,
  ];
}

/** Lets timers, GC and deferred frees run before memory is read. */
function settle(): Promise<void> {
  return new Promise((r) => setTimeout(r, 1000));
}

function spread(xs: readonly number[], show: (v: number) => string): string {
  return xs.length > 1 ? `${show(median(xs))} [${show(Math.min(...xs))}..${show(Math.max(...xs))}]` : show(xs[0]!);
}

function printRowSummary(row: Row, targets: readonly Target[], samples: Map<string, Sample[]>): void {
  const [ours, peer] = targets.map((t) => samples.get(t.name)!);
  for (const m of row.metrics) {
    const o = ours!.map((s) => s.values[m.key]!);
    const c = peer!.map((s) => s.values[m.key]!);
    process.stdout.write(`  = ${m.label.padEnd(10)} Caddy ${spread(c, m.show).padEnd(28)} udpgrm-proxy ${spread(o, m.show).padEnd(28)} ratio ${(median(o) / median(c)).toFixed(2)}\n`);
  }
  const busy = (xs: Sample[]): string => {
    const drops = xs.reduce((n, s) => n + s.window.udpDrops, 0);
    const atProxy = xs.reduce((n, s) => n + s.window.udpDropsAtProxy, 0);
    return `${median(xs.map((s) => s.window.busyCores)).toFixed(2)} (kernel threads ${median(xs.map((s) => s.window.kernelCores)).toFixed(2)}, others ${median(xs.map((s) => s.window.otherCores)).toFixed(2)}${drops ? `; UDP drops ${atProxy} at the proxy, ${drops - atProxy} at clients` : ''})`;
  };
  process.stdout.write(`  = busy cores: Caddy runs ${busy(peer!)}, udpgrm-proxy runs ${busy(ours!)}\n`);
  for (const t of targets.slice(2)) {
    const floor = samples.get(t.name)!;
    for (const m of row.metrics) {
      const f = floor.map((s) => s.values[m.key]!);
      const o = median(ours!.map((s) => s.values[m.key]!));
      const c = median(peer!.map((s) => s.values[m.key]!));
      process.stdout.write(`  = ${m.label.padEnd(10)} ${t.name} ${spread(f, m.show).padEnd(28)} ${t.name}/Caddy ${(median(f) / c).toFixed(2)}, ours/${t.name} ${(o / median(f)).toFixed(2)}\n`);
    }
    process.stdout.write(`  = busy cores: ${t.name} runs ${busy(floor)}\n`);
  }
}

/** Per row: each floor's primary figures, floor/Caddy and ours/floor (medians), and its runs' busy cores (others). */
function printFloorMarkdown(results: Array<{ row: Row; samples: Map<string, Sample[]> }>, targets: readonly Target[]): void {
  const floors = targets.slice(2);
  process.stdout.write(`\n| load | ${floors.map((t) => `${t.name} | ${t.name}/Caddy | ours/${t.name} | busy (others)`).join(' | ')} |\n|---|${floors.map(() => '---|---|---|---|').join('')}\n`);
  for (const { row, samples } of results) {
    const ms = row.metrics.filter((m) => m.summary);
    const med = (name: string, key: string): number => median(samples.get(name)!.map((s) => s.values[key]!));
    const cells = floors.map((t) => {
      const xs = samples.get(t.name)!;
      const fig = ms.map((m) => spread(xs.map((s) => s.values[m.key]!), m.show)).join(' / ');
      const toCaddy = ms.map((m) => (med(t.name, m.key) / med(targets[1]!.name, m.key)).toFixed(2)).join(' / ');
      const oursTo = ms.map((m) => (med(targets[0]!.name, m.key) / med(t.name, m.key)).toFixed(2)).join(' / ');
      const busy = `${median(xs.map((s) => s.window.busyCores)).toFixed(1)} (${median(xs.map((s) => s.window.otherCores)).toFixed(1)})`;
      return `${fig} | ${toCaddy} | ${oursTo} | ${busy}`;
    });
    const failed = floors.reduce((n, t) => n + samples.get(t.name)!.reduce((k, s) => k + s.failures, 0), 0);
    process.stdout.write(`| ${row.label}: ${ms.map((m) => m.label).join(' / ')}${failed ? ` (${failed} failed)` : ''} | ${cells.join(' | ')} |\n`);
  }
}

function printMarkdown(results: Array<{ row: Row; samples: Map<string, Sample[]> }>, targets: readonly Target[]): void {
  process.stdout.write('\n| load | Caddy | udpgrm-proxy | ratio (ours/Caddy) | busy cores, Caddy / ours runs (others) |\n|---|---|---|---|---|\n');
  for (const { row, samples } of results) {
    const [ours, peer] = targets.map((t) => samples.get(t.name)!);
    const ms = row.metrics.filter((m) => m.summary);
    const cell = (xs: Sample[]): string => ms.map((m) => spread(xs.map((s) => s.values[m.key]!), m.show)).join(' / ');
    const ratio = ms.map((m) => (median(ours!.map((s) => s.values[m.key]!)) / median(peer!.map((s) => s.values[m.key]!))).toFixed(2)).join(' / ');
    const busy = (xs: Sample[]): string => `${median(xs.map((s) => s.window.busyCores)).toFixed(1)} (${median(xs.map((s) => s.window.otherCores)).toFixed(1)})`;
    const failed = [...samples.values()].flat().reduce((n, s) => n + s.failures, 0);
    process.stdout.write(`| ${row.label}: ${ms.map((m) => m.label).join(' / ')}${failed ? ` (${failed} failed)` : ''} | ${cell(peer!)} | ${cell(ours!)} | ${ratio} | ${busy(peer!)} / ${busy(ours!)} |\n`);
  }
}
