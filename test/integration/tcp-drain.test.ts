/**
 * ProxyServer.drain on the TCP edge: listening stops at once, HTTP/2 gets the two-step GOAWAY,
 * an idle HTTP/1.1 keep-alive connection is closed, a busy one's response says `Connection:
 * close`, requests in flight complete, and the drain resolves once every connection is gone. A
 * connection that has not sent its first request is not idle: one whose TLS handshake ends after
 * the drain began still gets that request answered.
 */
import http2 from 'node:http2';
import net from 'node:net';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { waitUntil } from '../helpers/deadline.js';
import { h1Socket, rawH1, statusOf } from '../helpers/raw-tls.js';
import { run, startTcpEdge, useTcpEdge, type TcpEdge } from '../helpers/tcp-edge.js';

const fx = useTcpEdge();

function upstreamSaw(url: string): Promise<void> {
  return new Promise((resolve) => {
    const on = (u: string): void => {
      if (u !== url) return;
      fx.up.events.off('request', on);
      resolve();
    };
    fx.up.events.on('request', on);
  });
}

describe('drain', () => {
  it('finishes in-flight requests, GOAWAYs HTTP/2 in two steps, closes idle HTTP/1.1, and resolves when all are gone', async () => {
    // An idle keep-alive connection: one request answered, then silence.
    const idle = await h1Socket(fx.edge.port);
    idle.socket.write('GET / HTTP/1.1\r\nHost: a.test\r\n\r\n');
    await new Promise<void>((resolve) => idle.socket.on('data', () => idle.text().endsWith('hello\n') && resolve()));
    expect(statusOf(idle.text())).toBe(200);

    // A busy HTTP/1.1 connection and an HTTP/2 stream, both waiting on the upstream.
    const busy = await h1Socket(fx.edge.port);
    const busySeen = upstreamSaw('/up/slow?ms=800&c=h1');
    busy.socket.write('GET /up/slow?ms=800&c=h1 HTTP/1.1\r\nHost: a.test\r\n\r\n');

    const client = http2.connect(`https://127.0.0.1:${fx.edge.port}`, { rejectUnauthorized: false });
    client.on('error', () => {});
    const goaways: Array<[number, number]> = [];
    client.on('goaway', (code, last) => goaways.push([code, last]));
    const h2Seen = upstreamSaw('/up/slow?ms=800&c=h2');
    const h2Response = new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = client.request({ ':path': '/up/slow?ms=800&c=h2' });
      let status = 0;
      let body = '';
      req.setEncoding('utf8');
      req.on('response', (h) => (status = Number(h[':status'])));
      req.on('data', (d: string) => (body += d));
      req.on('end', () => resolve({ status, body }));
      req.on('error', reject);
      req.end();
    });
    await Promise.all([busySeen, h2Seen]);

    // Still open (keep-alive) until the drain.
    expect(idle.socket.destroyed).toBe(false);
    const drainStarted = performance.now();
    const drained = fx.edge.server.drain(10_000);

    // Listening stopped at once: this process held the only copy of the socket.
    const refused = await new Promise<string>((resolve) => {
      const s = net.connect(fx.edge.port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve('connected');
      });
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    });
    expect(refused).toBe('ECONNREFUSED');

    // The idle connection is closed by the drain, without waiting for the slow requests.
    const idleClosedAfter = (await idle.closed) - drainStarted;
    expect(idleClosedAfter).toBeGreaterThanOrEqual(0);
    expect(idleClosedAfter).toBeLessThan(500);

    const h2 = await h2Response;
    expect(h2).toEqual({ status: 200, body: 'slow\n' });
    // First GOAWAY refuses nothing (2^31-1), the second names the last stream processed (1).
    expect(goaways[0]).toEqual([http2.constants.NGHTTP2_NO_ERROR, 2 ** 31 - 1]);
    expect(goaways).toContainEqual([http2.constants.NGHTTP2_NO_ERROR, 1]);

    await busy.closed;
    const busyText = busy.text();
    expect(statusOf(busyText)).toBe(200);
    expect(busyText.toLowerCase()).toContain('connection: close');
    expect(busyText.endsWith('slow\n')).toBe(true);

    // The server closes every connection itself (the HTTP/2 client does nothing more).
    expect(await drained).toEqual({ timedOut: false });
    expect(performance.now() - drainStarted).toBeLessThan(5000);
    expect(fx.edge.server.connectionCount).toBe(0);
    client.close();
  });
});

