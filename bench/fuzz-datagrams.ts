/**
 * `npx tsx bench/fuzz-datagrams.ts [COUNT] [RATE]` (root): sends COUNT (default 1,000,000) seeded
 * random and mutated datagrams (test/helpers/datagram-fuzz.ts: random bytes, long headers of any
 * version with CIDs up to 255 bytes, mutated real Initials, short headers) at RATE per second
 * (default 20,000) to a running proxy with two certificates (so the split-ClientHello path runs
 * too), inside a private network namespace. Then checks and prints: every worker still the same
 * process, a real client (gtlsclient) and our client still get 200, worker memory before, right
 * after and once the garbage connections have timed out, and the proxy's own counters.
 */
import { execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { makeCert } from '../test/helpers/certs.js';
import { datagramFuzzer } from '../test/helpers/datagram-fuzz.js';
import { gtlsclient } from '../test/helpers/gtlsclient.js';
import { H3Client } from '../test/helpers/h3-client.js';
import { enterPrivateNetns } from '../test/helpers/netns.js';
import { PROXY_BIN, freeUdpPort, makeTempDir, startProxy, workerPids } from '../test/helpers/proxy.js';

const COUNT = Number(process.argv[2] ?? 1_000_000);
const RATE = Number(process.argv[3] ?? 20_000);
const SEED_EVERY = 100_000;
const IDLE_TIMEOUT_S = 5;

function rssMiB(pids: number[]): number[] {
  return pids.map((pid) => {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return Math.round(Number(m?.[1] ?? NaN) / 102.4) / 10;
  });
}

async function realClientsServed(port: number): Promise<string> {
  const g = await gtlsclient('127.0.0.1', port, ['https://a.test/'], { sni: 'a.test' });
  const c = await H3Client.connect({ host: '127.0.0.1', port, sni: 'b.test' });
  const ours = (await c.get('b.test', '/')).status;
  await c.close();
  return `gtlsclient ${g.statuses.join(',') || 'none'}, H3Client ${ours}`;
}

async function main(): Promise<void> {
  enterPrivateNetns();
  const dir = makeTempDir('fuzz-');
  const [a, b] = ['a', 'b'].map((n) => makeCert(dir, n, `${n}.test`));
  const port = await freeUdpPort();
  const proxy = await startProxy(
    `
listeners: ["127.0.0.1:${port}"]
workers: 2
quic: { idle_timeout: ${IDLE_TIMEOUT_S}s }
logging: { access_log: false }
tls:
  state_dir: state
  certificates:
    - { names: [a.test], cert: ${a!.cert}, key: ${a!.key} }
    - { names: [b.test], cert: ${b!.cert}, key: ${b!.key} }
routes: [{ path: /, respond: { status: 200, body: "ok" } }]
`,
    { dir },
  );
  try {
    const masterPid = proxy.proc.pid!;
    console.log(`before: ${await realClientsServed(port)}`);
    const pids = workerPids(masterPid);
    const rssBefore = rssMiB(pids);

    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    const batch = Math.max(1, Math.round(RATE / 100));
    let next = datagramFuzzer(1);
    const t0 = performance.now();
    for (let sent = 0; sent < COUNT; ) {
      const n = Math.min(batch, COUNT - sent);
      await Promise.all(Array.from({ length: n }, () => new Promise<void>((r) => sock.send(next(), port, '127.0.0.1', () => r()))));
      sent += n;
      if (sent % SEED_EVERY < n) next = datagramFuzzer(1 + Math.floor(sent / SEED_EVERY));
      // Pace to RATE: wait until the schedule catches up with what was sent.
      const due = t0 + (sent / RATE) * 1000;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    sock.close();
    const seconds = (performance.now() - t0) / 1000;
    console.log(`sent ${COUNT} datagrams in ${seconds.toFixed(1)} s (${Math.round(COUNT / seconds)}/s)`);

    const rssAfter = rssMiB(pids);
    const served = await realClientsServed(port);
    await new Promise((r) => setTimeout(r, (IDLE_TIMEOUT_S + 2) * 1000));
    const alive = workerPids(masterPid);
    console.log(`after: ${served}`);
    console.log(`workers ${pids.join(',')} → ${alive.join(',')} (${alive.join() === pids.join() ? 'same processes, none died' : 'CHANGED: a worker died'})`);
    console.log(`worker RSS MiB: before ${rssBefore.join('/')}, right after ${rssAfter.join('/')}, after idle timeout ${rssMiB(alive).join('/')}`);
    console.log(execFileSync(process.execPath, [PROXY_BIN, 'list', '--config', proxy.configFile], { encoding: 'utf8' }));
  } finally {
    await proxy.stop();
  }
}

await main();
