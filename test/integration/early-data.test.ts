/**
 * 0-RTT (RFC 9114 §10.9, RFC 8470, RFC 8446 §8): a resumed client sends a POST and a GET in early
 * data; its first flight is captured and re-sent verbatim from another socket, while the original
 * connection is alive and again after it closed. The POST must reach the upstream once, only after
 * the handshake completed; the GET is served from early data with `Early-Data: 1`; the replays
 * reach the upstream with nothing.
 */
import dgram from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCert } from '../helpers/certs.js';
import { H3Client } from '../helpers/h3-client.js';
import { enterPrivateNetns } from '../helpers/netns.js';
import { freeUdpPort, makeTempDir, startProxy, type RunningProxy } from '../helpers/proxy.js';
import { startSplitHelloRelay } from '../helpers/split-hello-relay.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { ClientHelloAssembler } from '../../src/proxy/quic/initial/index.js';

// The proxy attaches BPF to its sockets: keep it and its clients in a private network namespace.
enterPrivateNetns();

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function replay(flight: readonly Buffer[], port: number): Promise<void> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  for (const d of flight) await new Promise<void>((r) => sock.send(d, port, '127.0.0.1', () => r()));
  // Whatever the proxy answers is ignored: an attacker replaying cannot decrypt it anyway.
  await sleep(1000);
  sock.close();
}

interface Setup {
  readonly proxy: RunningProxy;
  readonly up: TestUpstream;
  readonly port: number;
}

/** A one-worker proxy routing /api/ to a recording upstream, with one or two certificates. */
async function startSetup(certificateCount: 1 | 2, quic = ''): Promise<Setup> {
  const up = await startUpstream('early');
  const dir = makeTempDir();
  const certs = [makeCert(dir, 'a', 'a.test'), makeCert(dir, 'b', 'b.test')].slice(0, certificateCount);
  const port = await freeUdpPort();
  const list = certs.map((c, i) => `{ names: [${i === 0 ? 'a' : 'b'}.test], cert: ${c.cert}, key: ${c.key} }`).join(', ');
  const yaml = [
    `listeners: ["127.0.0.1:${port}"]`,
    'workers: 1',
    'logging: { level: info, access_log: true }',
    `tls: { state_dir: state, certificates: [${list}] }`,
    quic,
    'routes: [{ path: /api/, upstream: app }]',
    `upstreams: { app: { targets: ["${up.origin}"] } }`,
  ].join('\n');
  return { proxy: await startProxy(yaml, { dir }), up, port };
}

/** Starts a setup for the enclosing describe block (stopped after it); the getter reads it in tests. */
function useSetup(certificateCount: 1 | 2, quic = ''): () => Setup {
  let setup: Setup | undefined;
  beforeAll(async () => {
    setup = await startSetup(certificateCount, quic);
  });
  afterAll(async () => {
    await setup?.proxy.stop();
    await setup?.up.close();
  });
  return () => setup!;
}

/** A resumable session from a first connection (with one request on it, so the ticket has arrived). */
async function ticket(port: number): Promise<Uint8Array> {
  const first = await H3Client.connect({ host: '127.0.0.1', port, sni: 'a.test', earlyData: true });
  expect((await first.get('a.test', '/api/warmup')).status).toBe(200);
  const session = first.session();
  expect(session).not.toBeNull();
  await first.close();
  return session!;
}

