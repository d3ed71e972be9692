/**
 * `npx tsx bench/scrape-cost.ts`: what scraping /metrics costs the data path. Runs the real proxy
 * (2 workers, a `respond` route) under HTTP/2 load from h2load, alternating runs without and
 * with a scrape loop (SCRAPES_PER_S scrapes of /metrics per second, each one asking every worker
 * for its counts over IPC), and prints requests/s of each run, the mean difference, and scrape
 * latencies. The client, the proxy and the scraper share the machine's cores, so compare runs
 * of one invocation only.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { h2load } from '../test/helpers/h2load.js';
import { freeUdpPort, startProxy } from '../test/helpers/proxy.js';

/** Requests per run (h2load's -D stops counting at its default -n, so runs are sized by count). */
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 60_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SCRAPES_PER_S = Number(process.env.SCRAPES_PER_S ?? 10);

function get(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let n = 0;
        res.on('data', (c: Buffer) => (n += c.length));
        res.on('end', () => (res.statusCode === 200 ? resolve(n) : reject(new Error(`status ${res.statusCode}`))));
      })
      .on('error', reject);
  });
}

/** Scrapes every 1/SCRAPES_PER_S s until stopped; returns each scrape's duration (ms). */
function scrapeLoop(port: number): { stop(): Promise<{ durations: number[]; bytes: number }> } {
  const durations: number[] = [];
  let bytes = 0;
  let running = true;
  const loop = (async () => {
    const period = 1000 / SCRAPES_PER_S;
    while (running) {
      const t0 = performance.now();
      bytes = await get(port, '/metrics');
      const ms = performance.now() - t0;
      durations.push(ms);
      await new Promise((r) => setTimeout(r, Math.max(0, period - ms)));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { durations, bytes };
    },
  };
}

/** utime + stime in µs of the master (first) and each of its workers (/proc; 100 Hz ticks). */
function cpuMicros(masterPid: number): { master: number; workers: number } {
  const of = (pid: number): number => {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10_000;
  };
  const children = readFileSync(`/proc/${masterPid}/task/${masterPid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  return { master: of(masterPid), workers: children.reduce((n, pid) => n + of(pid), 0) };
}

const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

async function main(): Promise<void> {
  const port = await freeUdpPort();
  let adminPort = await freeUdpPort();
  while (adminPort === port) adminPort = await freeUdpPort();
  const proxy = await startProxy(
    `
listeners: ["127.0.0.1:${port}"]
workers: 2
tls: { state_dir: state }
routes: [{ path: /, respond: { status: 200, body: "ok\\n" } }]
logging: { level: info, access_log: false }
# h2load does not reconnect after GOAWAY: no per-connection request limit in the way.
http: { max_requests_per_connection: 1000000000 }
admin: { listen: "127.0.0.1:${adminPort}" }
`,
    { keepLog: (l) => l.msg === "ready" },
  );
  try {
    const url = `https://127.0.0.1:${port}/`;
    // CPU per scrape with no load: the workers' part is what a scrape takes from the data path.
    const IDLE_SCRAPES = 200;
    const c0 = cpuMicros(proxy.proc.pid!);
    for (let i = 0; i < IDLE_SCRAPES; i++) await get(adminPort, '/metrics');
    const c1 = cpuMicros(proxy.proc.pid!);
    console.log(
      `idle: CPU per scrape: master ${((c1.master - c0.master) / IDLE_SCRAPES).toFixed(0)} µs, all workers ${((c1.workers - c0.workers) / IDLE_SCRAPES).toFixed(0)} µs (2 workers; 10 ms clock ticks over ${IDLE_SCRAPES} scrapes)`,
    );
    const args = ['-n', String(REQUESTS), '-c', '4', '-m', '16', '-t', '1'];
    await h2load(url, ['-n', '2000', '-c', '4', '-m', '16']); // warm-up (JIT, TLS session setup)
    const off: number[] = [];
    const on: number[] = [];
    const scrapeMs: number[] = [];
    let metricsBytes = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const a = await h2load(url, args);
      off.push(a.reqPerSec);
      const loop = scrapeLoop(adminPort);
      const b = await h2load(url, args);
      const s = await loop.stop();
      on.push(b.reqPerSec);
      scrapeMs.push(...s.durations);
      metricsBytes = s.bytes;
      if (a.failed + a.errored + b.failed + b.errored > 0) throw new Error('h2load saw failed requests');
      console.log(`round ${round + 1}: without scrapes ${a.reqPerSec.toFixed(0)} req/s, with ${SCRAPES_PER_S}/s scrapes ${b.reqPerSec.toFixed(0)} req/s (${s.durations.length} scrapes)`);
    }
    const sorted = [...scrapeMs].sort((x, y) => x - y);
    const diff = ((mean(on) - mean(off)) / mean(off)) * 100;
    console.log(`mean: without ${mean(off).toFixed(0)} req/s, with ${mean(on).toFixed(0)} req/s: ${diff >= 0 ? '+' : ''}${diff.toFixed(1)}%`);
    console.log(`scrape: ${sorted.length} scrapes, ${metricsBytes} bytes each, p50 ${pct(sorted, 50).toFixed(1)} ms, p99 ${pct(sorted, 99).toFixed(1)} ms, max ${sorted.at(-1)?.toFixed(1)} ms`);
  } finally {
    await proxy.stop();
  }
}

await main();
