/**
 * The 421 answer to a request whose host belongs to another site (http/misdirected.ts): the name
 * rule (the kernel's: exact, then a one-label wildcard; unmatched hosts are the default site's),
 * the handler's answer for every protocol (before routing, no upstream touched, counted, logged,
 * the connection told to go away), and the same answer through a real HTTP/3 session in memory.
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { SiteNames, type SiteNamesSpec } from '../../src/proxy/config/site-names.js';
import { FRAME_TYPE, parseGoaway } from '../../src/proxy/h3/frames.js';
import { H3Session } from '../../src/proxy/h3/session.js';
import { AccessLog } from '../../src/proxy/http/access-log.js';
import { misdirectedTo, type ServedSite } from '../../src/proxy/http/misdirected.js';
import { ProxyHandler } from '../../src/proxy/http/proxy-handler.js';
import { REFUSAL, RefusalCounter } from '../../src/proxy/http/refusals.js';
import { matchRoute } from '../../src/proxy/http/route.js';
import { RequestMetrics } from '../../src/proxy/metrics/request-metrics.js';
import { UpstreamRegistry } from '../../src/proxy/upstream/index.js';
import { installHandlerHarness, lineOf, makeProxy, poolConfig, proxyRoute, startUpstream, textResponse, type AccessLine } from '../helpers/handler-harness.js';
import { MemoryQuicConnection, headersFrame, parseResponse, requestHeaders, serverUniFrames } from '../helpers/memory-quic.js';

installHandlerHarness();

const TWO_SITES: SiteNamesSpec = {
  sites: [
    { name: 'a', names: ['a.test'] },
    { name: 'b', names: ['*.b.test', 'b.test'] },
  ],
  defaultSite: 'a',
};
const site = (name: string, spec: SiteNamesSpec = TWO_SITES): ServedSite => ({ name, names: new SiteNames(spec) });
const MISDIRECTED_BODY = 'misdirected request: this connection does not serve this host\n';

describe('misdirectedTo: whose host a request names', () => {
  it('sends another site\'s names away, by the kernel\'s rule (exact, then one-label wildcard), whatever the case, port or trailing dot', () => {
    const a = site('a');
    expect(misdirectedTo(a, 'x.b.test')).toBe('b');
    expect(misdirectedTo(a, 'X.B.Test.:8443')).toBe('b');
    expect(misdirectedTo(a, 'b.test')).toBe('b');
    expect(misdirectedTo(a, 'a.test:443')).toBeUndefined();
    // One label only: y.x.b.test is nobody's, so the default site's.
    expect(misdirectedTo(a, 'y.x.b.test')).toBeUndefined();
  });

  it('lets the default site serve hosts no site names, and a non-default site serve only its own', () => {
    expect(misdirectedTo(site('a'), 'unknown.test')).toBeUndefined();
    expect(misdirectedTo(site('a'), '[::1]:4433')).toBeUndefined();
    expect(misdirectedTo(site('b'), 'unknown.test')).toBe('a');
    expect(misdirectedTo(site('b'), '127.0.0.1')).toBe('a');
    expect(misdirectedTo(site('b'), 'a.test')).toBe('a');
    expect(misdirectedTo(site('b'), 'x.b.test')).toBeUndefined();
  });

  it('sends nothing away with one site, whatever the host', () => {
    const one = site('default', { sites: [{ name: 'default', names: [] }], defaultSite: 'default' });
    expect(one.names.single).toBe(true);
    expect(misdirectedTo(one, 'anything.example')).toBeUndefined();
  });

  it('follows a names table replaced on reload (the worker swaps `names` in place)', () => {
    const a: { name: string; names: SiteNames } = site('a');
    expect(misdirectedTo(a, 'c.test')).toBeUndefined();
    a.names = new SiteNames({ sites: [...TWO_SITES.sites, { name: 'c', names: ['c.test'] }], defaultSite: 'a' });
    expect(misdirectedTo(a, 'c.test')).toBe('c');
  });
});

describe('ProxyHandler: a request for another site\'s host', { timeout: 10_000 }, () => {
  async function proxyOfSite(name: string) {
    let upstreamRequests = 0;
    const upstream = await startUpstream((_req, res) => {
      upstreamRequests++;
      res.end('upstream\n');
    });
    const refusals = new RefusalCounter();
    const metrics = new RequestMetrics();
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [upstream.origin])], { site: site(name), refusals, metrics });
    return { proxy, refusals, metrics, upstreamRequests: () => upstreamRequests };
  }

  it.each(['h1', 'h2', 'h3'] as const)('answers 421 over %s before routing, touches no upstream, counts it and logs it', async (protocol) => {
    const { proxy, refusals, metrics, upstreamRequests } = await proxyOfSite('a');
    const ex = proxy.send({ method: 'POST', authority: 'x.b.test', path: '/api', body: ['abc'], contentLength: 3 }, { protocol });
    expect(await ex.finished).toBe('ended');
    expect(ex.events).toEqual(textResponse(421, MISDIRECTED_BODY));
    // Further requests must not come back on this connection.
    expect(ex.wentAway).toBe(true);
    const line: AccessLine = await lineOf(ex);
    expect(line).toMatchObject({ protocol, authority: 'x.b.test', status: 421, reason: "misdirected: the host is site b's" });
    expect(line['route']).toBeUndefined();
    expect(line['upstream']).toBeUndefined();
    expect(refusals.counts[REFUSAL.misdirected]).toBe(1);
    expect(metrics.misdirected.series()).toEqual([{ labels: ['a', protocol], value: 1 }]);
    // Counted with every other answer too: route "none", 4xx.
    expect(metrics.requests.series()).toEqual([{ labels: [protocol, 'none', '4xx'], value: 1 }]);
    // The body the client sent is read and dropped, so its flow control cannot stall.
    await ex.requestFed;
    expect(ex.body.closed).toBe(true);
    expect(upstreamRequests()).toBe(0);
  });

  it('serves its own hosts and (on the default site) hosts nobody names', async () => {
    const { proxy, refusals, upstreamRequests } = await proxyOfSite('a');
    for (const authority of ['a.test', 'A.test:443', 'unknown.test']) {
      const ex = proxy.send({ authority, path: '/' });
      expect(await ex.finished).toBe('ended');
      expect(ex.events[0]).toMatchObject({ type: 'respond', status: 200 });
      expect(ex.wentAway).toBe(false);
      expect(await lineOf(ex)).toMatchObject({ status: 200, route: 'routes[0]' });
    }
    expect(refusals.counts[REFUSAL.misdirected]).toBeUndefined();
    expect(upstreamRequests()).toBe(3);
  });

  it('on a non-default site, sends away the default site\'s hosts and hosts nobody names', async () => {
    const { proxy, metrics } = await proxyOfSite('b');
    const served = proxy.send({ authority: 'x.b.test', path: '/' });
    expect(await served.finished).toBe('ended');
    expect(served.events[0]).toMatchObject({ type: 'respond', status: 200 });
    for (const authority of ['a.test', 'unknown.test']) {
      const ex = proxy.send({ authority, path: '/' });
      expect(await ex.finished).toBe('ended');
      expect(ex.events).toEqual(textResponse(421, MISDIRECTED_BODY));
      expect(await lineOf(ex)).toMatchObject({ status: 421, reason: "misdirected: the host is site a's" });
    }
    await lineOf(served);
    expect(metrics.misdirected.series()).toEqual([{ labels: ['b', 'h3'], value: 2 }]);
  });

  it('answers 421 ahead of a bad request target (the target is the other site\'s to judge)', async () => {
    const { proxy } = await proxyOfSite('a');
    const ex = proxy.send({ authority: 'x.b.test', path: '/a/%2e%2e%2f..' });
    expect(await ex.finished).toBe('ended');
    expect(ex.events).toEqual(textResponse(421, MISDIRECTED_BODY));
    await lineOf(ex);
  });
});

describe('H3Session with ProxyHandler: a request for another site\'s host', () => {
  it('is answered 421 after a GOAWAY; the requests in flight, for its own host too, are served', () => {
    const routes = [{ name: 'routes[0]', hosts: [{ kind: 'any' as const }], pathPrefix: '/', action: { kind: 'respond' as const, status: 200, headers: [], body: Buffer.from('site a\n') }, responseHeaders: [] }];
    const refusals = new RefusalCounter();
    // Its own log: the harness checks only the exchanges it dispatched itself.
    const lines: AccessLine[] = [];
    const accessLog = new AccessLog(pino({ base: undefined, timestamp: false }, { write: (l: string) => lines.push(JSON.parse(l) as AccessLine) }));
    const handler = new ProxyHandler({ route: (host, path) => matchRoute(routes, host, path), upstreams: new UpstreamRegistry(new Map()), accessLog, refusals, site: site('a') });
    const conn = new MemoryQuicConnection();
    const session = new H3Session(conn, {
      handler,
      limits: { requestHeaderTimeoutMs: 10_000, requestBodyTimeoutMs: 30_000, maxRequestsPerConnection: 100, maxHeaderBytes: 16 * 1024, maxConnectionHeaderBytes: 256 * 1024 },
      refusals,
      onHandlerError: (err) => {
        throw err;
      },
    });
    conn.start(session);
    conn.clientSend(0, headersFrame(requestHeaders('GET', '/', [], 'a.test')), true);
    conn.clientSend(4, headersFrame(requestHeaders('GET', '/', [], 'x.b.test')), true);
    const own = parseResponse(conn, 0);
    const other = parseResponse(conn, 4);
    expect([own.status, own.body.toString(), own.fin]).toEqual([200, 'site a\n', true]);
    expect([other.status, other.body.toString(), other.fin]).toEqual([421, MISDIRECTED_BODY, true]);
    // GOAWAY (first step: the largest id, nothing refused) on our control stream.
    const goaways = serverUniFrames(conn, 3).frames.filter((f) => f.kind === 'frame' && f.type === FRAME_TYPE.GOAWAY);
    expect(goaways.map((f) => (f.kind === 'frame' ? parseGoaway(f.payload) : -1))).toEqual([2 ** 53 - 4]);
    // A request sent before the client saw it is still served, and answered by its host's rule.
    conn.clientSend(8, headersFrame(requestHeaders('GET', '/', [], 'a.test')), true);
    expect(parseResponse(conn, 8).status).toBe(200);
    expect(refusals.counts[REFUSAL.misdirected]).toBe(1);
    expect(lines.map((l) => [l['protocol'], l['stream'], l['status']]).sort()).toEqual([
      ['h3', 0, 200],
      ['h3', 4, 421],
      ['h3', 8, 200],
    ]);
  });
});
