/**
 * One measurement window: CPU of the proxy under test (its whole process tree, from /proc), wall
 * time, the machine's busy cores split into ours (proxies, upstream, this bench and the clients it
 * ran) and everybody else's, so a row disturbed by other work on the machine shows it, and the UDP
 * counters of the bench's network namespace (private: nothing else counts there).
 */
import { busyCores, kernelThreadsCpuMicros, machineJiffies, reapedChildrenCpuMicros, treeCpuMicros, udpCounters, udpSocketDrops } from './proc-stats.js';

export interface WindowResult {
  readonly seconds: number;
  /** CPU of the measured process tree, µs. */
  readonly cpuMicros: number;
  /** Cores busy on the whole machine during the window. */
  readonly busyCores: number;
  /** Of those, cores busy with the kernel's threads (softirq work deferred to ksoftirqd, kworkers). */
  readonly kernelCores: number;
  /** Of those, cores busy with processes that are neither part of this bench nor the kernel's. */
  readonly otherCores: number;
  /**
   * UDP datagrams sent and received in this network namespace (both ends of the QUIC
   * connections, so each datagram counts twice), and datagrams the kernel dropped because a
   * socket's receive buffer was full (each one a loss for QUIC to detect and repair).
   */
  readonly udpDatagrams: number;
  readonly udpDrops: number;
  /** Of those, drops at the proxy's own sockets (the rest were at the clients'). */
  readonly udpDropsAtProxy: number;
}

export class Meter {
  /**
   * @param benchPids roots of every process tree the bench started and that stays up (proxies,
   *   upstream); the bench itself and the clients it ran and reaped are added on their own.
   */
  constructor(private readonly benchPids: () => readonly number[]) {}

  /** Starts a window over the tree of `pid`, which serves UDP `port`; call the returned function to end it. */
  start(pid: number, port: number): () => WindowResult {
    const own = (): number => {
      const self = process.cpuUsage();
      return self.user + self.system + reapedChildrenCpuMicros() + this.benchPids().reduce((s, p) => s + treeCpuMicros(p), 0);
    };
    const t0 = performance.now();
    const j0 = machineJiffies();
    const own0 = own();
    const kernel0 = kernelThreadsCpuMicros();
    const udp0 = udpCounters();
    const drops0 = udpSocketDrops(port);
    const cpu0 = treeCpuMicros(pid);
    return () => {
      const cpu = treeCpuMicros(pid) - cpu0;
      const ownCpu = own() - own0;
      const kernelCpu = kernelThreadsCpuMicros() - kernel0;
      const j1 = machineJiffies();
      const udp1 = udpCounters();
      const drops1 = udpSocketDrops(port);
      const seconds = (performance.now() - t0) / 1000;
      const busy = busyCores(j0, j1, seconds);
      return {
        seconds,
        cpuMicros: cpu,
        busyCores: busy,
        kernelCores: kernelCpu / 1e6 / seconds,
        otherCores: Math.max(0, busy - (ownCpu + kernelCpu) / 1e6 / seconds),
        udpDatagrams: udp1.inDatagrams + udp1.outDatagrams - udp0.inDatagrams - udp0.outDatagrams,
        udpDrops: udp1.rcvbufErrors - udp0.rcvbufErrors,
        udpDropsAtProxy: drops1 - drops0,
      };
    };
  }
}
