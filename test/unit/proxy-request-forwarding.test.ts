/**
 * What reaches the upstream for a client's request (hardening defect 10), through ProxyHandler and
 * the in-memory exchange against real node:http upstreams: Content-Length collapsed, forwarding
 * fields by trusted_proxies, bodies of GET/DELETE/OPTIONS forwarded, routing on the normalised path
 * (dot segments, duplicate slashes, encoded unreserved characters) with a request target that
 * is forwarded as received or normalised, and non-ASCII octets percent-encoded.
 */
import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import type { RouteConfig } from '../../src/proxy/config/types.js';
import { parseCidr } from '../../src/proxy/config/cidr.js';
import { TrustedProxies } from '../../src/proxy/http/trusted-proxies.js';
import {
  installHandlerHarness,
  lineOf,
  makeProxy,
  poolConfig,
  proxyRoute,
  respondRoute,
  startUpstream,
  textResponse,
  type Upstream,
} from '../helpers/handler-harness.js';

installHandlerHarness();

interface Seen {
  readonly method: string;
  readonly url: string;
  /** Raw header lines as the upstream received them: [name, value, name, value, ...]. */
  readonly raw: string[];
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
}

/** An upstream that answers 200 with a JSON record of the request it received. */
async function echoUpstream(): Promise<Upstream> {
  return startUpstream((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const seen: Seen = { method: req.method!, url: req.url!, raw: req.rawHeaders, headers: req.headers, body: Buffer.concat(parts).toString('latin1') };
      const body = JSON.stringify(seen);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) });
      res.end(body);
    });
  });
}

const seenBy = (ex: { responseBody: Buffer }): Seen => JSON.parse(ex.responseBody.toString()) as Seen;

function trusted(...cidrs: string[]): TrustedProxies {
  return new TrustedProxies(
    cidrs.map((text) => {
      const parsed = parseCidr(text);
      if (!parsed.ok) throw new Error(parsed.expected);
      return parsed.value;
    }),
  );
}

describe('Content-Length fields (RFC 9110 §8.6)', { timeout: 10_000 }, () => {
  it('collapses two identical content-length fields into one; the upstream gets one and the body', async () => {
    const upstream = await echoUpstream();
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [upstream.origin])]);
    const ex = proxy.send({ method: 'POST', path: '/twice', headers: [['content-length', '3']], contentLength: 3, body: ['abc'] });
    expect(await ex.finished).toBe('ended');
    expect(ex.status).toBe(200);
    const seen = seenBy(ex);
    expect(seen.raw.filter((_v, i) => i % 2 === 0 && seen.raw[i]!.toLowerCase() === 'content-length')).toHaveLength(1);
    expect(seen.headers['content-length']).toBe('3');
    expect(seen.body).toBe('abc');
    expect(await lineOf(ex)).not.toHaveProperty('reason');
  });
});

describe('forwarding fields and trusted_proxies', { timeout: 10_000 }, () => {
  const spoofed: Array<[string, string]> = [
    ['x-forwarded-for', '198.51.100.9'],
    ['x-forwarded-proto', 'http'],
    ['x-forwarded-host', 'spoofed.example'],
    ['forwarded', 'for=198.51.100.9;proto=http'],
    ['x-real-ip', '198.51.100.9'],
    ['early-data', '1'],
  ];

  it('replaces client-supplied forwarding fields and drops x-real-ip and early-data from an untrusted client', async () => {
    const upstream = await echoUpstream();
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [upstream.origin])]);
    const ex = proxy.send({ authority: 'shop.example', path: '/p', headers: spoofed });
    expect(await ex.finished).toBe('ended');
    const { headers } = seenBy(ex);
    expect(headers).toMatchObject({
      'x-forwarded-for': '192.0.2.10',
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'shop.example',
      forwarded: 'for=192.0.2.10;host=shop.example;proto=https',
    });
    expect(headers).not.toHaveProperty('x-real-ip');
    expect(headers).not.toHaveProperty('early-data');
  });

  it('keeps and appends to them from a client inside trusted_proxies (IPv4, IPv4-mapped IPv6, IPv6)', async () => {
    const upstream = await echoUpstream();
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [upstream.origin])], { trustedProxies: trusted('192.0.2.0/24', '2001:db8::/32') });
    for (const [client, node] of [
      ['192.0.2.10', '192.0.2.10'],
      ['::ffff:192.0.2.77', '"[::ffff:192.0.2.77]"'],
      ['2001:db8::5', '"[2001:db8::5]"'],
    ] as const) {
      const ex = proxy.send({ authority: 'shop.example:8443', path: '/p', headers: spoofed }, { client: { host: client, port: 1 } });
      expect(await ex.finished).toBe('ended');
      const { headers } = seenBy(ex);
      expect(headers, client).toMatchObject({
        'x-forwarded-for': `198.51.100.9, ${client}`,
        'x-forwarded-proto': 'http',
        'x-forwarded-host': 'spoofed.example',
        forwarded: `for=198.51.100.9;proto=http, for=${node};host="shop.example:8443";proto=https`,
      });
      expect(headers).not.toHaveProperty('x-real-ip');
      expect(headers).not.toHaveProperty('early-data');
    }
    // Outside every trusted range: replaced.
    const outside = proxy.send({ authority: 'shop.example', path: '/p', headers: spoofed }, { client: { host: '203.0.113.4', port: 1 } });
    expect(await outside.finished).toBe('ended');
    expect(seenBy(outside).headers['x-forwarded-for']).toBe('203.0.113.4');
  });
});

