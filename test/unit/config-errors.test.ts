import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, formatConfigErrors, loadConfig, type ConfigIssue } from '../../src/proxy/config/index.js';

const fixtures = resolve(import.meta.dirname, '../fixtures/config');
let dir: string;
let n = 0;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'config-errors-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function errorsOf(file: string): ConfigError {
  try {
    loadConfig(file, { createState: false });
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error(`${file} loaded without errors`);
}

/** Issues of an inline config written to its own file, as [line, col, path, message]. */
function issuesOf(yaml: string): Array<[number, number, string, string]> {
  const file = join(dir, `c${n++}.yaml`);
  writeFileSync(file, yaml);
  return errorsOf(file).issues.map((i) => [i.line, i.col, i.path, i.message]);
}

const OK_LISTENERS = 'listeners: ["127.0.0.1:4433"]\n';
const OK_ROUTES = 'routes: [{respond: {status: 200}}]\n';

describe('every error in a file, each with file:line:col and path', () => {
  it('reports all fifteen problems of many-errors.yaml at their exact positions', () => {
    const file = join(fixtures, 'many-errors.yaml');
    const err = errorsOf(file);
    const at = err.issues.map((i: ConfigIssue) => `${i.line}:${i.col} ${i.path}`);
    expect(at).toEqual([
      '4:5 listeners[1]',
      '5:5 listeners[2]',
      '6:1 workres',
      '7:16 drain_timeout',
      '10:15 tls.certificates[0].names[0]',
      '11:13 tls.certificates[0].cert',
      '12:12 tls.certificates[0].key',
      '14:11 routes[0].path',
      '15:15 routes[0].upstream',
      '18:15 routes[1].respond.status',
      '21:15 upstreams.app.targets[0]',
      '22:14 upstreams.app.balance',
      '24:20 quic.max_udp_payload',
      '25:15 quic.cid_length',
      '27:10 logging.level',
    ]);
    expect(err.issues.every((i) => i.file === file)).toBe(true);
    const messages = err.issues.map((i) => i.message);
    expect(messages[0]).toBe('duplicate listener 127.0.0.1:4433 (already listed at listeners[0])');
    expect(messages[2]).toMatch(/^unknown key "workres"; did you mean "workers"\?/);
    expect(messages[8]).toBe('unknown upstream pool "ap"; did you mean "app"? (defined pools: app)');
    expect(messages[12]).toBe('must be between 1200 and 65527, got 70000');
  });

  it('formats each issue with its source line and a caret under the column', () => {
    const text = formatConfigErrors(errorsOf(join(fixtures, 'many-errors.yaml')));
    const lines = text.split('\n');
    const i = lines.findIndex((l) => l.includes(':15:15: routes[0].upstream:'));
    expect(i).toBeGreaterThanOrEqual(0);
    expect(lines[i + 1]).toBe('   15 |     upstream: ap');
    expect(lines[i + 2]).toBe('      |               ^');
    expect(lines.at(-2)).toMatch(/^15 errors in .*many-errors\.yaml$/);
  });

  it('reports YAML syntax errors with positions, pointing at the offending token', () => {
    const err = errorsOf(join(fixtures, 'syntax-error.yaml'));
    expect(err.issues).toHaveLength(1);
    expect(err.issues[0]).toMatchObject({ line: 7, col: 6, path: '' });
    expect(err.issues[0]!.message).toMatch(/^YAML syntax error: /);
  });

  it('explains unquoted IPv6 listeners and unquoted wildcard names', () => {
    const v6 = errorsOf(join(fixtures, 'unquoted-ipv6.yaml')).issues;
    expect(v6[0]).toMatchObject({ line: 2, col: 10 });
    expect(v6[0]!.message).toContain('IPv6 addresses with a port must be quoted: "[::1]:4433"');

    const wildcard = issuesOf(`${OK_LISTENERS}${OK_ROUTES}tls:\n  certificates:\n    - names: [*.example.com]\n      cert: /nonexistent.crt\n      key: /nonexistent.key\n`);
    expect(wildcard[0]).toEqual([5, 15, 'tls.certificates[0].names[0]', 'unknown YAML alias "*.example.com" (a name starting with \'*\' must be quoted: "*.example.com")']);
  });

  it('reports duplicate keys, multiple documents, a non-mapping root, an unreadable file', () => {
    expect(issuesOf(`${OK_LISTENERS}${OK_ROUTES}workers: 2\nworkers: 3\n`)).toEqual([[4, 1, '', 'YAML syntax error: Map keys must be unique']]);
    expect(issuesOf(`${OK_LISTENERS}---\n${OK_ROUTES}`)[0]!.slice(0, 2)).toEqual([2, 1]);
    expect(issuesOf('- a\n- b\n')[0]).toEqual([1, 1, '', expect.stringMatching(/^expected a mapping with keys listeners, .* got a list$/)]);
    const missing = errorsOf(join(dir, 'nope.yaml'));
    expect(missing.issues).toEqual([{ file: join(dir, 'nope.yaml'), line: 0, col: 0, path: '', message: 'cannot read config: file not found' }]);
    expect(formatConfigErrors(missing)).toBe(`${join(dir, 'nope.yaml')}: cannot read config: file not found\n1 error in ${join(dir, 'nope.yaml')}\n`);
  });

  it('reports http limits and queue_timeout out of range at their positions, and a connection header bound below one request', () => {
    const http = issuesOf(
      `${OK_LISTENERS}${OK_ROUTES}http:\n  request_header_timeout: 10ms\n  request_body_timeout: soon\n  max_requests_per_connection: 0\n  max_header_bytes: 2MiB\n  request_body_timout: 1\n`,
    );
    expect(http).toEqual([
      [4, 27, 'http.request_header_timeout', 'must be between 100ms and 10m, got "10ms"'],
      [5, 25, 'http.request_body_timeout', expect.stringMatching(/^expected a duration like/)],
      [6, 32, 'http.max_requests_per_connection', 'max_requests_per_connection must be between 1 and 1000000000, got 0'],
      [7, 21, 'http.max_header_bytes', 'must be between 1KiB and 1MiB, got "2MiB"'],
      [8, 3, 'http.request_body_timout', expect.stringMatching(/^unknown key "request_body_timout"; did you mean "request_body_timeout"\?/)],
    ]);
    expect(issuesOf(`${OK_LISTENERS}${OK_ROUTES}http:\n  max_header_bytes: 128KiB\n  max_connection_header_bytes: 128KiB\n`)).toEqual([
      [5, 32, 'http.max_connection_header_bytes', 'max_connection_header_bytes (128KiB) must hold one largest HEADERS frame: at least max_header_bytes + 16 = 131088'],
    ]);
    expect(issuesOf(`${OK_LISTENERS}${OK_ROUTES}http: {max_header_bytes: 512KiB}\n`)).toEqual([
      [3, 26, 'http.max_header_bytes', 'max_connection_header_bytes (256KiB) must hold one largest HEADERS frame: at least max_header_bytes + 16 = 524304'],
    ]);
    const queue = issuesOf(`${OK_LISTENERS}routes: [{upstream: app}]\nupstreams:\n  app: {targets: ["http://127.0.0.1:1"], queue_timeout: 11m}\n`);
    expect(queue).toEqual([[4, 57, 'upstreams.app.queue_timeout', 'must be between 0s and 10m, got "11m"']]);
  });

  it('reports a bad max_request_body, top level and per route, at its position', () => {
    expect(issuesOf(`${OK_LISTENERS}${OK_ROUTES}http:\n  max_request_body: lots\n`)).toEqual([
      [4, 21, 'http.max_request_body', expect.stringMatching(/^expected a size like .* or "none", got "lots"$/)],
    ]);
    expect(issuesOf(`${OK_LISTENERS}${OK_ROUTES}http: {max_request_body: 2TiB}\n`)).toEqual([
      [3, 26, 'http.max_request_body', expect.stringMatching(/^expected a size like .*\(units: B, KB, MB, GB, KiB, MiB, GiB\) or "none", got "2TiB"$/)],
    ]);
    expect(issuesOf(`${OK_LISTENERS}${OK_ROUTES}http: {max_request_body: 2048GiB}\n`)).toEqual([
      [3, 26, 'http.max_request_body', 'must be between 0 and 1024GiB, got "2048GiB"'],
    ]);
    expect(issuesOf(`${OK_LISTENERS}routes:\n  - {respond: {status: 200}, max_request_body: -1}\n  - {respond: {status: 200}, max_request_body: unlimited}\n`)).toEqual([
      [3, 48, 'routes[0].max_request_body', expect.stringMatching(/^expected a size like .*\(a whole number of bytes\) or "none", got -1$/)],
      [4, 48, 'routes[1].max_request_body', expect.stringMatching(/^expected a size like .* or "none", got "unlimited"$/)],
    ]);
  });

  it('reports the TCP edge limits out of range at their positions', () => {
    const tcp = issuesOf(
      `${OK_LISTENERS}${OK_ROUTES}http:\n  keepalive_timeout: 2h\n  h2_max_concurrent_streams: 0\n  h2_initial_window: 1KiB\n  h2_max_client_resets: 0\n  max_tcp_connections: 2000000\n`,
    );
    expect(tcp).toEqual([
      [4, 22, 'http.keepalive_timeout', 'must be between 100ms and 1h, got "2h"'],
      [5, 30, 'http.h2_max_concurrent_streams', 'h2_max_concurrent_streams must be between 1 and 10000, got 0'],
      [6, 22, 'http.h2_initial_window', expect.stringMatching(/^must be between .* got "1KiB"$/)],
      [7, 25, 'http.h2_max_client_resets', 'h2_max_client_resets must be between 1 and 1000000, got 0'],
      [8, 24, 'http.max_tcp_connections', 'max_tcp_connections must be between 1 and 1000000, got 2000000'],
    ]);
    expect(issuesOf(`${OK_LISTENERS}${OK_ROUTES}http: {h2_initial_window: 3GiB}\n`)).toEqual([[3, 27, 'http.h2_initial_window', expect.stringMatching(/^must be between .* got "3GiB"$/)]]);
  });

  it('requires listeners and routes', () => {
    expect(issuesOf('')).toEqual([
      [1, 1, '', expect.stringMatching(/^missing "listeners"/)],
      [1, 1, '', expect.stringMatching(/^missing "routes"/)],
    ]);
    expect(issuesOf('workers: 2\nroutes: []\nlisteners: []\n')).toEqual([
      [2, 9, 'routes', 'expected at least one route'],
      [3, 12, 'listeners', 'expected at least one listener address'],
    ]);
  });
});

