import { describe, expect, it } from 'vitest';
import { matchRoute, normaliseAuthorityHost } from '../../src/proxy/http/route.js';
import { parseDuration, parseSize, selectCertificate, type CertificateConfig, type HostPattern, type RouteConfig } from '../../src/proxy/config/index.js';

const cert = (names: string[], isDefault = false): CertificateConfig => ({ names, certFile: `/c/${names[0]}`, keyFile: `/k/${names[0]}`, selfSigned: false, isDefault });

describe('selectCertificate', () => {
  const exact = cert(['a.example.com', 'example.com']);
  const wildcard = cert(['*.example.com']);
  const fallback = cert(['default.test'], true);
  const tls = { certificates: [wildcard, exact, fallback] };

  it('prefers an exact name over a wildcard over the default', () => {
    expect(selectCertificate(tls, 'a.example.com')).toBe(exact);
    expect(selectCertificate(tls, 'b.example.com')).toBe(wildcard);
    expect(selectCertificate(tls, 'example.com')).toBe(exact);
    expect(selectCertificate(tls, 'other.test')).toBe(fallback);
  });

  it('matches a wildcard on exactly one label', () => {
    expect(selectCertificate(tls, 'x.y.example.com')).toBe(fallback);
    expect(selectCertificate({ certificates: [wildcard, fallback] }, 'example.com')).toBe(fallback);
    expect(selectCertificate({ certificates: [wildcard, fallback] }, '.example.com')).toBe(fallback);
  });

  it('is case-insensitive, ignores a trailing dot, uses the default without SNI', () => {
    expect(selectCertificate(tls, 'A.Example.COM.')).toBe(exact);
    expect(selectCertificate(tls, undefined)).toBe(fallback);
    expect(selectCertificate(tls, '')).toBe(fallback);
  });

  it('falls back to the first certificate when none is marked default', () => {
    expect(selectCertificate({ certificates: [exact, wildcard] }, 'nomatch.test')).toBe(exact);
    expect(() => selectCertificate({ certificates: [] }, 'x')).toThrow(/no certificates/);
  });
});

describe('matchRoute', () => {
  const route = (name: string, hosts: HostPattern[], pathPrefix: string): RouteConfig => ({
    name,
    hosts,
    pathPrefix,
    action: { kind: 'proxy', upstream: name },
    responseHeaders: [],
  });
  const routes = [
    route('api', [{ kind: 'exact', name: 'api.example.com' }], '/v1'),
    route('wild', [{ kind: 'wildcard', suffix: '.example.com' }], '/static/'),
    route('ip6', [{ kind: 'exact', name: '::1' }], '/'),
    route('any-api', [{ kind: 'any' }], '/api'),
    route('catchall', [{ kind: 'any' }], '/'),
  ];
  const pick = (host: string, path: string) => matchRoute(routes, host, path)?.name;

  it('takes the first match in file order', () => {
    expect(pick('api.example.com', '/v1/users')).toBe('api');
    expect(pick('api.example.com', '/static/x.css')).toBe('wild');
    expect(pick('api.example.com', '/api/x')).toBe('any-api');
    expect(pick('api.example.com', '/other')).toBe('catchall');
    // A later, longer prefix does not beat an earlier match.
    expect(matchRoute([route('root', [{ kind: 'any' }], '/'), route('long', [{ kind: 'any' }], '/long')], 'h', '/long/x')?.name).toBe('root');
  });

  it('matches prefixes on segment boundaries, ignoring the query', () => {
    expect(pick('api.example.com', '/v1')).toBe('api');
    expect(pick('api.example.com', '/v1/')).toBe('api');
    expect(pick('api.example.com', '/v1?x=1')).toBe('api');
    expect(pick('api.example.com', '/v10')).toBe('catchall');
    expect(pick('x.example.com', '/static')).toBe('catchall'); // prefix "/static/" needs the slash
    expect(pick('x.example.com', '/static/')).toBe('wild');
    expect(pick('h', '/apis')).toBe('catchall');
    expect(pick('h', '/API')).toBe('catchall'); // case-sensitive
  });

  it('normalises the host: lowercase, no port, no trailing dot, no IPv6 brackets', () => {
    expect(pick('API.Example.COM:4433', '/v1')).toBe('api');
    expect(pick('api.example.com.', '/v1')).toBe('api');
    expect(pick('[::1]:4433', '/x')).toBe('ip6');
    expect(pick('::1', '/x')).toBe('ip6');
    expect(pick('a.b.example.com', '/static/x')).toBe('catchall'); // wildcard = one label
    expect(pick('example.com', '/static/x')).toBe('catchall');
    expect(normaliseAuthorityHost('Example.com:443')).toBe('example.com');
    expect(normaliseAuthorityHost('[2001:DB8::1]:443')).toBe('2001:db8::1');
  });

  it('returns undefined when nothing matches', () => {
    expect(matchRoute(routes.slice(0, 3), 'nomatch.test', '/')).toBeUndefined();
    expect(matchRoute([], 'h', '/')).toBeUndefined();
  });
});

describe('durations and sizes', () => {
  it('parses durations to milliseconds; plain numbers are seconds', () => {
    expect(parseDuration('500ms')).toEqual({ ok: true, value: 500 });
    expect(parseDuration('30s')).toEqual({ ok: true, value: 30_000 });
    expect(parseDuration('2m')).toEqual({ ok: true, value: 120_000 });
    expect(parseDuration('1h')).toEqual({ ok: true, value: 3_600_000 });
    expect(parseDuration('1m30s')).toEqual({ ok: true, value: 90_000 });
    expect(parseDuration('1.5s')).toEqual({ ok: true, value: 1500 });
    expect(parseDuration(30)).toEqual({ ok: true, value: 30_000 });
    expect(parseDuration(0.25)).toEqual({ ok: true, value: 250 });
    for (const bad of ['30', '30 s', 's', '', '-1s', '1d', '1s2', true, null, -1]) expect(parseDuration(bad).ok).toBe(false);
  });

  it('parses sizes to bytes; plain numbers are bytes', () => {
    expect(parseSize(1200)).toEqual({ ok: true, value: 1200 });
    expect(parseSize('1200')).toEqual({ ok: true, value: 1200 });
    expect(parseSize('64KiB')).toEqual({ ok: true, value: 65536 });
    expect(parseSize('4MiB')).toEqual({ ok: true, value: 4 * 1024 * 1024 });
    expect(parseSize('1MB')).toEqual({ ok: true, value: 1_000_000 });
    expect(parseSize('1 gib')).toEqual({ ok: true, value: 1024 ** 3 });
    expect(parseSize('1.5KiB')).toEqual({ ok: true, value: 1536 });
    for (const bad of ['4M', '4 MiBs', '0.5', '1.5B', '-1', 1.5, 'MiB', false]) expect(parseSize(bad).ok).toBe(false);
  });
});
