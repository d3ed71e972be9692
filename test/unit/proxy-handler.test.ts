/**
 * ProxyHandler through an in-memory exchange (test/helpers/memory-exchange.ts): no QUIC, no root.
 * Upstreams are real node:http servers on 127.0.0.1 (port 0). Covers routing misses, the built-in
 * `respond` action, header translation both ways, request and response body streaming, trailers,
 * upstream failures before and after the response headers, client resets, backpressure from a slow
 * client to the upstream, and a handler that throws. Every exchange given to ProxyHandler must
 * produce exactly one access-log line (checked after each test).
 */
import { RefusalCounter } from '../../src/proxy/http/refusals.js';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { AccessLog } from '../../src/proxy/http/access-log.js';
import { RequestTimeoutError, type RequestHandler } from '../../src/proxy/http/exchange.js';
import { ABORT } from '../../src/proxy/http/exchange-abort.js';
import { ProxyHandler } from '../../src/proxy/http/proxy-handler.js';
import { matchRoute } from '../../src/proxy/http/route.js';
import { UpstreamRegistry } from '../../src/proxy/upstream/index.js';
import {
  installHandlerHarness,
  lineOf,
  makeProxy,
  NO_TIMEOUTS,
  poolConfig,
  proxyRoute,
  quiescent,
  refusedOrigin,
  respondRoute,
  startUpstream,
  text,
  textResponse,
} from '../helpers/handler-harness.js';
import { MemoryExchange } from '../helpers/memory-exchange.js';

installHandlerHarness();

// ------------------------------------------------------------------ routing and built-in responses

describe('ProxyHandler: no route and built-in responses', () => {
  const routes = [
    respondRoute('routes[0]', '/hello', { status: 200, headers: [['content-type', 'text/plain; charset=utf-8'], ['x-static', '1']], body: 'hello\n' }, [['x-config-version', '7']]),
    respondRoute('routes[1]', '/health', { status: 200, headers: [], body: '' }, [['x-config-version', '7']]),
    proxyRoute('routes[2]', 'nope', '/missing-pool'),
  ];

  it('answers 404 when no route matches and logs the reason', async () => {
    const proxy = makeProxy(routes);
    const ex = proxy.send({ method: 'POST', authority: 'other.example', path: '/hello?x=1', body: ['abc'], contentLength: 3 });
    expect(await ex.finished).toBe('ended');
    expect(ex.events).toEqual(textResponse(404, 'no route for this host and path\n'));
    expect(await lineOf(ex)).toEqual({
      level: 30,
      log: 'access',
      protocol: 'h3',
      method: 'POST',
      authority: 'other.example',
      path: '/hello?x=1',
      status: 404,
      // Answered as soon as the headers were in: the body that follows is not wanted, not read.
      bytesIn: 0,
      bytesOut: 32,
      durationMs: expect.any(Number),
      connection: 'mem-1',
      stream: ex.streamId,
      client: '192.0.2.10',
      reason: 'no route',
    });
    await ex.requestFed;
    expect(ex.body.closed).toBe(true);
  });

  it('serves a respond route: status, action headers, route headers, content-length, body', async () => {
    const proxy = makeProxy(routes);
    const ex = proxy.send({ path: '/hello/there' });
    expect(await ex.finished).toBe('ended');
    expect(ex.events).toEqual([
      {
        type: 'respond',
        status: 200,
        headers: [
          ['content-type', 'text/plain; charset=utf-8'],
          ['x-static', '1'],
          ['x-config-version', '7'],
          ['content-length', '6'],
        ],
        endStream: false,
      },
      { type: 'write', chunk: text('hello\n') },
      { type: 'end', trailers: undefined },
    ]);
    const line = await lineOf(ex);
    expect(line).toMatchObject({ method: 'GET', path: '/hello/there', status: 200, route: 'routes[0]', bytesOut: 6 });
    expect(line).not.toHaveProperty('reason');
    expect(line).not.toHaveProperty('upstream');
  });

  it('completes the response when the access-log write throws (404, respond, pool missing)', async () => {
    const failingLog = new AccessLog(
      pino({}, {
        write(): void {
          throw new Error('stdout closed');
        },
      }),
    );
    const handler = new ProxyHandler({ route: (host, path) => matchRoute(routes, host, path), upstreams: new UpstreamRegistry(new Map()), accessLog: failingLog });
    for (const path of ['/nowhere', '/hello', '/missing-pool']) {
      const ex = new MemoryExchange({ authority: 'app.example', path });
      void ex.dispatch(handler);
      expect(await ex.finished).toBe('ended');
    }
  });

  it('answers HEAD on a respond route with the headers (GET length) and no body', async () => {
    const proxy = makeProxy(routes);
    const ex = proxy.send({ method: 'HEAD', path: '/hello' });
    expect(await ex.finished).toBe('ended');
    expect(ex.events).toEqual([
      {
        type: 'respond',
        status: 200,
        headers: [
          ['content-type', 'text/plain; charset=utf-8'],
          ['x-static', '1'],
          ['x-config-version', '7'],
          ['content-length', '6'],
        ],
        endStream: true,
      },
    ]);
    expect(ex.bytesSent).toBe(0);
    expect(await lineOf(ex)).toMatchObject({ method: 'HEAD', status: 200, bytesOut: 0, route: 'routes[0]' });
  });

  it('ends a body-less respond route with the headers (content-length 0)', async () => {
    const proxy = makeProxy(routes);
    const ex = proxy.send({ path: '/health' });
    expect(await ex.finished).toBe('ended');
    expect(ex.events).toEqual([
      {
        type: 'respond',
        status: 200,
        headers: [
          ['x-config-version', '7'],
          ['content-length', '0'],
        ],
        endStream: true,
      },
    ]);
    expect(await lineOf(ex)).toMatchObject({ status: 200, route: 'routes[1]', bytesOut: 0 });
  });

  it('answers 502 when the route names a pool the registry lacks', async () => {
    const proxy = makeProxy(routes);
    const ex = proxy.send({ path: '/missing-pool/x' });
    expect(await ex.finished).toBe('ended');
    expect(ex.events).toEqual(textResponse(502, 'upstream pool missing\n'));
    expect(await lineOf(ex)).toMatchObject({ status: 502, route: 'routes[2]', upstream: 'nope', reason: 'pool missing' });
  });
});

