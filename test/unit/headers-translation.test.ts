import { describe, expect, it } from 'vitest';
import {
  type Field,
  responseHasNoContent,
  statusHasNoContent,
  toClientResponseHeaders,
  toClientTrailers,
  toUpstreamRequestHeaders,
  type ValidatedRequest,
} from '../../src/proxy/http-semantics/index.js';

function request(headers: Array<[string, string]>): ValidatedRequest {
  return { method: 'GET', scheme: 'https', authority: 'app.example:8443', path: '/x', headers };
}

describe('toUpstreamRequestHeaders', () => {
  it('sets Host first and adds the forwarding fields', () => {
    const out = toUpstreamRequestHeaders(request([['accept', '*/*']]), { clientIp: '192.0.2.7' });
    expect(out).toEqual([
      ['host', 'app.example:8443'],
      ['accept', '*/*'],
      ['x-forwarded-for', '192.0.2.7'],
      ['x-forwarded-proto', 'https'],
      ['x-forwarded-host', 'app.example:8443'],
      ['forwarded', 'for=192.0.2.7;host="app.example:8443";proto=https'],
      ['via', '3 udpgrm-proxy'],
    ]);
  });

  const claims: Array<[string, string]> = [
    ['x-forwarded-for', '203.0.113.1'],
    ['x-forwarded-for', '203.0.113.2'],
    ['x-forwarded-proto', 'http'],
    ['x-forwarded-host', 'evil.example'],
    ['forwarded', 'for=203.0.113.1'],
    ['via', '1.1 cdn'],
    ['x-real-ip', '203.0.113.1'],
    ['early-data', '1'],
    ['host', 'app.example:8443'],
  ];

  it('from a trusted proxy: appends to X-Forwarded-For, Forwarded and Via, keeps its proto and host claims', () => {
    const out = toUpstreamRequestHeaders(request(claims), { clientIp: '2001:db8::1', via: 'edge1', trustForwarded: true });
    expect(out).toEqual([
      ['host', 'app.example:8443'],
      ['x-forwarded-for', '203.0.113.1, 203.0.113.2, 2001:db8::1'],
      ['x-forwarded-proto', 'http'],
      ['x-forwarded-host', 'evil.example'],
      ['forwarded', 'for=203.0.113.1, for="[2001:db8::1]";host="app.example:8443";proto=https'],
      ['via', '1.1 cdn, 3 edge1'],
    ]);
  });

  it('from anyone else: replaces X-Forwarded-For/-Proto/-Host and Forwarded, appends to Via; never forwards x-real-ip or early-data', () => {
    const out = toUpstreamRequestHeaders(request(claims), { clientIp: '2001:db8::1', via: 'edge1' });
    expect(out).toEqual([
      ['host', 'app.example:8443'],
      ['x-forwarded-for', '2001:db8::1'],
      ['x-forwarded-proto', 'https'],
      ['x-forwarded-host', 'app.example:8443'],
      ['forwarded', 'for="[2001:db8::1]";host="app.example:8443";proto=https'],
      ['via', '1.1 cdn, 3 edge1'],
    ]);
  });

  it('removes hop-by-hop fields, keeps te: trailers, drops expect, joins cookies', () => {
    const out = toUpstreamRequestHeaders(
      request([
        ['connection', 'x-secret, keep-alive'],
        ['x-secret', 's'],
        ['keep-alive', 'timeout=5'],
        ['proxy-authorization', 'Basic x'],
        ['te', 'trailers'],
        ['trailer', 'x-sum'],
        ['transfer-encoding', 'chunked'],
        ['upgrade', 'websocket'],
        ['expect', '100-continue'],
        ['cookie', 'a=1'],
        ['content-type', 'text/plain'],
        ['cookie', 'b=2'],
        ['content-length', '3'],
      ]),
      { clientIp: '10.0.0.1' },
    );
    const names = out.map(([n]) => n);
    for (const gone of ['connection', 'x-secret', 'keep-alive', 'proxy-authorization', 'trailer', 'transfer-encoding', 'upgrade', 'expect']) {
      expect(names).not.toContain(gone);
    }
    expect(out).toContainEqual(['te', 'trailers']);
    expect(out.filter(([n]) => n === 'cookie')).toEqual([['cookie', 'a=1; b=2']]);
    expect(out).toContainEqual(['content-type', 'text/plain']);
    expect(out).toContainEqual(['content-length', '3']);
  });

  it('forwards one content-length field however often the client repeated it', () => {
    const out = toUpstreamRequestHeaders(request([['content-length', '3'], ['content-length', '3']]), { clientIp: '10.0.0.1' });
    expect(out.filter(([n]) => n === 'content-length')).toEqual([['content-length', '3']]);
  });

  it("names the client's protocol version in Via: 1.1, 2 or 3 (RFC 9110 §7.6.3)", () => {
    const via = (receivedProtocol: '1.1' | '2' | '3' | undefined) =>
      toUpstreamRequestHeaders(request([['via', '1.1 cdn']]), { clientIp: '10.0.0.1', ...(receivedProtocol ? { receivedProtocol } : {}) }).find(([n]) => n === 'via')?.[1];
    expect(via('1.1')).toBe('1.1 cdn, 1.1 udpgrm-proxy');
    expect(via('2')).toBe('1.1 cdn, 2 udpgrm-proxy');
    expect(via('3')).toBe('1.1 cdn, 3 udpgrm-proxy');
    expect(via(undefined)).toBe('1.1 cdn, 3 udpgrm-proxy');
  });
});

