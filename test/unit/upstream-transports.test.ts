/**
 * Upstream targets beyond plain HTTP/1.1 over TCP, through ProxyHandler and the in-memory exchange
 * against real servers: https verified against a test CA (SNI, a client certificate, a wrong CA →
 * 502 with the reason), HTTP/2 (node:http2), a unix socket, and DNS names resolved to every
 * address and re-resolved on their interval.
 */
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UpstreamPool, type LookupFn } from '../../src/proxy/upstream/index.js';
import { makeCa, type TestCa } from '../helpers/certs.js';
import { addCleanup, installHandlerHarness, lineOf, makeProxy, poolConfig, proxyRoute, textResponse } from '../helpers/handler-harness.js';

installHandlerHarness();

let dir: string;
let ca: TestCa;
let otherCa: TestCa;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'upstream-transports-'));
  ca = makeCa(dir, 'ca');
  otherCa = makeCa(dir, 'other-ca');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Listens on `host`:0 (or a unix path), closes after the test; resolves with the port (0 for unix). */
async function listen(server: Server, where: { host: string; port?: number } | { path: string }): Promise<number> {
  if ('path' in where) server.listen(where.path);
  else server.listen(where.port ?? 0, where.host);
  await once(server, 'listening');
  addCleanup(async () => {
    (server as http.Server).closeAllConnections?.();
    server.close();
    await once(server, 'close');
  });
  const address = server.address();
  return typeof address === 'object' && address !== null ? (address as AddressInfo).port : 0;
}

/** Answers "NAME HTTP-VERSION SNI" (SNI: what the client sent, or "-"). */
function describing(name: string) {
  return (req: IncomingMessage | http2.Http2ServerRequest, res: ServerResponse | http2.Http2ServerResponse): void => {
    const sni = (req.socket as TLSSocket).servername || '-';
    res.setHeader('content-type', 'text/plain');
    res.end(`${name} ${req.httpVersion} ${sni}`);
  };
}

const route = [proxyRoute('routes[0]', 'app')];

/** The Via field of the client's response. */
function viaOf(ex: { readonly responseHeaders: readonly (readonly [string, string])[] | undefined }): string | undefined {
  return ex.responseHeaders?.find(([name]) => name === 'via')?.[1];
}