// ------------------------------------------------------------------ upstream path

describe('ProxyHandler: forwarding to an upstream', { timeout: 10_000 }, () => {
  it('translates headers both ways and relays status and body', async () => {
    const upstream = await startUpstream((req, res) => {
      req.resume();
      res.writeHead(201, [
        ['Content-Type', 'text/plain'],
        ['Content-Length', '2'],
        ['Connection', 'X-Hop'],
        ['X-Hop', 'internal'],
        ['Keep-Alive', 'timeout=30'],
        ['Proxy-Authenticate', 'Basic'],
        ['Via', '1.0 origin'],
        ['X-App', 'yes'],
        ['X-Config-Version', 'from-upstream'],
      ]);
      res.end('ok');
    });
    const proxy = makeProxy([proxyRoute('routes[0]', 'app', '/api', [['x-config-version', '7']])], [poolConfig('app', [upstream.origin])]);
    const arrived = upstream.nextRequest();
    const ex = proxy.send({
      authority: 'shop.example',
      path: '/api/items?x=1',
      headers: [
        ['accept', 'text/plain'],
        ['cookie', 'a=1'],
        ['cookie', 'b=2'],
        ['te', 'trailers'],
        ['proxy-authorization', 'Basic c2VjcmV0'],
        ['x-forwarded-for', '198.51.100.9'],
        ['x-forwarded-proto', 'http'],
        ['x-forwarded-host', 'spoofed.example'],
        ['via', '2 edge-a'],
      ],
    });
    const [req] = await arrived;
    expect(await ex.finished).toBe('ended');

    expect(req.method).toBe('GET');
    expect(req.url).toBe('/api/items?x=1');
    expect(req.headers).toMatchObject({
      host: 'shop.example',
      accept: 'text/plain',
      cookie: 'a=1; b=2',
      te: 'trailers',
      // The client is no trusted proxy: its forwarding claims are replaced by ours.
      'x-forwarded-for': '192.0.2.10',
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'shop.example',
      via: '2 edge-a, 3 udpgrm-proxy',
    });
    expect(req.headers).not.toHaveProperty('proxy-authorization');
    // A GET without content-length sends no body upstream.
    expect(req.headers).not.toHaveProperty('content-length');
    expect(req.headers).not.toHaveProperty('transfer-encoding');

    expect(ex.events).toEqual([
      {
        type: 'respond',
        status: 201,
        headers: [
          ['content-type', 'text/plain'],
          ['content-length', '2'],
          ['x-app', 'yes'],
          ['via', '1.0 origin, 1.1 udpgrm-proxy'],
          ['x-config-version', '7'],
        ],
        endStream: false,
      },
      { type: 'write', chunk: text('ok') },
      { type: 'end', trailers: [] },
    ]);
    const line = await lineOf(ex);
    expect(line).toMatchObject({ method: 'GET', authority: 'shop.example', status: 201, route: 'routes[0]', upstream: upstream.origin, bytesIn: 0, bytesOut: 2 });
    expect(line).not.toHaveProperty('reason');
  });

  it.each([
    ['with content-length', true],
    ['without content-length (chunked upstream)', false],
  ])('streams a 1 MiB request body to the upstream intact (%s)', async (_label, withLength) => {
    const upstream = await startUpstream((req, res) => {
      const hash = createHash('sha256');
      let length = 0;
      req.on('data', (chunk: Buffer) => {
        hash.update(chunk);
        length += chunk.length;
      });
      req.on('end', () => {
        const reply = JSON.stringify({ sha256: hash.digest('hex'), length, te: req.headers['transfer-encoding'] ?? null, cl: req.headers['content-length'] ?? null });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(reply)) });
        res.end(reply);
      });
    });
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [upstream.origin])]);
    const data = randomBytes(1024 * 1024);
    const chunks: Buffer[] = [];
    for (let offset = 0; offset < data.length; offset += 10_000) chunks.push(data.subarray(offset, offset + 10_000));
    const ex = proxy.send(
      {
        method: 'POST',
        path: '/upload',
        headers: [['content-type', 'application/octet-stream']],
        ...(withLength ? { contentLength: data.length } : {}),
        body: chunks,
      },
      { bodyHighWaterMark: 16 * 1024 },
    );
    expect(await ex.finished).toBe('ended');
    await ex.requestFed;
    expect(ex.status).toBe(200);
    expect(JSON.parse(ex.responseBody.toString())).toEqual({
      sha256: createHash('sha256').update(data).digest('hex'),
      length: data.length,
      te: withLength ? null : 'chunked',
      cl: withLength ? String(data.length) : null,
    });
    expect(await lineOf(ex)).toMatchObject({ method: 'POST', status: 200, bytesIn: data.length, bytesOut: ex.responseBody.length });
  });

  it('streams the request body as it arrives (the upstream reads the start before the client sent the end)', async () => {
    let firstData!: (chunk: string) => void;
    const gotFirst = new Promise<string>((resolve) => (firstData = resolve));
    const upstream = await startUpstream((req, res) => {
      const parts: Buffer[] = [];
      req.on('data', (chunk: Buffer) => {
        if (parts.length === 0) firstData(chunk.toString());
        parts.push(chunk);
      });
      req.on('end', () => res.end(Buffer.concat(parts)));
    });
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [upstream.origin])]);
    const ex = proxy.send({ method: 'POST', path: '/echo', body: ['first;'], bodyEnds: false });
    expect(await gotFirst).toBe('first;');
    expect(ex.body.closed).toBe(false);
    expect(ex.headersSent).toBe(false);
    await ex.sendBody(['second;', 'third'], true);
    expect(await ex.finished).toBe('ended');
    expect(ex.responseBody.toString()).toBe('first;second;third');
    expect(await lineOf(ex)).toMatchObject({ method: 'POST', status: 200, bytesIn: 18, bytesOut: 18 });
  });

  it('relays response trailers (lowercased, prohibited ones dropped) after the body', async () => {
    const upstream = await startUpstream((req, res) => {
      req.resume();
      res.writeHead(200, { 'Content-Type': 'text/plain', Trailer: 'X-Checksum, Cache-Control' });
      res.write('part1');
      res.write('part2');
      res.addTrailers({ 'X-Checksum': 'abc123', 'Cache-Control': 'no-store' });
      res.end();
    });
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [upstream.origin])]);
    const ex = proxy.send({ path: '/t' });
    expect(await ex.finished).toBe('ended');
    expect(ex.status).toBe(200);
    const names = ex.responseHeaders!.map(([n]) => n);
    expect(names).not.toContain('trailer');
    expect(names).not.toContain('transfer-encoding');
    expect(ex.responseBody.toString()).toBe('part1part2');
    expect(ex.events.at(-1)).toEqual({ type: 'end', trailers: [['x-checksum', 'abc123']] });
    expect(await lineOf(ex)).toMatchObject({ status: 200, bytesOut: 10 });
  });

  it('relays an early response (413 before the body was read) and stops feeding the body', async () => {
    const upstream = await startUpstream((_req, res) => {
      res.writeHead(413, { 'content-type': 'text/plain', 'content-length': '8' });
      res.end('too big\n');
    });
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [upstream.origin])]);
    const total = 4 * 1024 * 1024;
    const chunks = Array.from({ length: total / 65_536 }, () => Buffer.alloc(65_536, 1));
    const ex = proxy.send({ method: 'PUT', path: '/big', contentLength: total, body: chunks });
    expect(await ex.finished).toBe('ended');
    await ex.requestFed;
    expect(ex.status).toBe(413);
    expect(ex.responseBody.toString()).toBe('too big\n');
    expect(ex.body.closed).toBe(true);
    expect(await lineOf(ex)).toMatchObject({ method: 'PUT', status: 413, upstream: upstream.origin });
  });
});

