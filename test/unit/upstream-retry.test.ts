/**
 * Retries and the bounded queue, through ProxyHandler against real node:http targets: a failed try
 * goes to another target only when the request cannot have taken effect and no body byte left
 * (retry.ts, body-gate.ts), every try shows in the access log, and max_pending bounds the wait
 * queue (503 "queue full").
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { RefusalCounter } from '../../src/proxy/http/refusals.js';
import { RequestBody } from '../../src/proxy/http/request-body.js';
import { BodyGate } from '../../src/proxy/upstream/body-gate.js';
import { waitUntil } from '../helpers/deadline.js';
import { addCleanup, installHandlerHarness, lineOf, makeProxy, poolConfig, proxyRoute, refusedOrigin, startUpstream, textResponse } from '../helpers/handler-harness.js';

installHandlerHarness();

const route = [proxyRoute('routes[0]', 'app')];

/** A target that records what it got (method, url, body bytes) and answers with `answer`. */
async function recordingTarget(answer: (req: IncomingMessage, res: ServerResponse, body: Buffer) => void = (_req, res) => res.end('ok')) {
  const seen: Array<{ method: string; url: string; body: Buffer }> = [];
  const upstream = await startUpstream((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => {});
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      seen.push({ method: req.method!, url: req.url!, body });
      answer(req, res, body);
    });
  });
  return { ...upstream, seen };
}

/** A target that takes each request (and, if asked, its whole body) and then resets the connection without answering. */
async function resettingTarget(readBody: boolean) {
  const seen: string[] = [];
  const upstream = await startUpstream((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    req.on('error', () => {});
    if (!readBody) return void res.socket?.destroy();
    req.resume();
    req.on('end', () => res.socket?.destroy());
  });
  return { ...upstream, seen };
}

/**
 * A TCP listener that resets every connection 50 ms after accepting it: long enough for undici to
 * have started the request on it (and to be waiting for its first body byte).
 */
