/**
 * The endpoint's defences against hostile first flights, against the real proxy (issue 13, defects
 * 2 and 3): the 3x anti-amplification limit for a silent source, address validation with Retry,
 * a flood of never-completing Initials while real clients still connect and the worker's memory
 * stays bounded, per-worker and per-IP connection limits refused with CONNECTION_REFUSED, and the
 * pending split-ClientHello table bounded and expired by a timer.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { decryptClientInitial } from '../../src/proxy/quic/initial/packet.js';
import { extractCryptoFrames } from '../../src/proxy/quic/initial/frames.js';
import { makeCert } from '../helpers/certs.js';
import { launchH3Chromium } from '../helpers/chromium.js';
import { gtlsclient } from '../helpers/gtlsclient.js';
import { H3Client } from '../helpers/h3-client.js';
import { enterPrivateNetns } from '../helpers/netns.js';
import { freeUdpPort, makeTempDir, PROXY_BIN, startProxy, type RunningProxy } from '../helpers/proxy.js';
import { buildClientInitial, clientHello, quicheClientInitial } from '../helpers/quic-initial.js';

enterPrivateNetns();
const execFileAsync = promisify(execFile);

/** TLS-free transport error CONNECTION_REFUSED (RFC 9000 §20.1). */
const CONNECTION_REFUSED = 0x2;

const running: RunningProxy[] = [];
afterEach(async () => {
  for (const p of running.splice(0)) await p.stop();
});

async function proxyWith(quic: string, extra = '', dir?: string): Promise<{ proxy: RunningProxy; port: number }> {
  const port = await freeUdpPort();
  const proxy = await startProxy(
    `
listeners: ["127.0.0.1:${port}"]
workers: 1
tls: { state_dir: state${extra ? `, ${extra}` : ''} }
quic: { ${quic} }
routes: [{ path: /, respond: { status: 200 } }]
`,
    dir ? { dir } : {},
  );
  running.push(proxy);
  return { proxy, port };
}

async function udpSocket(): Promise<dgram.Socket> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  return sock;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function workerPid(masterPid: number): number {
  const pids = readFileSync(`/proc/${masterPid}/task/${masterPid}/children`, 'utf8').trim().split(/\s+/).map(Number);
  expect(pids.length).toBe(1);
  return pids[0]!;
}

function rssKb(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]);
}

/** The drop counters of `udpgrm-proxy list --config` (label → count). */
async function dropCounters(proxy: RunningProxy): Promise<Map<string, number>> {
  const { stdout } = await execFileAsync(process.execPath, [PROXY_BIN, 'list', '--config', proxy.configFile], { encoding: 'utf8', timeout: 30_000 });
  // Fields of a worker line are separated by two spaces; labels contain single ones.
  const field = stdout
    .split('\n')
    .flatMap((line) => line.split('  '))
    .find((f) => f.startsWith('dropped '));
  const out = new Map<string, number>();
  for (const part of (field?.slice('dropped '.length) ?? '').split(',')) {
    const eq = part.lastIndexOf('=');
    if (eq > 0) out.set(part.slice(0, eq), Number(part.slice(eq + 1)));
  }
  return out;
}

/**
 * The ClientHello of a real quiche client's first Initial and the SCID its transport parameters
 * name (initial_source_connection_id): Initials with that SCID and any DCID are valid ones.
 */
function realClientHello(): { hello: Buffer; scid: Buffer } {
  const scid = randomBytes(16);
  const initial = quicheClientInitial('localhost', ['h3'], scid);
  const frames = extractCryptoFrames(decryptClientInitial(initial).payload).sort((a, b) => a.offset - b.offset);
  return { hello: Buffer.concat(frames.map((f) => f.data)), scid };
}