// ------------------------------------------------------------------ upstream failures

describe('ProxyHandler: requests received in 0-RTT (RFC 8470)', { timeout: 10_000 }, () => {
  /** An upstream that records each request it got (method, path, early-data field) and answers 200. */
  async function recordingUpstream(): Promise<{ origin: string; seen: Array<[string, string, string | undefined]> }> {
    const seen: Array<[string, string, string | undefined]> = [];
    const upstream = await startUpstream((req, res) => {
      seen.push([req.method!, req.url!, req.headers['early-data'] as string | undefined]);
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    return { origin: upstream.origin, seen };
  }

  /** Lets every pending promise and I/O callback run (the upstream would have seen a forwarded request by then). */
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 50; i++) await new Promise<void>((resolve) => setImmediate(resolve));
  };

  it('serves GET, HEAD and OPTIONS without a body at once, with Early-Data: 1', async () => {
    const up = await recordingUpstream();
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [up.origin])]);
    for (const method of ['GET', 'HEAD', 'OPTIONS']) {
      const ex = proxy.send({ method, path: `/${method.toLowerCase()}` }, { earlyData: true });
      expect(await ex.finished).toBe('ended');
      expect(ex.waitingForHandshake).toBe(false);
      expect(await lineOf(ex)).toMatchObject({ status: 200, earlyData: 'served-early' });
    }
    expect(up.seen).toEqual([
      ['GET', '/get', '1'],
      ['HEAD', '/head', '1'],
      ['OPTIONS', '/options', '1'],
    ]);
  });

  it('holds a POST until the handshake completes, then forwards it once, still with Early-Data: 1', async () => {
    const up = await recordingUpstream();
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [up.origin])]);
    const ex = proxy.send({ method: 'POST', path: '/transfer', contentLength: 3, body: ['abc'] }, { earlyData: true });
    await settle();
    expect(ex.waitingForHandshake).toBe(true);
    expect(up.seen).toEqual([]);
    ex.completeHandshake();
    expect(await ex.finished).toBe('ended');
    expect(up.seen).toEqual([['POST', '/transfer', '1']]);
    expect(await lineOf(ex)).toMatchObject({ status: 200, earlyData: 'held-for-handshake' });
  });

  it('holds a safe method with a body, and unsafe methods without one (DELETE)', async () => {
    const up = await recordingUpstream();
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [up.origin])]);
    const withBody = proxy.send({ method: 'GET', path: '/search', contentLength: 2, body: ['{}'] }, { earlyData: true });
    const del = proxy.send({ method: 'DELETE', path: '/item/1' }, { earlyData: true });
    await settle();
    expect(withBody.waitingForHandshake).toBe(true);
    expect(del.waitingForHandshake).toBe(true);
    expect(up.seen).toEqual([]);
    withBody.completeHandshake();
    del.completeHandshake();
    await Promise.all([withBody.finished, del.finished]);
    expect(up.seen.map(([m, , e]) => [m, e])).toEqual(expect.arrayContaining([['GET', '1'], ['DELETE', '1']]));
    expect(await lineOf(del)).toMatchObject({ earlyData: 'held-for-handshake' });
  });

  it('never forwards a held request whose connection ends before the handshake (a replayed first flight)', async () => {
    const up = await recordingUpstream();
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [up.origin])]);
    const ex = proxy.send({ method: 'POST', path: '/transfer', contentLength: 3, body: ['abc'] }, { earlyData: true });
    await settle();
    ex.closeBeforeHandshake();
    expect(await ex.finished).toBe('aborted');
    await settle();
    expect(up.seen).toEqual([]);
    expect(await lineOf(ex)).toMatchObject({ status: 499, earlyData: 'held-for-handshake' });
  });

  it('adds no Early-Data field to a request that did not arrive in early data', async () => {
    const up = await recordingUpstream();
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [up.origin])]);
    const ex = proxy.send({ method: 'POST', path: '/transfer', contentLength: 1, body: ['x'] });
    expect(await ex.finished).toBe('ended');
    expect(up.seen).toEqual([['POST', '/transfer', undefined]]);
    expect(await lineOf(ex)).not.toHaveProperty('earlyData');
  });
});

