/**
 * Slow clients through the real proxy (hardening defect 5): slow uploads must not hold the
 * upstream pool hostage. With max_connections: 2 and two uploads dripping one byte every 5 s (as
 * the audit did; it saw another client's GET unanswered for 15 s), a third client's GET is answered
 * within a bound: by queue_timeout (503) when the uploads keep trickling, and with a 200 once
 * request_body_timeout has cut uploads that went silent.
 */
import { execFileSync } from 'node:child_process';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { H3Client, type H3Response } from '../helpers/h3-client.js';
import { enterPrivateNetns } from '../helpers/netns.js';
import { PROXY_BIN, freeUdpPort, startProxy, type RunningProxy } from '../helpers/proxy.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

// The proxy attaches BPF to its sockets: keep it and its clients in a private network namespace.
enterPrivateNetns();

const AUTHORITY = 'localhost';

const post = (path: string, length: number): Array<[string, string]> => [
  [':method', 'POST'],
  [':scheme', 'https'],
  [':authority', AUTHORITY],
  [':path', path],
  ['content-length', String(length)],
];

interface SlowUpload {
  readonly client: H3Client;
  readonly response: Promise<H3Response>;
  stop(): void;
}

/** A client uploading `content-length: 1000` one byte every `everyMs` (never finishing). */
async function slowUpload(port: number, path: string, everyMs: number): Promise<SlowUpload> {
  const client = await H3Client.connect({ host: '127.0.0.1', port, sni: AUTHORITY });
  const { streamId, response } = client.openRequest(post(path, 1000), Buffer.from('x'));
  response.catch(() => {});
  const drip = setInterval(() => client.sendData(streamId, Buffer.from('x')), everyMs);
  return {
    client,
    response,
    stop: () => clearInterval(drip),
  };
}

/** Resolves once the upstream received `n` requests for `path` (counting from now). */
function upstreamRequests(up: TestUpstream, path: string, n: number): Promise<void> {
  return new Promise((resolve) => {
    let seen = 0;
    const onRequest = (url: string): void => {
      if (url === path && ++seen === n) {
        up.events.off('request', onRequest);
        resolve();
      }
    };
    up.events.on('request', onRequest);
  });
}

interface Setup {
  proxy: RunningProxy;
  up: TestUpstream;
  port: number;
}

/** A proxy (one worker) routing /api/ to pool `app` on a test upstream; `extra` is appended YAML. */
function proxyFor(poolOptions: string, extra = ''): Setup {
  const setup = {} as Setup;
  beforeAll(async () => {
    setup.up = await startUpstream('slow-clients');
    setup.port = await freeUdpPort();
    setup.proxy = await startProxy(`
listeners: ["127.0.0.1:${setup.port}"]
workers: 1
tls: { state_dir: state }
routes:
  - path: /api/
    upstream: app
upstreams:
  app: { targets: ["${setup.up.origin}"], ${poolOptions} }
${extra}`);
  });
  afterAll(async () => {
    await setup.proxy?.stop();
    await setup.up?.close();
  });
  return setup;
}

let uploads: SlowUpload[] = [];
afterEach(async () => {
  for (const u of uploads) u.stop();
  await Promise.all(uploads.map((u) => u.client.close()));
  uploads = [];
});

describe('two slow uploads fill max_connections 2 (defaults for every timeout)', () => {
  const setup = proxyFor('max_connections: 2');

  it('a third client GET is answered (503 after queue_timeout, 5 s) well under the 15 s it hung before', async () => {
    const { proxy, up, port } = setup;
    const arrived = upstreamRequests(up, '/api/upload', 2);
    uploads = [await slowUpload(port, '/api/upload', 5_000), await slowUpload(port, '/api/upload', 5_000)];
    await arrived;
    const legit = await H3Client.connect({ host: '127.0.0.1', port, sni: AUTHORITY });
    const started = performance.now();
    const res = await Promise.race([
      legit.get(AUTHORITY, '/api/page'),
      new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error('GET not answered within 9 s')), 9_000)),
    ]);
    const elapsed = performance.now() - started;
    await legit.close();
    expect(res.status).toBe(503);
    // Bound: queue_timeout (5 s default) plus slack for a loaded machine.
    expect(elapsed).toBeGreaterThanOrEqual(4_900);
    expect(elapsed).toBeLessThan(8_000);
    const line = await proxy.waitForLog((l) => l.log === 'access' && l.path === '/api/page');
    expect(line).toMatchObject({ status: 503, reason: expect.stringMatching(/^no free connection within 5s/) });
    // `list` counts it with the worker that turned it away.
    expect(execFileSync(process.execPath, [PROXY_BIN, 'list', '--config', proxy.configFile], { encoding: 'utf8' })).toMatch(/refused upstream queue timeout=1\b/);
  });
});

describe('uploads that go silent are cut by request_body_timeout, freeing the pool', () => {
  const setup = proxyFor('max_connections: 2, queue_timeout: 20s', 'http: { request_body_timeout: 2s }\n');

  it('the slow uploads get 408 after 2 s of silence and the waiting GET is served 200 within ~2 s, not after queue_timeout', async () => {
    const { proxy, up, port } = setup;
    const arrived = upstreamRequests(up, '/api/upload', 2);
    const cancelled = new Promise<void>((resolve) => {
      let n = 0;
      const onAborted = (): void => {
        if (++n === 2) {
          up.events.off('upload-aborted', onAborted);
          resolve();
        }
      };
      up.events.on('upload-aborted', onAborted);
    });
    uploads = [await slowUpload(port, '/api/upload', 5_000), await slowUpload(port, '/api/upload', 5_000)];
    await arrived;
    const legit = await H3Client.connect({ host: '127.0.0.1', port, sni: AUTHORITY });
    const started = performance.now();
    const res = await legit.get(AUTHORITY, '/api/page');
    const elapsed = performance.now() - started;
    await legit.close();
    expect(res.status).toBe(200);
    // Bound: the uploads' 2 s of silence (less the time since they sent their byte) plus slack.
    expect(elapsed).toBeLessThan(4_000);
    for (const u of uploads) expect((await u.response).status).toBe(408);
    await cancelled;
    const lines = proxy.logs.filter((l) => l.log === 'access' && l.path === '/api/upload');
    expect(lines).toHaveLength(2);
    for (const l of lines) expect(l).toMatchObject({ status: 408, reason: 'request body timeout: no bytes for 2s' });
    expect(execFileSync(process.execPath, [PROXY_BIN, 'list', '--config', proxy.configFile], { encoding: 'utf8' })).toMatch(/refused request body timeout=2\b/);
  });
});
