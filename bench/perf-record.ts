/**
 * `npx tsx bench/perf-record.ts [--load kib|mib|mib-gtls|conn] [--seconds S] [--workers N]`: where our workers'
 * CPU goes, measured by Linux `perf` (CPU-clock samples of the worker processes, all threads, with
 * call stacks; JIT frames named through V8's --perf-basic-prof map). Unlike `--profile` (V8's
 * sampler, which samples the main thread's wall clock: a worker preempted in a syscall, e.g. by
 * the upstream process its write woke, counts as busy in that syscall), this counts CPU only, and
 * shows native code too: quiche (node.napi.node), koffi, libc, V8's runtime and GC, the kernel.
 *
 * `--target floor-undici|floor-net` records the stack's floor (bench/stack-floor.ts) instead of our
 * proxy, under the same load and warm-up: the difference between the two is what our code costs.
 *
 * Prints: samples per binary; the top symbols by self time; our JS functions (and undici's, and
 * Node's) by inclusive time, merged across the workers. Needs `perf` (Debian: linux-perf); the
 * bench installs nothing. Runs in a private network namespace, as the other benches do.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { enterPrivateNetns } from '../test/helpers/netns.js';
import { gtlsclient } from '../test/helpers/gtlsclient.js';
import { H3Client } from '../test/helpers/h3-client.js';
import { workerPids } from '../test/helpers/proxy.js';
import { h3Load } from './h3-load.js';
import { treeCpuMicros } from './proc-stats.js';
import { benchCertificate, startFloor, startOurs, startUpstreamProcess } from './targets.js';

const { values: args } = parseArgs({
  options: {
    load: { type: 'string', default: 'kib' },
    seconds: { type: 'string', default: '6' },
    workers: { type: 'string', default: '2' },
    connections: { type: 'string' },
    'in-flight': { type: 'string' },
    strace: { type: 'boolean', default: false },
    syscalls: { type: 'boolean', default: false },
    trace: { type: 'boolean', default: false },
    target: { type: 'string', default: 'ours' },
  },
});
if (!['ours', 'floor-undici', 'floor-net'].includes(args.target)) throw new Error(`--target: ours, floor-undici or floor-net; not "${args.target}"`);
/** PERF_CALL_GRAPH=dwarf: native callers through code built without frame pointers (libc, quiche, OpenSSL); KEEP_PERF=1 keeps the data for `perf report -g caller`. */
const callGraph = process.env.PERF_CALL_GRAPH ? ['--call-graph', process.env.PERF_CALL_GRAPH] : ['-g'];

const LOADS = {
  kib: { path: '/bytes?n=1024', connections: 4, inFlight: 32, unit: 'request' },
  mib: { path: '/bytes?n=1048576', connections: 1, inFlight: 1, unit: 'MiB' },
  /** 1 MiB responses on one gtlsclient (ngtcp2) connection, 200 at a time, as the side-by-side row. */
  'mib-gtls': { path: '/bytes?n=1048576', connections: 1, inFlight: 200, unit: 'MiB' },
  /** A new connection per request (our client, 2 at a time), as the side-by-side handshake row. */
  conn: { path: '/bytes?n=1024', connections: 0, inFlight: 2, unit: 'connection' },
} as const;
const preset = LOADS[args.load as keyof typeof LOADS];
if (!preset) throw new Error(`--load: ${Object.keys(LOADS).join(', ')}; not "${args.load}"`);
/** `--connections` / `--in-flight` change the preset's concurrency (e.g. 4 × 4 for the low-rate case). */
function countArg(name: 'connections' | 'in-flight', preset: number): number {
  const text = args[name];
  if (text === undefined) return preset;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name}: a positive integer, not "${text}"`);
  return n;
}
const load = { ...preset, connections: preset.connections === 0 ? 0 : countArg('connections', preset.connections), inFlight: countArg('in-flight', preset.inFlight) };
const seconds = Number(args.seconds);
if (!(seconds > 0)) throw new Error(`--seconds: a positive number, not "${args.seconds}"`);
try {
  execFileSync('perf', ['--version'], { stdio: 'ignore' });
} catch {
  throw new Error('perf not found: apt-get install linux-perf (for this bench only)');
}

async function loadUnits(l: typeof load, secs: number): Promise<number> {
  if (args.load === 'mib-gtls') return gtlsMiB(secs);
  const r = await h3Load(ours.port, l.path, { connections: l.connections, inFlight: l.inFlight, durationMs: secs * 1000 });
  return l.unit === 'MiB' ? r.bytes / 2 ** 20 : r.requests;
}

/** Runs of 200 × 1 MiB on one gtlsclient connection until `secs` have passed; the MiB received. */
async function gtlsMiB(secs: number): Promise<number> {
  const until = performance.now() + secs * 1000;
  let mib = 0;
  while (performance.now() < until) {
    const r = await gtlsclient('127.0.0.1', ours.port, [`https://localhost${LOADS['mib-gtls'].path}`], { requests: load.inFlight, timeoutMs: 120_000 });
    mib += r.statuses.filter((s) => s === 200).length;
  }
  return mib;
}

