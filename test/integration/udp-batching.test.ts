/**
 * The batched UDP paths through the real proxy, with real clients (ngtcp2's gtlsclient, our
 * quiche client) and 10 MiB of pseudo-random bytes checked by SHA-256:
 *   - sends: UDP GSO (quic.gso) on, counted (the worker reports datagrams sent in GSO sends), and
 *     off (none). A wrong segment size or a misplaced cut corrupts packets, which the clients
 *     drop: the download stalls or fails its hash.
 *   - receives: uploads, whose datagrams queue up and are read in recvmmsg batches (counted). A
 *     datagram delivered twice, lost, cut or given the wrong source breaks the upload or its hash.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { gtlsclient } from '../helpers/gtlsclient.js';
import { H3Client } from '../helpers/h3-client.js';
import { freeUdpPort, listJson, startProxy, type RunningProxy } from '../helpers/proxy.js';
import { seededSha256, startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { enterPrivateNetns } from '../helpers/netns.js';

enterPrivateNetns();

const SIZE = 10 * 1024 * 1024;

/** Datagrams the proxy's workers sent in GSO sends, GSO sends the kernel refused, datagrams read in batches. */
async function udpCounts(proxy: RunningProxy): Promise<{ datagrams: number; fallbacks: number; batchedIn: number }> {
  const listed = await listJson(proxy);
  let datagrams = 0;
  let fallbacks = 0;
  let batchedIn = 0;
  for (const g of listed.generations) {
    for (const w of g.workers) {
      datagrams += Number(w.quic?.gsoDatagrams ?? 0);
      fallbacks += Number(w.quic?.gsoFallbacks ?? 0);
      batchedIn += Number(w.quic?.batchedDatagramsIn ?? 0);
    }
  }
  return { datagrams, fallbacks, batchedIn };
}

async function gsoCounts(proxy: RunningProxy): Promise<{ datagrams: number; fallbacks: number }> {
  const { datagrams, fallbacks } = await udpCounts(proxy);
  return { datagrams, fallbacks };
}

let up: TestUpstream;
beforeAll(async () => {
  up = await startUpstream('a');
});
afterAll(async () => {
  await up?.close();
});

async function startGsoProxy(port: number, gso: 'auto' | 'off'): Promise<RunningProxy> {
  return startProxy(`
listeners: ["127.0.0.1:${port}", "[::1]:${port}"]
workers: 1
tls: { state_dir: state }
quic: { gso: ${gso} }
routes:
  - upstream: app
upstreams:
  app: { targets: ["${up.origin}"] }
`);
}

async function gtlsDownload(host: string, port: number, seed: string): Promise<void> {
  const r = await gtlsclient(host, port, [`https://localhost:${port}/random?n=${SIZE}&seed=${seed}`], { timeoutMs: 40_000 });
  expect(r.statuses).toEqual([200]);
  const body = r.bodies.get(`random?n=${SIZE}&seed=${seed}`) ?? [...r.bodies.values()][0];
  expect(body?.length).toBe(SIZE);
  expect(createHash('sha256').update(body!).digest('hex')).toBe(seededSha256(seed, SIZE));
}

