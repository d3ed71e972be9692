/**
 * Self time from V8 .cpuprofile files (what `--cpu-prof` and bench/cpu-profile-hook.ts write),
 * restricted to a time window, grouped by function and by module. Sample timestamps are
 * CLOCK_MONOTONIC microseconds, the clock of process.hrtime in any process on the machine, so a
 * window measured by the bench selects the samples of a worker's profile.
 */
import path from 'node:path';

export interface CpuProfile {
  readonly nodes: ReadonlyArray<{
    readonly id: number;
    readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
    readonly children?: readonly number[];
  }>;
  readonly startTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** Self time of one function (or V8 pseudo-node such as "(garbage collector)"), µs. */
export interface SelfTime {
  readonly fn: string;
  readonly module: string;
  micros: number;
}

export interface WindowProfile {
  /** Sampled main-thread time in the window, µs, idle included. */
  readonly sampledMicros: number;
  readonly idleMicros: number;
  readonly functions: SelfTime[];
  /**
   * Busy time charged to the innermost of our own modules (src/…) on the sample's stack: that
   * module's code plus the libraries, Node internals and native calls it was in. Samples with no
   * frame of ours (GC, event-loop internals) keep their own module.
   */
  readonly ownModules: Map<string, number>;
}

const PSEUDO: Record<string, string> = {
  '(idle)': 'idle',
  '(garbage collector)': 'GC',
  '(program)': 'V8/native, unattributed',
  '(root)': 'V8/native, unattributed',
};

/** Where a function lives, named for a reader: src/…ts for ours, the package for node_modules, node:… for Node's own. */
export function moduleOf(url: string, functionName: string, repoRoot: string): string {
  if (PSEUDO[functionName] && url === '') return PSEUDO[functionName]!;
  if (url === '') return 'native (C++ binding or builtin)';
  if (url.startsWith('node:')) return url;
  if (url.startsWith('wasm:')) return 'wasm (undici\'s llhttp parser)';
  const file = url.startsWith('file://') ? new URL(url).pathname : url;
  const nm = file.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const parts = file.slice(nm + '/node_modules/'.length).split('/');
    return parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
  }
  const rel = path.relative(repoRoot, file);
  return rel.startsWith('..') ? file : rel.replace(/^dist\//, '').replace(/\.js$/, '.ts');
}

/**
 * Self time per function over samples with timestamps in [fromUs, toUs). A sample's time is the
 * delta to the next sample (V8 attributes the interval ending at a sample to it; the difference
 * is one sample per window).
 */
export function windowSelfTime(profiles: readonly CpuProfile[], fromUs: number, toUs: number, repoRoot: string): WindowProfile {
  const byKey = new Map<string, SelfTime>();
  const ownModules = new Map<string, number>();
  let sampled = 0;
  let idle = 0;
  for (const p of profiles) {
    const nodes = new Map(p.nodes.map((n) => [n.id, n.callFrame]));
    const parent = new Map<number, number>();
    for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    const ownerCache = new Map<number, string | undefined>();
    const ownerOf = (id: number): string | undefined => {
      if (ownerCache.has(id)) return ownerCache.get(id);
      const cf = nodes.get(id)!;
      const m = moduleOf(cf.url, cf.functionName, repoRoot);
      const up = parent.get(id);
      const owner = m.startsWith('src/') ? m : up === undefined ? undefined : ownerOf(up);
      ownerCache.set(id, owner);
      return owner;
    };
    let t = p.startTime;
    for (let i = 0; i < p.samples.length; i++) {
      t += p.timeDeltas[i]!;
      const dt = p.timeDeltas[i + 1] ?? 0;
      if (t < fromUs || t >= toUs) continue;
      const cf = nodes.get(p.samples[i]!)!;
      sampled += dt;
      if (cf.functionName === '(idle)') {
        idle += dt;
        continue;
      }
      const module = moduleOf(cf.url, cf.functionName, repoRoot);
      // Line numbers are the compiled JS's (dist/): only an anonymous function needs one.
      const fn = cf.functionName || `(anonymous, dist line ${cf.lineNumber + 1})`;
      const key = `${module}\0${fn}`;
      const e = byKey.get(key) ?? byKey.set(key, { fn, module, micros: 0 }).get(key)!;
      e.micros += dt;
      const owner = ownerOf(p.samples[i]!) ?? module;
      ownModules.set(owner, (ownModules.get(owner) ?? 0) + dt);
    }
  }
  return { sampledMicros: sampled, idleMicros: idle, functions: [...byKey.values()].sort((a, b) => b.micros - a.micros), ownModules };
}

/** Self time summed per module, largest first. */
export function byModule(w: WindowProfile): Array<{ module: string; micros: number }> {
  const m = new Map<string, number>();
  for (const f of w.functions) m.set(f.module, (m.get(f.module) ?? 0) + f.micros);
  return [...m].map(([module, micros]) => ({ module, micros })).sort((a, b) => b.micros - a.micros);
}