describe('QUIC endpoint defences', () => {
  it('sends at most 3x what a silent source sent before its address is validated', async () => {
    const { port } = await proxyWith('retry: never, handshake_timeout: 4s');
    const sock = await udpSocket();
    let bytes = 0;
    let datagrams = 0;
    sock.on('message', (m) => {
      bytes += m.length;
      datagrams++;
    });
    const initial = quicheClientInitial('localhost', ['h3'], randomBytes(16));
    expect(initial.length).toBeGreaterThanOrEqual(1200);
    try {
      await new Promise<void>((r) => sock.send(initial, port, '127.0.0.1', () => r()));
      // quiche's PTOs (about 1 s, then doubling) retransmit its flight; the handshake timeout
      // (4 s) ends the attempt. Everything that came back in that time is counted.
      await sleep(6_000);
    } finally {
      sock.close();
    }
    console.log(`silent source: ${datagrams} datagrams, ${bytes} bytes back for ${initial.length} (${(bytes / initial.length).toFixed(2)}x)`);
    expect(datagrams).toBeGreaterThan(0); // answered, not ignored
    expect(bytes, `${datagrams} datagrams, ${bytes} bytes for ${initial.length}`).toBeLessThanOrEqual(3 * initial.length);
  });

  it('discards handshakes that do not complete within handshake_timeout', async () => {
    // 500 Initials carrying only the start of a ClientHello: quiche waits for the rest (and would
    // hold each until the 30 s idle timeout); the handshake timeout ends them all, silently.
    const { proxy, port } = await proxyWith('retry: never, handshake_timeout: 1s');
    const hello = clientHello('localhost', 0, 4000);
    const sock = await udpSocket();
    try {
      for (let i = 0; i < 500; i++) {
        const pkt = buildClientInitial({ dcid: randomBytes(16), scid: randomBytes(8), pn: 0, cryptoFrames: [{ offset: 0, data: hello.subarray(0, 300) }] });
        await new Promise<void>((r) => sock.send(pkt, port, '127.0.0.1', () => r()));
      }
      await sleep(2_000);
    } finally {
      sock.close();
    }
    expect((await dropCounters(proxy)).get('handshake timeout')).toBe(500);
    const { stdout } = await execFileAsync(process.execPath, [PROXY_BIN, 'list', '--config', proxy.configFile], { encoding: 'utf8', timeout: 30_000 });
    expect(stdout).toMatch(/worker 0 .* connections 0 /);
  });

  it('validates addresses with Retry: real clients complete, a token from another address does not', async () => {
    const { proxy, port } = await proxyWith('retry: always');
    const client = await H3Client.connect({ host: '127.0.0.1', port, sni: 'localhost' });
    expect((await client.get('localhost', '/')).status).toBe(200);
    await client.close();
    const r = await gtlsclient('127.0.0.1', port, [`https://localhost:${port}/`]);
    expect(r.statuses, r.output).toEqual([200]);

    // A crafted Initial draws a Retry (long header type 3 in v1) carrying a token...
    const sock = await udpSocket();
    const other = await udpSocket();
    try {
      const dcid = randomBytes(16);
      const { hello, scid } = realClientHello();
      const retry = await new Promise<Buffer>((resolve) => {
        sock.once('message', (m) => resolve(m));
        sock.send(buildClientInitial({ dcid, scid, pn: 0, cryptoFrames: [{ offset: 0, data: hello }] }), port, '127.0.0.1');
      });
      expect(retry[0]! & 0xf0).toBe(0xf0);
      expect(retry.length).toBeLessThan(1200);
      const rDcidLen = retry[5]!;
      const rScidLen = retry[6 + rDcidLen]!;
      const retryScid = retry.subarray(7 + rDcidLen, 7 + rDcidLen + rScidLen);
      const token = retry.subarray(7 + rDcidLen + rScidLen, retry.length - 16);
      // ...which, sent back from another port, is not accepted: that client gets a Retry again.
      const again = await new Promise<Buffer>((resolve) => {
        other.once('message', (m) => resolve(m));
        other.send(buildClientInitial({ dcid: retryScid, scid, pn: 1, token, cryptoFrames: [{ offset: 0, data: hello }] }), port, '127.0.0.1');
      });
      expect(again[0]! & 0xf0).toBe(0xf0);
    } finally {
      sock.close();
      other.close();
    }
    expect((await dropCounters(proxy)).get('invalid retry token')).toBeGreaterThanOrEqual(1);
  });

  it('keeps serving real clients through a flood of never-completing Initials, with bounded memory', async () => {
    const { proxy, port } = await proxyWith('handshake_timeout: 5s');
    const worker = workerPid(proxy.proc.pid!);
    // Warm up (JIT, TLS contexts) so the baseline is a serving worker's.
    const warm = await H3Client.connect({ host: '127.0.0.1', port, sni: 'localhost' });
    expect((await warm.get('localhost', '/')).status).toBe(200);
    await warm.close();
    const before = rssKb(worker);
    // Launched before the flood: the browser's own start-up is not what is measured.
    const browser = await launchH3Chromium({ host: '127.0.0.1', port }, path.join(proxy.dir, 'state/self-signed.crt'));

    const { hello, scid } = realClientHello();
    const sockets = await Promise.all(Array.from({ length: 100 }, () => udpSocket()));
    let sent = 0;
    let flooding = true;
    const floodStart = performance.now();
    // About 3,000 valid Initials per second, each with a fresh DCID, from 100 source ports.
    const flood = (async () => {
      while (flooding) {
        const started = performance.now();
        await Promise.all(
          sockets.map((s) => {
            const pkt = buildClientInitial({ dcid: randomBytes(16), scid, pn: 0, cryptoFrames: [{ offset: 0, data: hello }] });
            return new Promise<void>((r) => s.send(pkt, port, '127.0.0.1', () => r()));
          }),
        );
        sent += sockets.length;
        await sleep(Math.max(0, 33 - (performance.now() - started)));
      }
    })();
    try {
      await sleep(1_500);
      // Real clients during the flood: each completes its handshake (through a Retry) and is served.
      let ok = 0;
      for (let i = 0; i < 3; i++) {
        try {
          const c = await H3Client.connect({ host: '127.0.0.1', port, sni: 'localhost', timeoutMs: 5_000 });
          if ((await c.get('localhost', '/')).status === 200) ok++;
          await c.close();
        } catch (err) {
          console.log('legit client failed', (err as Error).message, [...(await dropCounters(proxy))]);
        }
      }
      const g = await gtlsclient('127.0.0.1', port, [`https://localhost:${port}/`]);
      const { page, protocols } = await browser.newPage();
      const url = `https://127.0.0.1:${port}/`;
      const chromium = await page.goto(url);
      expect(ok).toBe(3);
      expect(g.statuses, g.output).toEqual([200]);
      expect(chromium?.status()).toBe(200);
      expect(protocols.get(url)).toBe('h3');
      await sleep(500);
    } finally {
      flooding = false;
      await flood;
      for (const s of sockets) s.close();
      await browser.close();
    }
    const rate = sent / ((performance.now() - floodStart) / 1000);
    const after = rssKb(worker);
    const counters = await dropCounters(proxy);
    console.log(`flood: ${sent} Initials (${Math.round(rate)}/s); worker RSS ${before} kB -> ${after} kB; retries ${counters.get('answered with retry') ?? 0}`);
    expect(sent).toBeGreaterThan(3_000);
    expect(rate).toBeGreaterThan(1_000);
    expect(counters.get('answered with retry') ?? 0).toBeGreaterThan(sent / 2);
    // Without Retry each Initial held a connection (~30 kB) until the idle timeout: ~200 MB here.
    expect(after - before, `worker RSS ${before} kB -> ${after} kB`).toBeLessThan(64 * 1024);
  });

  it.each([
    ['per-IP', 'retry: never, max_connections_per_ip: 2'],
    ['per-worker', 'max_connections: 2'],
  ])('refuses connections over the %s limit with CONNECTION_REFUSED', async (_limit, quic) => {
    {
      const { proxy, port } = await proxyWith(quic);
      const a = await H3Client.connect({ host: '127.0.0.1', port, sni: 'localhost' });
      const b = await H3Client.connect({ host: '127.0.0.1', port, sni: 'localhost' });
      // The third is refused (after a Retry where retry is enabled), cleanly and at once.
      await expect(H3Client.connect({ host: '127.0.0.1', port, sni: 'localhost' })).rejects.toThrow(new RegExp(`0x${CONNECTION_REFUSED.toString(16)}\\)`));
      expect((await a.get('localhost', '/')).status).toBe(200);
      await a.close();
      // A closed connection frees its place.
      const c = await H3Client.connect({ host: '127.0.0.1', port, sni: 'localhost' });
      expect((await c.get('localhost', '/')).status).toBe(200);
      await b.close();
      await c.close();
      const counters = await dropCounters(proxy);
      expect(counters.get(quic.includes('per_ip') ? 'refused max_connections_per_ip' : 'refused max_connections'), quic).toBeGreaterThanOrEqual(1);
      expect(proxy.logs.filter((l) => l.msg === 'worker died; restarting it on the same sockets')).toEqual([]);
    }
  });

  it('bounds pending split ClientHellos by entries and expires them on a timer', async () => {
    const dir = makeTempDir();
    const certs = ['a', 'b'].map((n) => makeCert(dir, n, `${n}.test`));
    const { proxy, port } = await proxyWith(
      'retry: never, pending_client_hellos: 64, pending_client_hello_timeout: 1s',
      `certificates: [{ names: [a.test], cert: ${certs[0]!.cert}, key: ${certs[0]!.key} }, { names: [b.test], cert: ${certs[1]!.cert}, key: ${certs[1]!.key} }]`,
      dir,
    );
    // 500 attempts whose ClientHello announces 4,096 bytes and never gets past its first 300.
    const hello = clientHello('a.test', 0, 4000);
    const sock = await udpSocket();
    try {
      for (let i = 0; i < 500; i++) {
        const pkt = buildClientInitial({ dcid: randomBytes(16), scid: randomBytes(8), pn: 0, cryptoFrames: [{ offset: 0, data: hello.subarray(0, 300) }] });
        await new Promise<void>((r) => sock.send(Buffer.concat([pkt, randomBytes(8_000)]), port, '127.0.0.1', () => r()));
      }
    } finally {
      sock.close();
    }
    // A real client still connects at once (the oldest attempts made room).
    const client = await H3Client.connect({ host: '127.0.0.1', port, sni: 'a.test' });
    expect((await client.get('a.test', '/')).status).toBe(200);
    await client.close();
    // Nothing else arrives, yet the timer expires what was left.
    await sleep(1_800);
    const counters = await dropCounters(proxy);
    const evicted = counters.get('pending client hello evicted') ?? 0;
    const expired = counters.get('pending client hello expired') ?? 0;
    expect(evicted).toBeGreaterThanOrEqual(500 - 64);
    expect(expired).toBeGreaterThanOrEqual(1);
    expect(evicted + expired).toBe(500);
  });
});
