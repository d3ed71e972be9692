/**
 * What the benches read from /proc: CPU time and RSS of a process tree (a proxy's master and its
 * workers), and how many of the machine's cores were busy, so a run disturbed by other work on the
 * machine shows it.
 */
import { readdirSync, readFileSync } from 'node:fs';

const TICK_US = 10_000; // USER_HZ is 100 on Linux

/** Fields after the command name in /proc/PID/stat (the name may hold spaces and parentheses). */
function statFields(pid: number | 'self'): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
}

/** `pid` and its descendants (threads are part of their process's figures already). */
export function processTree(pid: number): number[] {
  const out: number[] = [];
  const visit = (p: number): void => {
    out.push(p);
    let children: string;
    try {
      children = readFileSync(`/proc/${p}/task/${p}/children`, 'utf8');
    } catch {
      return; // exited meanwhile
    }
    for (const c of children.trim().split(/\s+/).filter(Boolean)) visit(Number(c));
  };
  visit(pid);
  return out;
}

/** utime + stime of one process (all its threads), µs. 0 once it is gone. */
export function processCpuMicros(pid: number): number {
  try {
    const f = statFields(pid);
    return (Number(f[11]) + Number(f[12])) * TICK_US;
  } catch {
    return 0;
  }
}

/** utime + stime of the threads of `pid` whose name (comm) is `name`, µs. */
export function threadCpuMicros(pid: number, name: string): number {
  let total = 0;
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return 0;
  }
  for (const tid of tids) {
    try {
      if (readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim() !== name) continue;
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
      total += (Number(f[11]) + Number(f[12])) * TICK_US;
    } catch {
      // exited meanwhile
    }
  }
  return total;
}

/** utime + stime of `pid` and its descendants, µs. */
export function treeCpuMicros(pid: number): number {
  return processTree(pid).reduce((sum, p) => sum + processCpuMicros(p), 0);
}

/**
 * CPU of `pid` and its descendants, all threads, µs, from /proc/PID/task/TID/schedstat: in ns,
 * where utime + stime count 10 ms ticks (what short interleaved A/B rounds need).
 */
export function treeSchedCpuMicros(pid: number): number {
  let ns = 0;
  for (const p of processTree(pid)) {
    try {
      for (const tid of readdirSync(`/proc/${p}/task`)) {
        try {
          ns += Number(readFileSync(`/proc/${p}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
        } catch {
          // exited meanwhile
        }
      }
    } catch {
      // exited meanwhile
    }
  }
  return ns / 1000;
}

/**
 * Times the main threads of a process tree were scheduled in (the third field of
 * /proc/PID/task/PID/schedstat): for an event loop, its wake-ups (a poll that returned, a timer)
 * plus preemptions. Counts what a change to timers or I/O does to the wake-ups without CPU noise.
 */
export function treeMainThreadSlices(pid: number): number {
  let n = 0;
  for (const p of processTree(pid)) {
    try {
      n += Number(readFileSync(`/proc/${p}/task/${p}/schedstat`, 'utf8').split(' ')[2]);
    } catch {
      // exited meanwhile
    }
  }
  return n;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * CPU of the kernel's own threads (children of kthreadd: ksoftirqd, kworkers), µs. Network receive
 * work that the kernel defers out of the sending process (softirqs under load) is charged there.
 */
export function kernelThreadsCpuMicros(): number {
  let total = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const f = statFields(Number(entry));
      if (f[1] === '2' || entry === '2') total += (Number(f[11]) + Number(f[12])) * TICK_US;
    } catch {
      // exited meanwhile
    }
  }
  return total;
}

/** CPU of the children this process has waited for (the gtlsclient runs), µs. */
export function reapedChildrenCpuMicros(): number {
  const f = statFields('self');
  return (Number(f[13]) + Number(f[14])) * TICK_US;
}

/** Resident set size of `pid` and its descendants, bytes. */
export function treeRssBytes(pid: number): number {
  let total = 0;
  for (const p of processTree(pid)) {
    try {
      const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
      total += Number(m?.[1] ?? 0) * 1024;
    } catch {
      // exited meanwhile
    }
  }
  return total;
}

/** Busy and total jiffies summed over all cores (/proc/stat; idle and iowait count as not busy). */
export function machineJiffies(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest times are inside user already)
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - v[3]! - v[4]!, total };
}

/** Cores busy between two machineJiffies readings over `seconds` of wall time. */
export function busyCores(a: { busy: number }, b: { busy: number }, seconds: number): number {
  return ((b.busy - a.busy) * TICK_US) / 1e6 / seconds;
}

/** UDP counters of this network namespace (/proc/net/snmp): every process in it counts. */
export function udpCounters(): { inDatagrams: number; outDatagrams: number; rcvbufErrors: number } {
  const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Udp: '));
  const names = lines[0]!.split(/\s+/).slice(1);
  const values = lines[1]!.split(/\s+/).slice(1).map(Number);
  const get = (n: string): number => values[names.indexOf(n)] ?? NaN;
  return { inDatagrams: get('InDatagrams'), outDatagrams: get('OutDatagrams'), rcvbufErrors: get('RcvbufErrors') };
}

/** Receive-buffer drops summed over the IPv4 UDP sockets bound to `port` (/proc/net/udp, this netns). */
export function udpSocketDrops(port: number): number {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  let drops = 0;
  for (const line of readFileSync('/proc/net/udp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 13 || !f[1]!.endsWith(`:${hexPort}`)) continue;
    drops += Number(f[f.length - 1]);
  }
  return drops;
}