describe('ProxyHandler: upstream failures', { timeout: 10_000 }, () => {
  it('answers 502 when the upstream refuses the connection', async () => {
    const origin = await refusedOrigin();
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [origin])]);
    const ex = proxy.send({ path: '/x' });
    expect(await ex.finished).toBe('ended');
    expect(ex.events).toEqual(textResponse(502, 'upstream unavailable\n'));
    expect(await lineOf(ex)).toMatchObject({ status: 502, route: 'routes[0]', upstream: origin, reason: 'connect ECONNREFUSED' });
  });

  it('answers 504 when the upstream sends no headers within response_timeout', async () => {
    const upstream = await startUpstream((req) => req.resume()); // never answers
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [upstream.origin], { responseTimeoutMs: 150 })]);
    const arrived = upstream.nextRequest();
    const ex = proxy.send({ path: '/slow' });
    const [, res] = await arrived;
    const upstreamClosed = once(res, 'close');
    expect(await ex.finished).toBe('ended');
    expect(ex.events).toEqual(textResponse(504, 'upstream timed out\n'));
    expect(await lineOf(ex)).toMatchObject({ status: 504, upstream: upstream.origin, reason: 'response headers timeout' });
    await upstreamClosed;
  });

  it('resets the response (no end) when the upstream dies after the headers', async () => {
    const upstream = await startUpstream((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100000' });
      res.write(Buffer.alloc(1000, 'x'), () => res.socket?.destroy());
    });
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [upstream.origin])]);
    const ex = proxy.send({ path: '/dies' });
    expect(await ex.finished).toBe('reset');
    expect(ex.events[0]).toMatchObject({ type: 'respond', status: 200, endStream: false });
    expect(ex.responseHeaders).toContainEqual(['content-length', '100000']);
    expect(ex.events.at(-1)).toEqual({ type: 'reset' });
    expect(ex.events.filter((e) => e.type === 'end')).toEqual([]);
    expect(ex.responseBody).toEqual(Buffer.alloc(1000, 'x'));
    const line = await lineOf(ex);
    expect(line).toMatchObject({ status: 200, upstream: upstream.origin, bytesOut: 1000 });
    expect(line['reason']).toMatch(/^upstream reset: /);
  });

  it('cancels the upstream request when the client resets while waiting for headers (499)', async () => {
    const upstream = await startUpstream((req) => req.resume()); // never answers
    // Upstream timeouts far beyond the test's: only the cancellation can close the upstream request.
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [upstream.origin], NO_TIMEOUTS)]);
    const arrived = upstream.nextRequest();
    const ex = proxy.send({ path: '/wait' });
    const [req, res] = await arrived;
    const upstreamClosed = once(res, 'close');
    ex.abort('client reset');
    await upstreamClosed;
    expect(res.writableFinished).toBe(false);
    expect(req.destroyed).toBe(true);
    expect(ex.outcome).toBe('aborted');
    expect(ex.events).toEqual([]);
    expect(await lineOf(ex)).toMatchObject({ status: 499, upstream: upstream.origin, reason: 'client reset', bytesOut: 0 });
    expect(proxy.registry.get('app')!.stats()[0]!.inFlight).toBe(0);
  });

  it('cancels the upstream response when the client resets mid-body, and writes nothing after', async () => {
    const upstream = await startUpstream((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000000' });
      res.write('start');
    });
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [upstream.origin], NO_TIMEOUTS)]);
    const arrived = upstream.nextRequest();
    const ex = proxy.send({ path: '/stream' });
    const [, res] = await arrived;
    const upstreamClosed = once(res, 'close');
    await ex.until((e) => e.bytesSent === 5);
    ex.abort('client reset');
    await upstreamClosed;
    const line = await lineOf(ex);
    expect(line).toMatchObject({ status: 200, upstream: upstream.origin, reason: 'client reset', bytesOut: 5 });
    expect(ex.events.map((e) => e.type)).toEqual(['respond', 'write']);
    expect(ex.outcome).toBe('aborted');
  });

  // The protocol layer says why in the signal's reason: a stream reset, the connection gone, or our
  // own close at drain_timeout are different things to an operator reading the log.
  it.each([ABORT.clientReset, ABORT.connectionClosed, ABORT.drainTimeout])('logs why the exchange was aborted (%s), before the headers and mid-body', async (why) => {
    const upstream = await startUpstream((req, res) => {
      req.resume();
      if (req.url === '/wait') return; // never answers
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000000' });
      res.write('start');
    });
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [upstream.origin], NO_TIMEOUTS)]);
    const arrived = upstream.nextRequest();
    const waiting = proxy.send({ path: '/wait' });
    await arrived;
    waiting.abort(why);
    expect(await lineOf(waiting)).toMatchObject({ status: 499, reason: why });
    const streaming = proxy.send({ path: '/stream' });
    await streaming.until((e) => e.bytesSent === 5);
    streaming.abort(why);
    expect(await lineOf(streaming)).toMatchObject({ status: 200, reason: why, bytesOut: 5 });
  });
});

