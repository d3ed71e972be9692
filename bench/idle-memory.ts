/**
 * `npx tsx bench/idle-memory.ts [--workers N] [--first N] [--more N] [--snapshots] [--sample-allocations]
 * [--node-options=...] [--pause-ms N] [--kill-workers] [--gc-load S [--gc-path P] [--gc-in-flight N]]`:
 * where the memory of idle connections goes in our workers. Starts our proxy as the side-by-side
 * bench does (bench/memory-hook.ts loaded into every process), warms it up like the bench's idle
 * row, then opens `first` (100) and `more` (1,000) connections of our client, one 1 KiB request
 * each, 50 handshakes at a time. At 0, `first` and `first + more` connections it reads each
 * worker's RSS and its parts: V8 heap (used and committed), external and ArrayBuffer memory,
 * glibc malloc (in use, free but held), the rest of the anonymous memory. Prints per connection
 * the growth from 0 to `first + more` (what the bench's row sees) and from `first` to
 * `first + more` (the marginal cost, without one-time growth), then what malloc_trim(0) gives back.
 * With --snapshots, heap snapshots at `first` and `first + more` stay in the printed directory;
 * with --sample-allocations, V8's sampled allocations (garbage included) while `more` open.
 * Native memory by call site: BENCH_WORKER_LD_PRELOAD=/usr/lib/heaptrack/libheaptrack_preload.so
 * DUMP_HEAPTRACK_OUTPUT='/tmp/x/raw.$$' with --kill-workers, then heaptrack_interpret and
 * heaptrack_print --print-leaks (what the workers held when killed).
 * --gc-load S replaces the idle connections with S seconds of requests and prints the workers'
 * CPU and GC pauses per request; two instances run at once see the same machine noise (A/B).
 */
