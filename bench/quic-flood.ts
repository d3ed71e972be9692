/**
 * `tsx bench/quic-flood.ts`: the issue-13 flood as a soak. Valid client Initials that never
 * complete (a real quiche ClientHello under a fresh DCID each), FLOOD_RATE per second (default
 * 2,000) from FLOOD_PORTS source ports (default 200) for FLOOD_SECONDS (default 10), against the
 * real proxy with its default limits, while a real client handshakes and GETs every 200 ms. Prints
 * the legit success rate, the worker's RSS before / peak / after, and the proxy's drop counters.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { extractCryptoFrames } from '../src/proxy/quic/initial/frames.js';
import { decryptClientInitial } from '../src/proxy/quic/initial/packet.js';
import { H3Client } from '../test/helpers/h3-client.js';
import { freeUdpPort, PROXY_BIN, startProxy } from '../test/helpers/proxy.js';
import { buildClientInitial, quicheClientInitial } from '../test/helpers/quic-initial.js';

const RATE = Number(process.env.FLOOD_RATE ?? 2000);
const PORTS = Number(process.env.FLOOD_PORTS ?? 200);
const SECONDS = Number(process.env.FLOOD_SECONDS ?? 10);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function rssKb(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

const port = await freeUdpPort();
const proxy = await startProxy(`
listeners: ["127.0.0.1:${port}"]
workers: 1
tls: { state_dir: state }
routes: [{ path: /, respond: { status: 200 } }]
`);
try {
  const worker = Number(readFileSync(`/proc/${proxy.proc.pid}/task/${proxy.proc.pid}/children`, 'utf8').trim().split(/\s+/)[0]);
  const warm = await H3Client.connect({ host: '127.0.0.1', port, sni: 'localhost' });
  await warm.get('localhost', '/');
  await warm.close();
  const before = rssKb(worker);
  let peak = before;

  const scid = randomBytes(16);
  const initial = quicheClientInitial('localhost', ['h3'], scid);
  const hello = Buffer.concat(extractCryptoFrames(decryptClientInitial(initial).payload).sort((a, b) => a.offset - b.offset).map((f) => f.data));
  const sockets = await Promise.all(
    Array.from({ length: PORTS }, async () => {
      const s = dgram.createSocket('udp4');
      await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
      return s;
    }),
  );
  let sent = 0;
  let flooding = true;
  const tickMs = 20;
  const perTick = Math.max(1, Math.round((RATE * tickMs) / 1000));
  const flood = (async () => {
    let i = 0;
    while (flooding) {
      const t = performance.now();
      await Promise.all(
        Array.from({ length: perTick }, () => {
          const pkt = buildClientInitial({ dcid: randomBytes(16), scid, pn: 0, cryptoFrames: [{ offset: 0, data: hello }] });
          const s = sockets[i++ % sockets.length]!;
          return new Promise<void>((r) => s.send(pkt, port, '127.0.0.1', () => r()));
        }),
      );
      sent += perTick;
      peak = Math.max(peak, rssKb(worker));
      await sleep(Math.max(0, tickMs - (performance.now() - t)));
    }
  })();
  let ok = 0;
  let failed = 0;
  const started = performance.now();
  while (performance.now() - started < SECONDS * 1000) {
    try {
      const c = await H3Client.connect({ host: '127.0.0.1', port, sni: 'localhost', timeoutMs: 5000 });
      if ((await c.get('localhost', '/')).status === 200) ok++;
      else failed++;
      await c.close();
    } catch {
      failed++;
    }
    await sleep(200);
  }
  flooding = false;
  await flood;
  for (const s of sockets) s.close();
  const during = performance.now() - started;
  await sleep(12_000); // past the handshake timeout (10 s): what the flood left behind is gone
  const after = rssKb(worker);
  const { stdout } = await promisify(execFile)(process.execPath, [PROXY_BIN, 'list', '--config', proxy.configFile], { encoding: 'utf8' });
  console.log(`flood: ${sent} Initials in ${(during / 1000).toFixed(1)} s (${Math.round(sent / (during / 1000))}/s) from ${PORTS} ports`);
  console.log(`legit handshakes + GET: ${ok} ok, ${failed} failed`);
  console.log(`worker RSS: before ${before} kB, peak ${peak} kB (+${peak - before}), 12 s after ${after} kB`);
  console.log(stdout.split('\n').filter((l) => l.includes('worker')).join('\n'));
} finally {
  await proxy.stop();
}