/** `parallel` loops of: connect, one 1 KiB request, close; for `ms`. Returns the connections made. */
async function newConnections(port: number, parallel: number, ms: number): Promise<number> {
  const until = performance.now() + ms;
  let made = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (performance.now() < until) {
        const c = await H3Client.connect({ host: '127.0.0.1', port, sni: 'localhost', timeoutMs: 20_000 });
        try {
          await c.get('localhost', LOADS.conn.path);
          made++;
        } finally {
          await c.close();
        }
      }
    }),
  );
  return made;
}

/**
 * `--strace`: the workers' system calls (every thread) counted by `strace -c -f` over the load,
 * per unit. ptrace slows every call down, so the CPU figure is not comparable; the counts are.
 */
async function straceCounts(pids: number[]): Promise<void> {
  const out = path.join(dir, 'strace.txt');
  const tracer = spawn('strace', ['-c', '-f', '-o', out, ...pids.flatMap((p) => ['-p', String(p)])], { stdio: 'ignore' });
  const traced = new Promise<void>((resolve) => tracer.once('exit', () => resolve()));
  await new Promise((r) => setTimeout(r, 500)); // attached by then
  const units = await loadUnits(load, seconds);
  tracer.kill('SIGINT');
  await traced;
  process.stdout.write(`${args.load} load (${load.connections} connections, ${load.inFlight} in flight): ${units.toFixed(0)} ${load.unit}s in ${seconds} s under strace\n`);
  process.stdout.write(`calls per ${load.unit}, syscall (strace -c):\n`);
  for (const line of readFileSync(out, 'utf8').split('\n')) {
    const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$/.exec(line);
    if (m) process.stdout.write(`${(Number(m[1]) / units).toFixed(2).padStart(9)}  ${m[2]}\n`);
  }
}

/** Tracepoints counted by `--syscalls`: the workers' wakeups and their I/O calls, at full speed. */
const COUNTED_EVENTS: Array<[event: string, filter?: string]> = [
  ['syscalls:sys_enter_epoll_pwait'],
  ['syscalls:sys_exit_epoll_pwait', 'ret == 0'],
  ['syscalls:sys_enter_recvmsg'],
  ['syscalls:sys_exit_recvmsg', 'ret < 0'],
  ['syscalls:sys_enter_recvmmsg'],
  ['syscalls:sys_enter_sendmmsg'],
  ['syscalls:sys_enter_read'],
  ['syscalls:sys_enter_write'],
  ['syscalls:sys_enter_writev'],
  ['syscalls:sys_enter_futex'],
  ['raw_syscalls:sys_enter'],
  ['context-switches'],
];

/**
 * `--syscalls`: the workers' system calls and context switches counted by `perf stat` on
 * tracepoints (no ptrace, so the load runs at its usual rate), per unit, with the CPU per unit.
 */
async function syscallCounts(pids: number[]): Promise<void> {
  const out = path.join(dir, 'stat.txt');
  const stat = spawn('perf', ['stat', '-x', ',', '-o', out, ...COUNTED_EVENTS.flatMap(([e, f]) => (f ? ['-e', e, '--filter', f] : ['-e', e])), '-p', pids.join(',')], { stdio: 'ignore' });
  const stopped = new Promise<void>((resolve) => stat.once('exit', () => resolve()));
  await new Promise((r) => setTimeout(r, 300));
  const cpu0 = treeCpuMicros(ours.pid);
  const units = await loadUnits(load, seconds);
  const cpu = treeCpuMicros(ours.pid) - cpu0;
  stat.kill('SIGINT');
  await stopped;
  process.stdout.write(`${args.load} load (${load.connections} connections, ${load.inFlight} in flight): ${units.toFixed(0)} ${load.unit}s in ${seconds} s (${(units / seconds).toFixed(0)}/s), proxy CPU ${(cpu / units).toFixed(0)} µs per ${load.unit}\n`);
  process.stdout.write(`per ${load.unit} (perf stat, the workers' threads):\n`);
  for (const line of readFileSync(out, 'utf8').split('\n')) {
    const [count, , event] = line.split(',');
    const filter = COUNTED_EVENTS.find(([e]) => e === event)?.[1];
    if (event && /^\d+$/.test(count ?? '')) process.stdout.write(`${(Number(count) / units).toFixed(2).padStart(9)}  ${event}${filter ? ` (${filter})` : ''}\n`);
  }
}

