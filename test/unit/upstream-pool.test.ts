import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { UpstreamPoolConfig } from '../../src/proxy/config/types.js';
import { toClientResponseHeaders, toUpstreamRequestHeaders, validateRequest } from '../../src/proxy/http-semantics/index.js';
import { RequestBody } from '../../src/proxy/http/request-body.js';
import { UpstreamError, UpstreamPool, UpstreamRegistry, type UpstreamResponse } from '../../src/proxy/upstream/index.js';
import { testPoolConfig } from '../helpers/pool-config.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

interface TestServer {
  readonly origin: string;
  readonly server: Server;
  /** TCP connections accepted so far. */
  connections: number;
  /** Requests received so far. */
  requests: number;
  readonly sockets: Set<Socket>;
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function startServer(handler: Handler): Promise<TestServer> {
  const server = createServer((req, res) => {
    state.requests++;
    handler(req, res);
  });
  const state: TestServer = { origin: '', server, connections: 0, requests: 0, sockets: new Set() };
  server.on('connection', (socket: Socket) => {
    state.connections++;
    state.sockets.add(socket);
    socket.on('close', () => state.sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  (state as { origin: string }).origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  cleanups.push(async () => {
    server.closeAllConnections();
    server.close();
    await once(server, 'close');
  });
  return state;
}

const poolConfig = (targets: string[], overrides: Partial<UpstreamPoolConfig> = {}): UpstreamPoolConfig => testPoolConfig('test', targets, overrides);

function makePool(config: UpstreamPoolConfig): UpstreamPool {
  const pool = new UpstreamPool(config);
  cleanups.push(() => pool.destroy());
  return pool;
}

const getHeaders: Array<[string, string]> = [['host', 'app.example']];

async function readAll(response: UpstreamResponse): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of response.body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function expectUpstreamError(promise: Promise<unknown>): Promise<UpstreamError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(UpstreamError);
    return err as UpstreamError;
  }
  throw new Error('expected an UpstreamError');
}

/** Feed `data` into a RequestBody in `chunkSize` pieces, honouring backpressure. */
async function feed(pipe: RequestBody, data: Buffer, chunkSize: number): Promise<number> {
  let stalls = 0;
  for (let offset = 0; offset < data.length; offset += chunkSize) {
    if (!pipe.push(data.subarray(offset, offset + chunkSize))) {
      stalls++;
      await pipe.drained();
    }
  }
  pipe.end();
  return stalls;
}

describe('UpstreamPool against real HTTP/1.1 servers', () => {
  it('forwards a GET and returns status, headers, body and empty trailers', async () => {
    let seen: IncomingMessage | undefined;
    const upstream = await startServer((req, res) => {
      seen = req;
      res.setHeader('Content-Type', 'text/plain');
      res.setHeader('Set-Cookie', ['a=1', 'b=2']);
      res.end('hello');
    });
    const pool = makePool(poolConfig([upstream.origin]));
    const response = await pool.forward({
      method: 'GET',
      path: '/greet?x=1',
      headers: [...getHeaders, ['x-forwarded-for', '192.0.2.1']],
    });
    expect(response.status).toBe(200);
    expect(response.target).toBe(upstream.origin);
    expect(response.headers).toContainEqual(['Content-Type', 'text/plain']);
    expect(response.headers.filter(([n]) => n.toLowerCase() === 'set-cookie')).toEqual([
      ['Set-Cookie', 'a=1'],
      ['Set-Cookie', 'b=2'],
    ]);
    expect((await readAll(response)).toString()).toBe('hello');
    expect(await response.trailers).toEqual([]);
    expect(seen?.url).toBe('/greet?x=1');
    expect(seen?.headers.host).toBe('app.example');
    expect(seen?.headers['x-forwarded-for']).toBe('192.0.2.1');
    expect(pool.stats()[0]!.inFlight).toBe(0);
  });

  it.each([
    ['with content-length', true],
    ['chunked', false],
  ])('streams a 1 MiB POST body (%s) and gets its SHA-256 back', async (_label, withLength) => {
    const upstream = await startServer((req, res) => {
      const hash = createHash('sha256');
      req.on('data', (chunk: Buffer) => hash.update(chunk));
      req.on('end', () => res.end(JSON.stringify({ sha256: hash.digest('hex'), te: req.headers['transfer-encoding'] ?? null })));
    });
    const pool = makePool(poolConfig([upstream.origin]));
    const data = randomBytes(1024 * 1024);
    const pipe = new RequestBody(16 * 1024);
    const headers: Array<[string, string]> = [...getHeaders, ['content-type', 'application/octet-stream']];
    if (withLength) headers.push(['content-length', String(data.length)]);
    const responsePromise = pool.forward({ method: 'POST', path: '/upload', headers, body: pipe.stream });
    await feed(pipe, data, 7_000);
    const response = await responsePromise;
    const echoed = JSON.parse((await readAll(response)).toString()) as { sha256: string; te: string | null };
    expect(echoed.sha256).toBe(createHash('sha256').update(data).digest('hex'));
    expect(echoed.te).toBe(withLength ? null : 'chunked');
  });

  it('passes response trailers through; request trailers are not sent (undici HTTP/1.1 limitation)', async () => {
    let requestTrailers: Record<string, string> | undefined;
    const upstream = await startServer((req, res) => {
      req.resume();
      req.on('end', () => {
        requestTrailers = { ...req.trailers } as Record<string, string>;
        res.writeHead(200, { Trailer: 'X-Checksum' });
        res.write('part1');
        res.write('part2');
        res.addTrailers({ 'X-Checksum': 'abc123' });
        res.end();
      });
    });
    const pool = makePool(poolConfig([upstream.origin]));
    const pipe = new RequestBody();
    const responsePromise = pool.forward({ method: 'POST', path: '/t', headers: getHeaders, body: pipe.stream });
    pipe.push(Buffer.from('payload'));
    pipe.end([['x-request-sum', '42']]);
    const response = await responsePromise;
    expect((await readAll(response)).toString()).toBe('part1part2');
    expect(await response.trailers).toEqual([['X-Checksum', 'abc123']]);
    expect(requestTrailers).toEqual({});
    expect(pipe.trailers).toEqual([['x-request-sum', '42']]);
  });

  it('skips 1xx interim responses and relays the final one', async () => {
    const upstream = await startServer((_req, res) => {
      res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
      res.end('final');
    });
    const pool = makePool(poolConfig([upstream.origin]));
    const response = await pool.forward({ method: 'GET', path: '/', headers: getHeaders });
    expect(response.status).toBe(200);
    expect((await readAll(response)).toString()).toBe('final');
  });

  it('rejects OPTIONS * (undici cannot send it) with a typed error instead of throwing', async () => {
    const upstream = await startServer((_req, res) => res.end());
    const pool = makePool(poolConfig([upstream.origin]));
    const err = await expectUpstreamError(pool.forward({ method: 'OPTIONS', path: '*', headers: getHeaders }));
    expect(err.kind).toBe('other');
    expect(upstream.requests).toBe(0);
    expect(pool.stats()[0]!.inFlight).toBe(0);
  });

  it('round robin spreads requests evenly over 3 targets', async () => {
    const servers = await Promise.all([0, 1, 2].map(() => startServer((_req, res) => res.end('ok'))));
    const pool = makePool(poolConfig(servers.map((s) => s.origin)));
    for (let i = 0; i < 9; i++) {
      const response = await pool.forward({ method: 'GET', path: '/', headers: getHeaders });
      await readAll(response);
    }
    expect(servers.map((s) => s.requests)).toEqual([3, 3, 3]);
  });

  it('least_requests sends new requests to the idle target while the other is busy', async () => {
    const held: ServerResponse[] = [];
    const busy = await startServer((req, res) => {
      if (req.url === '/hold') held.push(res);
      else res.end('busy-target');
    });
    const idle = await startServer((_req, res) => res.end('idle-target'));
    const pool = makePool(poolConfig([busy.origin, idle.origin], { balance: 'least_requests' }));

    const slow = pool.forward({ method: 'GET', path: '/hold', headers: getHeaders });
    expect(pool.stats().map((s) => s.inFlight)).toEqual([1, 0]);
    for (let i = 0; i < 4; i++) {
      const response = await pool.forward({ method: 'GET', path: '/quick', headers: getHeaders });
      expect((await readAll(response)).toString()).toBe('idle-target');
    }
    expect(idle.requests).toBe(4);
    while (held.length === 0) await once(busy.server, 'request');
    held[0]!.end('released');
    expect((await readAll(await slow)).toString()).toBe('released');
    expect(busy.requests).toBe(1);
    expect(pool.stats().map((s) => s.inFlight)).toEqual([0, 0]);
  });

  it('maps a refused connection to 502 connect_refused', async () => {
    const closed = createServer();
    closed.listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const port = (closed.address() as AddressInfo).port;
    closed.close();
    await once(closed, 'close');
    const pool = makePool(poolConfig([`http://127.0.0.1:${port}`]));
    const err = await expectUpstreamError(pool.forward({ method: 'GET', path: '/', headers: getHeaders }));
    expect(err.kind).toBe('connect_refused');
    expect(err.status).toBe(502);
    expect(err.reason).toBe('connect ECONNREFUSED');
    expect(err.target).toBe(`http://127.0.0.1:${port}`);
    expect(pool.stats()[0]!.inFlight).toBe(0);
  });

  it('maps a slow upstream to 504 response_timeout, at its time', async () => {
    const upstream = await startServer(() => {
      /* never answers */
    });
    const pool = makePool(poolConfig([upstream.origin], { responseTimeoutMs: 150 }));
    const started = performance.now();
    const err = await within(expectUpstreamError(pool.forward({ method: 'GET', path: '/slow', headers: getHeaders })), 5_000, 'response_timeout');
    expect(err.kind).toBe('response_timeout');
    expect(err.status).toBe(504);
    expect(err.reason).toBe('response headers timeout');
    expect(performance.now() - started).toBeGreaterThanOrEqual(145);
    // The connection is not reused (closed, as undici's own timeout closes it).
    const connections = upstream.connections;
    await within(expectUpstreamError(pool.forward({ method: 'GET', path: '/slow', headers: getHeaders })), 5_000, 'second response_timeout');
    expect(upstream.connections).toBeGreaterThan(connections);
  });

  it('a request with a body gets response_timeout too (undici runs it, not while the body is written)', async () => {
    const upstream = await startServer((req) => req.resume());
    const pool = makePool(poolConfig([upstream.origin], { responseTimeoutMs: 150 }));
    const pipe = new RequestBody();
    const forwarded = pool.forward({ method: 'POST', path: '/slow', headers: [...getHeaders, ['content-length', '5']], body: pipe.stream });
    pipe.push(Buffer.from('hello'));
    pipe.end();
    const err = await within(expectUpstreamError(forwarded), 5_000, 'response_timeout with a request body');
    expect(err.kind).toBe('response_timeout');
  });

  it('an interim response restarts response_timeout', async () => {
    const upstream = await startServer((_req, res) => {
      // 103s every 100 ms for 450 ms, then the response: never 150 ms without a response head.
      let sent = 0;
      const timer = setInterval(() => {
        if (++sent <= 4) return void res.writeEarlyHints({ link: '</a.css>; rel=preload' });
        clearInterval(timer);
        res.end('late but alive');
      }, 100);
    });
    const pool = makePool(poolConfig([upstream.origin], { responseTimeoutMs: 150 }));
    const response = await within(pool.forward({ method: 'GET', path: '/hints', headers: getHeaders }), 5_000, 'response after interim ones');
    expect((await readAll(response)).toString()).toBe('late but alive');
  });

  it('surfaces a stalled body as body_timeout from the body iterator', async () => {
    const upstream = await startServer((_req, res) => {
      res.writeHead(200, { 'Content-Length': '1000' });
      res.write('x'.repeat(10));
    });
    const pool = makePool(poolConfig([upstream.origin], { bodyTimeoutMs: 150 }));
    const response = await pool.forward({ method: 'GET', path: '/', headers: getHeaders });
    const err = await within(expectUpstreamError(readAll(response)), 5_000, 'body_timeout');
    expect(err.kind).toBe('body_timeout');
    expect(err.reason).toBe('response body timeout');
    await expect(response.trailers).rejects.toBe(err);
  });

  it('body_timeout restarts with each chunk and does not run while the consumer holds the body paused', async () => {
    const chunk = Buffer.alloc(256 * 1024, 7);
    const upstream = await startServer((_req, res) => {
      // 1 MiB at once (beyond the 64 KiB high-water mark: the pool pauses the socket), then a
      // chunk every 100 ms, then silence with 1 MiB still owed.
      res.writeHead(200, { 'Content-Length': String(3 * 1024 * 1024) });
      for (let i = 0; i < 4; i++) res.write(chunk);
      let late = 0;
      const timer = setInterval(() => {
        res.write(chunk);
        if (++late === 4) clearInterval(timer);
      }, 100);
    });
    const pool = makePool(poolConfig([upstream.origin], { bodyTimeoutMs: 250 }));
    const response = await pool.forward({ method: 'GET', path: '/', headers: getHeaders });
    // Paused for 4 × body_timeout: a clock running meanwhile would fail the body and drop what is queued.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    let received = 0;
    const err = await within(
      expectUpstreamError(
        (async () => {
          for await (const data of response.body) received += (data as Buffer).length;
        })(),
      ),
      5_000,
      'body_timeout after the silence',
    );
    expect(err.kind).toBe('body_timeout');
    expect(received).toBe(2 * 1024 * 1024);
  });

  it('surfaces an upstream reset mid-body as kind reset from the body iterator', async () => {
    const upstream = await startServer((_req, res) => {
      res.writeHead(200, { 'Content-Length': '100000' });
      res.write(Buffer.alloc(1000, 1));
    });
    const pool = makePool(poolConfig([upstream.origin]));
    const response = await pool.forward({ method: 'GET', path: '/', headers: getHeaders });
    const iterator = response.body[Symbol.asyncIterator]();
    const first = await iterator.next();
    expect(first.done).toBe(false);
    for (const socket of upstream.sockets) socket.destroy();
    const err = await expectUpstreamError(
      (async () => {
        for (;;) if ((await iterator.next()).done) return;
      })(),
    );
    expect(err.kind).toBe('reset');
    expect(err.status).toBe(502);
    expect(pool.stats()[0]!.inFlight).toBe(0);
  });

  it('reuses one keep-alive connection for sequential requests', async () => {
    const upstream = await startServer((_req, res) => res.end('ok'));
    // One connection allowed: a second TCP connection would only appear if keep-alive failed.
    const pool = makePool(poolConfig([upstream.origin], { maxConnectionsPerTarget: 1 }));
    for (let i = 0; i < 10; i++) {
      await readAll(await pool.forward({ method: 'GET', path: `/${i}`, headers: getHeaders }));
    }
    expect(upstream.requests).toBe(10);
    expect(upstream.connections).toBe(1);
  });

  it('does not buffer a 50 MiB body when the consumer reads slowly (upstream write backpressure)', async () => {
    const total = 50 * 1024 * 1024;
    const chunk = Buffer.alloc(64 * 1024, 7);
    let written = 0;
    let blockedWrites = 0;
    const upstream = await startServer((_req, res) => {
      res.writeHead(200, { 'Content-Length': String(total) });
      const pump = (): void => {
        while (written < total) {
          written += chunk.length;
          if (!res.write(chunk)) {
            blockedWrites++;
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
    });
    const pool = makePool(poolConfig([upstream.origin]));
    const highWaterMark = 64 * 1024;
    const response = await pool.forward({ method: 'GET', path: '/big', headers: getHeaders }, { responseHighWaterMark: highWaterMark });
    let consumed = 0;
    let maxLag = 0;
    // The iterator reads everything buffered at once, so a part's size is what our Readable held.
    let maxBuffered = 0;
    for await (const part of response.body) {
      consumed += (part as Buffer).length;
      maxLag = Math.max(maxLag, written - consumed);
      maxBuffered = Math.max(maxBuffered, (part as Buffer).length);
      // A slow consumer: yield to the event loop (and the upstream) after every chunk.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    expect(consumed).toBe(total);
    expect(blockedWrites).toBeGreaterThan(0);
    // Our buffer stays near its high-water mark (one socket read can overshoot by a chunk).
    expect(maxBuffered).toBeLessThanOrEqual(highWaterMark + 256 * 1024);
    // What the upstream got ahead of the consumer is bounded by socket buffers, not the body.
    expect(maxLag).toBeLessThan(total / 3);
    console.log(`50 MiB: max lag ${(maxLag / 1048576).toFixed(1)} MiB, max buffered ${maxBuffered} B, blocked writes ${blockedWrites}`);
  });

  it('request body backpressure: the feeder is held back while the upstream reads slowly', async () => {
    const total = 32 * 1024 * 1024;
    let received = 0;
    const upstream = await startServer((req, res) => {
      // A slow reader: take one chunk, then wait an event-loop turn before taking the next.
      req.on('data', (chunk: Buffer) => {
        received += chunk.length;
        req.pause();
        setImmediate(() => req.resume());
      });
      req.on('end', () => res.end(String(received)));
    });
    const pool = makePool(poolConfig([upstream.origin]));
    const pipe = new RequestBody(64 * 1024);
    const responsePromise = pool.forward({
      method: 'PUT',
      path: '/slow-reader',
      headers: [...getHeaders, ['content-length', String(total)]],
      body: pipe.stream,
    });
    const chunk = Buffer.alloc(64 * 1024, 3);
    let pushed = 0;
    let maxLag = 0;
    let stalls = 0;
    while (pushed < total) {
      pushed += chunk.length;
      maxLag = Math.max(maxLag, pushed - received);
      if (!pipe.push(chunk)) {
        stalls++;
        await pipe.drained();
      }
    }
    pipe.end();
    const response = await responsePromise;
    expect((await readAll(response)).toString()).toBe(String(total));
    expect(stalls).toBeGreaterThan(0);
    expect(maxLag).toBeLessThan(total / 3);
    console.log(`32 MiB upload: max lag ${(maxLag / 1048576).toFixed(1)} MiB, feeder stalls ${stalls}`);
  });

  it('abort() after the headers stops the upstream exchange', async () => {
    const upstream = await startServer((_req, res) => {
      res.writeHead(200, { 'Content-Length': '1000000' });
      res.write('start');
    });
    const pool = makePool(poolConfig([upstream.origin]));
    const response = await pool.forward({ method: 'GET', path: '/', headers: getHeaders });
    const socket = [...upstream.sockets][0]!;
    const closed = once(socket, 'close');
    response.abort('client reset the stream');
    await closed;
    const err = await expectUpstreamError(readAll(response));
    expect(err.kind).toBe('aborted');
    expect(pool.stats()[0]!.inFlight).toBe(0);
  });

  it('an AbortSignal cancels an exchange that is waiting for headers', async () => {
    const upstream = await startServer(() => {
      /* never answers */
    });
    const pool = makePool(poolConfig([upstream.origin]));
    const controller = new AbortController();
    const pending = pool.forward({ method: 'GET', path: '/', headers: getHeaders }, { signal: controller.signal });
    await once(upstream.server, 'request');
    controller.abort();
    const err = await expectUpstreamError(pending);
    expect(err.kind).toBe('aborted');
  });

  it('RequestBody.abort() mid-upload fails the exchange and the upstream sees the request aborted', async () => {
    let arrived!: (req: IncomingMessage) => void;
    const requestArrived = new Promise<IncomingMessage>((resolve) => (arrived = resolve));
    const upstream = await startServer((req) => {
      req.resume();
      arrived(req);
    });
    const pool = makePool(poolConfig([upstream.origin]));
    const pipe = new RequestBody();
    const forwarded = pool.forward({ method: 'POST', path: '/up', headers: [...getHeaders, ['content-length', '100']], body: pipe.stream });
    pipe.push(Buffer.alloc(10));
    const req = await requestArrived;
    req.on('error', () => {}); // the aborted upload surfaces as 'aborted' on the server side
    const upstreamSawClose = new Promise((resolve) => req.on('close', resolve));
    pipe.abort('client reset');
    const err = await expectUpstreamError(forwarded);
    expect(err.kind).toBe('aborted');
    await upstreamSawClose;
    expect(req.complete).toBe(false);
  });

  it('close() waits for in-flight exchanges and refuses new ones', async () => {
    const held: ServerResponse[] = [];
    const upstream = await startServer((_req, res) => held.push(res));
    const pool = new UpstreamPool(poolConfig([upstream.origin]));
    const pending = pool.forward({ method: 'GET', path: '/', headers: getHeaders });
    await once(upstream.server, 'request');
    let closeDone = false;
    const closing = pool.close().then(() => {
      closeDone = true;
    });
    const refused = await expectUpstreamError(pool.forward({ method: 'GET', path: '/', headers: getHeaders }));
    expect(refused.reason).toBe('upstream pool closed');
    expect(closeDone).toBe(false);
    held[0]!.end('done');
    expect((await readAll(await pending)).toString()).toBe('done');
    await closing;
    expect(closeDone).toBe(true);
  });

  it('destroy() fails in-flight exchanges', async () => {
    const upstream = await startServer(() => {
      /* never answers */
    });
    const pool = new UpstreamPool(poolConfig([upstream.origin]));
    const pending = pool.forward({ method: 'GET', path: '/', headers: getHeaders });
    await once(upstream.server, 'request');
    await pool.destroy();
    const err = await expectUpstreamError(pending);
    expect(err.kind).toBe('other');
    expect(err.status).toBe(502);
  });

  it('carries translated headers both ways: validate → upstream headers → forward → client headers', async () => {
    let seen: IncomingMessage | undefined;
    const upstream = await startServer((req, res) => {
      seen = req;
      res.writeHead(200, {
        'Content-Type': 'text/plain',
        Connection: 'keep-alive, X-Hop',
        'X-Hop': 'internal',
        'Keep-Alive': 'timeout=30',
        'X-App': 'yes',
      });
      res.end('ok');
    });
    const validated = validateRequest([
      [':method', 'GET'],
      [':scheme', 'https'],
      [':authority', 'shop.example'],
      [':path', '/cart'],
      ['cookie', 'a=1'],
      ['cookie', 'b=2'],
      ['te', 'trailers'],
      ['x-forwarded-for', '198.51.100.9'],
    ]);
    if (!validated.ok) throw new Error(validated.reason);
    const registry = new UpstreamRegistry(new Map([['app', poolConfig([upstream.origin], { name: 'app' })]]));
    cleanups.push(() => registry.destroy());
    expect(registry.names).toEqual(['app']);
    const response = await registry.get('app')!.forward({
      method: validated.request.method,
      path: validated.request.path,
      // From a trusted proxy, so its X-Forwarded-For is appended to (see trusted_proxies).
      headers: toUpstreamRequestHeaders(validated.request, { clientIp: '2001:db8::7', trustForwarded: true }),
    });
    await readAll(response);
    expect(seen?.headers.host).toBe('shop.example');
    expect(seen?.headers.cookie).toBe('a=1; b=2');
    expect(seen?.headers['x-forwarded-for']).toBe('198.51.100.9, 2001:db8::7');
    expect(seen?.headers['x-forwarded-proto']).toBe('https');
    expect(seen?.headers['x-forwarded-host']).toBe('shop.example');
    expect(seen?.headers.via).toBe('3 udpgrm-proxy');
    expect(seen?.headers.te).toBe('trailers');

    const clientHeaders = toClientResponseHeaders(response.headers, { routeHeaders: [['x-config-version', '3']] });
    const names = clientHeaders.map(([name]) => name);
    expect(names).not.toContain('connection');
    expect(names).not.toContain('keep-alive');
    expect(names).not.toContain('x-hop');
    expect(clientHeaders).toContainEqual(['content-type', 'text/plain']);
    expect(clientHeaders).toContainEqual(['x-app', 'yes']);
    expect(clientHeaders).toContainEqual(['via', '1.1 udpgrm-proxy']);
    expect(clientHeaders).toContainEqual(['x-config-version', '3']);
    for (const name of names) expect(name).toBe(name.toLowerCase());
  });
});

/** Rejects when `promise` has not settled within `ms` (so a hang fails fast, with a message). */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not settled within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

describe('UpstreamPool: time waiting for a pooled connection is bounded (hardening defect 5)', () => {
  /** An upstream that holds every request until the test ends it. */
  async function holdingServer(): Promise<{ server: TestServer; held: ServerResponse[] }> {
    const held: ServerResponse[] = [];
    const server = await startServer((req, res) => {
      req.resume();
      if (req.url?.startsWith('/hold')) held.push(res);
      else res.end(`served ${req.url}`);
    });
    return { server, held };
  }

  it('answers 503 queue_timeout after queue_timeout when every connection stays busy, without sending the request', async () => {
    const { server, held } = await holdingServer();
    const pool = makePool(poolConfig([server.origin], { maxConnectionsPerTarget: 2, queueTimeoutMs: 300 }));
    const busy = [pool.forward({ method: 'GET', path: '/hold/1', headers: getHeaders }), pool.forward({ method: 'GET', path: '/hold/2', headers: getHeaders })];
    while (held.length < 2) await once(server.server, 'request');
    const started = performance.now();
    const err = await within(expectUpstreamError(pool.forward({ method: 'GET', path: '/third', headers: getHeaders })), 3_000, 'queued request');
    const waited = performance.now() - started;
    expect(err.kind).toBe('queue_timeout');
    expect(err.status).toBe(503);
    expect(err.reason).toMatch(/no free connection within 300ms/);
    // Bound: the queue timeout (300 ms), plus scheduling slack; not the 10 s response timeout.
    expect(waited).toBeGreaterThanOrEqual(290);
    expect(waited).toBeLessThan(1_500);
    expect(server.requests).toBe(2);
    expect(pool.queued).toBe(0);
    // The busy exchanges are unaffected.
    for (const res of held) res.end('released');
    for (const p of busy) expect((await readAll(await p)).toString()).toBe('released');
  });

  it('fails at once with queue_timeout 0', async () => {
    const { server, held } = await holdingServer();
    const pool = makePool(poolConfig([server.origin], { maxConnectionsPerTarget: 1, queueTimeoutMs: 0 }));
    const busy = pool.forward({ method: 'GET', path: '/hold', headers: getHeaders });
    while (held.length < 1) await once(server.server, 'request');
    const err = await within(expectUpstreamError(pool.forward({ method: 'GET', path: '/x', headers: getHeaders })), 500, 'fail-fast request');
    expect(err.kind).toBe('queue_timeout');
    held[0]!.end();
    await readAll(await busy);
  });

  it('serves queued requests in arrival order as connections free up, on any target of the pool', async () => {
    const a = await holdingServer();
    const b = await holdingServer();
    const pool = makePool(poolConfig([a.server.origin, b.server.origin], { maxConnectionsPerTarget: 1, queueTimeoutMs: 5_000 }));
    const first = pool.forward({ method: 'GET', path: '/hold/a', headers: getHeaders });
    const second = pool.forward({ method: 'GET', path: '/hold/b', headers: getHeaders });
    while (a.held.length + b.held.length < 2) await Promise.race([once(a.server.server, 'request'), once(b.server.server, 'request')]);
    const order: string[] = [];
    const queued = ['/q1', '/q2', '/q3'].map((path) =>
      pool.forward({ method: 'GET', path, headers: getHeaders }).then(async (r) => {
        order.push((await readAll(r)).toString());
      }),
    );
    expect(pool.queued).toBe(3);
    // Target b frees first: the oldest queued request goes there, not to the still-busy a.
    b.held[0]!.end('b done');
    await readAll(await second);
    await queued[0];
    await queued[1];
    await queued[2];
    expect(order).toEqual(['served /q1', 'served /q2', 'served /q3']);
    expect(a.server.requests).toBe(1);
    a.held[0]!.end('a done');
    await readAll(await first);
    expect(pool.stats().map((s) => s.inFlight)).toEqual([0, 0]);
  });

  it('an aborted signal takes a request out of the queue at once; it never reaches the upstream', async () => {
    const { server, held } = await holdingServer();
    const pool = makePool(poolConfig([server.origin], { maxConnectionsPerTarget: 1, queueTimeoutMs: 60_000 }));
    const busy = pool.forward({ method: 'GET', path: '/hold', headers: getHeaders });
    while (held.length < 1) await once(server.server, 'request');
    const controller = new AbortController();
    const body = new RequestBody();
    const queued = pool.forward({ method: 'POST', path: '/cancelled', headers: [...getHeaders, ['content-length', '5']], body: body.stream }, { signal: controller.signal });
    controller.abort();
    const err = await within(expectUpstreamError(queued), 500, 'aborted queued request');
    expect(err.kind).toBe('aborted');
    expect(body.stream.destroyed).toBe(true);
    expect(pool.queued).toBe(0);
    held[0]!.end();
    await readAll(await busy);
    expect((await readAll(await pool.forward({ method: 'GET', path: '/after', headers: getHeaders }))).toString()).toBe('served /after');
    expect(server.requests).toBe(2);
  });

  it('close() serves what is queued before closing; destroy() fails it', async () => {
    const { server, held } = await holdingServer();
    const pool = new UpstreamPool(poolConfig([server.origin], { maxConnectionsPerTarget: 1 }));
    const busy = pool.forward({ method: 'GET', path: '/hold', headers: getHeaders });
    while (held.length < 1) await once(server.server, 'request');
    const queued = pool.forward({ method: 'GET', path: '/queued', headers: getHeaders });
    const closing = pool.close();
    held[0]!.end('first');
    expect((await readAll(await busy)).toString()).toBe('first');
    expect((await readAll(await queued)).toString()).toBe('served /queued');
    await closing;

    const other = new UpstreamPool(poolConfig([server.origin], { maxConnectionsPerTarget: 1 }));
    const busy2 = other.forward({ method: 'GET', path: '/hold', headers: getHeaders });
    while (held.length < 2) await once(server.server, 'request');
    const queued2 = expectUpstreamError(other.forward({ method: 'GET', path: '/queued', headers: getHeaders }));
    const failed2 = expectUpstreamError(busy2);
    await other.destroy();
    expect((await queued2).reason).toBe('upstream pool closed');
    await failed2;
  });
});