describe('quic.gso: auto', () => {
  let proxy: RunningProxy;
  let port: number;
  beforeAll(async () => {
    port = await freeUdpPort();
    proxy = await startGsoProxy(port, 'auto');
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  it('delivers 10 MiB intact to gtlsclient over IPv4, in GSO sends', async () => {
    const before = await gsoCounts(proxy);
    await gtlsDownload('127.0.0.1', port, 'gso-v4');
    const after = await gsoCounts(proxy);
    // 10 MiB is ~7,800 datagrams of 1350 bytes; most leave in runs.
    expect(after.datagrams - before.datagrams).toBeGreaterThan(SIZE / 1350 / 2);
    expect(after.fallbacks).toBe(0);
  });

  it('delivers 16 responses of 1 MiB on one connection at once intact (streams take turns at the send capacity)', async () => {
    // Every stream waits for credit at some point; when a received packet frees capacity, the
    // writable streams are offered it until one takes nothing. A stream never offered it again
    // stalls its response (gtlsclient gives up, a body is short) or corrupts none: the hashes say.
    const n = 1024 * 1024;
    const seeds = Array.from({ length: 16 }, (_, i) => `concurrent-${i}`);
    const r = await gtlsclient('127.0.0.1', port, seeds.map((seed) => `https://localhost:${port}/random?n=${n}&seed=${seed}`), { timeoutMs: 60_000 });
    expect(r.statuses).toEqual(seeds.map(() => 200));
    for (const seed of seeds) {
      const body = r.bodies.get(`random?n=${n}&seed=${seed}`);
      expect(body?.length, seed).toBe(n);
      expect(createHash('sha256').update(body!).digest('hex'), seed).toBe(seededSha256(seed, n));
    }
  });

  it('delivers 10 MiB intact to gtlsclient over IPv6', async () => {
    const before = await gsoCounts(proxy);
    await gtlsDownload('::1', port, 'gso-v6');
    expect((await gsoCounts(proxy)).datagrams - before.datagrams).toBeGreaterThan(SIZE / 1350 / 2);
  });

  it('delivers 10 MiB intact to the quiche client, and requests on the same connection still work', async () => {
    const client = await H3Client.connect({ host: '127.0.0.1', port, sni: 'localhost' });
    try {
      const r = await client.get('localhost', `/random?n=${SIZE}&seed=gso-quiche`);
      expect(r.status).toBe(200);
      expect(r.body.length).toBe(SIZE);
      expect(createHash('sha256').update(r.body).digest('hex')).toBe(seededSha256('gso-quiche', SIZE));
      expect((await client.get('localhost', '/hello')).status).toBe(200);
    } finally {
      await client.close();
    }
  });

  it('takes a 10 MiB upload from gtlsclient intact, reading queued datagrams in batches', async () => {
    const body = randomBytes(SIZE);
    const file = path.join(proxy.dir, 'upload.bin');
    writeFileSync(file, body);
    const before = await udpCounts(proxy);
    const r = await gtlsclient('127.0.0.1', port, [`https://localhost:${port}/echo`], { method: 'POST', dataFile: file, timeoutMs: 40_000 });
    expect(r.statuses).toEqual([200]);
    const echo = JSON.parse(r.bodies.get('echo')!.toString()) as { bodyLength: number; bodySha256: string };
    expect(echo).toEqual(expect.objectContaining({ bodyLength: SIZE, bodySha256: createHash('sha256').update(body).digest('hex') }));
    // ~7,800 datagrams of 1350 bytes or less; while the worker is busy they queue up.
    expect((await udpCounts(proxy)).batchedIn - before.batchedIn).toBeGreaterThan(0);
  });

  it('takes 10 MiB uploads from the quiche client on two connections at once intact', async () => {
    const clients = await Promise.all([0, 1].map(() => H3Client.connect({ host: '127.0.0.1', port, sni: 'localhost' })));
    try {
      const bodies = clients.map(() => randomBytes(SIZE));
      const answers = await Promise.all(clients.map((c, i) => c.request([[':method', 'POST'], [':scheme', 'https'], [':authority', 'localhost'], [':path', '/echo']], bodies[i])));
      answers.forEach((r, i) => {
        expect(r.status).toBe(200);
        expect(JSON.parse(r.body.toString())).toEqual(expect.objectContaining({ bodyLength: SIZE, bodySha256: createHash('sha256').update(bodies[i]!).digest('hex') }));
      });
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });
});

describe('quic.gso: off', () => {
  let proxy: RunningProxy;
  let port: number;
  beforeAll(async () => {
    port = await freeUdpPort();
    proxy = await startGsoProxy(port, 'off');
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  it('delivers 10 MiB intact to gtlsclient, one datagram per packet', async () => {
    await gtlsDownload('127.0.0.1', port, 'gso-off');
    expect(await gsoCounts(proxy)).toEqual({ datagrams: 0, fallbacks: 0 });
  });
});
