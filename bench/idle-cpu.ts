/**
 * CPU per second of each of our proxy's processes (master, each worker; main thread + other
 * threads, from /proc/PID/task/TID/schedstat) in the seconds after a heavy load like the
 * side-by-side bench's warm-up (2 × 1,500 gtlsclient requests, 1 KiB loads until N requests, 500
 * new connections, 32 MiB), idle or under a trickle of gtlsclient connections (2 at a time, one
 * 1 KiB request each, as the "new connection" row). Shows what lands in a short measuring window
 * besides the connections themselves: timers, V8's memory reducer and other GCs.
 *   npx tsx bench/idle-cpu.ts [CHECKOUT=.] [seconds=60] [trickle=0|1] [kib requests=20000]
 * CHECKOUT must have its dist/ built. PROXY_NODE_OPTIONS becomes the proxy's NODE_OPTIONS (e.g.
 * `--import=HOOK` with a hook calling v8.setFlagsFromString('--trace-gc')); SHOW_GC=1 prints the
 * proxy's --trace-gc lines.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { gtlsclient } from '../test/helpers/gtlsclient.js';
import { H3Client } from '../test/helpers/h3-client.js';
import { enterPrivateNetns } from '../test/helpers/netns.js';
import { freeUdpPort, startProxy } from '../test/helpers/proxy.js';
import { h3Load } from './h3-load.js';
import { processTree } from './proc-stats.js';
import { benchCertificate, ourProxyConfig, startUpstreamProcess } from './targets.js';

const [checkout = '.', secondsArg = '60', trickleArg = '0', kibArg = '20000'] = process.argv.slice(2);
const helpers = (await import(path.resolve(checkout, 'test/helpers/proxy.ts'))) as { startProxy: typeof startProxy };
const KIB = '/bytes?n=1024';

function threadsCpu(pid: number): { main: number; other: number } {
  let main = 0;
  let other = 0;
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const ns = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
        if (Number(tid) === pid) main += ns;
        else other += ns;
      } catch {
        // the thread exited meanwhile
      }
    }
  } catch {
    // the process exited meanwhile
  }
  return { main: main / 1e6, other: other / 1e6 };
}

enterPrivateNetns();
const cert = benchCertificate();
const upstream = await startUpstreamProcess();
const port = await freeUdpPort();
const proxy = await helpers.startProxy(ourProxyConfig(port, { upstreamPort: upstream.port, cert, workers: 2 }), {
  env: { NODE_OPTIONS: process.env.PROXY_NODE_OPTIONS ?? '' },
  onLog: (l) => { if (process.env.SHOW_GC && typeof l.msg === 'string' && /Mark-Compact|Scavenge|Mark-sweep/.test(l.msg)) process.stdout.write(`  gc ${l.msg}\n`); },
});
try {
  const t0 = performance.now();
  await Promise.all([0, 1].map(() => gtlsclient('127.0.0.1', port, [`https://localhost${KIB}`], { sni: 'localhost', requests: 1500, timeoutMs: 120_000 })));
  for (let n = 0; n < Number(kibArg); ) n += (await h3Load(port, KIB, { connections: 4, inFlight: 32, durationMs: 2000 })).requests;
  for (let i = 0; i < 500; i += 10) {
    await Promise.all(Array.from({ length: 10 }, async () => {
      const c = await H3Client.connect({ host: '127.0.0.1', port, sni: 'localhost', timeoutMs: 20_000 });
      try { await c.get('localhost', KIB); } finally { await c.close(); }
    }));
  }
  let bytes = 0;
  while (bytes < 16 * 1048576) bytes += (await h3Load(port, '/bytes?n=1048576', { connections: 1, inFlight: 2, durationMs: 1000 })).bytes;
  await gtlsclient('127.0.0.1', port, ['https://localhost/bytes?n=1048576'], { sni: 'localhost', requests: 16, timeoutMs: 120_000 });
  process.stdout.write(`load done in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);

  const pids = processTree(proxy.proc.pid!);
  const names = pids.map((p, i) => (i === 0 ? 'master' : `w${i}`));
  let conns = 0;
  let stop = false;
  const trickle = trickleArg === '1'
    ? Promise.all([0, 1].map(async () => {
        while (!stop) if ((await gtlsclient('127.0.0.1', port, [`https://localhost${KIB}`], { sni: 'localhost' })).statuses[0] === 200) conns++;
      }))
    : Promise.resolve();
  process.stdout.write(`sec  conns  ${names.map((n) => `${n}:main+other ms`.padEnd(22)).join('')} total ms\n`);
  let prev = pids.map(threadsCpu);
  let prevConns = 0;
  const totals = pids.map(() => ({ main: 0, other: 0 }));
  for (let s = 1; s <= Number(secondsArg); s++) {
    await new Promise((r) => setTimeout(r, 1000));
    const now = pids.map(threadsCpu);
    const d = now.map((x, i) => ({ main: x.main - prev[i]!.main, other: x.other - prev[i]!.other }));
    d.forEach((x, i) => { totals[i]!.main += x.main; totals[i]!.other += x.other; });
    const sum = d.reduce((a, x) => a + x.main + x.other, 0);
    process.stdout.write(`${String(s).padStart(3)}  ${String(conns - prevConns).padStart(5)}  ${d.map((x) => `${x.main.toFixed(1)}+${x.other.toFixed(1)}`.padEnd(22)).join('')} ${sum.toFixed(1)}${conns - prevConns ? `  (${(sum / (conns - prevConns)).toFixed(2)} ms/conn)` : ''}\n`);
    prev = now;
    prevConns = conns;
  }
  stop = true;
  await trickle;
  process.stdout.write(`totals: ${totals.map((x, i) => `${names[i]} ${x.main.toFixed(0)}+${x.other.toFixed(0)} ms`).join(', ')}; ${conns} connections\n`);
} finally {
  await proxy.stop();
  upstream.stop();
}
