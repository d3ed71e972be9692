/**
 * Why ours' CPU per small request spreads between repeats: 1 KiB × 32 in flight over 4 connections
 * of our client (the side-by-side bench's row) against our proxy with 2 workers, N repeats on fresh
 * connections; per repeat how the 4 connections fell on the workers (`list`'s per-worker
 * connection count, read once every connection is up and before the window), each worker's CPU
 * (/proc, utime + stime, all threads; and schedstat ns), req/s and the tree's CPU per request.
 * `--floor` runs bench/stack-floor.ts (undici) instead; it has no `list`, so its split is read from
 * the workers' CPU share (a worker with no connection stays near idle).
 *
 *   npx tsx bench/split-spread.ts [--repeats N] [--seconds S] [--gap S] [--gc] [--floor]
 */
import { H3Client } from '../test/helpers/h3-client.js';
import { gtlsclient } from '../test/helpers/gtlsclient.js';
import { enterPrivateNetns } from '../test/helpers/netns.js';
import { freeUdpPort, listJson, startProxy, workerPids } from '../test/helpers/proxy.js';
import { processCpuMicros, processTree, treeCpuMicros } from './proc-stats.js';
import { h3Load } from './h3-load.js';
import { benchCertificate, ourProxyConfig, startFloor, startUpstreamProcess } from './targets.js';
import { readdirSync, readFileSync } from 'node:fs';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const repeats = arg('--repeats', 10);
const seconds = arg('--seconds', 3);
const floor = process.argv.includes('--floor');
/** Idle seconds before each repeat (the side-by-side bench leaves ours idle while the other targets run). */
const gap = arg('--gap', 0);
const PATH = '/bytes?n=1024';

function schedNs(pid: number): number {
  let ns = 0;
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      } catch {}
    }
  } catch {}
  return ns;
}

