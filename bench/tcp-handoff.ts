/**
 * `npx tsx bench/tcp-handoff.ts`: what the TCP ClientHello handoff costs. Real workers (dist/, run
 * `npx tsc -p tsconfig.json` first) with the master's end of the handoff in this process, and a
 * client process opening one TLS connection per request (HTTP/1.1, `Connection: close`, one at a
 * time). Three ways a connection is served, in interleaved rounds:
 *
 *   single   one site: the worker gives the connection to TLS at once (nothing read before TLS)
 *   direct   two sites, SNI a.test: worker a reads the ClientHello, it is its own, serves it
 *   handoff  two sites, SNI x.b.test: worker a reads the ClientHello and hands the connection
 *            through the master to worker b, which serves it (b accepts nothing itself)
 *
 * Prints per mode connections/s, handshake and request latency (p50, p99) and CPU per connection
 * (workers and master, from /proc), then the differences: what reading the ClientHello adds
 * (direct − single) and what a handoff adds (handoff − direct). The client and the servers share
 * the machine's cores: compare modes of one invocation only. On a machine busy with other work the
 * latencies favour the handoff (its work is spread over three processes, which together get more
 * of the CPU than one); CPU per connection holds up better.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { startSiteWorkers, type SiteWorkers } from '../test/helpers/site-workers.js';

const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 1500);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const WARMUP = 200;

type Mode = 'single' | 'direct' | 'handoff';

interface ClientResult {
  readonly handshakeMs: number[];
  readonly requestMs: number[];
  readonly errors: number;
  readonly wrongSite: number;
  readonly elapsedMs: number;
}

// ---------------------------------------------------------------------------------------------
// Client process: N connections one after the other, each TLS + one request, closed.
// ---------------------------------------------------------------------------------------------

function oneConnection(port: number, servername: string, site: string): Promise<{ handshakeMs: number; requestMs: number; rightSite: boolean }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let handshakeMs = 0;
    let text = '';
    const socket = tls.connect({ host: '127.0.0.1', port, servername, ALPNProtocols: ['http/1.1'], rejectUnauthorized: false }, () => {
      handshakeMs = performance.now() - t0;
      socket.write(`GET / HTTP/1.1\r\nHost: ${servername}\r\nConnection: close\r\n\r\n`);
    });
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (text += d));
    socket.on('end', () => resolve({ handshakeMs, requestMs: performance.now() - t0, rightSite: text.includes(`x-site: ${site}\r\n`) }));
    socket.on('error', reject);
  });
}

async function client(port: number, servername: string, site: string, n: number): Promise<ClientResult> {
  const result: ClientResult = { handshakeMs: [], requestMs: [], errors: 0, wrongSite: 0, elapsedMs: 0 };
  const started = performance.now();
  let errors = 0;
  let wrongSite = 0;
  for (let i = 0; i < n; i++) {
    try {
      const r = await oneConnection(port, servername, site);
      result.handshakeMs.push(r.handshakeMs);
      result.requestMs.push(r.requestMs);
      if (!r.rightSite) wrongSite++;
    } catch {
      errors++;
    }
  }
  return { ...result, errors, wrongSite, elapsedMs: performance.now() - started };
}

// ---------------------------------------------------------------------------------------------
// Bench process: the workers, the master's end of the handoff, the rounds.
// ---------------------------------------------------------------------------------------------

const SITE_A = `  a:
    names: [a.test]
    routes: [{ respond: { status: 200, headers: { x-site: a }, body: "a" } }]
`;
const SITE_B = `  b:
    names: ["*.b.test"]
    routes: [{ respond: { status: 200, headers: { x-site: b }, body: "b" } }]
`;

/** utime + stime of `pid` in µs (/proc; 100 Hz clock ticks). */
function cpuMicros(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

function masterCpuMicros(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

function runClient(port: number, servername: string, site: string, n: number): Promise<ClientResult> {
  const child: ChildProcess = fork(new URL(import.meta.url).pathname, ['client', String(port), servername, site, String(n)], { execArgv: ['--import', 'tsx'] });
  return new Promise((resolve, reject) => {
    child.once('message', (m) => resolve(m as ClientResult));
    child.once('exit', (code) => (code === 0 ? undefined : reject(new Error(`client exited ${code}`))));
  });
}

const percentile = (values: number[], p: number): number => {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
};

interface Round {
  readonly mode: Mode;
  readonly client: ClientResult;
  readonly workerCpuUs: number;
  readonly masterCpuUs: number;
}

async function measure(mode: Mode, setup: SiteWorkers, servername: string, site: string, n: number): Promise<Round> {
  const procs = [...setup.workers.values()].flat();
  const workersBefore = procs.reduce((s, p) => s + cpuMicros(p.pid!), 0);
  const masterBefore = masterCpuMicros();
  const result = await runClient(setup.port, servername, site, n);
  const workerCpuUs = procs.reduce((s, p) => s + cpuMicros(p.pid!), 0) - workersBefore;
  return { mode, client: result, workerCpuUs, masterCpuUs: masterCpuMicros() - masterBefore };
}

async function main(): Promise<void> {
  const single = await startSiteWorkers(SITE_A);
  const multi = await startSiteWorkers(SITE_A + SITE_B);
  try {
    await single.start('a');
    await multi.start('a');
    // b accepts nothing itself: every x.b.test connection is accepted by a and handed over.
    await multi.start('b', { acceptsShared: false });
    const plan: Array<[Mode, SiteWorkers, string, string]> = [
      ['single', single, 'a.test', 'a'],
      ['direct', multi, 'a.test', 'a'],
      ['handoff', multi, 'x.b.test', 'b'],
    ];
    for (const [, setup, name, site] of plan) await runClient(setup.port, name, site, WARMUP);
    const rounds: Round[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      for (const [mode, setup, name, site] of plan) rounds.push(await measure(mode, setup, name, site, CONNECTIONS));
    }
    report(rounds, multi);
  } finally {
    await single.close();
    await multi.close();
  }
}

function report(rounds: Round[], multi: SiteWorkers): void {
  console.log(`${CONNECTIONS} connections per round, ${ROUNDS} rounds per mode (interleaved), one at a time, TLS + 1 HTTP/1.1 request each`);
  console.log('mode      conn/s  hs p50  hs p99  req p50  req p99   CPU µs/conn: workers  master   total  errors wrong-site');
  const summary = new Map<Mode, { reqP50: number; cpu: number }>();
  for (const mode of ['single', 'direct', 'handoff'] as const) {
    const rs = rounds.filter((r) => r.mode === mode);
    const hs = rs.flatMap((r) => r.client.handshakeMs);
    const req = rs.flatMap((r) => r.client.requestMs);
    const n = req.length;
    const workers = rs.reduce((s, r) => s + r.workerCpuUs, 0) / n;
    const master = rs.reduce((s, r) => s + r.masterCpuUs, 0) / n;
    const perS = n / (rs.reduce((s, r) => s + r.client.elapsedMs, 0) / 1000);
    const errors = rs.reduce((s, r) => s + r.client.errors, 0);
    const wrong = rs.reduce((s, r) => s + r.client.wrongSite, 0);
    summary.set(mode, { reqP50: percentile(req, 50), cpu: workers + master });
    console.log(
      `${mode.padEnd(8)} ${perS.toFixed(0).padStart(7)} ${percentile(hs, 50).toFixed(2).padStart(7)} ${percentile(hs, 99).toFixed(2).padStart(7)} ${percentile(req, 50).toFixed(2).padStart(8)} ${percentile(req, 99).toFixed(2).padStart(8)}   ${workers.toFixed(0).padStart(20)} ${master.toFixed(0).padStart(7)} ${(workers + master).toFixed(0).padStart(7)} ${String(errors).padStart(7)} ${String(wrong).padStart(10)}`,
    );
  }
  const diff = (a: Mode, b: Mode): string => `${(summary.get(a)!.cpu - summary.get(b)!.cpu).toFixed(0)} µs CPU, ${(summary.get(a)!.reqP50 - summary.get(b)!.reqP50).toFixed(2)} ms p50`;
  console.log(`reading the ClientHello (direct − single): ${diff('direct', 'single')}`);
  console.log(`a handoff (handoff − direct):              ${diff('handoff', 'direct')}`);
  console.log(`master's handoff counters: ${JSON.stringify(multi.router.counters)}`);
}

if (process.argv[2] === 'client') {
  const [port, servername, site, n] = process.argv.slice(3);
  void client(Number(port), servername!, site!, Number(n)).then((r) => process.send!(r, () => process.exit(0)));
} else {
  await main();
}