import { mkdtempSync, readdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { H3Client } from '../test/helpers/h3-client.js';
import { enterPrivateNetns } from '../test/helpers/netns.js';
import { REPO } from '../test/helpers/proxy.js';
import { h3Load } from './h3-load.js';
import { processTree, treeRssBytes } from './proc-stats.js';
import { benchCertificate, startOurs, startUpstreamProcess } from './targets.js';

const KIB_PATH = '/bytes?n=1024';

interface Report {
  gc: { scavenges: number; scavengeMs: number; majors: number; majorMs: number; otherMs: number };
  cpu: { user: number; system: number };
  heapSpaces: Record<string, { size: number; used: number; physical: number }>;
  memoryUsage: { rss: number; heapTotal: number; heapUsed: number; external: number; arrayBuffers: number };
  malloc: { arena: number; hblkhd: number; uordblks: number; fordblks: number };
  smaps: Record<string, number>;
}
interface Reading {
  pid: number;
  action: string;
  before: Report;
  after?: Report;
  snapshot?: string;
}

const { values } = parseArgs({
  options: {
    workers: { type: 'string', default: '2' },
    first: { type: 'string', default: '100' },
    more: { type: 'string', default: '1000' },
    snapshots: { type: 'boolean', default: false },
    'node-options': { type: 'string', default: '' },
    /** Wait this long after the first reading (e.g. to attach heaptrack to a worker), and again at the end. */
    'pause-ms': { type: 'string', default: '0' },
    /** SIGKILL the workers at the end with every connection open: a heap profiler then reports what they held as leaked. */
    'kill-workers': { type: 'boolean', default: false },
    /** Instead of idle connections: S seconds of 1 KiB requests (4 connections, 32 in flight), the workers' GC pauses and CPU per request. */
    'gc-load': { type: 'string', default: '0' },
    /** Sample what JS allocates (garbage included) while the `more` connections open: <dir>/<pid>.heapprofile. */
    'sample-allocations': { type: 'boolean', default: false },
    /** What --gc-load requests, and how many at once. */
    'gc-path': { type: 'string', default: KIB_PATH },
    'gc-in-flight': { type: 'string', default: '32' },
  },
});

/** The parts of a worker's memory, bytes. */
function parts(r: Report): Record<string, number> {
  const m = r.memoryUsage;
  const mallocHeld = r.malloc.arena + r.malloc.hblkhd;
  const spaces = Object.fromEntries(Object.entries(r.heapSpaces).map(([name, s]) => [`  ${name} (physical)`, s.physical]));
  return {
    rss: r.smaps.Rss ?? m.rss,
    anon: r.smaps.Anonymous ?? 0,
    'v8 heap used': m.heapUsed,
    'v8 heap committed': m.heapTotal,
    ...spaces,
    external: m.external,
    arrayBuffers: m.arrayBuffers,
    'malloc in use': r.malloc.uordblks + r.malloc.hblkhd,
    'malloc free held': r.malloc.fordblks,
    'malloc from system': mallocHeld,
  };
}

async function main(): Promise<void> {
  const hook = path.join(REPO, 'dist/bench/memory-hook.js');
  enterPrivateNetns();
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-idle-memory-'));
  const cert = benchCertificate();
  const upstream = await startUpstreamProcess();
  const env = { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} ${values['node-options']} --import=${hook}`.trim(), BENCH_MEMORY_DIR: dir };
  const ours = await startOurs({ upstreamPort: upstream.port, cert, workers: Number(values.workers), env });
  const workers = processTree(ours.pid).slice(1);
  const clients: H3Client[] = [];
  const keepAlive: NodeJS.Timeout[] = [];
  const read = async (action: string): Promise<Reading[]> => {
    writeFileSync(path.join(dir, 'action'), action);
    const before = new Set(readdirSync(dir));
    for (const pid of workers) process.kill(pid, 'SIGUSR2');
    for (;;) {
      const fresh = readdirSync(dir).filter((f) => f.endsWith('.json') && !before.has(f));
      if (fresh.length === workers.length) return fresh.map((f) => JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as Reading);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const open = async (count: number): Promise<void> => {
    for (let i = 0; i < count; i += 50) {
      await Promise.all(
        Array.from({ length: Math.min(50, count - i) }, async () => {
          const c = await H3Client.connect({ host: '127.0.0.1', port: ours.port, sni: 'localhost', timeoutMs: 20_000 });
          clients.push(c);
          const r = await c.get('localhost', KIB_PATH);
          if (r.status !== 200) throw new Error(`status ${r.status}`);
          keepAlive.push(setInterval(() => void c.get('localhost', KIB_PATH).catch(() => {}), 15_000));
        }),
      );
    }
  };
  const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 1000));
  try {
    await h3Load(ours.port, KIB_PATH, { connections: 2, inFlight: 8, durationMs: 1000 });
    await settle();
    const loadSeconds = Number(values['gc-load']);
    if (loadSeconds) {
      await h3Load(ours.port, KIB_PATH, { connections: 4, inFlight: 32, durationMs: 10_000 });
      const g0 = await read('report');
      const load = await h3Load(ours.port, values['gc-path'], { connections: Math.min(4, Number(values['gc-in-flight'])), inFlight: Number(values['gc-in-flight']), durationMs: loadSeconds * 1000 });
      const g1 = await read('report');
      const total = (rs: Reading[], pick: (r: Report) => number): number => rs.reduce((s, r) => s + pick(r.before), 0);
      const per = (pick: (r: Report) => number): number => (total(g1, pick) - total(g0, pick)) / load.requests;
      console.log(
        `${load.requests} requests (${(load.requests / loadSeconds).toFixed(0)}/s): workers' CPU ${per((r) => r.cpu.user + r.cpu.system).toFixed(0)} µs/req, ` +
          `GC pauses ${(per((r) => r.gc.scavengeMs + r.gc.majorMs + r.gc.otherMs) * 1000).toFixed(1)} µs/req (scavenges ${(total(g1, (r) => r.gc.scavenges) - total(g0, (r) => r.gc.scavenges))}, ` +
          `${(per((r) => r.gc.scavengeMs) * 1000).toFixed(1)} µs/req; major ${(total(g1, (r) => r.gc.majors) - total(g0, (r) => r.gc.majors))}, ${(per((r) => r.gc.majorMs) * 1000).toFixed(1)} µs/req), ` +
          `new space ${(total(g1, (r) => r.heapSpaces.new_space!.physical) / 1048576).toFixed(1)} MiB`,
      );
      return;
    }
    const tree0 = treeRssBytes(ours.pid);
    const r0 = await read('report');
    const pause = Number(values['pause-ms']);
    if (pause) {
      console.log(`workers ${workers.join(', ')}: pausing ${pause} ms`);
      await new Promise((r) => setTimeout(r, pause));
    }
    const first = Number(values.first);
    const more = Number(values.more);
    await open(first);
    await settle();
    const tree1 = treeRssBytes(ours.pid);
    const r1 = await read(values.snapshots ? 'snapshot-first' : values['sample-allocations'] ? 'sample-start' : 'report');
    await open(more);
    if (values['sample-allocations']) await read('sample-stop');
    await settle();
    const tree2 = treeRssBytes(ours.pid);
    const r2 = await read(values.snapshots ? 'snapshot-last' : 'report');
    const r3 = await read('trim');
    const sum = (rs: Reading[], pick: (r: Reading) => Report): Record<string, number> => {
      const out: Record<string, number> = {};
      for (const r of rs) for (const [k, v] of Object.entries(parts(pick(r)))) out[k] = (out[k] ?? 0) + v;
      return out;
    };
    const a0 = sum(r0, (r) => r.before);
    const a1 = sum(r1, (r) => r.before);
    const a2 = sum(r2, (r) => r.before);
    const t3 = sum(r3, (r) => r.after!);
    const kib = (bytes: number, conns: number): string => (bytes / 1024 / conns).toFixed(1).padStart(7);
    console.log(`workers ${workers.join(', ')}; ${first} then ${more} more connections; NODE_OPTIONS ${env.NODE_OPTIONS}`);
    console.log(`process tree RSS: ${(tree0 / 1048576).toFixed(1)} → ${(tree1 / 1048576).toFixed(1)} → ${(tree2 / 1048576).toFixed(1)} MiB; per connection 0→${first + more}: ${kib(tree2 - tree0, first + more)} KiB, ${first}→${first + more}: ${kib(tree2 - tree1, more)} KiB`);
    console.log(`${'part (both workers)'.padEnd(22)} ${'at 0'.padStart(9)} ${'at last'.padStart(9)}  KiB/conn 0→last  KiB/conn first→last  after trim (KiB/conn vs 0)`);
    for (const k of Object.keys(a0)) {
      console.log(
        `${k.padEnd(22)} ${(a0[k]! / 1048576).toFixed(1).padStart(7)}Mi ${(a2[k]! / 1048576).toFixed(1).padStart(7)}Mi  ${kib(a2[k]! - a0[k]!, first + more)}          ${kib(a2[k]! - a1[k]!, more)}              ${kib(t3[k]! - a0[k]!, first + more)}`,
      );
    }
    if (values.snapshots || values['sample-allocations']) console.log(`heap snapshots / allocation profiles in ${dir}`);
    if (pause) await new Promise((r) => setTimeout(r, pause));
    if (values['kill-workers']) for (const pid of workers) process.kill(pid, 'SIGKILL');
  } finally {
    for (const k of keepAlive) clearInterval(k);
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    await ours.stop();
    upstream.stop();
    if (!values.snapshots && !values['sample-allocations']) rmSync(dir, { recursive: true, force: true });
  }
}

await main();
process.exit(0);
