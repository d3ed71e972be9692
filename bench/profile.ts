/**
 * `npm run bench -- --profile`: our proxy (same config as the side-by-side bench) with every
 * process sampled by V8's CPU profiler (bench/cpu-profile-hook.ts via NODE_OPTIONS), driven through
 * the loads of the side-by-side rows one after the other; then, per load, the workers' self time
 * by module and by function, as % of the workers' busy (non-idle) samples and as µs per request
 * (or per MiB). The .cpuprofile files stay in the printed directory (open them in Chrome DevTools).
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gtlsclient } from '../test/helpers/gtlsclient.js';
import { enterPrivateNetns } from '../test/helpers/netns.js';
import { REPO } from '../test/helpers/proxy.js';
import { byModule, windowSelfTime, type CpuProfile, type WindowProfile } from './cpu-profile-summary.js';
import { h3Load } from './h3-load.js';
import { Meter, type WindowResult } from './meter.js';
import { processCpuMicros, processTree, threadCpuMicros } from './proc-stats.js';
import { benchCertificate, startOurs, startUpstreamProcess } from './targets.js';

const KIB_PATH = '/bytes?n=1024';
const MIB_PATH = `/bytes?n=${1024 * 1024}`;
const MIB = 1024 * 1024;

export interface ProfileOptions {
  readonly seconds: number;
  readonly workers: number;
  /** Only the loads whose label contains this. */
  readonly only?: string;
}

interface LoadWindow {
  readonly label: string;
  /** What one unit of work is: a request, or a MiB. */
  readonly unit: string;
  readonly units: number;
  readonly fromUs: number;
  readonly toUs: number;
  /** Workers' CPU from /proc (all threads but the profiler's), µs. */
  readonly workersCpuMicros: number;
  /** The master's CPU from /proc (all threads but the profiler's), µs: not in the profiles. */
  readonly masterCpuMicros: number;
  readonly machine: WindowResult;
}

/** V8's sampling thread (its name in /proc/PID/task/TID/comm). */
const PROFILER_THREAD = 'v8:ProfEvntProc';

const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);

export async function runProfile(opts: ProfileOptions): Promise<void> {
  const hook = path.join(REPO, 'dist/bench/cpu-profile-hook.js');
  if (!existsSync(hook)) throw new Error(`${hook} missing: run npx tsc -p tsconfig.json first`);
  enterPrivateNetns(); // as the side-by-side bench: nothing else on the machine shares our ports
  const profileDir = mkdtempSync(path.join(tmpdir(), 'bench-cpu-profile-'));
  const cert = benchCertificate();
  const upstream = await startUpstreamProcess();
  const env = { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${hook}`.trim(), BENCH_CPU_PROFILE_DIR: profileDir };
  const ours = await startOurs({ upstreamPort: upstream.port, cert, workers: opts.workers, env });
  const windows: LoadWindow[] = [];
  const meter = new Meter(() => [upstream.pid, ours.pid]);
  try {
    // The sampler thread's own CPU is the profiler's cost, not the proxy's: left out.
    const cpuOf = (p: number): number => processCpuMicros(p) - threadCpuMicros(p, PROFILER_THREAD);
    const workersCpu = (): number =>
      processTree(ours.pid)
        .slice(1)
        .reduce((sum, p) => sum + cpuOf(p), 0);
    const measure = async (label: string, unit: string, run: (mark: { start(): void; end(): void }) => Promise<number>): Promise<void> => {
      if (opts.only && !label.includes(opts.only)) return;
      let fromUs = 0;
      let toUs = 0;
      let cpu0 = 0;
      let cpu = 0;
      let master0 = 0;
      let master = 0;
      let endMachine: (() => WindowResult) | undefined;
      let machine: WindowResult | undefined;
      const units = await run({
        start: () => {
          endMachine = meter.start(ours.pid, ours.port);
          cpu0 = workersCpu();
          master0 = cpuOf(ours.pid);
          fromUs = nowUs();
        },
        end: () => {
          toUs = nowUs();
          cpu = workersCpu() - cpu0;
          master = cpuOf(ours.pid) - master0;
          machine = endMachine!();
        },
      });
      windows.push({ label, unit, units, fromUs, toUs, workersCpuMicros: cpu, masterCpuMicros: master, machine: machine! });
      process.stdout.write(
        `${label}: ${units.toFixed(0)} ${unit}s in ${((toUs - fromUs) / 1e6).toFixed(1)} s, workers' CPU ${Math.round(cpu / units)} µs/${unit}, master's ${Math.round(master / units)} µs/${unit}; ` +
          `machine busy ${machine!.busyCores.toFixed(2)} cores (others ${machine!.otherCores.toFixed(2)})\n`,
      );
    };
    // Warm-up counted in requests: our CPU per request settles after ~10,000 (JIT).
    let warm = 0;
    while (warm < 12_000) warm += (await h3Load(ours.port, KIB_PATH, { connections: 4, inFlight: 32, durationMs: 1000 })).requests;
    await gtlsclient('127.0.0.1', ours.port, [`https://localhost${MIB_PATH}`], { sni: 'localhost', requests: 30, timeoutMs: 120_000 });
    for (let i = 0; i < 10; i++) await Promise.all([0, 1].map(() => gtlsclient('127.0.0.1', ours.port, [`https://localhost${KIB_PATH}`], { sni: 'localhost' })));
    const durationMs = opts.seconds * 1000;
    await measure('1 KiB via upstream, 32 in flight (our client, 4 connections)', 'request', async (mark) => {
      const r = await h3Load(ours.port, KIB_PATH, { connections: 4, inFlight: 32, durationMs, onStart: mark.start, onEnd: mark.end });
      return r.requests;
    });
    await measure('1 MiB via upstream, sequential on one connection (our client)', 'MiB', async (mark) => {
      const r = await h3Load(ours.port, MIB_PATH, { connections: 1, inFlight: 1, durationMs, onStart: mark.start, onEnd: mark.end });
      return r.bytes / MIB;
    });
    await measure('1 MiB via upstream, gtlsclient, 200 requests on one connection', 'MiB', async (mark) => {
      mark.start();
      const r = await gtlsclient('127.0.0.1', ours.port, [`https://localhost${MIB_PATH}`], { sni: 'localhost', requests: 200, timeoutMs: 300_000 });
      mark.end();
      return r.statuses.filter((s) => s === 200).length;
    });
    // As the side-by-side row: a gtlsclient process per connection (full handshake, one request,
    // close), two at a time, for the load's duration; the window includes the proxy's idle time
    // between connections (process start-up of the clients).
    await measure('new connection per request (gtlsclient, 1 KiB via upstream, 2 at a time)', 'connection', async (mark) => {
      let ok = 0;
      mark.start();
      const until = performance.now() + durationMs;
      await Promise.all(
        [0, 1].map(async () => {
          while (performance.now() < until) {
            const r = await gtlsclient('127.0.0.1', ours.port, [`https://localhost${KIB_PATH}`], { sni: 'localhost' });
            if (r.statuses[0] === 200) ok++;
          }
        }),
      );
      mark.end();
      return ok;
    });
  } finally {
    // A graceful stop: the workers exit normally, and the hook writes their profiles on exit.
    await ours.stop();
    upstream.stop();
    rmSync(path.dirname(cert.cert), { recursive: true, force: true });
  }
  const files = readdirSync(profileDir).filter((f) => f.startsWith('worker-'));
  if (files.length === 0) throw new Error(`no worker profile in ${profileDir}`);
  const profiles = files.map((f) => JSON.parse(readFileSync(path.join(profileDir, f), 'utf8')) as CpuProfile);
  process.stdout.write(`\nworker profiles: ${files.map((f) => path.join(profileDir, f)).join(' ')}\n`);
  for (const w of windows) printWindow(w, windowSelfTime(profiles, w.fromUs, w.toUs, REPO));
}

