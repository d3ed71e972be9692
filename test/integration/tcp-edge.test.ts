/**
 * The TCP edge (HTTP/1.1 and HTTP/2 over TLS, the http_redirect listener) of a ProxyServer run in
 * this process on real listening sockets, driven by clients written by others: Debian's curl
 * (--http1.1, --http2) and h2load, plus node:http2 and raw TLS sockets for what those cannot send.
 */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeCa } from '../helpers/certs.js';
import { h2load } from '../helpers/h2load.js';
import { h1Socket, rawH1, statusOf } from '../helpers/raw-tls.js';
import { run, startTcpEdge, useTcpEdge } from '../helpers/tcp-edge.js';

const fx = useTcpEdge();

function curl(version: '--http1.1' | '--http2', url: string, extra: readonly string[] = []) {
  return run('curl', ['-sS', '-k', version, '-D', '-', ...extra, url]);
}

/** Status code and lowercased headers of the last response in curl's -D - output. */
function parseHead(out: string): { status: number; headers: Map<string, string>; body: string } {
  const end = out.indexOf('\r\n\r\n');
  const head = out.slice(0, end).split('\r\n');
  const status = Number(head[0]!.split(' ')[1]);
  const headers = new Map<string, string>();
  for (const line of head.slice(1)) {
    const i = line.indexOf(':');
    headers.set(line.slice(0, i).toLowerCase(), line.slice(i + 1).trim());
  }
  return { status, headers, body: out.slice(end + 4) };
}

describe('curl over HTTP/1.1 and HTTP/2', () => {
  for (const version of ['--http1.1', '--http2'] as const) {
    const proto = version === '--http2' ? 'h2' : 'h1';

    it(`${proto}: GET through the upstream, with Via and Alt-Svc`, async () => {
      const r = await curl(version, `https://127.0.0.1:${fx.edge.port}/up/echo`);
      expect(r.code, r.stderr).toBe(0);
      const res = parseHead(r.stdout);
      expect(res.status).toBe(200);
      expect(res.headers.get('alt-svc')).toBe(`h3=":${fx.edge.port}"; ma=86400`);
      const echo = JSON.parse(res.body) as { method: string; headers: Record<string, string> };
      expect(echo.method).toBe('GET');
      expect(echo.headers.via).toBe(`${proto === 'h2' ? '2' : '1.1'} udpgrm-proxy`);
      expect(echo.headers['x-forwarded-proto']).toBe('https');
      const access = fx.edge.logs.filter((l) => l.log === 'access' && l.path === '/up/echo' && l.protocol === proto);
      expect(access.length).toBeGreaterThan(0);
    });

    it(`${proto}: a 1 MiB POST arrives whole (the upstream's sha256)`, async () => {
      const body = randomBytes(1024 * 1024);
      const file = path.join(fx.edge.dir, `post-${proto}.bin`);
      writeFileSync(file, body);
      const r = await curl(version, `https://127.0.0.1:${fx.edge.port}/up/echo`, ['--data-binary', `@${file}`, '-H', 'content-type: application/octet-stream']);
      expect(r.code, r.stderr).toBe(0);
      const res = parseHead(r.stdout.replace(/^HTTP\/1\.1 100 Continue\r\n\r\n/, ''));
      expect(res.status).toBe(200);
      const echo = JSON.parse(res.body) as { bodyLength: number; bodySha256: string };
      expect(echo.bodyLength).toBe(body.length);
      expect(echo.bodySha256).toBe(createHash('sha256').update(body).digest('hex'));
    });

    it(`${proto}: the upstream's response trailers reach the client`, async () => {
      const r = await curl(version, `https://127.0.0.1:${fx.edge.port}/up/trailers`);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain('chunk one\nchunk two\n');
      expect(r.stdout.toLowerCase()).toMatch(/x-checksum: [0-9a-f]{64}/);
    });

    it(`${proto}: a respond route's own alt-svc is replaced by the listener's`, async () => {
      const r = await curl(version, `https://127.0.0.1:${fx.edge.port}/`);
      expect(r.code, r.stderr).toBe(0);
      const res = parseHead(r.stdout);
      expect(res.status).toBe(200);
      expect(res.body).toBe('hello\n');
      expect(res.headers.get('alt-svc')).toBe(`h3=":${fx.edge.port}"; ma=86400`);
    });

    it(`${proto}: the certificate is chosen by SNI (b.test), the default without a match`, async () => {
      const b = await run('curl', ['-sS', '-v', version, '--cacert', fx.edge.certB, '--resolve', `b.test:${fx.edge.port}:127.0.0.1`, `https://b.test:${fx.edge.port}/`]);
      expect(b.stderr).toMatch(/subject: CN\s*=\s*b\.test/);
      expect(b.code, b.stderr).toBe(0);
      const other = await run('curl', ['-sS', '-v', '-k', version, '--resolve', `c.test:${fx.edge.port}:127.0.0.1`, `https://c.test:${fx.edge.port}/`]);
      expect(other.stderr).toMatch(/subject: CN\s*=\s*a\.test/);
    });
  }

  it('ALPN: curl --http2 negotiates h2, --http1.1 gets HTTP/1.1', async () => {
    const h2 = await run('curl', ['-sS', '-k', '--http2', '-o', '/dev/null', '-w', '%{http_version}', `https://127.0.0.1:${fx.edge.port}/`]);
    expect(h2.stdout).toBe('2');
    const h1 = await run('curl', ['-sS', '-k', '--http1.1', '-o', '/dev/null', '-w', '%{http_version}', `https://127.0.0.1:${fx.edge.port}/`]);
    expect(h1.stdout).toBe('1.1');
  });

  it('http_redirect: 308 to the https URL (Host name, TLS port, target kept)', async () => {
    const r = await run('curl', ['-sS', '-D', '-', '-o', '/dev/null', '-H', 'host: example.test:8080', `http://127.0.0.1:${fx.edge.redirectPort}/a/b?c=d`]);
    const res = parseHead(r.stdout);
    expect(res.status).toBe(308);
    expect(res.headers.get('location')).toBe(`https://example.test:${fx.edge.port}/a/b?c=d`);
    expect(res.headers.get('connection')).toBe('close');
    // No Alt-Svc for the http:// origin (see redirect-listener.ts).
    expect(res.headers.has('alt-svc')).toBe(false);
  });
});