describe('kinds of error', () => {
  const check = (yaml: string) => issuesOf(yaml);

  it('wrong types and out-of-range numbers', () => {
    expect(check(`${OK_LISTENERS}${OK_ROUTES}workers: many\ndrain_timeout: [1]\nquic: 5\n`)).toEqual([
      [3, 10, 'workers', 'expected workers (or "auto") (1..1024), got "many"'],
      [4, 16, 'drain_timeout', expect.stringMatching(/^expected a duration like .*, got a list$/)],
      [5, 7, 'quic', expect.stringMatching(/^expected QUIC limits with keys idle_timeout, .*, got 5$/)],
    ]);
    expect(check(`${OK_LISTENERS}${OK_ROUTES}workers: 0\nquic:\n  max_concurrent_streams: 1.5\n  cid_length: 21\n`)).toEqual([
      [3, 10, 'workers', 'workers (or "auto") must be between 1 and 1024, got 0'],
      [5, 27, 'quic.max_concurrent_streams', 'expected max_concurrent_streams (1..100000), got 1.5'],
      [6, 15, 'quic.cid_length', 'cid_length must be between 8 and 20, got 21'],
    ]);
    expect(check(`${OK_LISTENERS}${OK_ROUTES}quic:\n  early_data: always\n`)).toEqual([
      [4, 15, 'quic.early_data', 'expected one of "off", "safe", got "always"'],
    ]);
    expect(check(`${OK_LISTENERS}${OK_ROUTES}quic:\n  gso: on\n`)).toEqual([[4, 8, 'quic.gso', 'expected one of "auto", "off", got "on"']]);
    expect(check(`${OK_LISTENERS}${OK_ROUTES}quic:\n  active_migration: sometimes\n`)).toEqual([[4, 21, 'quic.active_migration', expect.stringMatching(/true or false/)]]);
    expect(check(`${OK_LISTENERS}${OK_ROUTES}quic:\n  retry: sometimes\n  max_handshakes: 0\n  handshake_timeout: 1h\n  pending_client_hello_bytes: 1KiB\n`)).toEqual([
      [4, 10, 'quic.retry', expect.stringMatching(/^expected one of "auto", "always", "never", got "sometimes"/)],
      [5, 19, 'quic.max_handshakes', 'max_handshakes must be between 1 and 1000000, got 0'],
      [6, 22, 'quic.handshake_timeout', expect.stringMatching(/handshake_timeout|10m|1h/)],
      [7, 31, 'quic.pending_client_hello_bytes', expect.stringMatching(/64KiB|1KiB/)],
    ]);
  });

  it('durations and sizes', () => {
    const issues = check(
      `${OK_LISTENERS}${OK_ROUTES}drain_timeout: 2 hours\nquic:\n  idle_timeout: 2h\n  initial_max_data: 10 megabytes\n  initial_max_stream_data: 0.5B\n  max_udp_payload: 64KiB\n`,
    );
    expect(issues.map(([l, c, p]) => `${l}:${c} ${p}`)).toEqual([
      '3:16 drain_timeout',
      '5:17 quic.idle_timeout',
      '6:21 quic.initial_max_data',
      '7:28 quic.initial_max_stream_data',
      '8:20 quic.max_udp_payload',
    ]);
    expect(issues[1]![3]).toBe('must be between 100ms and 1h, got "2h"');
    expect(issues[2]![3]).toMatch(/^expected a size like .*\(units: B, KB, MB, GB, KiB, MiB, GiB\), got "10 megabytes"$/);
    expect(issues[3]![3]).toMatch(/a whole number of bytes/);
    expect(issues[4]![3]).toBe('must be between 1200 and 65527, got "64KiB"');
  });

  it('listener addresses', () => {
    const issues = check(`listeners:\n  - "1.2.3:4433"\n  - "::1:4433"\n  - "[::1]:0"\n  - "[127.0.0.1]:4433"\n  - "[fe80::1%eth0]:1"\n  - "[::1]:4433"\n  - "[0::1]:4433"\n${OK_ROUTES}`);
    expect(issues.map(([l, c, p]) => `${l}:${c} ${p}`)).toEqual([
      '2:5 listeners[0]',
      '3:5 listeners[1]',
      '4:5 listeners[2]',
      '5:5 listeners[3]',
      '6:5 listeners[4]',
      '8:5 listeners[6]',
    ]);
    expect(issues[1]![3]).toContain('IPv6 addresses go in brackets');
    expect(issues[2]![3]).toContain('a port number between 1 and 65535');
    expect(issues[5]![3]).toBe('duplicate listener [::1]:4433 (already listed at listeners[5])');
  });

  it('listener protocols, alt_svc and http_redirect', () => {
    const issues = check(
      'listeners:\n' +
        '  - address: "127.0.0.1:443"\n' + // 2
        '    protocols: [h2, h4]\n' + // 3
        '  - address: "127.0.0.1:444"\n' + // 4
        '    protocols: [h3, h3]\n' + // 5
        '  - address: "127.0.0.1:445"\n' + // 6
        '    protocols: [h3]\n' + // 7
        '    http_redirect: "127.0.0.1:80"\n' + // 8
        '  - address: "127.0.0.1:446"\n' + // 9
        '    alt_svc: "h3=\\":446\\"\\n"\n' + // 10
        '    portocols: [h1]\n' + // 11
        '  - protocols: [h1]\n' + // 12
        '  - address: "127.0.0.1:447"\n' + // 13
        '    http_redirect: "127.0.0.1:447"\n' + // 14
        OK_ROUTES,
    );
    expect(issues.map(([l, c, p, m]) => `${l}:${c} ${p}: ${m}`)).toEqual([
      '3:21 listeners[0].protocols[1]: expected one of "h1", "h2", "h3", got "h4"',
      '5:21 listeners[1].protocols[1]: protocol h3 is listed twice',
      expect.stringMatching(/^8:20 listeners\[2\]\.http_redirect: http_redirect sends clients to this listener's https URL, but it serves no TCP protocol/),
      expect.stringMatching(/^10:14 listeners\[3\]\.alt_svc: expected a header value without control characters/),
      expect.stringMatching(/^11:5 listeners\[3\]\.portocols: unknown key "portocols"; did you mean "protocols"\?/),
      expect.stringMatching(/^12:5 listeners\[4\]: missing "address"/),
      '14:20 listeners[5].http_redirect: TCP address 127.0.0.1:447 is already used by listeners[5].address',
    ]);
  });

  it('routes: host patterns, path prefixes, actions, status, headers', () => {
    const issues = check(
      OK_LISTENERS +
        'routes:\n' +
        '  - host: ["ok.example", "*.", "a.*.example", "x:80"]\n' + // 3
        '    path: /api/*\n' + // 4
        '    upstream: nowhere\n' + // 5
        '  - path: /a b\n' + // 6
        '    respond: {status: 150, headers: {Connection: close, "x-ok": "fine"}}\n' + // 7
        '    upstream: also\n' + // 8
        '  - host: []\n' + // 9
        '  - respond: {status: 204, body: "no"}\n' + // 10
        '    headers: {x-a: "1", X-A: "2"}\n' + // 11
        '  - respond: "ok"\n', // 12
    );
    expect(issues).toEqual([
      [3, 26, 'routes[0].host[1]', expect.stringMatching(/^expected a wildcard of the form "\*\.example\.com"/)],
      [3, 32, 'routes[0].host[2]', expect.stringMatching(/^expected a wildcard of the form/)],
      [3, 47, 'routes[0].host[3]', expect.stringMatching(/without a port/)],
      [4, 11, 'routes[0].path', 'path is a prefix, not a pattern: write "/api/" to match everything below it'],
      [5, 15, 'routes[0].upstream', 'unknown upstream pool "nowhere" (no pools are defined under "upstreams")'],
      [6, 11, 'routes[1].path', expect.stringMatching(/without "\?", "#" or spaces/)],
      [7, 14, 'routes[1].respond', 'a route has either "upstream" or "respond", not both'],
      [9, 11, 'routes[2].host', 'expected at least one host pattern (omit "host" to match any host)'],
      [9, 5, 'routes[2]', expect.stringMatching(/^a route needs an action/)],
      [10, 34, 'routes[3].respond.body', 'a 204 response has no body: remove "body" or change the status'],
      [11, 25, 'routes[3].headers["X-A"]', 'duplicate header "x-a"'],
      [12, 14, 'routes[4].respond', 'expected a mapping { status, headers, body }, got "ok"'],
    ].sort((a, b) => (a[0] as number) - (b[0] as number) || (a[1] as number) - (b[1] as number)));
  });

  it('respond status out of range and reserved headers', () => {
    expect(check(`${OK_LISTENERS}routes:\n  - respond: {status: 600, headers: {Connection: close}}\n`)).toEqual([
      [3, 23, 'routes[0].respond.status', 'a final HTTP status must be between 200 and 599, got 600'],
      [3, 38, 'routes[0].respond.headers.Connection', 'invalid header name "Connection": expected a header other than "connection", which the proxy sets itself or HTTP/3 forbids'],
    ]);
  });

  it('upstream pools and targets', () => {
    const issues = check(
      OK_LISTENERS +
        'routes: [{upstream: web}]\n' +
        'upstreams:\n' +
        '  web:\n' +
        '    targets: ["http://a:1", "http://a:1", "tcp://b:2", "http://user@c:3", "http://[::1]:8080", "http://d:99999"]\n' + // 5
        '    max_connections: 0\n' + // 6
        '    keepalive_timeout: forever\n' + // 7
        '    retry: 3\n' + // 8
        '  "bad name":\n' + // 9
        '    targets: []\n', // 10
    );
    expect(issues.map(([l, c, p]) => `${l}:${c} ${p}`)).toEqual([
      '5:29 upstreams.web.targets[1]',
      '5:43 upstreams.web.targets[2]',
      '5:56 upstreams.web.targets[3]',
      '5:96 upstreams.web.targets[5]',
      '6:22 upstreams.web.max_connections',
      '7:24 upstreams.web.keepalive_timeout',
      '8:5 upstreams.web.retry',
      '9:3 upstreams["bad name"]',
      '10:14 upstreams["bad name"].targets',
    ]);
    expect(issues[0]![3]).toBe('duplicate target http://a:1');
    expect(issues[3]![3]).toContain('with a port between 1 and 65535');
    expect(check(`${OK_LISTENERS}routes: [{upstream: p, host: 10.0.0.300}]\nupstreams:\n  p: {targets: "http://999.1.1.1:80"}\n`)).toEqual([
      [2, 30, 'routes[0].host', expect.stringMatching(/^expected a host name like "example.com"/)],
      [4, 16, 'upstreams.p.targets', expect.stringMatching(/\(bad host "999\.1\.1\.1"\), got "http:\/\/999\.1\.1\.1:80"$/)],
    ]);
    expect(issues[1]![3]).toContain('"tcp" is not supported');
    expect(issues[6]![3]).toMatch(/^unknown key "retry" \(expected one of .*, retries,/);
  });

  it('upstream transports, TLS, health checks, passive ejection and retry settings', () => {
    const certDir = mkdtempSync(join(dir, 'upstream-certs-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=t', '-days', '2', '-keyout', join(certDir, 'c.key'), '-out', join(certDir, 'c.crt')], { stdio: 'ignore' });
    writeFileSync(join(certDir, 'not-pem.txt'), 'hello\n');
    const file = join(certDir, 'proxy.yaml');
    writeFileSync(
      file,
      OK_LISTENERS +
        'routes: [{upstream: a}, {upstream: b}, {upstream: c}]\n' + // 2
        'upstreams:\n' + // 3
        '  a:\n' + // 4
        '    targets: ["http://a:1", "unix:run/x.sock", "https://b:2"]\n' + // 5
        '    protocol: h3\n' + // 6
        '    tls: {ca: not-pem.txt, cert: c.crt, server_name: 10.0.0.1}\n' + // 7
        '    retries: 11\n' + // 8
        '    max_pending: -1\n' + // 9
        '    resolve_interval: 10ms\n' + // 10
        '  b:\n' + // 11
        '    targets: ["http://a:1"]\n' + // 12
        '    protocol: h2\n' + // 13
        '    tls: {ca: missing.crt}\n' + // 14
        '    health: {interval: 1s, timeout: 2s, expect_status: "399..200"}\n' + // 15
        '    passive: {ejection: 1m}\n' + // 16
        '  c:\n' + // 17
        '    targets: ["https://c:3"]\n' + // 18
        '    health: {path: "no slash", healthy_after: 0, expect_status: [200, 600]}\n' + // 19
        '    passive: {failures: 0, ejection: 10ms}\n', // 20
    );
    const issues = errorsOf(file).issues.map((i) => [i.line, i.col, i.path, i.message]);
    expect(issues).toEqual([
      [5, 29, 'upstreams.a.targets[1]', expect.stringMatching(/\(a unix socket path is absolute: "unix:\/run\/app\.sock"\), got "unix:run\/x\.sock"$/)],
      [6, 15, 'upstreams.a.protocol', 'expected one of "h1", "h2", got "h3"'],
      [7, 15, 'upstreams.a.tls.ca', `${join(certDir, 'not-pem.txt')} holds no PEM certificate ("-----BEGIN CERTIFICATE-----")`],
      [7, 34, 'upstreams.a.tls.cert', 'a client certificate needs both "cert" and "key"'],
      [7, 54, 'upstreams.a.tls.server_name', 'expected a DNS name (SNI carries no IP addresses), got "10.0.0.1"'],
      [8, 14, 'upstreams.a.retries', 'retries must be between 0 and 10, got 11'],
      [9, 18, 'upstreams.a.max_pending', 'max_pending must be between 0 and 1000000, got -1'],
      [10, 23, 'upstreams.a.resolve_interval', 'must be between 1s and 24h, got "10ms"'],
      [13, 15, 'upstreams.b.protocol', 'protocol h2 needs https targets: HTTP/2 is negotiated with TLS (ALPN), and http://a:1 is not https'],
      [14, 10, 'upstreams.b.tls', 'tls applies to https targets, and this pool has none'],
      [14, 15, 'upstreams.b.tls.ca', `file not found: ${join(certDir, 'missing.crt')}`],
      [15, 13, 'upstreams.b.health', 'missing "path": expected the path health checks GET, e.g. "/healthz"'],
      [15, 37, 'upstreams.b.health.timeout', 'health.timeout (2000ms) must not exceed health.interval (1000ms)'],
      [15, 56, 'upstreams.b.health.expect_status', expect.stringMatching(/^expected a status like 200 or a range like "200\.\.399"/)],
      [16, 14, 'upstreams.b.passive', 'missing "failures": expected how many consecutive failures eject a target, e.g. 5'],
      [19, 20, 'upstreams.c.health.path', 'expected a request path starting with "/" without spaces or control characters, got "no slash"'],
      [19, 47, 'upstreams.c.health.healthy_after', 'healthy_after must be between 1 and 100, got 0'],
      [19, 71, 'upstreams.c.health.expect_status[1]', 'a status must be between 100 and 599, got 600'],
      [20, 25, 'upstreams.c.passive.failures', 'failures must be between 1 and 1000, got 0'],
      [20, 38, 'upstreams.c.passive.ejection', 'must be between 100ms and 1h, got "10ms"'],
    ]);
  });

  it('TLS: certificate names and files, defaults, ALPN', () => {
    const certDir = mkdtempSync(join(dir, 'certs-'));
    const gen = (base: string) =>
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=t', '-days', '2', '-keyout', join(certDir, `${base}.key`), '-out', join(certDir, `${base}.crt`)], { stdio: 'ignore' });
    gen('a');
    gen('b');
    writeFileSync(join(certDir, 'junk.pem'), 'not a certificate\n');
    mkdirSync(join(certDir, 'adir'));
    const issues = check(
      OK_LISTENERS +
        OK_ROUTES +
        'tls:\n' + // 3
        '  alpn: [h3, h3, ""]\n' + // 4
        '  certificates:\n' + // 5
        `    - names: [a.example, "*.example"]\n      cert: ${certDir}/a.crt\n      key: ${certDir}/b.key\n      default: true\n` + // 6-9
        `    - names: [A.example, "*"]\n      cert: ${certDir}/junk.pem\n      key: ${certDir}/adir\n      default: true\n` + // 10-13
        `    - names: ok.example\n      cert: ${certDir}/b.crt\n` + // 14-15
        '  ciphers: [x]\n', // 16
    );
    expect(issues.map(([l, c, p, m]) => `${l}:${c} ${p}: ${m}`)).toEqual([
      '4:14 tls.alpn[1]: duplicate ALPN id "h3"',
      '4:18 tls.alpn[2]: expected an ALPN id of 1..255 visible ASCII characters, got ""',
      `8:12 tls.certificates[0].key: ${certDir}/b.key is not the private key of ${certDir}/a.crt`,
      '10:15 tls.certificates[1].names[0]: "a.example" is already served by tls.certificates[0]: each name belongs to one certificate',
      '10:26 tls.certificates[1].names[1]: expected a host name like "example.com" or a wildcard like "*.example.com", got "*"',
      `11:13 tls.certificates[1].cert: ${certDir}/junk.pem does not hold a PEM certificate ("-----BEGIN CERTIFICATE-----")`,
      `12:12 tls.certificates[1].key: ${certDir}/adir is a directory, expected a PEM file`,
      '13:16 tls.certificates[1].default: only one certificate can be the default (tls.certificates[0] already is)',
      '14:7 tls.certificates[2]: missing "key": expected the path of a PEM private key file',
      '16:3 tls.ciphers: unknown key "ciphers" (expected one of certificates, alpn, state_dir, ticket_key_file)',
    ]);
    expect(check(`${OK_LISTENERS}${OK_ROUTES}tls:\n  alpn: [h2]\n`)).toEqual([[4, 9, 'tls.alpn', 'alpn must include "h3": HTTP/3 is the protocol this proxy serves']]);
  });

  it('a misspelt required key is reported once, not also as missing', () => {
    expect(check('listener: ["127.0.0.1:1"]\nroutes:\n  - upsteam: app\nupstreams:\n  app: {target: "http://127.0.0.1:1"}\n')).toEqual([
      [1, 1, 'listener', expect.stringMatching(/^unknown key "listener"; did you mean "listeners"\?/)],
      [3, 5, 'routes[0].upsteam', expect.stringMatching(/^unknown key "upsteam"; did you mean "upstream"\?/)],
      [5, 9, 'upstreams.app.target', expect.stringMatching(/^unknown key "target"; did you mean "targets"\?/)],
    ]);
    // An unrelated unknown key does not hide a missing one.
    expect(check('workres: 2\n').map(([l, c, p, m]) => `${l}:${c} ${p} ${m.slice(0, 20)}`)).toEqual([
      '1:1 workres unknown key "workres',
      '1:1  missing "listeners":',
      '1:1  missing "routes": ex',
    ]);
  });

  it('logging and did-you-mean on section keys', () => {
    expect(check(`${OK_LISTENERS}${OK_ROUTES}loging:\n  level: info\nlogging:\n  levle: debug\n  access_log: "yes"\n`)).toEqual([
      [3, 1, 'loging', expect.stringMatching(/^unknown key "loging"; did you mean "logging"\?/)],
      [6, 3, 'logging.levle', expect.stringMatching(/^unknown key "levle"; did you mean "level"\?/)],
      [7, 15, 'logging.access_log', 'expected true or false, got "yes"'],
    ]);
  });
});

describe('process section', () => {
  it('names each bad key with its position', () => {
    const issues = issuesOf(`${OK_LISTENERS}${OK_ROUTES}process:\n  pin_dir: /tmp/pins\n  max_draining_generations: 0\n  ready_timeout: 1ms\n  pid: x\n`);
    expect(issues).toEqual([
      [4, 12, 'process.pin_dir', 'pin_dir must be a directory under /sys/fs/bpf'],
      [5, 29, 'process.max_draining_generations', expect.stringMatching(/max_draining_generations/)],
      [6, 18, 'process.ready_timeout', expect.stringMatching(/100ms/)],
      [7, 3, 'process.pid', expect.stringMatching(/unknown key.*pid_file/)],
    ]);
  });
});