// ------------------------------------------------------------------ slow clients (hardening defect 5)

describe('ProxyHandler: slow clients cannot hold the upstream pool', { timeout: 10_000 }, () => {
  it('two slow uploads occupy max_connections 2: a third client is answered 503 within queue_timeout, with the reason logged', async () => {
    const upstream = await startUpstream((req, res) => {
      req.resume();
      req.on('end', () => res.end(`${req.method} done\n`));
    });
    const refusals = new RefusalCounter();
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [upstream.origin], { ...NO_TIMEOUTS, maxConnectionsPerTarget: 2, queueTimeoutMs: 300 })], { refusals });
    // Slow uploads: content-length 1000, one byte now and then; each holds a pooled connection.
    const slow = [0, 1].map(() => proxy.send({ method: 'POST', path: '/upload', contentLength: 1000, body: ['x'], bodyEnds: false }));
    const drip = setInterval(() => {
      for (const ex of slow) void ex.sendBody(['x']);
    }, 50);
    try {
      await upstream.nextRequest();
      await new Promise<void>((resolve) => {
        const check = (): void => (proxy.registry.get('app')!.stats()[0]!.inFlight === 2 ? resolve() : void setImmediate(check));
        check();
      });
      const started = performance.now();
      const legit = proxy.send({ path: '/page' });
      await legit.finished;
      const elapsed = performance.now() - started;
      expect(legit.events).toEqual(textResponse(503, 'upstream unavailable\n'));
      // Bound: queue_timeout (300 ms) plus slack; before the fix it waited for the uploads to end.
      expect(elapsed).toBeLessThan(1_500);
      expect(await lineOf(legit)).toMatchObject({ status: 503, route: 'routes[0]', reason: expect.stringMatching(/^no free connection within 300ms/) });
      expect(refusals.counts).toEqual({ 'upstream queue timeout': 1 });
    } finally {
      clearInterval(drip);
      for (const ex of slow) ex.abort('client reset');
    }
    for (const ex of slow) expect(await lineOf(ex)).toMatchObject({ status: 499, reason: 'client reset' });
  });

  it('a request timeout from the protocol layer cancels the upstream upload and is logged 408 with its reason', async () => {
    const upstream = await startUpstream((req) => req.resume()); // reads the upload, never answers
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [upstream.origin], NO_TIMEOUTS)]);
    const arrived = upstream.nextRequest();
    const ex = proxy.send({ method: 'POST', path: '/upload', contentLength: 1000, body: ['partial'], bodyEnds: false });
    const [req] = await arrived;
    req.on('error', () => {}); // the cancelled upload surfaces as 'aborted' on the server side
    const upstreamClosed = new Promise((resolve) => req.on('close', resolve));
    ex.abort(new RequestTimeoutError('request body timeout: no bytes for 30s'));
    await upstreamClosed;
    expect(req.complete).toBe(false);
    expect(await lineOf(ex)).toMatchObject({ status: 408, upstream: upstream.origin, reason: 'request body timeout: no bytes for 30s' });
    expect(proxy.registry.get('app')!.stats()[0]!.inFlight).toBe(0);
  });
});

