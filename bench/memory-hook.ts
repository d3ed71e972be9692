/**
 * Loaded with `node --import` (through NODE_OPTIONS, inherited by forked workers) when
 * BENCH_MEMORY_DIR is set: on SIGUSR2 a worker writes `<dir>/<pid>-<n>.json` with where its memory
 * is (process.memoryUsage, V8's heap spaces, glibc's mallinfo2, /proc/self/smaps_rollup), and does
 * what `<dir>/action` asks first: `snapshot` writes a V8 heap snapshot beside it, `trim` calls
 * malloc_trim(0) and reports before and after. Only workers listen (the master's SIGUSR2 is the
 * binary upgrade). The product's code is untouched; bench/idle-memory.ts sets the variable.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import v8 from 'node:v8';
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { Session } from 'node:inspector';
import koffi from 'koffi';

const dir = process.env.BENCH_MEMORY_DIR;
// A heap profiler preloaded into the workers only (e.g. heaptrack's libheaptrack_preload.so, with
// DUMP_HEAPTRACK_OUTPUT=/path/raw.$$ set beside it): the master passes it on to what it forks.
if (process.env.BENCH_WORKER_LD_PRELOAD && !process.argv.includes('__worker')) process.env.LD_PRELOAD = process.env.BENCH_WORKER_LD_PRELOAD;
if (dir && process.argv.includes('__worker')) {
  const libc = koffi.load('libc.so.6');
  const fields = ['arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks', 'uordblks', 'fordblks', 'keepcost'] as const;
  const Mallinfo2 = koffi.struct('bench_mallinfo2', Object.fromEntries(fields.map((f) => [f, 'size_t'])));
  const mallinfo2 = libc.func('mallinfo2', Mallinfo2, []);
  const mallocTrim = libc.func('int malloc_trim(size_t pad)');
  let n = 0;
  let session: Session | undefined;
  // Time the main thread spent in GC pauses since start, by kind (what a smaller young generation costs).
  const gc = { scavenges: 0, scavengeMs: 0, majors: 0, majorMs: 0, otherMs: 0 };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind;
      if (kind === constants.NODE_PERFORMANCE_GC_MINOR) {
        gc.scavenges++;
        gc.scavengeMs += e.duration;
      } else if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) {
        gc.majors++;
        gc.majorMs += e.duration;
      } else gc.otherMs += e.duration;
    }
  }).observe({ entryTypes: ['gc'] });
  const malloc = (): Record<string, number> => {
    const m = mallinfo2() as Record<string, number | bigint>;
    return Object.fromEntries(Object.entries(m).map(([k, v]) => [k, Number(v)]));
  };
  const smaps = (): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const line of readFileSync('/proc/self/smaps_rollup', 'utf8').split('\n')) {
      const m = /^(\w+):\s+(\d+) kB/.exec(line);
      if (m) out[m[1]!] = Number(m[2]) * 1024;
    }
    return out;
  };
  const report = (): Record<string, unknown> => ({
    gc: { ...gc },
    cpu: process.cpuUsage(),
    memoryUsage: process.memoryUsage(),
    heapSpaces: Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name, { size: s.space_size, used: s.space_used_size, physical: s.physical_space_size }])),
    malloc: malloc(),
    smaps: smaps(),
  });
  process.on('SIGUSR2', () => {
    const actionFile = path.join(dir, 'action');
    const action = existsSync(actionFile) ? readFileSync(actionFile, 'utf8').trim() : '';
    const out: Record<string, unknown> = { pid: process.pid, action, before: report() };
    // Sampling allocation profile (garbage included): `sample-start`, then `sample-stop` writes it.
    if (action === 'sample-start') {
      session ??= new Session();
      session.connect();
      session.post('HeapProfiler.startSampling', { samplingInterval: 512, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
    }
    if (action === 'sample-stop' && session)
      session.post('HeapProfiler.stopSampling', (err, r) => {
        if (!err) writeFileSync(path.join(dir, `${process.pid}.heapprofile`), JSON.stringify(r.profile));
      });
    if (action.startsWith('snapshot')) out.snapshot = v8.writeHeapSnapshot(path.join(dir, `${process.pid}-${action}.heapsnapshot`));
    if (action === 'trim') {
      mallocTrim(0);
      out.after = report();
    }
    writeFileSync(path.join(dir, `${process.pid}-${n++}.json`), JSON.stringify(out));
  });
}