for (const certificateCount of [1, 2] as const) {
  describe(`0-RTT replay (${certificateCount} certificate(s))`, () => {
    const setup = useSetup(certificateCount);

    it('serves a safe request early, holds a POST for the handshake, and a replayed first flight reaches the upstream with nothing', async () => {
      const { proxy, up, port } = setup();
      const session = await ticket(port);

      const flight: Buffer[] = [];
      const c = await H3Client.open({ host: '127.0.0.1', port, sni: 'a.test', session, earlyData: true, firstFlight: flight });
      expect(c.isInEarlyData).toBe(true);
      const body = Buffer.from('amount=100');
      const post = c.request(
        [
          [':method', 'POST'],
          [':scheme', 'https'],
          [':authority', 'a.test'],
          [':path', '/api/transfer'],
          ['content-type', 'application/x-www-form-urlencoded'],
          ['content-length', String(body.length)],
        ],
        body,
      );
      const get = c.get('a.test', '/api/page');
      const [p, g] = await Promise.all([post, get]);
      await c.handshake;
      expect(c.isResumed).toBe(true);
      expect(p.status).toBe(200);
      expect(g.status).toBe(200);
      // The first flight held the requests (Initial plus 0-RTT packets).
      expect(flight.length).toBeGreaterThan(0);

      // Replayed while the original connection is alive, then after it is gone.
      await replay(flight, port);
      await c.close();
      await sleep(500);
      await replay(flight, port);

      const posts = up.log.filter((r) => r.url === '/api/transfer');
      const gets = up.log.filter((r) => r.url === '/api/page');
      // The legitimate POST once, and only once; marked as received in early data (RFC 8470 §5.1).
      expect(posts.map((r) => r.method)).toEqual(['POST']);
      expect(posts[0]!.headers['early-data']).toBe('1');
      // The GET was served from early data, marked; replays produced no second request of any kind.
      expect(gets.length).toBe(1);
      expect(gets[0]!.headers['early-data']).toBe('1');

      // The proxy says how each early request was handled: the GET served in early data, the POST
      // held until the handshake completed.
      const access = proxy.logs.filter((l) => l.log === 'access');
      expect(access.filter((l) => l.path === '/api/page').map((l) => l.earlyData)).toEqual(['served-early']);
      expect(access.filter((l) => l.path === '/api/transfer').map((l) => l.earlyData)).toEqual(['held-for-handshake']);
      expect(access.filter((l) => l.path === '/api/warmup').map((l) => l.earlyData)).toEqual([undefined]);
    });
  });
}

describe('quic.early_data: off', () => {
  const setup = useSetup(1, 'quic: { early_data: off }');

  it('issues tickets without early data, still resumes, and marks nothing early', async () => {
    const { proxy, up, port } = setup();
    const session = await ticket(port);
    const c = await H3Client.open({ host: '127.0.0.1', port, sni: 'a.test', session, earlyData: true });
    // The ticket carries no early-data allowance (max_early_data_size 0), so the client cannot try.
    expect(c.isInEarlyData).toBe(false);
    const g = await c.get('a.test', '/api/page');
    await c.handshake;
    expect(c.isResumed).toBe(true);
    expect(g.status).toBe(200);
    await c.close();
    expect(up.log.filter((r) => r.url === '/api/page').map((r) => r.headers['early-data'])).toEqual([undefined]);
    const line = await proxy.waitForLog((l) => l.log === 'access' && l.path === '/api/page');
    expect(line.earlyData).toBeUndefined();
  });
});

describe('one certificate, a ClientHello quiche cannot read from the first datagram', () => {
  const setup = useSetup(1);

  // The single-certificate path lets quiche read the first Initial before deciding on 0-RTT; with
  // the server_name only in the second datagram quiche has not read the ClientHello yet, so the
  // proxy reads that Initial itself for the replay guard and the handshake completes on the next.
  it('completes the handshake when the server_name arrives in the second datagram', async () => {
    const { port } = setup();
    const relay = await startSplitHelloRelay({ host: '127.0.0.1', port });
    try {
      const c = await H3Client.connect({ host: '127.0.0.1', port: relay.port, sni: 'a.test', timeoutMs: 15_000 });
      const [first, second] = await relay.split;
      const reader = new ClientHelloAssembler();
      expect(reader.push(first)).toBe('need-more');
      expect(reader.push(second)).toMatchObject({ serverName: 'a.test' });
      expect((await c.get('a.test', '/api/split')).status).toBe(200);
      await c.close();
    } finally {
      await relay.close();
    }
  });
});