/** Rejects when `promise` has not settled within `ms`, so a hang fails fast and says what hung. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not settled within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

describe('https targets', () => {
  it('verifies the target against the pool CA; no SNI to an IP target, server_name is sent as SNI', async () => {
    const leaf = ca.issue('tls-ip', ['127.0.0.1', 'app.internal']);
    const server = https.createServer({ cert: readFileSync(leaf.cert), key: readFileSync(leaf.key) }, describing('tls'));
    const port = await listen(server, { host: '127.0.0.1' });
    const proxy = makeProxy(route, [poolConfig('app', [`https://127.0.0.1:${port}`], { tls: { caFile: ca.cert } })]);
    const ex = proxy.send({ path: '/' });
    expect(await ex.finished).toBe('ended');
    expect(ex.responseBody.toString()).toBe('tls 1.1 -');
    expect(await lineOf(ex)).toMatchObject({ status: 200, upstream: `https://127.0.0.1:${port}` });

    const named = makeProxy([proxyRoute('routes[0]', 'named')], [poolConfig('named', [`https://127.0.0.1:${port}`], { tls: { caFile: ca.cert, serverName: 'app.internal' } })]);
    const ex2 = named.send({ path: '/' });
    expect(await ex2.finished).toBe('ended');
    expect(ex2.responseBody.toString()).toBe('tls 1.1 app.internal');
  });

  it('answers 502 with the verification failure as the reason when the CA does not match, and sends nothing', async () => {
    const leaf = ca.issue('tls-wrong', ['127.0.0.1']);
    let requests = 0;
    const server = https.createServer({ cert: readFileSync(leaf.cert), key: readFileSync(leaf.key) }, (_req, res) => {
      requests++;
      res.end('should not be reached');
    });
    server.on('tlsClientError', () => {});
    const port = await listen(server, { host: '127.0.0.1' });
    const proxy = makeProxy(route, [poolConfig('app', [`https://127.0.0.1:${port}`], { tls: { caFile: otherCa.cert } })]);
    const ex = proxy.send({ path: '/' });
    expect(await ex.finished).toBe('ended');
    expect(ex.events).toEqual(textResponse(502, 'upstream unavailable\n'));
    const line = await lineOf(ex);
    expect(line).toMatchObject({ status: 502, upstream: `https://127.0.0.1:${port}` });
    expect(line['reason']).toMatch(/^TLS certificate verification failed: UNABLE_TO_VERIFY_LEAF_SIGNATURE \(/);
    expect(requests).toBe(0);

    // Without a CA of its own the pool trusts the system store, which does not know the test CA.
    const system = makeProxy(route, [poolConfig('app', [`https://127.0.0.1:${port}`])]);
    const ex2 = system.send({ path: '/' });
    expect(await ex2.finished).toBe('ended');
    expect((await lineOf(ex2))['reason']).toMatch(/^TLS certificate verification failed: /);
  });

  it('refuses a certificate issued for another name (ERR_TLS_CERT_ALTNAME_INVALID)', async () => {
    const leaf = ca.issue('tls-other-name', ['other.internal']);
    const server = https.createServer({ cert: readFileSync(leaf.cert), key: readFileSync(leaf.key) }, describing('tls'));
    const port = await listen(server, { host: '127.0.0.1' });
    const proxy = makeProxy(route, [poolConfig('app', [`https://127.0.0.1:${port}`], { tls: { caFile: ca.cert, serverName: 'app.internal' } })]);
    const ex = proxy.send({ path: '/' });
    expect(await ex.finished).toBe('ended');
    expect(ex.status).toBe(502);
    expect((await lineOf(ex))['reason']).toMatch(/^TLS certificate verification failed: ERR_TLS_CERT_ALTNAME_INVALID/);
  });

  it('presents the pool client certificate to a target that requires one', async () => {
    const leaf = ca.issue('tls-mtls', ['127.0.0.1']);
    const client = ca.issue('proxy-client', ['proxy.internal'], { client: true });
    const server = https.createServer({ cert: readFileSync(leaf.cert), key: readFileSync(leaf.key), ca: readFileSync(ca.cert), requestCert: true, rejectUnauthorized: true }, (req, res) => {
      res.end(`client ${(req.socket as TLSSocket).getPeerCertificate().subject.CN}`);
    });
    server.on('tlsClientError', () => {});
    const port = await listen(server, { host: '127.0.0.1' });
    const proxy = makeProxy(route, [poolConfig('app', [`https://127.0.0.1:${port}`], { tls: { caFile: ca.cert, certFile: client.cert, keyFile: client.key } })]);
    const ex = proxy.send({ path: '/' });
    expect(await ex.finished).toBe('ended');
    expect(ex.responseBody.toString()).toBe('client proxy.internal');

    // The same target refuses a pool without one.
    const anonymous = makeProxy(route, [poolConfig('app', [`https://127.0.0.1:${port}`], { tls: { caFile: ca.cert } })]);
    const ex2 = anonymous.send({ path: '/' });
    expect(await ex2.finished).toBe('ended');
    expect(ex2.status).toBe(502);
  });
});

describe('HTTP/2 targets', () => {
  it('speaks HTTP/2 with protocol h2: concurrent requests share one connection; bodies pass', async () => {
    const leaf = ca.issue('h2', ['127.0.0.1']);
    const server = http2.createSecureServer({ cert: readFileSync(leaf.cert), key: readFileSync(leaf.key) }, (req, res) => {
      if (req.url === '/upload') {
        let n = 0;
        req.on('data', (c: Buffer) => (n += c.length));
        req.on('end', () => res.end(`got ${n} over ${req.httpVersion}`));
        return;
      }
      describing('h2')(req, res);
    });
    let sessions = 0;
    server.on('session', () => sessions++);
    const port = await listen(server, { host: '127.0.0.1' });
    const proxy = makeProxy(route, [poolConfig('app', [`https://127.0.0.1:${port}`], { protocol: 'h2', tls: { caFile: ca.cert } })]);
    const first = proxy.send({ path: '/' });
    expect(await first.finished).toBe('ended');
    expect(first.responseBody.toString()).toBe('h2 2.0 -');
    // Via names the version the response came in (RFC 9110 §7.6.3).
    expect(viaOf(first)).toBe('2 udpgrm-proxy');
    const parallel = [1, 2, 3, 4].map(() => proxy.send({ path: '/' }));
    for (const ex of parallel) {
      expect(await ex.finished).toBe('ended');
      expect(ex.responseBody.toString()).toBe('h2 2.0 -');
      expect(viaOf(ex)).toBe('2 udpgrm-proxy');
    }
    const upload = proxy.send({ method: 'POST', path: '/upload', contentLength: 10, body: ['01234', '56789'] });
    expect(await upload.finished).toBe('ended');
    expect(upload.responseBody.toString()).toBe('got 10 over 2.0');
    expect(sessions).toBe(1);
  });

  it('protocol h2 falls back to HTTP/1.1 when the target does not offer h2; concurrent requests each get a connection', async () => {
    const leaf = ca.issue('h1-only', ['127.0.0.1']);
    const held: ServerResponse[] = [];
    const arrived: Array<() => void> = [];
    const server = https.createServer({ cert: readFileSync(leaf.cert), key: readFileSync(leaf.key) }, (_req, res) => {
      held.push(res);
      arrived.shift()?.();
      if (held.length === 2) for (const r of held) r.end();
    });
    const nextRequest = (): Promise<void> => new Promise((resolve) => arrived.push(resolve));
    let connections = 0;
    server.on('secureConnection', () => connections++);
    const port = await listen(server, { host: '127.0.0.1' });
    const proxy = makeProxy(route, [poolConfig('app', [`https://127.0.0.1:${port}`], { protocol: 'h2', tls: { caFile: ca.cert } })]);
    // The first request holds its connection; the second needs one of its own (no pipelining).
    const first = nextRequest();
    const one = proxy.send({ method: 'HEAD', path: '/1' });
    await first;
    const second = nextRequest();
    const two = proxy.send({ method: 'HEAD', path: '/2' });
    await within(second, 5_000, 'the second request');
    for (const ex of [one, two]) {
      expect(await ex.finished).toBe('ended');
      expect(ex.status).toBe(200);
      expect(viaOf(ex)).toBe('1.1 udpgrm-proxy');
    }
    expect(held.map((r) => `${r.req.httpVersion} ${(r.req.socket as TLSSocket).alpnProtocol}`)).toEqual(['1.1 http/1.1', '1.1 http/1.1']);
    expect(connections).toBe(2);
  });

  it('protocol h1 never offers h2 to the same server', async () => {
    const leaf = ca.issue('h2-or-h1', ['127.0.0.1']);
    const server = http2.createSecureServer({ cert: readFileSync(leaf.cert), key: readFileSync(leaf.key), allowHTTP1: true }, describing('both'));
    const port = await listen(server, { host: '127.0.0.1' });
    const proxy = makeProxy(route, [poolConfig('app', [`https://127.0.0.1:${port}`], { tls: { caFile: ca.cert } })]);
    const ex = proxy.send({ path: '/' });
    expect(await ex.finished).toBe('ended');
    expect(ex.responseBody.toString()).toBe('both 1.1 -');
    expect(viaOf(ex)).toBe('1.1 udpgrm-proxy');
  });
});

describe('unix socket targets', () => {
  it('forwards requests (with bodies) to a node:http server on a unix socket', async () => {
    const path = join(dir, 'app.sock');
    const server = http.createServer((req, res) => {
      let n = 0;
      req.on('data', (c: Buffer) => (n += c.length));
      req.on('end', () => res.end(`unix ${req.method} ${req.url} host=${req.headers.host} body=${n}`));
    });
    await listen(server, { path });
    const proxy = makeProxy(route, [poolConfig('app', [`unix:${path}`])]);
    const get = proxy.send({ path: '/a?b=1' });
    expect(await get.finished).toBe('ended');
    expect(get.responseBody.toString()).toBe('unix GET /a?b=1 host=app.example body=0');
    expect(await lineOf(get)).toMatchObject({ status: 200, upstream: `unix:${path}` });
    const post = proxy.send({ method: 'POST', path: '/p', contentLength: 3, body: ['abc'] });
    expect(await post.finished).toBe('ended');
    expect(post.responseBody.toString()).toBe('unix POST /p host=app.example body=3');
  });

  it('answers 502 connect ENOENT when the socket file is missing', async () => {
    const path = join(dir, 'missing.sock');
    const proxy = makeProxy(route, [poolConfig('app', [`unix:${path}`])]);
    const ex = proxy.send({ path: '/' });
    expect(await ex.finished).toBe('ended');
    expect(ex.status).toBe(502);
    expect(await lineOf(ex)).toMatchObject({ reason: 'connect ENOENT', upstream: `unix:${path}` });
  });
});

describe('DNS names', () => {
  /** Log lines a pool writes (pino, parsed). */
  function captureLog(): { log: pino.Logger; lines: Array<Record<string, unknown>> } {
    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ base: undefined, timestamp: false }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    return { log, lines };
  }

  /** A server answering its own name on `host`:`port` (port 0: any). */
  async function nameServer(name: string, host: string, port = 0): Promise<number> {
    const server = http.createServer((_req, res) => res.end(name));
    return listen(server, { host, port });
  }

  /** The next 'targets' event of `pool` whose labels satisfy `want`. */
  function targetsWhen(pool: UpstreamPool, want: (labels: readonly string[]) => boolean): Promise<readonly string[]> {
    return new Promise((resolve) => {
      const on = (labels: readonly string[]): void => {
        if (!want(labels)) return;
        pool.events.off('targets', on);
        resolve(labels);
      };
      pool.events.on('targets', on);
    });
  }

  it('resolves localhost with the system resolver and sends to its address', async () => {
    const port = await nameServer('local', '127.0.0.1');
    const pool = new UpstreamPool(poolConfig('app', [`http://localhost:${port}`]));
    addCleanup(() => pool.destroy());
    const labels = await targetsWhen(pool, (l) => l.length > 0);
    expect(labels).toContain(`http://localhost:${port} (127.0.0.1)`);
    const response = await pool.forward({ method: 'GET', path: '/', headers: [['host', 'app.example']] });
    expect(response.target).toBe(`http://localhost:${port} (127.0.0.1)`);
    response.body.resume();
  });

  it('uses every address of a name, follows changes on each re-resolution, and keeps the last addresses when the name stops resolving', async () => {
    const port = await nameServer('one', '127.0.0.1');
    await nameServer('two', '127.0.0.2', port);
    let answer: string[] | Error = ['127.0.0.1', '127.0.0.2'];
    const lookups: Array<() => void> = [];
    const lookup: LookupFn = (name) => {
      expect(name).toBe('app.test');
      lookups.splice(0).forEach((f) => f());
      return answer instanceof Error ? Promise.reject(answer) : Promise.resolve(answer);
    };
    const nextLookup = (): Promise<void> => new Promise((resolve) => lookups.push(resolve));
    const { log, lines } = captureLog();
    const url = `http://app.test:${port}`;
    const proxy = makeProxy(route, [poolConfig('app', [url], { resolveIntervalMs: 20 })], { upstreams: { lookup, log } });
    const pool = proxy.registry.get('app')!;

    // A request before the first answer waits for it rather than failing.
    const early = proxy.send({ path: '/' });
    expect(await early.finished).toBe('ended');
    expect(['one', 'two']).toContain(early.responseBody.toString());
    expect(pool.stats().map((s) => s.target)).toEqual([`${url} (127.0.0.1)`, `${url} (127.0.0.2)`]);
    const served = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const ex = proxy.send({ path: '/' });
      await ex.finished;
      served.add(ex.responseBody.toString());
    }
    expect([...served].sort()).toEqual(['one', 'two']);

    answer = ['127.0.0.2'];
    expect(await targetsWhen(pool, (l) => l.length === 1)).toEqual([`${url} (127.0.0.2)`]);
    for (let i = 0; i < 3; i++) {
      const ex = proxy.send({ path: '/' });
      await ex.finished;
      expect(ex.responseBody.toString()).toBe('two');
    }

    answer = Object.assign(new Error('getaddrinfo ENOTFOUND app.test'), { code: 'ENOTFOUND' });
    await nextLookup();
    await nextLookup();
    expect(pool.stats().map((s) => s.target)).toEqual([`${url} (127.0.0.2)`]);
    const during = proxy.send({ path: '/' });
    await during.finished;
    expect(during.responseBody.toString()).toBe('two');
    const warnings = lines.filter((l) => l['msg'] === 'upstream name no longer resolves; keeping its last addresses');
    // Logged once for the whole failure streak, with what it keeps.
    expect(warnings).toEqual([expect.objectContaining({ upstream: 'app', target: url, err: 'ENOTFOUND', kept: ['127.0.0.2'] })]);

    answer = ['127.0.0.1'];
    expect(await targetsWhen(pool, (l) => l.length === 1 && l[0]!.endsWith('(127.0.0.1)'))).toEqual([`${url} (127.0.0.1)`]);
    expect(lines.some((l) => l['msg'] === 'upstream name resolves again')).toBe(true);
  });

  it('answers 503 no healthy target when a name never resolved', async () => {
    const lookup: LookupFn = () => Promise.reject(Object.assign(new Error('getaddrinfo ENOTFOUND nowhere.test'), { code: 'ENOTFOUND' }));
    const proxy = makeProxy(route, [poolConfig('app', ['http://nowhere.test:80'])], { upstreams: { lookup } });
    const ex = proxy.send({ path: '/' });
    expect(await ex.finished).toBe('ended');
    expect(ex.events).toEqual(textResponse(503, 'no healthy upstream target\n'));
    expect(await lineOf(ex)).toMatchObject({ status: 503, upstream: 'app', reason: 'no healthy target (no target address resolved)' });
  });
});