/**
 * Shares are of the sampled busy (non-idle) main-thread time; a thread that is runnable but not
 * running (a loaded machine) samples as busy too, so µs per unit are the share times the workers'
 * /proc CPU per unit, not the sampled time.
 */
function printWindow(w: LoadWindow, p: WindowProfile): void {
  const busy = p.sampledMicros - p.idleMicros;
  const cpuPerUnit = w.workersCpuMicros / w.units;
  const pct = (us: number): string => `${((100 * us) / busy).toFixed(1)}%`.padStart(6);
  const per = (us: number): string => {
    const v = (us / busy) * cpuPerUnit;
    return `${v.toFixed(v < 10 ? 1 : 0)} µs`.padStart(9);
  };
  process.stdout.write(
    `\n## ${w.label}\n` +
      `${w.units.toFixed(0)} ${w.unit}s in ${((w.toUs - w.fromUs) / 1e6).toFixed(1)} s (machine busy ${w.machine.busyCores.toFixed(2)} cores, others ${w.machine.otherCores.toFixed(2)}); ` +
      `workers' CPU (/proc, all threads but the profiler's) ${Math.round(cpuPerUnit)} µs/${w.unit}, master's ${Math.round(w.masterCpuMicros / w.units)} µs/${w.unit}; ` +
      `main threads idle ${((100 * p.idleMicros) / p.sampledMicros).toFixed(0)}% of sampled time\n` +
      `\nself time by module (% of busy samples; µs per ${w.unit} = that share of the /proc CPU):\n`,
  );
  for (const m of byModule(p).slice(0, 14)) process.stdout.write(`  ${pct(m.micros)} ${per(m.micros)}  ${m.module}\n`);
  process.stdout.write(`\nby our module, with the libraries, Node internals and native calls it was in (% of busy samples; µs per ${w.unit}):\n`);
  for (const [module, micros] of [...p.ownModules].sort((a, b) => b[1] - a[1]).slice(0, 16)) process.stdout.write(`  ${pct(micros)} ${per(micros)}  ${module}\n`);
  process.stdout.write(`\ntop functions by self time (a JS function's self time includes the native calls it makes through N-API or koffi):\n`);
  for (const f of p.functions.slice(0, 25)) process.stdout.write(`  ${pct(f.micros)} ${per(f.micros)}  ${f.fn}  (${f.module})\n`);
}
