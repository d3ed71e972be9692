/**
 * Loaded with `node --import` (through NODE_OPTIONS, which a forked worker inherits, where Node 20
 * refuses `--cpu-prof` itself) when BENCH_CPU_PROFILE_DIR is set: samples this process's main
 * thread with V8's profiler, the one `--cpu-prof` uses, from start to exit, and writes
 * `<dir>/<worker|master>-<pid>.cpuprofile` on a normal exit. The product's code is untouched; the
 * bench sets the variable on the master it starts (bench/profile.ts).
 */
import { Session } from 'node:inspector';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

const dir = process.env.BENCH_CPU_PROFILE_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  // The in-process session answers synchronously, which the 'exit' handler below relies on.
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: Number(process.env.BENCH_CPU_PROFILE_INTERVAL_US ?? 1000) });
  session.post('Profiler.start');
  const role = process.argv.includes('__worker') ? 'worker' : 'master';
  process.on('exit', () => {
    session.post('Profiler.stop', (err, result) => {
      if (!err) writeFileSync(path.join(dir, `${role}-${process.pid}.cpuprofile`), JSON.stringify(result.profile));
    });
  });
}