async function resettingListener(): Promise<{ origin: string; connections: () => number }> {
  let connections = 0;
  const server = createServer((socket) => {
    connections++;
    socket.on('error', () => {});
    setTimeout(() => socket.resetAndDestroy(), 50);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  addCleanup(async () => {
    server.close();
    await once(server, 'close');
  });
  return { origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, connections: () => connections };
}

describe('retries on another target', () => {
  it('skips a target that refuses connections: no GET fails, and the access log shows both tries', async () => {
    const refused = await refusedOrigin();
    const good = await recordingTarget();
    const proxy = makeProxy(route, [poolConfig('app', [refused, good.origin])]);
    for (let i = 0; i < 4; i++) {
      const ex = proxy.send({ path: `/${i}` });
      expect(await ex.finished).toBe('ended');
      expect(ex.status).toBe(200);
    }
    expect(good.seen.map((s) => s.url)).toEqual(['/0', '/1', '/2', '/3']);
    // The retry's pick moves the rotation on: every request meets the refused target first.
    const first = await lineOf(proxy.send({ path: '/again' }));
    expect(first).toMatchObject({ status: 200, upstream: good.origin });
    expect(first['tries']).toEqual([
      { target: refused, outcome: 'connect_refused', ms: expect.any(Number) },
      { target: good.origin, outcome: '200', ms: expect.any(Number) },
    ]);
    expect(first).not.toHaveProperty('reason');
  });

  it('retries a POST whose body was not sent yet after a connect failure: the next target gets the whole body', async () => {
    const refused = await refusedOrigin();
    const good = await recordingTarget((_req, res, body) => res.end(createHash('sha256').update(body).digest('hex')));
    const proxy = makeProxy(route, [poolConfig('app', [refused, good.origin])]);
    const body = Buffer.alloc(200_000, 'p');
    const ex = proxy.send({ method: 'POST', path: '/orders', contentLength: body.length, body: [body.subarray(0, 70_000), body.subarray(70_000)] });
    expect(await ex.finished).toBe('ended');
    expect(ex.status).toBe(200);
    expect(ex.responseBody.toString()).toBe(createHash('sha256').update(body).digest('hex'));
    expect((await lineOf(ex))['tries']).toMatchObject([{ outcome: 'connect_refused' }, { outcome: '200' }]);
  });

  it.each(['PUT', 'POST'])('retries a %s whose connection reset before its body began: the body stays whole for the next target', async (method) => {
    // undici writes a request's head together with its first body byte, so a request whose body
    // has not begun has not left; meanwhile undici is reading the body (it flows the stream it
    // was given) and, when the connection resets, destroys it.
    const resetting = await resettingListener();
    const other = await recordingTarget((_req, res, body) => res.end(`got ${body.toString()}`));
    const proxy = makeProxy(route, [poolConfig('app', [resetting.origin, other.origin])]);
    const pool = proxy.registry.get('app')!;
    // The client announces 11 bytes and sends them only once the request moved to the second
    // target (whose server sees nothing before the first body byte either).
    const ex = proxy.send({ method, path: '/doc', contentLength: 11, bodyEnds: false });
    await waitUntil('the second try to start', () => pool.stats()[1]!.inFlight === 1, { timeoutMs: 5_000, intervalMs: 5 });
    await ex.sendBody(['hello', ' world'], true);
    expect(await ex.finished).toBe('ended');
    expect(ex.responseBody.toString()).toBe('got hello world');
    expect(resetting.connections()).toBeGreaterThan(0);
    expect((await lineOf(ex))['tries']).toMatchObject([{ target: resetting.origin, outcome: 'reset' }, { target: other.origin, outcome: '200' }]);
  });

  it('does not retry a POST whose body was sent: 502, one try, the other target never sees it', async () => {
    const resetting = await resettingTarget(true);
    const other = await recordingTarget();
    const proxy = makeProxy(route, [poolConfig('app', [resetting.origin, other.origin])]);
    const ex = proxy.send({ method: 'POST', path: '/pay', contentLength: 5, body: ['hello'] });
    expect(await ex.finished).toBe('ended');
    expect(ex.events).toEqual(textResponse(502, 'upstream unavailable\n'));
    const line = await lineOf(ex);
    expect(line).toMatchObject({ status: 502, upstream: resetting.origin });
    expect(line['reason']).toMatch(/^upstream reset/);
    expect(line).not.toHaveProperty('tries');
    expect(resetting.seen).toEqual(['POST /pay']);
    expect(other.seen).toEqual([]);
  });

  it('does not retry a POST without a body after a reset (the target may have acted on it)', async () => {
    const resetting = await resettingTarget(false);
    const other = await recordingTarget();
    const proxy = makeProxy(route, [poolConfig('app', [resetting.origin, other.origin])]);
    const ex = proxy.send({ method: 'POST', path: '/pay' });
    expect(await ex.finished).toBe('ended');
    expect(ex.status).toBe(502);
    expect(other.seen).toEqual([]);
  });

  it('retries an idempotent request after a reset before the response headers', async () => {
    const resetting = await resettingTarget(false);
    const other = await recordingTarget();
    const proxy = makeProxy(route, [poolConfig('app', [resetting.origin, other.origin])]);
    for (const method of ['GET', 'DELETE']) {
      const ex = proxy.send({ method, path: '/item' });
      expect(await ex.finished).toBe('ended');
      expect(ex.status).toBe(200);
      expect((await lineOf(ex))['tries']).toMatchObject([{ target: resetting.origin, outcome: 'reset' }, { target: other.origin, outcome: '200' }]);
    }
    expect(resetting.seen).toEqual(['GET /item', 'DELETE /item']);
    expect(other.seen.map((s) => `${s.method} ${s.url}`)).toEqual(['GET /item', 'DELETE /item']);
  });

  it('never retries once response headers arrived', async () => {
    const cut = await startUpstream((_req, res) => {
      res.writeHead(200, { 'content-length': '100' });
      res.write('partial', () => res.socket?.destroy());
    });
    const other = await recordingTarget();
    const proxy = makeProxy(route, [poolConfig('app', [cut.origin, other.origin])]);
    const ex = proxy.send({ path: '/doc' });
    expect(await ex.finished).toBe('reset');
    expect(await lineOf(ex)).toMatchObject({ status: 200, upstream: cut.origin });
    expect(other.seen).toEqual([]);
  });

  it('makes at most `retries` further tries, and none with retries 0', async () => {
    const refused = await Promise.all([refusedOrigin(), refusedOrigin(), refusedOrigin()]);
    const proxy = makeProxy(route, [poolConfig('app', refused, { retries: 1 }), poolConfig('none', refused, { retries: 0 })]);
    const ex = proxy.send({ path: '/' });
    expect(await ex.finished).toBe('ended');
    expect(ex.status).toBe(502);
    const line = await lineOf(ex);
    expect(line['tries']).toMatchObject([{ outcome: 'connect_refused' }, { outcome: 'connect_refused' }]);
    expect(line).toMatchObject({ reason: 'connect ECONNREFUSED' });

    const proxyNone = makeProxy([proxyRoute('routes[0]', 'none')], [poolConfig('none', refused, { retries: 0 })]);
    const ex2 = proxyNone.send({ path: '/' });
    expect(await ex2.finished).toBe('ended');
    expect(await lineOf(ex2)).not.toHaveProperty('tries');
  });

  it('starts no retry once try_timeout has passed since the first try', async () => {
    // Resets 100 ms after the request arrived; try_timeout is 50 ms.
    const late = await startUpstream((_req, res) => void setTimeout(() => res.socket?.destroy(), 100));
    const other = await recordingTarget();
    const proxy = makeProxy(route, [poolConfig('app', [late.origin, other.origin], { tryTimeoutMs: 50 })]);
    const ex = proxy.send({ path: '/' });
    expect(await ex.finished).toBe('ended');
    expect(ex.status).toBe(502);
    expect(other.seen).toEqual([]);
  });
});

describe('max_pending', () => {
  it('answers 503 "queue full" at once beyond max_pending waiting requests, and counts the refusal', async () => {
    const held: ServerResponse[] = [];
    const upstream = await startUpstream((req, res) => {
      if (req.url === '/hold') held.push(res);
      else res.end(`served ${req.url}`);
    });
    const refusals = new RefusalCounter();
    const proxy = makeProxy(route, [poolConfig('app', [upstream.origin], { maxConnectionsPerTarget: 1, maxPending: 1, queueTimeoutMs: 60_000 })], { refusals });
    const pool = proxy.registry.get('app')!;
    const busy = proxy.send({ path: '/hold' });
    await waitUntil('the first request to be held', () => held.length === 1, { timeoutMs: 5_000, intervalMs: 5 });
    const queued = proxy.send({ path: '/queued' });
    await waitUntil('the second request to queue', () => pool.queued === 1, { timeoutMs: 5_000, intervalMs: 5 });
    const started = performance.now();
    const refused = proxy.send({ path: '/refused' });
    expect(await refused.finished).toBe('ended');
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(refused.events).toEqual(textResponse(503, 'upstream unavailable\n'));
    expect(await lineOf(refused)).toMatchObject({ status: 503, upstream: 'app', reason: 'queue full (1 requests already wait for a connection)' });
    expect(refusals.counts).toEqual({ 'upstream queue full': 1 });

    held[0]!.end('released');
    expect(await busy.finished).toBe('ended');
    expect(await queued.finished).toBe('ended');
    expect(queued.responseBody.toString()).toBe('served /queued');
  });
});

describe('BodyGate', () => {
  async function read(stream: Readable): Promise<string> {
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString();
  }

  it('a view that was never read leaves the source whole for the next view', async () => {
    const source = new RequestBody();
    source.push(Buffer.from('abc'));
    const gate = new BodyGate(source.stream);
    const first = gate.open();
    // undici destroys the body of a request that failed to connect.
    first.destroy(new Error('connect ECONNREFUSED'));
    expect(gate.started).toBe(false);
    expect(source.stream.destroyed).toBe(false);
    const second = gate.open();
    source.push(Buffer.from('def'));
    source.end();
    expect(await read(second)).toBe('abcdef');
    expect(gate.started).toBe(true);
  });

  it('marks the body started as soon as a view hands out a byte', async () => {
    const source = new RequestBody();
    const gate = new BodyGate(source.stream);
    const view = gate.open();
    const firstChunk = new Promise<Buffer>((resolve) => view.once('data', resolve));
    expect(gate.started).toBe(false);
    source.push(Buffer.from('x'));
    expect((await firstChunk).toString()).toBe('x');
    expect(gate.started).toBe(true);
  });

  it('passes a client abort on to the view; release() destroys the source', async () => {
    const source = new RequestBody();
    const gate = new BodyGate(source.stream);
    const view = gate.open();
    const failed = read(view).then(
      () => 'ended',
      (err: Error) => err.name,
    );
    source.abort('client reset');
    expect(await failed).toBe('ExchangeAbortedError');

    const other = new RequestBody();
    const gate2 = new BodyGate(other.stream);
    gate2.open();
    gate2.release();
    expect(other.stream.destroyed).toBe(true);
  });
});