// ------------------------------------------------------------------ backpressure

describe('ProxyHandler: backpressure from a slow client to the upstream', () => {
  it('holds the upstream back while the client does not read, then delivers everything', { timeout: 15_000 }, async () => {
    const total = 32 * 1024 * 1024;
    const piece = Buffer.alloc(64 * 1024);
    for (let i = 0; i < piece.length; i++) piece[i] = i % 251;
    let written = 0;
    let upstreamDone = false;
    const upstream = await startUpstream((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) });
      const pump = (): void => {
        while (written < total) {
          written += piece.length;
          if (!res.write(piece)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end(() => (upstreamDone = true));
      };
      pump();
    });
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [upstream.origin])]);
    const clientWindow = 64 * 1024;
    const ex = proxy.send({ path: '/big' }, { reading: false, writeHighWaterMark: clientWindow });

    // The client reads nothing: the handler stops at the client's window and waits (a handler
    // ignoring write()'s false would run to the end of the body here instead).
    await ex.until((e) => e.waitingForDrain || e.outcome !== undefined);
    expect(ex.outcome).toBeUndefined();
    // Let the upstream go as far as it can: until it makes no progress any more (or gets too far).
    const bound = total / 2;
    await quiescent(() => written, () => upstreamDone || written >= bound);
    const stalledAt = written;
    expect(upstreamDone).toBe(false);
    // What the upstream got ahead: socket buffers and the proxy's own, far less than the body.
    expect(stalledAt).toBeLessThan(bound);
    // The handler kept to the client's window (overshooting by at most one upstream read).
    expect(ex.bufferedAmount).toBeGreaterThanOrEqual(clientWindow);
    expect(ex.bufferedAmount).toBeLessThan(clientWindow + 512 * 1024);
    expect(ex.waitingForDrain).toBe(true);
    expect(ex.bytesSent).toBe(ex.bufferedAmount);

    // The client reads (from now on at full speed): the upstream moves on and everything arrives, in order.
    expect(ex.resume().length).toBe(ex.bytesSent);
    expect(await ex.finished).toBe('ended');
    const expected = createHash('sha256');
    for (let sent = 0; sent < total; sent += piece.length) expected.update(piece);
    expect(ex.bytesRead).toBe(total);
    expect(ex.responseBody.length).toBe(total);
    expect(ex.bufferedAmount).toBe(0);
    expect(createHash('sha256').update(ex.responseBody).digest('hex')).toBe(expected.digest('hex'));
    expect(await lineOf(ex)).toMatchObject({ status: 200, bytesOut: total });
    console.log(`32 MiB to a client that does not read: the upstream stalled after ${(stalledAt / 1048576).toFixed(1)} MiB`);
  });
});