/**
 * `--trace`: the workers' system calls in order (`perf trace`, with durations) while the load runs,
 * to see what one request's wakeups do. perf trace takes seconds to start: the load begins later.
 */
async function syscallTrace(pids: number[]): Promise<void> {
  const out = path.join(dir, 'trace.txt');
  const tracer = spawn('perf', ['trace', '-e', 'epoll_pwait,sendmmsg,write,read,recvmmsg', '-o', out, '-p', pids.join(','), '--', 'sleep', String(seconds + 5)], { stdio: 'ignore' });
  const traced = new Promise<void>((resolve) => tracer.once('exit', () => resolve()));
  await new Promise((r) => setTimeout(r, 4000));
  await loadUnits(load, seconds);
  await traced;
  process.stdout.write(readFileSync(out, 'utf8'));
}

enterPrivateNetns();
const upstream = await startUpstreamProcess();
const targetOpts = { upstreamPort: upstream.port, cert: benchCertificate(), workers: Number(args.workers), env: { NODE_OPTIONS: '--perf-basic-prof' } };
// Named `ours` below whichever it is: the floor is a stand-in for our proxy here.
const ours = args.target === 'ours' ? await startOurs(targetOpts) : await startFloor(targetOpts, args.target === 'floor-net' ? 'net' : 'undici');
const dir = mkdtempSync(path.join(tmpdir(), 'bench-perf-'));
try {
  // Warm up as the side-by-side bench does: V8's JIT settles after ~10,000 requests.
  for (let n = 0; n < 12_000; ) n += (await h3Load(ours.port, LOADS.kib.path, { connections: 4, inFlight: 32, durationMs: 2000 })).requests;
  // And the recorded load's own code (the bulk path, the handshake path), as the bench's warm-up has it.
  if (load.unit === 'MiB') for (let mib = 0; mib < 32; ) mib += await loadUnits(load, 1);
  if (load.unit === 'connection') await newConnections(ours.port, 10, 10_000);
  const pids = workerPids(ours.pid);
  if (args.strace) await straceCounts(pids);
  else if (args.syscalls) await syscallCounts(pids);
  else if (args.trace) await syscallTrace(pids);
  else await perfRecord(pids);
} finally {
  await ours.stop();
  upstream.stop();
  if (process.env.KEEP_PERF) process.stdout.write(`perf data kept: ${dir}\n`); else rmSync(dir, { recursive: true, force: true });
}

async function perfRecord(pids: number[]): Promise<void> {
  const data = path.join(dir, 'perf.data');
  const cpu0 = treeCpuMicros(ours.pid);
  const recording = spawn('perf', ['record', '-F', '999', ...callGraph, '-o', data, '-p', pids.join(','), '--', 'sleep', String(seconds)], { stdio: 'ignore' });
  const recorded = new Promise<void>((resolve) => recording.once('exit', () => resolve()));
  const units = load.connections === 0 ? await newConnections(ours.port, load.inFlight, seconds * 1000) : await loadUnits(load, seconds);
  const cpu = treeCpuMicros(ours.pid) - cpu0;
  await recorded;
  process.stdout.write(`${args.load} load: ${units.toFixed(0)} ${load.unit}s in ${seconds} s, proxy CPU ${(cpu / units).toFixed(0)} µs per ${load.unit} (perf adds a little)\n`);
  const report = (...extra: string[]): string[] =>
    execFileSync('perf', ['report', '-i', data, '--stdio', '-g', 'none', ...extra], { encoding: 'utf8', maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\n')
      .filter((l) => l.trim() !== '' && !l.startsWith('#'));
  process.stdout.write('\nsamples by binary (self):\n' + report('--no-children', '--sort', 'dso').slice(0, 10).join('\n') + '\n');
  process.stdout.write('\ntop symbols (self):\n' + report('--no-children', '--sort', 'sym').slice(0, 25).join('\n') + '\n');
  // Each worker has its own JIT map, so a JS function appears once per worker: merged here.
  const inclusive = new Map<string, number>();
  for (const line of report('--children', '--sort', 'sym')) {
    const m = /^\s*([\d.]+)%\s+[\d.]+%\s+\[\.\]\s+JS:[*~^]?(.*)$/.exec(line);
    if (m) inclusive.set(m[2]!, (inclusive.get(m[2]!) ?? 0) + Number(m[1]));
  }
  const top = [...inclusive].sort((a, b) => b[1] - a[1]).slice(0, 40);
  process.stdout.write(
    '\nJS functions by inclusive time (native frames without frame pointers, e.g. inside quiche, end a stack early: a caller of them undercounts):\n' +
      top.map(([name, pct]) => `${pct.toFixed(2).padStart(6)}%  ${name.replace(/file:\/\/\/?\S*?\/(src|bench|node_modules)\//, '$1/')}`).join('\n') +
      '\n',
  );
}
