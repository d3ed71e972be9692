/**
 * One measurement window: CPU of the proxy under test (its whole process tree, from /proc), wall
 * time, and the machine's busy cores split into ours (proxies, upstream, this bench and the
 * clients it ran) and everybody else's, so a row disturbed by other work on the machine shows it.
 */
import { busyCores, machineJiffies, reapedChildrenCpuMicros, treeCpuMicros } from './proc-stats.js';

export interface WindowResult {
  readonly seconds: number;
  /** CPU of the measured process tree, µs. */
  readonly cpuMicros: number;
  /** Cores busy on the whole machine during the window. */
  readonly busyCores: number;
  /** Of those, cores busy with processes that are not part of this bench. */
  readonly otherCores: number;
}

export class Meter {
  /**
   * @param benchPids roots of every process tree the bench started and that stays up (proxies,
   *   upstream); the bench itself and the clients it ran and reaped are added on their own.
   */
  constructor(private readonly benchPids: () => readonly number[]) {}

  /** Starts a window over `pid`'s tree; call the returned function to end it. */
  start(pid: number): () => WindowResult {
    const own = (): number => {
      const self = process.cpuUsage();
      return self.user + self.system + reapedChildrenCpuMicros() + this.benchPids().reduce((s, p) => s + treeCpuMicros(p), 0);
    };
    const t0 = performance.now();
    const j0 = machineJiffies();
    const own0 = own();
    const cpu0 = treeCpuMicros(pid);
    return () => {
      const cpu = treeCpuMicros(pid) - cpu0;
      const ownCpu = own() - own0;
      const j1 = machineJiffies();
      const seconds = (performance.now() - t0) / 1000;
      const busy = busyCores(j0, j1, seconds);
      return { seconds, cpuMicros: cpu, busyCores: busy, otherCores: Math.max(0, busy - ownCpu / 1e6 / seconds) };
    };
  }
}