describe('max_requests_per_connection (3) and keepalive_timeout (500 ms)', () => {
  let limited: TcpEdge;
  beforeAll(async () => {
    limited = await startTcpEdge({ upstream: fx.up.origin, http: ['max_requests_per_connection: 3', 'keepalive_timeout: 500ms'] });
  });
  afterAll(async () => {
    await limited?.close();
  });

  for (const version of ['--http1.1', '--http2'] as const) {
    it(`${version}: the 3rd request is the connection's last; curl's 4th opens a new one`, async () => {
      const url = `https://127.0.0.1:${limited.port}/`;
      const r = await run('curl', ['-sk', version, '-w', '%{http_code} %{num_connects}\n', ...[1, 2, 3, 4].flatMap(() => ['-o', '/dev/null', url])]);
      expect(r.stdout.trim().split('\n')).toEqual(['200 1', '200 0', '200 0', '200 1']);
    });
  }

  it('HTTP/1.1: the last allowed response says Connection: close', async () => {
    const r = await rawH1(limited.port, ['GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n']);
    const responses = r.response.split(/(?=HTTP\/1\.1 )/);
    expect(responses.map(statusOf)).toEqual([200, 200, 200]);
    expect(responses[2]!.toLowerCase()).toContain('connection: close');
    expect(responses[1]!.toLowerCase()).not.toContain('connection: close');
    expect(r.closed).toBe(true);
  });

  it('an idle keep-alive connection is closed after keepalive_timeout', async () => {
    const { socket, text, closed } = await h1Socket(limited.port);
    socket.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    await new Promise<void>((resolve) => socket.on('data', () => text().endsWith('hello\n') && resolve()));
    const idleFrom = performance.now();
    const idleMs = (await closed) - idleFrom;
    expect(idleMs).toBeGreaterThanOrEqual(400);
    expect(idleMs).toBeLessThan(2000);
  });
});

/**
 * A TCP relay to the edge that connects at once but holds the client's bytes until `release()`:
 * the edge accepts the connection, and its TLS handshake waits until the test lets it go.
 */