/** Voluntary context switches of the main thread (a proxy for event-loop wake-ups). */
function mainCtxt(pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/task/${pid}/status`, 'utf8');
    return Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(s)![1]);
  } catch {
    return 0;
  }
}

function busyJiffies(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3]! - f[4]!, total };
}

/**
 * `--gc`: the master runs under `node --trace-gc` (a wrapper as process.execPath while startProxy
 * spawns it; NODE_OPTIONS refuses the flag) and forks its workers with that flag; their GC lines
 * are tallied per pid and kind (count, summed pause ms).
 */
const traceGc = process.argv.includes('--gc');
const gc = new Map<number, Map<string, [number, number]>>();
const GC_LINE = /^\[(\d+):0x[0-9a-f]+\]\s+\d+ ms: (\S+).*?MB, ([\d.]+) \/ [\d.]+ ms/;
const isGcLine = (l: Record<string, unknown>): boolean => typeof l.msg === 'string' && GC_LINE.test(l.msg);
function tallyGc(l: Record<string, unknown>): void {
  const m = typeof l.msg === 'string' ? GC_LINE.exec(l.msg) : null;
  if (!m) return;
  const byKind = gc.get(Number(m[1])) ?? new Map<string, [number, number]>();
  gc.set(Number(m[1]), byKind);
  const e = byKind.get(m[2]!) ?? [0, 0];
  e[0]++;
  e[1] += Number(m[3]);
  byKind.set(m[2]!, e);
}
const gcSnap = (pid: number): Map<string, [number, number]> => new Map([...(gc.get(pid) ?? [])].map(([k, v]) => [k, [v[0], v[1]] as [number, number]]));
function gcDiff(pid: number, before: Map<string, [number, number]>): string {
  const parts: string[] = [];
  for (const [k, v] of gc.get(pid) ?? []) {
    const b = before.get(k) ?? [0, 0];
    if (v[0] > b[0]) parts.push(`${k} ${v[0] - b[0]}× ${(v[1] - b[1]).toFixed(1)} ms`);
  }
  return parts.join(', ') || '-';
}

async function main(): Promise<void> {
  enterPrivateNetns();
  const cert = benchCertificate();
  const upstream = await startUpstreamProcess();
  const o = { upstreamPort: upstream.port, cert, workers: 2 };
  let port: number;
  let root: number;
  let stop: () => Promise<unknown>;
  let conns: () => Promise<number[] | undefined>;
  if (floor) {
    const t = await startFloor(o, 'undici');
    port = t.port;
    root = t.pid;
    stop = () => t.stop();
    conns = async () => undefined;
  } else {
    port = await freeUdpPort();
    const execPath = process.execPath;
    if (traceGc) process.execPath = '/tmp/node-gc';
    const p = await startProxy(ourProxyConfig(port, o), traceGc ? { onLog: tallyGc, keepLog: (l) => !isGcLine(l) } : {}).finally(() => (process.execPath = execPath));
    root = p.proc.pid!;
    stop = () => p.stop();
    conns = async () => {
      const l = (await listJson(p)) as unknown as { generations: Array<{ workers: Array<{ pid: number; connections: number }> }> };
      const ws = l.generations.at(-1)!.workers;
      return workerPids(root).map((pid) => ws.find((w) => w.pid === pid)?.connections ?? -1);
    };
  }
  try {
    const workers = floor ? processTree(root).filter((p) => p !== root) : workerPids(root);
    process.stdout.write(`${floor ? 'floor-undici' : 'ours'}: master ${root}, workers ${workers.join(' ')}\n`);
    await Promise.all([0, 1].map(() => gtlsclient('127.0.0.1', port, [`https://localhost${PATH}`], { sni: 'localhost', requests: 1500, timeoutMs: 120_000 })));
    let warm = 0;
    while (warm < 15_000) warm += (await h3Load(port, PATH, { connections: 4, inFlight: 32, durationMs: 2000 })).requests;
    process.stdout.write(`warmed up: ${warm} requests\n`);
    process.stdout.write('rep | conns/worker | req/s | CPU/req tree | w0 CPU/req-share | w1 | w0 µs | w1 µs | master µs | w0 wake | w1 wake | busy cores\n');
    for (let rep = 0; rep < repeats; rep++) {
      if (gap > 0) await new Promise((r) => setTimeout(r, gap * 1000));
      await h3Load(port, PATH, { connections: 4, inFlight: 32, durationMs: 500 });
      const clients = await Promise.all(Array.from({ length: 4 }, () => H3Client.connect({ host: '127.0.0.1', port, sni: 'localhost' })));
      const split = await conns();
      const local = clients.map((c) => (c as unknown as { local?: { port: number } }).local?.port);
      const g0 = workers.map(gcSnap);
      const w0 = workers.map(processCpuMicros);
      const s0 = workers.map(schedNs);
      const c0 = workers.map(mainCtxt);
      const m0 = processCpuMicros(root);
      const t0c = treeCpuMicros(root);
      const j0 = busyJiffies();
      let requests = 0;
      const started = performance.now();
      const deadline = started + seconds * 1000;
      await Promise.all(
        Array.from({ length: 32 }, async (_, i) => {
          const c = clients[i % 4]!;
          while (performance.now() < deadline) {
            const r = await c.get('localhost', PATH);
            if (r.status === 200) requests++;
          }
        }),
      );
      const el = (performance.now() - started) / 1000;
      const tree = treeCpuMicros(root) - t0c;
      const wc = workers.map((p, i) => processCpuMicros(p) - w0[i]!);
      const ws = workers.map((p, i) => (schedNs(p) - s0[i]!) / 1000);
      const wk = workers.map((p, i) => mainCtxt(p) - c0[i]!);
      const j1 = busyJiffies();
      const busy = ((j1.busy - j0.busy) / (j1.total - j0.total)) * 2;
      const m = processCpuMicros(root) - m0;
      const gcText = traceGc ? ` | gc ${workers.map((p, i) => gcDiff(p, g0[i]!)).join(' ; ')}` : '';
      await Promise.all(clients.map((c) => c.close()));
      const splitText = split ? split.join('/') : `~${ws.map((v) => ((v / (ws[0]! + ws[1]!)) * 100).toFixed(0)).join('/')}%`;
      process.stdout.write(
        `${rep + 1} | ${splitText} (ports ${local.join(',')}) | ${Math.round(requests / el)} | ${Math.round(tree / requests)} | ` +
          `${Math.round(ws[0]! / requests)} | ${Math.round(ws[1]! / requests)} | ${Math.round(wc[0]! / 1000)}ms | ${Math.round(wc[1]! / 1000)}ms | ${Math.round(m / 1000)}ms | ` +
          `${(wk[0]! / requests).toFixed(2)} | ${(wk[1]! / requests).toFixed(2)} | ${busy.toFixed(2)}${gcText}\n`,
      );
    }
  } finally {
    await stop();
    upstream.stop();
  }
}
await main();