describe('request bodies without content-length', { timeout: 10_000 }, () => {
  it.each(['GET', 'DELETE', 'OPTIONS'])('forwards the body of a %s that has one', async (method) => {
    const upstream = await echoUpstream();
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [upstream.origin])]);
    const ex = proxy.send({ method, path: '/search', body: ['{"query":', '"x"}'] });
    expect(await ex.finished).toBe('ended');
    const seen = seenBy(ex);
    expect(seen.method).toBe(method);
    expect(seen.body).toBe('{"query":"x"}');
    expect(await lineOf(ex)).toMatchObject({ method, status: 200, bytesIn: 13 });
  });

  it('sends no body (no content-length, no chunked framing) for a GET that has none', async () => {
    const upstream = await echoUpstream();
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [upstream.origin])]);
    const ex = proxy.send({ path: '/plain' });
    expect(await ex.finished).toBe('ended');
    expect(seenBy(ex).headers).not.toHaveProperty('transfer-encoding');
    expect(seenBy(ex).headers).not.toHaveProperty('content-length');
  });

  it('waits for the first body byte when a GET is still open, and forwards what follows', async () => {
    const upstream = await echoUpstream();
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [upstream.origin])]);
    const ex = proxy.send({ path: '/later', body: [], bodyEnds: false });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(ex.headersSent).toBe(false);
    await ex.sendBody(['late ', 'body'], true);
    expect(await ex.finished).toBe('ended');
    expect(seenBy(ex).body).toBe('late body');
  });

  it('refuses a TRACE with a body (RFC 9110 §9.3.8) with 400', async () => {
    const upstream = await echoUpstream();
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [upstream.origin])]);
    const ex = proxy.send({ method: 'TRACE', path: '/t', body: ['x'] });
    expect(await ex.finished).toBe('ended');
    expect(ex.events).toEqual(textResponse(400, 'a TRACE request cannot have content\n'));
    expect(await lineOf(ex)).toMatchObject({ method: 'TRACE', status: 400, reason: 'TRACE with content' });
  });
});

describe('routing on the normalised path', { timeout: 10_000 }, () => {
  const routes = (forwardPath?: RouteConfig['forwardPath']): RouteConfig[] => [
    respondRoute('routes[0]', '/healthz', { status: 403, headers: [], body: 'blocked\n' }),
    { ...proxyRoute('routes[1]', 'app'), hosts: [{ kind: 'exact', name: 'app.example' }], ...(forwardPath ? { forwardPath } : {}) },
  ];

  it.each(['/healthz', '/x/../healthz', '/%68ealthz', '//healthz', '/./healthz', '/a/b/%2E%2E/../healthz', '/healthz/', '/%2e%2e/healthz?x=1', '///x//..//healthz'])(
    '%s reaches the /healthz route',
    async (path) => {
      const upstream = await echoUpstream();
      const proxy = makeProxy(routes(), [poolConfig('app', [upstream.origin])]);
      const ex = proxy.send({ path });
      expect(await ex.finished).toBe('ended');
      expect(ex.status).toBe(403);
      expect(await lineOf(ex)).toMatchObject({ path, status: 403, route: 'routes[0]' });
    },
  );

  it.each([
    ['/x/%2F../healthz', 'encoded "/" (%2F)'],
    ['/x%5C..%5Chealthz', 'encoded "\\" (%5C)'],
    ['/x\\..\\healthz', '"\\"'],
    ['/x%00', 'encoded NUL (%00)'],
    ['/x%zz', 'invalid percent-encoding'],
    ['/x#frag', 'fragment'],
  ])('answers 400 for %s (%s)', async (path, why) => {
    const proxy = makeProxy(routes(), []);
    const ex = proxy.send({ path });
    expect(await ex.finished).toBe('ended');
    expect(ex.status).toBe(400);
    const line = await lineOf(ex);
    expect(line).toMatchObject({ path, status: 400 });
    expect(String(line['reason'])).toContain(why);
  });

  it('forwards the target as received by default, normalised when the route says so', async () => {
    const upstream = await echoUpstream();
    const target = '/a//b/./c/../%64?q=%2e%2E&r=/../';
    const asReceived = makeProxy(routes(), [poolConfig('app', [upstream.origin])]).send({ path: target });
    expect(await asReceived.finished).toBe('ended');
    expect(seenBy(asReceived).url).toBe(target);
    const normalised = makeProxy(routes('normalised'), [poolConfig('app', [upstream.origin])]).send({ path: target });
    expect(await normalised.finished).toBe('ended');
    expect(seenBy(normalised).url).toBe('/a/b/d?q=%2e%2E&r=/../');
  });

  it('percent-encodes octets above 0x7E in path and query before forwarding, and routes on the encoded form', async () => {
    const upstream = await echoUpstream();
    const proxy = makeProxy(
      [respondRoute('routes[0]', '/caf%C3%A9', { status: 403, headers: [], body: '' }), { ...proxyRoute('routes[1]', 'app'), hosts: [{ kind: 'exact', name: 'app.example' }] }],
      [poolConfig('app', [upstream.origin])],
    );
    const ex = proxy.send({ path: '/na\xefve/\xff?q=\xe9t\xe9' });
    expect(await ex.finished).toBe('ended');
    expect(seenBy(ex).url).toBe('/na%EFve/%FF?q=%E9t%E9');
    const blocked = proxy.send({ path: '/caf\xc3\xa9' });
    expect(await blocked.finished).toBe('ended');
    expect(blocked.status).toBe(403);
  });
});