// ------------------------------------------------------------------ handler exceptions

describe('dispatchExchange: a handler that throws', () => {
  it('answers 500 and reports the error when nothing was sent yet', async () => {
    const boom = new Error('boom');
    const handler: RequestHandler = {
      handle() {
        throw boom;
      },
    };
    const errors: unknown[] = [];
    const ex = new MemoryExchange({ method: 'POST', body: ['abc'], contentLength: 3 });
    expect(await ex.dispatch(handler, (err) => errors.push(err))).toBe('ended');
    expect(errors).toEqual([boom]);
    expect(errors[0]).toBe(boom);
    expect(ex.events).toEqual(textResponse(500, 'internal error\n'));
  });

  it('resets the response and reports the error when the headers were already out', async () => {
    const handler: RequestHandler = {
      handle(ex) {
        ex.respond(200, [['content-length', '10']]);
        ex.write(text('half'));
        throw new TypeError('late');
      },
    };
    const errors: unknown[] = [];
    const ex = new MemoryExchange();
    expect(await ex.dispatch(handler, (err) => errors.push(err))).toBe('reset');
    expect(errors).toHaveLength(1);
    expect((errors[0] as Error).message).toBe('late');
    expect(ex.events).toEqual([
      { type: 'respond', status: 200, headers: [['content-length', '10']], endStream: false },
      { type: 'write', chunk: text('half') },
      { type: 'reset' },
    ]);
  });
});

