/**
 * What sites cost a new connection (issue 9): handshakes/s and proxy CPU per new connection
 * (QUIC handshake + one request for a built-in 1 KiB response) with one site, and with four sites
 * to a non-default site (steered by the kernel's SNI read of the first Initial) and to the default
 * site. Both proxies run side by side (one worker per site); rows are interleaved and repeated, and
 * the medians printed, so a noisy machine shows as spread rather than as a difference.
 *   npx tsx bench/sites-handshakes.ts [seconds per row] [rounds]
 */
import { readFileSync } from 'node:fs';
import { H3Client } from '../test/helpers/h3-client.js';
import { freeUdpPort, startProxy, type RunningProxy } from '../test/helpers/proxy.js';

const SECONDS = Number(process.argv[2] ?? 4);
const ROUNDS = Number(process.argv[3] ?? 3);
const CONCURRENCY = 4;
const BODY = 'x'.repeat(1024);

/** utime + stime of the master and its workers, in microseconds (/proc; 100 Hz clock ticks). */
function cpuMicros(masterPid: number): number {
  const children = readFileSync(`/proc/${masterPid}/task/${masterPid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  let total = 0;
  for (const pid of [masterPid, ...children]) {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    total += (Number(fields[11]) + Number(fields[12])) * 10_000;
  }
  return total;
}

/** Busy share of all cores over a window, from /proc/stat (a noisy machine shows here). */
function cpuTimes(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3]! + f[4]!;
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

const respond = `respond: { status: 200, body: "${BODY}" }`;
function oneSite(port: number): string {
  return `listeners: [{ address: "127.0.0.1:${port}", protocols: [h3] }]\ntls: { state_dir: state }\nworkers: 1\nroutes: [{ ${respond} }]\nlogging: { level: info, access_log: false }\n`;
}
function fourSites(port: number): string {
  const site = (name: string, extra = ''): string => `  ${name}:${extra}\n    names: [${name}.test]\n    routes: [{ ${respond} }]\n`;
  return `listeners: [{ address: "127.0.0.1:${port}", protocols: [h3] }]\ntls: { state_dir: state }\nworkers: 1\nsites:\n${site('a', '\n    default: true')}${site('b')}${site('c')}${site('d')}logging: { level: info, access_log: false }\n`;
}

interface Row {
  readonly label: string;
  readonly proxy: RunningProxy;
  readonly port: number;
  readonly sni: string;
  readonly perSecond: number[];
  readonly cpuUs: number[];
  readonly busy: number[];
}

async function measure(row: Row): Promise<void> {
  let done = 0;
  let failed = 0;
  const cpu0 = cpuMicros(row.proxy.proc.pid!);
  const t0 = cpuTimes();
  const started = performance.now();
  const deadline = started + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < deadline) {
        try {
          const c = await H3Client.connect({ host: '127.0.0.1', port: row.port, sni: row.sni });
          const r = await c.get(`${row.sni}:${row.port}`, '/');
          await c.close();
          if (r.status === 200 && r.body.length === BODY.length) done++;
          else failed++;
        } catch {
          failed++;
        }
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  const t1 = cpuTimes();
  if (failed > 0) throw new Error(`${row.label}: ${failed} connections failed`);
  row.perSecond.push(done / elapsed);
  row.cpuUs.push((cpuMicros(row.proxy.proc.pid!) - cpu0) / done);
  row.busy.push((100 * (t1.busy - t0.busy)) / (t1.total - t0.total));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  const port1 = await freeUdpPort();
  const port4 = await freeUdpPort();
  const quiet = { keepLog: (l: Record<string, unknown>) => l.msg === 'ready' };
  const single = await startProxy(oneSite(port1), quiet);
  const four = await startProxy(fourSites(port4), quiet);
  const rows: Row[] = [
    { label: '1 site', proxy: single, port: port1, sni: 'localhost', perSecond: [], cpuUs: [], busy: [] },
    { label: '4 sites, to site d (kernel SNI)', proxy: four, port: port4, sni: 'd.test', perSecond: [], cpuUs: [], busy: [] },
    { label: '4 sites, to the default site a', proxy: four, port: port4, sni: 'a.test', perSecond: [], cpuUs: [], busy: [] },
  ];
  try {
    for (let round = 0; round < ROUNDS; round++) for (const row of rows) await measure(row);
  } finally {
    await single.stop();
    await four.stop();
  }
  const base = median(rows[0]!.cpuUs);
  console.log(`new connection + 1 KiB request, ${CONCURRENCY} at a time, ${SECONDS} s x ${ROUNDS} rounds, medians (min..max):`);
  for (const r of rows) {
    const span = (xs: number[], f = (x: number) => x.toFixed(0)): string => `${f(median(xs))} (${f(Math.min(...xs))}..${f(Math.max(...xs))})`;
    console.log(
      `  ${r.label.padEnd(34)} ${span(r.perSecond)} handshakes/s   ${span(r.cpuUs)} µs proxy CPU each   ratio ${(median(r.cpuUs) / base).toFixed(2)}   machine busy ${span(r.busy)}%`,
    );
  }
}

await main();
