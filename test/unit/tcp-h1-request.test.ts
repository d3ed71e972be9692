import { describe, expect, it } from 'vitest';
import type { IncomingMessage } from 'node:http';
import { buildH1Request, http10Authority } from '../../src/proxy/tcp/h1-request.js';
import { redirectLocation } from '../../src/proxy/tcp/redirect-listener.js';

const req = (method: string, target: string, headers: string[], scheme: 'http' | 'https' = 'https') => buildH1Request(method, target, headers, scheme);

describe('buildH1Request: request-target and Host → the validated request', () => {
  it('origin-form: Host is the authority, the target the path', () => {
    const r = req('GET', '/a/b?c', ['Host', 'App.Example:8443', 'Accept', '*/*']);
    expect(r).toEqual({
      ok: true,
      request: { method: 'GET', scheme: 'https', authority: 'App.Example:8443', path: '/a/b?c', headers: [['host', 'App.Example:8443'], ['accept', '*/*']] },
    });
  });

  it("absolute-form: the target's authority wins over Host and replaces it (RFC 9112 §3.2.2)", () => {
    const r = req('GET', 'http://b.example:1/x?y', ['Host', 'a.example']);
    expect(r.ok && r.request).toMatchObject({ authority: 'b.example:1', path: '/x?y', scheme: 'https', headers: [['host', 'b.example:1']] });
    const noPath = req('GET', 'https://b.example?q=1', ['Host', 'a.example']);
    expect(noPath.ok && noPath.request.path).toBe('/?q=1');
    expect(req('GET', 'ftp://b.example/x', ['Host', 'a'])).toMatchObject({ ok: false, status: 400 });
    expect(req('GET', 'http://user@b.example/x', ['Host', 'a'])).toMatchObject({ ok: false, status: 400, reason: 'userinfo in authority' });
    expect(req('GET', 'http:///x', ['Host', 'a'])).toMatchObject({ ok: false, status: 400 });
  });

  it('asterisk-form only with OPTIONS', () => {
    expect(req('OPTIONS', '*', ['Host', 'a'])).toMatchObject({ ok: true, request: { path: '*', authority: 'a' } });
    expect(req('GET', '*', ['Host', 'a'])).toMatchObject({ ok: false, status: 400 });
  });

  it('authority-form CONNECT is refused as over HTTP/3: 501', () => {
    expect(req('CONNECT', 'a.example:443', ['Host', 'a.example:443'])).toEqual({ ok: false, status: 501, reason: 'CONNECT is not supported' });
  });

  it('missing, repeated or invalid Host → 400 (RFC 9112 §3.2)', () => {
    expect(req('GET', '/', [])).toEqual({ ok: false, status: 400, reason: 'missing Host' });
    expect(req('GET', '/', ['Host', 'a', 'host', 'a'])).toEqual({ ok: false, status: 400, reason: 'more than one Host' });
    expect(req('GET', '/', ['Host', 'a b'])).toMatchObject({ ok: false, status: 400 });
    expect(req('GET', '/', ['Host', ''])).toMatchObject({ ok: false, status: 400 });
    expect(req('GET', '/', ['Host', 'a:99999'])).toMatchObject({ ok: false, status: 400, reason: 'invalid Host: invalid port in authority' });
    // Even with an absolute-form target, whose authority is used instead.
    expect(req('GET', 'http://b/', [])).toMatchObject({ ok: false, status: 400, reason: 'missing Host' });
  });

  it('HTTP/1.0 without Host: the authority given for the connection (Host is required of HTTP/1.1 only)', () => {
    const r = buildH1Request('GET', '/x', ['Accept', '*/*'], 'https', '127.0.0.1:4433');
    expect(r).toEqual({ ok: true, request: { method: 'GET', scheme: 'https', authority: '127.0.0.1:4433', path: '/x', headers: [['accept', '*/*'], ['host', '127.0.0.1:4433']] } });
    // A Host it did send wins; absolute-form still replaces it.
    expect(buildH1Request('GET', '/x', ['Host', 'a.test'], 'https', '127.0.0.1:4433')).toMatchObject({ ok: true, request: { authority: 'a.test' } });
    expect(buildH1Request('GET', 'http://b.test/x', [], 'https', '127.0.0.1:4433')).toMatchObject({ ok: true, request: { authority: 'b.test', headers: [['host', 'b.test']] } });
    expect(buildH1Request('GET', '/x', ['Host', 'a', 'Host', 'b'], 'https', '127.0.0.1:4433')).toMatchObject({ ok: false, status: 400 });
  });

  it('http10Authority: the local address and port for HTTP/1.0 (IPv6 bracketed), none for HTTP/1.1', () => {
    const socket = (localAddress: string) => ({ localAddress, localPort: 443 }) as IncomingMessage['socket'];
    expect(http10Authority({ httpVersionMinor: 0, socket: socket('192.0.2.1') })).toBe('192.0.2.1:443');
    expect(http10Authority({ httpVersionMinor: 0, socket: socket('2001:db8::1') })).toBe('[2001:db8::1]:443');
    expect(http10Authority({ httpVersionMinor: 1, socket: socket('192.0.2.1') })).toBeUndefined();
  });

  it('a request-target that is none of the forms → 400', () => {
    expect(req('GET', 'x/y', ['Host', 'a'])).toMatchObject({ ok: false, status: 400, reason: 'invalid request target' });
  });

  it('removes the fields of the HTTP/1.1 connection (Connection and what it lists, Keep-Alive, Upgrade, Transfer-Encoding); keeps te: trailers', () => {
    const r = req('POST', '/', [
      'Host', 'a',
      'Connection', 'keep-alive, X-Hop, Host',
      'Keep-Alive', 'timeout=5',
      'X-Hop', '1',
      'Upgrade', 'websocket',
      'Proxy-Connection', 'keep-alive',
      'Transfer-Encoding', 'chunked',
      'TE', 'deflate, trailers;q=0.5',
      'X-End', '2',
    ]);
    expect(r.ok && r.request.headers).toEqual([['host', 'a'], ['te', 'trailers'], ['x-end', '2']]);
    const noTrailers = req('GET', '/', ['Host', 'a', 'TE', 'gzip']);
    expect(noTrailers.ok && noTrailers.request.headers).toEqual([['host', 'a']]);
  });

  it('transfer codings other than a lone chunked → 501 (they would reach the upstream undeclared)', () => {
    expect(req('POST', '/', ['Host', 'a', 'Transfer-Encoding', 'gzip, chunked'])).toMatchObject({ ok: false, status: 501 });
    expect(req('POST', '/', ['Host', 'a', 'Transfer-Encoding', 'chunked', 'Transfer-Encoding', 'chunked'])).toMatchObject({ ok: false, status: 501 });
    expect(req('POST', '/', ['Host', 'a', 'Transfer-Encoding', 'Chunked'])).toMatchObject({ ok: true });
  });

  it('runs the shared validation: conflicting content-length, bad characters in the path', () => {
    expect(req('POST', '/', ['Host', 'a', 'Content-Length', '3', 'Content-Length', '4'])).toEqual({ ok: false, status: 400, reason: 'conflicting content-length values' });
    expect(req('POST', '/', ['Host', 'a', 'Content-Length', '3', 'Content-Length', '3'])).toMatchObject({ ok: true, request: { contentLength: 3 } });
    expect(req('GET', '/a\x7fb', ['Host', 'a'])).toMatchObject({ ok: false, status: 400, reason: 'invalid characters in :path' });
  });

  it('the redirect listener builds the same request with scheme http', () => {
    expect(req('GET', '/x', ['Host', 'a'], 'http')).toMatchObject({ ok: true, request: { scheme: 'http' } });
  });
});

describe('redirectLocation', () => {
  it("takes Host's name, the TLS listener's port (none for 443) and the target", () => {
    expect(redirectLocation('example.test:80', '/a?b', 8443)).toBe('https://example.test:8443/a?b');
    expect(redirectLocation('example.test', '/a', 443)).toBe('https://example.test/a');
    expect(redirectLocation('[2001:db8::1]:80', '/', 4433)).toBe('https://[2001:db8::1]:4433/');
    expect(redirectLocation('[2001:db8::1]', '*', 443)).toBe('https://[2001:db8::1]/');
  });
});