describe('toClientResponseHeaders', () => {
  it("names the upstream response's protocol version in Via (HTTP/1.1 unless told)", () => {
    expect(toClientResponseHeaders([['via', '1.0 origin']])).toEqual([['via', '1.0 origin, 1.1 udpgrm-proxy']]);
    expect(toClientResponseHeaders([], { receivedProtocol: '2' })).toEqual([['via', '2 udpgrm-proxy']]);
  });

  it('lowercases, strips hop-by-hop and connection-listed fields, appends Via', () => {
    const upstream: Field[] = [
      ['Content-Type', 'text/html'],
      ['Connection', 'keep-alive, X-Internal'],
      ['X-Internal', 'yes'],
      ['Keep-Alive', 'timeout=5'],
      ['Transfer-Encoding', 'chunked'],
      ['Upgrade', 'h2c'],
      ['Proxy-Authenticate', 'Basic'],
      ['Trailer', 'X-Sum'],
      ['Set-Cookie', 'a=1'],
      ['Set-Cookie', 'b=2'],
      ['Via', '1.0 inner'],
      ['Bad Name', 'x'],
      ['x-bad-value', 'a\nb'],
    ];
    expect(toClientResponseHeaders(upstream)).toEqual([
      ['content-type', 'text/html'],
      ['set-cookie', 'a=1'],
      ['set-cookie', 'b=2'],
      ['via', '1.0 inner, 1.1 udpgrm-proxy'],
    ]);
  });

  it('applies route response headers, replacing upstream fields of the same name', () => {
    const out = toClientResponseHeaders(
      [
        ['x-config-version', 'upstream-said'],
        ['content-length', '2'],
      ],
      { routeHeaders: [['X-Config-Version', '7']] },
    );
    expect(out).toEqual([
      ['content-length', '2'],
      ['via', '1.1 udpgrm-proxy'],
      ['x-config-version', '7'],
    ]);
  });
});

describe('Content-Length by status (RFC 9110 §8.6)', () => {
  const upstream: Field[] = [
    ['ETag', '"v1"'],
    ['Content-Length', '5'],
  ];
  it('drops Content-Length from 1xx and 204, keeps it on 200, 304 (the representation length)', () => {
    for (const status of [103, 204]) expect(toClientResponseHeaders(upstream, { status }), String(status)).toEqual([['etag', '"v1"'], ['via', '1.1 udpgrm-proxy']]);
    for (const status of [200, 304]) expect(toClientResponseHeaders(upstream, { status }), String(status)).toContainEqual(['content-length', '5']);
  });

  it('knows which responses end with their headers (RFC 9110 §6.4.1)', () => {
    expect([100, 103, 204, 304].map(statusHasNoContent)).toEqual([true, true, true, true]);
    expect([200, 205, 404, 500].map(statusHasNoContent)).toEqual([false, false, false, false]);
    expect(responseHasNoContent('HEAD', 200)).toBe(true);
    expect(responseHasNoContent('GET', 200)).toBe(false);
    expect(responseHasNoContent('GET', 304)).toBe(true);
  });
});

describe('toClientTrailers', () => {
  it('keeps ordinary trailers, drops framing and hop-by-hop ones', () => {
    expect(
      toClientTrailers([
        ['X-Checksum', 'abc'],
        ['Content-Length', '5'],
        ['Transfer-Encoding', 'chunked'],
        ['grpc-status', '0'],
      ]),
    ).toEqual([
      ['x-checksum', 'abc'],
      ['grpc-status', '0'],
    ]);
  });
});