// ------------------------------------------------------------------ the in-memory exchange itself

describe('MemoryExchange follows the HttpExchange contract', () => {
  it('ignores writes before respond and after end, refuses a second respond, counts bytes', () => {
    const ex = new MemoryExchange();
    expect(ex.headersSent).toBe(false);
    expect(ex.write(text('early'))).toBe(true);
    ex.end();
    expect(ex.events).toEqual([]);
    ex.respond(200, []);
    expect(ex.headersSent).toBe(true);
    expect(() => ex.respond(200, [])).toThrow(/already sent/);
    ex.write(text('abc'));
    ex.write(Buffer.alloc(0));
    ex.end([['x-t', '1']]);
    ex.write(text('late'));
    ex.reset();
    expect(ex.bytesSent).toBe(3);
    expect(ex.outcome).toBe('ended');
    expect(ex.events.map((e) => e.type)).toEqual(['respond', 'write', 'end']);
    expect(ex.responseTrailers).toEqual([['x-t', '1']]);
  });

  it('a slow client makes write() return false at its window until it reads; an abort releases drained()', async () => {
    const ex = new MemoryExchange({}, { reading: false, writeHighWaterMark: 10 });
    ex.respond(200, []);
    expect(ex.write(text('12345'))).toBe(true);
    expect(ex.write(text('67890'))).toBe(false);
    const drained = ex.drained();
    expect(ex.waitingForDrain).toBe(true);
    expect(ex.read().toString()).toBe('1234567890');
    await drained;
    expect(ex.write(text('abcdefghijk'))).toBe(false);
    const released = ex.drained();
    ex.abort();
    await released;
    expect(ex.signal.aborted).toBe(true);
    expect(ex.headersSent).toBe(true);
    expect(ex.write(text('x'))).toBe(false);
    expect(ex.body.closed).toBe(true);
    expect(ex.bytesSent).toBe(21);
  });
});