async function heldRelay(port: number): Promise<{ port: number; connected: Promise<void>; release(): void; close(): void }> {
  let client: net.Socket | undefined;
  let toEdge: net.Socket | undefined;
  let onConnected!: () => void;
  const connected = new Promise<void>((resolve) => (onConnected = resolve));
  const relay = net.createServer({ pauseOnConnect: true }, (c) => {
    client = c;
    toEdge = net.connect(port, '127.0.0.1', onConnected);
    c.on('error', () => toEdge?.destroy());
    toEdge.on('error', () => c.destroy());
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  return {
    port: (relay.address() as net.AddressInfo).port,
    connected,
    release: () => {
      client!.pipe(toEdge!);
      toEdge!.pipe(client!);
      client!.resume();
    },
    close: () => relay.close(),
  };
}

describe('drain and HTTP/1.1 connections that have not sent their first request', () => {
  let edge: TcpEdge;
  beforeAll(async () => {
    edge = await startTcpEdge({ upstream: fx.up.origin });
  });
  afterAll(async () => {
    await edge?.close();
  });

  it('a connection accepted before the drain but through TLS after it gets its first request answered (Connection: close); a silent one closes at request_header_timeout', async () => {
    // Silent: through TLS before the drain, no request (request_header_timeout is 1 s).
    const silent = await h1Socket(edge.port);
    const silentOpenedAt = performance.now();

    // curl through a relay that holds its ClientHello until the drain has begun: the edge has
    // accepted the TCP connection, so it is this server's to serve.
    const relay = await heldRelay(edge.port);
    const curl = run('curl', ['-sSk', '--http1.1', '-i', `https://127.0.0.1:${relay.port}/up/held`]);
    await relay.connected;
    await waitUntil('the edge to accept the relayed connection', () => edge.server.connectionCount === 2, { timeoutMs: 5000, intervalMs: 5 });
    const drained = edge.server.drain(10_000);
    relay.release();

    // curl does not retry a request on a new connection that closes without an answer: it must get one.
    const r = await curl;
    relay.close();
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(statusOf(r.stdout)).toBe(200);
    expect(r.stdout.toLowerCase()).toContain('connection: close');
    expect(r.stdout.endsWith('\r\n\r\nupstream a\n')).toBe(true);
    expect(edge.logs.filter((l) => l.log === 'access' && l.path === '/up/held').map((l) => [l.status, l.reason])).toEqual([[200, undefined]]);

    // The silent connection was not closed by the drain: its header time ran out.
    const silentClosedAfter = (await silent.closed) - silentOpenedAt;
    expect(silentClosedAfter).toBeGreaterThanOrEqual(900);
    expect(silentClosedAfter).toBeLessThan(5000);
    expect(silent.text()).toBe('');
    expect(await drained).toEqual({ timedOut: false });
    expect(edge.server.connectionCount).toBe(0);
  });
});

describe('why a request cut short is logged', () => {
  let edge: TcpEdge;
  beforeEach(async () => {
    edge = await startTcpEdge({ upstream: fx.up.origin });
  });
  afterEach(async () => {
    await edge?.close();
  });

  /** The access-log reason of each request to `path`, once it was logged. */
  async function reasonsOf(path: string, count = 1): Promise<unknown[]> {
    const lines = (): Array<Record<string, unknown>> => edge.logs.filter((l) => l.log === 'access' && l.path === path);
    await waitUntil(`${count} access-log line(s) for ${path}`, () => lines().length >= count, { timeoutMs: 5000, intervalMs: 5 });
    return lines().map((l) => [l.protocol, l.status, l.reason]);
  }

  /** An HTTP/2 request to `path` on `client`, its outcome ignored: the test cuts it. */
  function h2Request(client: http2.ClientHttp2Session, path: string): http2.ClientHttp2Stream {
    const req = client.request({ ':path': path });
    req.on('error', () => {});
    req.end();
    return req;
  }

  it('the client cancelling its request (HTTP/2 RST_STREAM, HTTP/1.1 socket closed) is `client reset`; its HTTP/2 connection gone is `connection closed`', async () => {
    const client = http2.connect(`https://127.0.0.1:${edge.port}`, { rejectUnauthorized: false });
    client.on('error', () => {});
    const cancelledSeen = upstreamSaw('/up/slow?ms=20000&c=rst');
    const cancelled = h2Request(client, '/up/slow?ms=20000&c=rst');
    await cancelledSeen;
    cancelled.close(http2.constants.NGHTTP2_CANCEL);
    expect(await reasonsOf('/up/slow?ms=20000&c=rst')).toEqual([['h2', 499, 'client reset']]);

    const goneSeen = upstreamSaw('/up/slow?ms=20000&c=gone');
    h2Request(client, '/up/slow?ms=20000&c=gone');
    await goneSeen;
    client.destroy();
    expect(await reasonsOf('/up/slow?ms=20000&c=gone')).toEqual([['h2', 499, 'connection closed']]);

    const h1 = await h1Socket(edge.port);
    const h1Seen = upstreamSaw('/up/slow?ms=20000&c=h1');
    h1.socket.write('GET /up/slow?ms=20000&c=h1 HTTP/1.1\r\nHost: a.test\r\n\r\n');
    await h1Seen;
    h1.socket.destroy();
    expect(await reasonsOf('/up/slow?ms=20000&c=h1')).toEqual([['h1', 499, 'client reset']]);
  });

  it('a drain that runs out of time cuts the requests still open: `drain timeout` over HTTP/1.1 and HTTP/2', async () => {
    const client = http2.connect(`https://127.0.0.1:${edge.port}`, { rejectUnauthorized: false });
    client.on('error', () => {});
    const h2Seen = upstreamSaw('/up/slow?ms=20000&c=h2-drain');
    h2Request(client, '/up/slow?ms=20000&c=h2-drain');
    const h1 = await h1Socket(edge.port);
    const h1Seen = upstreamSaw('/up/slow?ms=20000&c=h1-drain');
    h1.socket.write('GET /up/slow?ms=20000&c=h1-drain HTTP/1.1\r\nHost: a.test\r\n\r\n');
    await Promise.all([h2Seen, h1Seen]);
    expect(await edge.server.drain(300)).toEqual({ timedOut: true });
    expect(await reasonsOf('/up/slow?ms=20000&c=h2-drain')).toEqual([['h2', 499, 'drain timeout']]);
    expect(await reasonsOf('/up/slow?ms=20000&c=h1-drain')).toEqual([['h1', 499, 'drain timeout']]);
    client.destroy();
  });
});