describe('Via on responses from HTTPS upstreams', () => {
  it('says 2 for a response that came over HTTP/2, 1.1 over HTTP/1.1 (a target declining h2, an h1 pool)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tcp-edge-via-'));
    const ca = makeCa(dir, 'ca');
    const leaf = ca.issue('upstream', ['127.0.0.1']);
    const tls = { cert: readFileSync(leaf.cert), key: readFileSync(leaf.key) };
    // Answers with the version it was asked in; /up/with-via adds a Via of its own.
    const answer = (req: IncomingMessage | http2.Http2ServerRequest, res: ServerResponse | http2.Http2ServerResponse): void => {
      if (req.url?.endsWith('/with-via')) res.setHeader('via', '1.1 origin-cache');
      res.end(`upstream ${req.httpVersion}\n`);
    };
    const h2Target = http2.createSecureServer({ ...tls, allowHTTP1: true }, answer);
    const h1Target = https.createServer(tls, answer);
    const listen = async (server: Server): Promise<string> => {
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      return `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    };
    const pool = (protocol: 'h1' | 'h2'): string => `protocol: ${protocol}, tls: { ca: "${ca.cert}" }`;
    const edges = [
      { name: 'h2 pool, HTTP/2 target', edge: await startTcpEdge({ upstream: await listen(h2Target), upstreamPool: pool('h2') }), upstream: '2.0', via: '2' },
      { name: 'h2 pool, target declining h2', edge: await startTcpEdge({ upstream: await listen(h1Target), upstreamPool: pool('h2') }), upstream: '1.1', via: '1.1' },
      { name: 'h1 pool, HTTP/2-capable target', edge: await startTcpEdge({ upstream: `https://127.0.0.1:${(h2Target.address() as AddressInfo).port}`, upstreamPool: pool('h1') }), upstream: '1.1', via: '1.1' },
    ];
    try {
      for (const { name, edge, upstream, via } of edges) {
        for (const version of ['--http1.1', '--http2'] as const) {
          const plain = await curl(version, `https://127.0.0.1:${edge.port}/up/plain`);
          expect(plain.code, plain.stderr).toBe(0);
          const res = parseHead(plain.stdout);
          expect(res.body, `${name} ${version}`).toBe(`upstream ${upstream}\n`);
          expect(res.headers.get('via'), `${name} ${version}`).toBe(`${via} udpgrm-proxy`);
          const chained = parseHead((await curl(version, `https://127.0.0.1:${edge.port}/up/with-via`)).stdout);
          expect(chained.headers.get('via'), `${name} ${version}`).toBe(`1.1 origin-cache, ${via} udpgrm-proxy`);
        }
      }
    } finally {
      await Promise.all(edges.map(({ edge }) => edge.close()));
      h2Target.close();
      h1Target.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** The head of an HTTP/1.x response (lowercased) and its body. */
function splitResponse(text: string): { head: string; body: string } {
  const end = text.indexOf('\r\n\r\n');
  return { head: text.slice(0, end).toLowerCase(), body: text.slice(end + 4) };
}

describe('HTTP/1.0 clients', () => {
  it('Via upstream says 1.0 (the version received, RFC 9110 §7.6.3); the connection closes after the response', async () => {
    const r = await rawH1(fx.edge.port, ['GET /up/echo HTTP/1.0\r\nHost: a.test\r\n\r\n']);
    expect(statusOf(r.response), r.response).toBe(200);
    // Without Connection: keep-alive an HTTP/1.0 connection ends with its response.
    expect(r.closed).toBe(true);
    const { head, body } = splitResponse(r.response);
    expect(head).not.toContain('connection: keep-alive');
    const echo = JSON.parse(body) as { headers: Record<string, string> };
    expect(echo.headers.via).toBe('1.0 udpgrm-proxy');
    // The response's Via names the version the upstream's response arrived in.
    expect(head).toContain('\r\nvia: 1.1 udpgrm-proxy');
  });

  it('Connection: keep-alive keeps the connection for a second request', async () => {
    const { socket, text, closed } = await h1Socket(fx.edge.port);
    const response = (n: number): Promise<void> =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`response ${n} missing: ${text()}`)), 5000);
        const check = (): void => {
          if (text().split('hello\n').length - 1 < n) return;
          clearTimeout(timer);
          socket.off('data', check);
          resolve();
        };
        socket.on('data', check);
        check();
      });
    try {
      socket.write('GET / HTTP/1.0\r\nHost: a.test\r\nConnection: keep-alive\r\n\r\n');
      await response(1);
      expect(splitResponse(text()).head).toContain('\r\nconnection: keep-alive');
      socket.write('GET / HTTP/1.0\r\nHost: a.test\r\n\r\n');
      await response(2);
      // The second asked for nothing: the connection ends with it.
      await closed;
      const all = text();
      expect(statusOf(all.slice(all.lastIndexOf('HTTP/1.1 ')))).toBe(200);
    } finally {
      socket.destroy();
    }
  });

  it("without Host: served, the authority being the address the connection arrived on (HTTP/1.1 without Host gets 400)", async () => {
    const r = await rawH1(fx.edge.port, ['GET /up/echo?hostless HTTP/1.0\r\n\r\n']);
    expect(statusOf(r.response), r.response).toBe(200);
    const echo = JSON.parse(splitResponse(r.response).body) as { headers: Record<string, string> };
    expect(echo.headers.host).toBe(`127.0.0.1:${fx.edge.port}`);
    expect(echo.headers['x-forwarded-host']).toBe(`127.0.0.1:${fx.edge.port}`);
    const access = fx.edge.logs.filter((l) => l.log === 'access' && l.path === '/up/echo?hostless');
    expect(access.map((l) => l.authority)).toEqual([`127.0.0.1:${fx.edge.port}`]);
    const h11 = await rawH1(fx.edge.port, ['GET /up/echo HTTP/1.1\r\n\r\n']);
    expect(statusOf(h11.response)).toBe(400);
  });
});

describe('h2load', () => {
  it('20,000 requests over 4 connections × 32 streams, none failed', async () => {
    const r = await h2load(`https://127.0.0.1:${fx.edge.port}/`, ['-n', '20000', '-c', '4', '-m', '32']);
    expect({ total: r.total, done: r.done, succeeded: r.succeeded, failed: r.failed }, r.output).toEqual({ total: 20000, done: 20000, succeeded: 20000, failed: 0 });
    expect(r.output).toMatch(/Application protocol: h2/);
  });
});
