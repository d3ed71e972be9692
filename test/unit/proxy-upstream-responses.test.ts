/**
 * Upstream responses at the edges of HTTP/1.1 (hardening defect 9), through ProxyHandler and the
 * in-memory exchange against raw TCP upstreams that write exactly the bytes under test:
 * responses that cannot have a body (RFC 9110 §6.4.1: HEAD, 1xx, 204, 304) relayed complete,
 * unsolicited 100 Continue ignored (§15.2), statuses outside 100..599 refused (§15), and built-in
 * 204/304 responses without Content-Length (§8.6).
 */
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  installHandlerHarness,
  lineOf,
  makeProxy,
  poolConfig,
  proxyRoute,
  respondRoute,
  startRawUpstream,
  textResponse,
} from '../helpers/handler-harness.js';

installHandlerHarness();

const VIA = ['via', '1.1 udpgrm-proxy'] as [string, string];

/** Writes `bytes` in pieces of `step` bytes, one per event-loop turn (so the proxy reads them apart). */
async function trickle(socket: Socket, bytes: string, step: number): Promise<void> {
  for (let i = 0; i < bytes.length; i += step) {
    socket.write(Buffer.from(bytes.slice(i, i + step), 'latin1'));
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

describe('responses that cannot have a body are relayed complete (RFC 9110 §6.4.1)', { timeout: 10_000 }, () => {
  it('relays a 304 whose upstream sent content-length, keeping it, and the pool connection stays usable', async () => {
    const upstream = await startRawUpstream((head, socket) => {
      if (head.startsWith('GET /cached ')) socket.write('HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 5\r\n\r\n');
      else socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    });
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [upstream.origin])]);
    const ex = proxy.send({ path: '/cached', headers: [['if-none-match', '"v1"']] });
    expect(await ex.finished).toBe('ended');
    expect(ex.events).toEqual([{ type: 'respond', status: 304, headers: [['etag', '"v1"'], ['content-length', '5'], VIA], endStream: true }]);
    const line = await lineOf(ex);
    expect(line).toMatchObject({ status: 304, upstream: upstream.origin, bytesOut: 0 });
    expect(line).not.toHaveProperty('reason');

    const next = proxy.send({ path: '/after' });
    expect(await next.finished).toBe('ended');
    expect(next.status).toBe(200);
    expect(next.responseBody.toString()).toBe('ok');
  });

  it('relays a 204 whose upstream sent content-length, without it (RFC 9110 §8.6)', async () => {
    const upstream = await startRawUpstream((_head, socket) => socket.write('HTTP/1.1 204 No Content\r\nX-App: yes\r\nContent-Length: 7\r\n\r\n'));
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [upstream.origin])]);
    const ex = proxy.send({ method: 'DELETE', path: '/item/1' });
    expect(await ex.finished).toBe('ended');
    expect(ex.events).toEqual([{ type: 'respond', status: 204, headers: [['x-app', 'yes'], VIA], endStream: true }]);
    expect(await lineOf(ex)).toMatchObject({ method: 'DELETE', status: 204, upstream: upstream.origin });
  });

  it('relays the response to HEAD with its content-length and no body', async () => {
    const upstream = await startRawUpstream((_head, socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1234\r\n\r\n'));
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [upstream.origin])]);
    const ex = proxy.send({ method: 'HEAD', path: '/doc' });
    expect(await ex.finished).toBe('ended');
    expect(ex.events).toEqual([{ type: 'respond', status: 200, headers: [['content-type', 'text/plain'], ['content-length', '1234'], VIA], endStream: true }]);
    expect(await lineOf(ex)).toMatchObject({ method: 'HEAD', status: 200, bytesOut: 0 });
  });
});

