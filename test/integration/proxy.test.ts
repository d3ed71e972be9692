/**
 * The real proxy binary against real HTTP/3 clients (ngtcp2's gtlsclient) and real HTTP/1.1
 * upstreams: routing, proxy semantics, bodies both ways, errors, IPv6.
 */
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gtlsclient } from '../helpers/gtlsclient.js';
import { freeUdpPort, startProxy, type RunningProxy } from '../helpers/proxy.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { enterPrivateNetns } from '../helpers/netns.js';

// The proxy attaches BPF to its sockets: keep it and its clients in a private network namespace.
enterPrivateNetns();

describe('HTTP/3 reverse proxy with gtlsclient', () => {
  let up: TestUpstream;
  let proxy: RunningProxy;
  let port: number;
  let deadPort: number;

  beforeAll(async () => {
    up = await startUpstream('a');
    port = await freeUdpPort();
    const dead = await startUpstream('dead');
    deadPort = dead.port;
    await dead.close(); // nothing listens there any more: connections are refused
    proxy = await startProxy(`
listeners: ["127.0.0.1:${port}", "[::1]:${port}"]
workers: 1
tls: { state_dir: state }
routes:
  - path: /api/
    upstream: app
    headers: { x-route: api }
  - path: /down/
    upstream: down
  - path: /timeout/
    upstream: slow
  - path: /
    respond: { status: 200, headers: { content-type: text/plain }, body: "hello\\n" }
upstreams:
  app: { targets: ["${up.origin}"] }
  down: { targets: ["http://127.0.0.1:${deadPort}"], connect_timeout: 2s }
  slow: { targets: ["${up.origin}"], response_timeout: 300ms }
logging: { level: info, access_log: true }
`);
  });

  afterAll(async () => {
    await proxy?.stop();
    await up?.close();
  });

  it('serves a built-in respond route', async () => {
    const r = await gtlsclient('127.0.0.1', port, [`https://localhost:${port}/`]);
    expect(r.statuses).toEqual([200]);
    expect(r.bodies.get('index.html')?.toString()).toBe('hello\n');
  });

  it('proxies GET with Host, X-Forwarded-*, Via and route headers', async () => {
    const r = await gtlsclient('127.0.0.1', port, [`https://example.test:${port}/api/echo?x=1`], { sni: 'localhost' });
    expect(r.statuses).toEqual([200]);
    const echo = JSON.parse([...r.bodies.values()][0]!.toString());
    expect(echo.method).toBe('GET');
    expect(echo.url).toBe('/api/echo?x=1');
    expect(echo.headers.host).toBe(`example.test:${port}`);
    expect(echo.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(echo.headers['x-forwarded-proto']).toBe('https');
    expect(echo.headers.via).toMatch(/udpgrm-proxy/);
    expect(r.output).toMatch(/\[x-route: api\]/);
    expect(r.output).toMatch(/\[x-upstream: a\]/);
    // Hop-by-hop fields of the upstream response never reach the client.
    expect(r.output).not.toMatch(/\[keep-alive:/);
    expect(r.output).not.toMatch(/\[connection:/);
  });

  it('streams a 1 MiB POST body to the upstream intact', async () => {
    const body = randomBytes(1024 * 1024);
    const file = path.join(proxy.dir, 'body.bin');
    writeFileSync(file, body);
    const r = await gtlsclient('127.0.0.1', port, [`https://localhost:${port}/api/echo`], { method: 'POST', dataFile: file });
    expect(r.statuses).toEqual([200]);
    const echo = JSON.parse(r.bodies.get('echo')!.toString());
    expect(echo.bodyLength).toBe(body.length);
    expect(echo.bodySha256).toBe(createHash('sha256').update(body).digest('hex'));
  });

  it('serves 200 requests on one connection', async () => {
    const r = await gtlsclient('127.0.0.1', port, [`https://localhost:${port}/api/hello`], { requests: 200, timeoutMs: 60_000 });
    expect(r.statuses.length).toBe(200);
    expect(r.statuses.every((s) => s === 200)).toBe(true);
    const connections = new Set(proxy.logs.filter((l) => l.log === 'access' && l.path === '/api/hello').map((l) => l.connection));
    expect(connections.size).toBe(1);
  });

  it('streams a 20 MiB response body', async () => {
    const n = 20 * 1024 * 1024;
    const r = await gtlsclient('127.0.0.1', port, [`https://localhost:${port}/api/bytes?n=${n}`], { timeoutMs: 60_000 });
    expect(r.statuses).toEqual([200]);
    const got = [...r.bodies.values()][0]!;
    expect(got.length).toBe(n);
    expect(got.subarray(0, 26).toString()).toBe('abcdefghijklmnopqrstuvwxyz');
  });

  it('answers on the IPv6 listener', async () => {
    const r = await gtlsclient('::1', port, [`https://localhost:${port}/`]);
    expect(r.statuses).toEqual([200]);
  });

  it('answers 502 when the upstream refuses connections', async () => {
    const r = await gtlsclient('127.0.0.1', port, [`https://localhost:${port}/down/x`]);
    expect(r.statuses).toEqual([502]);
    const line = await proxy.waitForLog((l) => l.log === 'access' && l.path === '/down/x');
    expect(line.reason).toMatch(/ECONNREFUSED|refused/i);
  });

  it('answers 504 when the upstream is too slow', async () => {
    const r = await gtlsclient('127.0.0.1', port, [`https://localhost:${port}/timeout/slow?ms=3000`]);
    expect(r.statuses).toEqual([504]);
    const line = await proxy.waitForLog((l) => l.log === 'access' && l.path === '/timeout/slow?ms=3000');
    expect(String(line.reason)).toMatch(/timeout/i);
  });

  it('resets the stream when the upstream dies mid-body, and the connection survives', async () => {
    const r = await gtlsclient('127.0.0.1', port, [`https://localhost:${port}/api/reset`, `https://localhost:${port}/`], { requests: 2 });
    // The second request on the same connection still succeeds.
    expect(r.statuses).toContain(200);
    const line = await proxy.waitForLog((l) => l.log === 'access' && l.path === '/api/reset');
    expect(String(line.reason)).toMatch(/reset/);
  });
});