describe('interim responses from the upstream (RFC 9110 §15.2)', { timeout: 10_000 }, () => {
  it('ignores an unsolicited 100 Continue before the final response', async () => {
    const upstream = await startRawUpstream((_head, socket) => socket.write('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello'));
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [upstream.origin])]);
    const ex = proxy.send({ path: '/x' });
    expect(await ex.finished).toBe('ended');
    expect(ex.status).toBe(200);
    expect(ex.responseBody.toString()).toBe('hello');
    expect(await lineOf(ex)).not.toHaveProperty('reason');
  });

  it('ignores several interim responses split across reads, on every request of a kept-alive connection', async () => {
    const upstream = await startRawUpstream((head, socket) => {
      const n = head.split(' ')[1]!.slice(1);
      void trickle(socket, `HTTP/1.1 100 Continue\r\nX-A: 1\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: ${n.length}\r\n\r\n${n}`, 7);
    });
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [upstream.origin], { maxConnectionsPerTarget: 1 })]);
    for (const n of ['first', 'second', 'third']) {
      const ex = proxy.send({ path: `/${n}` });
      expect(await ex.finished).toBe('ended');
      expect(ex.status).toBe(200);
      expect(ex.responseBody.toString()).toBe(n);
    }
    expect(upstream.heads).toHaveLength(3);
  });

  it('leaves bytes that look like a 100 response alone inside a body (content-length and chunked)', async () => {
    const fake = 'HTTP/1.1 100 Continue\r\n\r\n';
    const upstream = await startRawUpstream((head, socket) => {
      if (head.startsWith('GET /length ')) socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${fake.length}\r\n\r\n${fake}`);
      else socket.write(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${fake.length.toString(16)}\r\n${fake}\r\n0\r\n\r\n`);
    });
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [upstream.origin], { maxConnectionsPerTarget: 1 })]);
    for (const path of ['/length', '/chunked', '/length']) {
      const ex = proxy.send({ path });
      expect(await ex.finished).toBe('ended');
      expect(ex.responseBody.toString()).toBe(fake);
    }
  });

  it('never asks the upstream for a 100 Continue, whatever the client sent', async () => {
    const upstream = await startRawUpstream((_head, socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'));
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [upstream.origin])]);
    const ex = proxy.send({ method: 'POST', path: '/up', headers: [['expect', '100-continue']], contentLength: 3, body: ['abc'] });
    expect(await ex.finished).toBe('ended');
    expect(ex.status).toBe(200);
    expect(upstream.heads[0]).not.toMatch(/\r\nexpect:/i);
  });
});

describe('statuses outside 100..599 (RFC 9110 §15)', { timeout: 10_000 }, () => {
  it.each([999, 600])('answers 502 for an upstream status %i and logs why', async (status) => {
    const upstream = await startRawUpstream((_head, socket) => socket.write(`HTTP/1.1 ${status} Odd\r\nContent-Length: 2\r\n\r\nno`));
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [upstream.origin])]);
    const ex = proxy.send({ path: '/odd' });
    expect(await ex.finished).toBe('ended');
    expect(ex.events).toEqual(textResponse(502, 'upstream unavailable\n'));
    expect(await lineOf(ex)).toMatchObject({ status: 502, upstream: upstream.origin, reason: `invalid upstream response: status ${status} is outside 100..599` });
  });
});

describe('built-in responses without content (RFC 9110 §8.6)', () => {
  it.each([204, 304])('answers a %i respond route without content-length, ended with the headers', async (status) => {
    const proxy = makeProxy([respondRoute('routes[0]', '/', { status, headers: [['x-static', '1']], body: '' }, [['x-config-version', '7']])]);
    for (const method of ['GET', 'HEAD']) {
      const ex = proxy.send({ method, path: '/' });
      expect(await ex.finished).toBe('ended');
      expect(ex.events).toEqual([{ type: 'respond', status, headers: [['x-static', '1'], ['x-config-version', '7']], endStream: true }]);
      expect(await lineOf(ex)).toMatchObject({ method, status, bytesOut: 0 });
    }
  });
});
