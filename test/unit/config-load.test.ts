import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkConfigFile, loadConfig } from '../../src/proxy/config/index.js';
import { target } from '../helpers/pool-config.js';

const fixtures = resolve(import.meta.dirname, '../fixtures/config');
const repoConfig = resolve(import.meta.dirname, '../../config/proxy.yaml');

function makeCert(dir: string, base: string, cn: string): void {
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${cn}`, '-days', '2', '-keyout', join(dir, `${base}.key`), '-out', join(dir, `${base}.crt`)],
    { stdio: 'ignore' },
  );
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'config-load-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('loadConfig on valid files', () => {
  it('normalises every section of a full config', () => {
    const work = mkdtempSync(join(dir, 'full-'));
    copyFileSync(join(fixtures, 'full.yaml'), join(work, 'proxy.yaml'));
    makeCert(work, 'a', 'example.com');
    makeCert(work, 'b', 'other.test');
    const config = loadConfig(join(work, 'proxy.yaml'));

    expect(config.file).toBe(join(work, 'proxy.yaml'));
    expect(config.listeners).toEqual([
      { host: '0.0.0.0', port: 8443, family: 4, protocols: ['h1', 'h2', 'h3'], altSvc: 'h3=":8443"; ma=86400', httpRedirect: { host: '0.0.0.0', port: 8080, family: 4 } },
      { host: '::1', port: 8443, family: 6, protocols: ['h2', 'h3'], altSvc: 'h3=":443"; ma=3600', httpRedirect: undefined },
    ]);
    expect(config.workers).toBe(3);
    expect(config.drainTimeoutMs).toBe(90_000);

    expect(config.tls.alpn).toEqual(['h3', 'h3-29']);
    expect(config.tls.stateDir).toBe(join(work, 'state'));
    expect(config.tls.ticketKeyFile).toBe(join(work, 'keys/ticket.key'));
    expect(config.tls.certificates).toEqual([
      { names: ['example.com', '*.example.com'], certFile: join(work, 'a.crt'), keyFile: join(work, 'a.key'), selfSigned: false, isDefault: false },
      { names: ['other.test'], certFile: join(work, 'b.crt'), keyFile: join(work, 'b.key'), selfSigned: false, isDefault: true },
    ]);

    expect(config.routes).toHaveLength(3);
    expect(config.routes[0]).toEqual({
      name: 'routes[0]',
      hosts: [
        { kind: 'exact', name: 'api.example.com' },
        { kind: 'wildcard', suffix: '.api.example.com' },
      ],
      pathPrefix: '/v1',
      action: { kind: 'proxy', upstream: 'api' },
      responseHeaders: [
        ['x-served-by', 'edge'],
        ['x-version', '2'],
      ],
    });
    expect(config.routes[1]).toEqual({
      name: 'routes[1]',
      hosts: [{ kind: 'any' }],
      pathPrefix: '/static/',
      action: { kind: 'respond', status: 404, headers: [['content-type', 'text/html']], body: Buffer.from('<p>gone</p>') },
      responseHeaders: [],
    });
    expect(config.routes[2]).toMatchObject({ name: 'routes[2]', hosts: [{ kind: 'any' }], pathPrefix: '/', action: { kind: 'proxy', upstream: 'web' } });

    expect([...config.upstreams.keys()]).toEqual(['api', 'web']);
    // What every pool gets unless it says otherwise.
    const defaults = { protocol: 'h1', tls: {}, resolveIntervalMs: 30_000, maxPending: 1024, retries: 1, health: undefined, passive: undefined };
    expect(config.upstreams.get('api')).toEqual({
      ...defaults,
      name: 'api',
      targets: [
        { kind: 'tcp', url: 'http://127.0.0.1:8080', tls: false, host: '127.0.0.1', isIp: true, port: 8080 },
        { kind: 'tcp', url: 'http://[::1]:8081', tls: false, host: '::1', isIp: true, port: 8081 },
        { kind: 'tcp', url: 'http://backend.internal:9000', tls: false, host: 'backend.internal', isIp: false, port: 9000 },
      ],
      balance: 'least_requests',
      connectTimeoutMs: 250,
      responseTimeoutMs: 2000,
      // try_timeout follows response_timeout.
      tryTimeoutMs: 2000,
      bodyTimeoutMs: 1500,
      keepAliveTimeoutMs: 10_000,
      maxConnectionsPerTarget: 32,
      queueTimeoutMs: 5000,
    });
    expect(config.upstreams.get('web')).toEqual({
      ...defaults,
      name: 'web',
      targets: [target('http://127.0.0.1:8000')],
      balance: 'round_robin',
      connectTimeoutMs: 5000,
      responseTimeoutMs: 60_000,
      tryTimeoutMs: 60_000,
      bodyTimeoutMs: 60_000,
      keepAliveTimeoutMs: 4000,
      maxConnectionsPerTarget: 256,
      queueTimeoutMs: 5000,
    });
    expect(config.quic).toEqual({
      idleTimeoutMs: 10_000,
      maxConcurrentBidiStreams: 500,
      initialMaxData: 16 * 1024 * 1024,
      initialMaxStreamData: 1_000_000,
      maxUdpPayload: 1452,
      cidLength: 20,
      earlyData: 'off',
      gso: 'off',
      activeMigration: true,
      retry: 'always',
      retryThreshold: 50,
      maxConnections: 5000,
      maxHandshakes: 200,
      maxConnectionsPerIp: 64,
      handshakeTimeoutMs: 5000,
      pendingClientHellos: 128,
      pendingClientHelloBytes: 1024 * 1024,
      pendingClientHelloTimeoutMs: 2000,
    });
    expect(config.logging).toEqual({ level: 'debug', accessLog: false });
  });

  it('fills defaults for a minimal config', () => {
    const work = mkdtempSync(join(dir, 'minimal-'));
    copyFileSync(join(fixtures, 'minimal.yaml'), join(work, 'proxy.yaml'));
    const config = loadConfig(join(work, 'proxy.yaml'));
    expect(config.listeners).toEqual([{ host: '127.0.0.1', port: 4433, family: 4, protocols: ['h1', 'h2', 'h3'], altSvc: 'h3=":4433"; ma=86400', httpRedirect: undefined }]);
    expect(config.workers).toBe(availableParallelism());
    expect(config.drainTimeoutMs).toBe(30_000);
    expect(config.tls.alpn).toEqual(['h3']);
    expect(config.tls.stateDir).toBe(join(work, '.udpgrm-proxy'));
    expect(config.tls.ticketKeyFile).toBe(join(work, '.udpgrm-proxy', 'ticket.key'));
    expect(config.tls.certificates).toEqual([
      {
        names: ['localhost'],
        certFile: join(work, '.udpgrm-proxy', 'self-signed.crt'),
        keyFile: join(work, '.udpgrm-proxy', 'self-signed.key'),
        selfSigned: true,
        isDefault: true,
      },
    ]);
    // A body without content-type gets text/plain; status defaults to 200.
    expect(config.routes).toEqual([
      {
        name: 'routes[0]',
        hosts: [{ kind: 'any' }],
        pathPrefix: '/',
        action: { kind: 'respond', status: 200, headers: [['content-type', 'text/plain; charset=utf-8']], body: Buffer.from('hello') },
        responseHeaders: [],
      },
    ]);
    expect(config.upstreams.size).toBe(0);
    expect(config.quic).toEqual({
      idleTimeoutMs: 30_000,
      maxConcurrentBidiStreams: 100,
      initialMaxData: 10 * 1024 * 1024,
      initialMaxStreamData: 1024 * 1024,
      maxUdpPayload: 1350,
      cidLength: 16,
      earlyData: 'safe',
      gso: 'auto',
      activeMigration: false,
      retry: 'auto',
      retryThreshold: 100,
      maxConnections: 10_000,
      maxHandshakes: 1_000,
      maxConnectionsPerIp: 1_000,
      handshakeTimeoutMs: 10_000,
      pendingClientHellos: 1_024,
      pendingClientHelloBytes: 4 * 1024 * 1024,
      pendingClientHelloTimeoutMs: 3_000,
    });
    expect(config.logging).toEqual({ level: 'info', accessLog: true });
  });

  it('reads the http section and upstream queue_timeout, with defaults for what is left out', () => {
    const work = mkdtempSync(join(dir, 'http-'));
    const file = join(work, 'proxy.yaml');
    const base = 'listeners: ["127.0.0.1:4433"]\nroutes: [{upstream: app}]\n';
    writeFileSync(file, `${base}upstreams:\n  app: {targets: ["http://127.0.0.1:8080"]}\n`);
    const defaults = loadConfig(file);
    expect(defaults.http).toEqual({
      requestHeaderTimeoutMs: 10_000,
      requestBodyTimeoutMs: 30_000,
      maxRequestsPerConnection: 10_000,
      maxHeaderBytes: 64 * 1024,
      maxConnectionHeaderBytes: 256 * 1024,
      keepaliveTimeoutMs: 60_000,
      h2MaxConcurrentStreams: 100,
      h2InitialWindow: 1024 * 1024,
      h2MaxClientResets: 200,
      maxTcpConnections: 10_000,
      maxRequestBody: null,
    });
    expect(defaults.upstreams.get('app')?.queueTimeoutMs).toBe(5000);

    writeFileSync(
      file,
      `${base}upstreams:\n  app: {targets: ["http://127.0.0.1:8080"], queue_timeout: 0}\n` +
        'http:\n  request_header_timeout: 2s\n  request_body_timeout: 1m\n  max_requests_per_connection: 500\n  max_header_bytes: 16KiB\n  max_connection_header_bytes: 1MiB\n' +
        '  keepalive_timeout: 5s\n  h2_max_concurrent_streams: 250\n  h2_initial_window: 256KiB\n  h2_max_client_resets: 50\n  max_tcp_connections: 2000\n' +
        '  max_request_body: 10MiB\n',
    );
    const set = loadConfig(file);
    expect(set.http).toEqual({
      requestHeaderTimeoutMs: 2000,
      requestBodyTimeoutMs: 60_000,
      maxRequestsPerConnection: 500,
      maxHeaderBytes: 16 * 1024,
      maxConnectionHeaderBytes: 1024 * 1024,
      keepaliveTimeoutMs: 5000,
      h2MaxConcurrentStreams: 250,
      h2InitialWindow: 256 * 1024,
      h2MaxClientResets: 50,
      maxTcpConnections: 2000,
      maxRequestBody: 10 * 1024 * 1024,
    });
    expect(set.upstreams.get('app')?.queueTimeoutMs).toBe(0);
  });

  it('reads max_request_body: top level, per route (a size or none), and on a site\'s routes', () => {
    const work = mkdtempSync(join(dir, 'body-'));
    const file = join(work, 'proxy.yaml');
    const pools = 'upstreams:\n  app: {targets: ["http://127.0.0.1:8080"]}\n';
    writeFileSync(
      file,
      `listeners: ["127.0.0.1:4433"]\n${pools}http: {max_request_body: 1MB}\n` +
        'routes:\n  - {path: /small, upstream: app, max_request_body: 1KiB}\n  - {path: /any, upstream: app, max_request_body: none}\n' +
        '  - {path: /zero, respond: {status: 200}, max_request_body: 0}\n  - {upstream: app}\n',
    );
    const config = loadConfig(file);
    expect(config.http.maxRequestBody).toBe(1_000_000);
    expect(config.routes.map((r) => r.maxRequestBody)).toEqual([1024, null, 0, undefined]);

    writeFileSync(file, `listeners: ["127.0.0.1:4433"]\n${pools}http: {max_request_body: none}\nsites:\n  a:\n    routes: [{upstream: app, max_request_body: 4MiB}]\n`);
    const sites = loadConfig(file);
    expect(sites.http.maxRequestBody).toBeNull();
    expect(sites.sites[0]!.routes[0]!.maxRequestBody).toBe(4 * 1024 * 1024);
  });

  it('reads upstream transports, TLS files (relative to the config), health checks, passive ejection, retries and max_pending', () => {
    const work = mkdtempSync(join(dir, 'upstreams-'));
    makeCert(work, 'ca', 'test CA');
    makeCert(work, 'client', 'proxy');
    const file = join(work, 'proxy.yaml');
    writeFileSync(
      file,
      'listeners: ["127.0.0.1:4433"]\n' +
        'routes: [{upstream: secure}, {upstream: local}]\n' +
        'upstreams:\n' +
        '  secure:\n' +
        '    targets: ["HTTPS://API.Internal:8443", "https://[::1]:8443"]\n' +
        '    protocol: h2\n' +
        '    tls: {ca: ca.crt, cert: client.crt, key: client.key, server_name: API.internal}\n' +
        '    resolve_interval: 10s\n' +
        '    response_timeout: 20s\n' +
        '    retries: 2\n' +
        '    try_timeout: 3s\n' +
        '    max_pending: 0\n' +
        '    health: {path: /healthz, interval: 1s, timeout: 500ms, healthy_after: 1, unhealthy_after: 4, expect_status: [200, "300..308"]}\n' +
        '    passive: {failures: 5, ejection: 1m}\n' +
        '  local:\n' +
        '    targets: "unix:/run/app/http.sock"\n' +
        '    health: {path: "/ready?full=1"}\n' +
        '    passive: {failures: 1}\n',
    );
    const config = loadConfig(file);
    expect(config.upstreams.get('secure')).toMatchObject({
      targets: [
        { kind: 'tcp', url: 'https://api.internal:8443', tls: true, host: 'api.internal', isIp: false, port: 8443 },
        { kind: 'tcp', url: 'https://[::1]:8443', tls: true, host: '::1', isIp: true, port: 8443 },
      ],
      protocol: 'h2',
      tls: { caFile: join(work, 'ca.crt'), certFile: join(work, 'client.crt'), keyFile: join(work, 'client.key'), serverName: 'api.internal' },
      resolveIntervalMs: 10_000,
      responseTimeoutMs: 20_000,
      retries: 2,
      tryTimeoutMs: 3000,
      maxPending: 0,
      health: { path: '/healthz', intervalMs: 1000, timeoutMs: 500, healthyAfter: 1, unhealthyAfter: 4, expectStatus: [[200, 200], [300, 308]] },
      passive: { failures: 5, ejectionMs: 60_000 },
    });
    expect(config.upstreams.get('local')).toMatchObject({
      targets: [{ kind: 'unix', url: 'unix:/run/app/http.sock', path: '/run/app/http.sock' }],
      protocol: 'h1',
      tls: {},
      // Defaults: every 5 s, 2 s timeout, 2 to come back, 3 to go out, 2xx and 3xx pass.
      health: { path: '/ready?full=1', intervalMs: 5000, timeoutMs: 2000, healthyAfter: 2, unhealthyAfter: 3, expectStatus: [[200, 399]] },
      passive: { failures: 1, ejectionMs: 30_000 },
    });
    const summary = checkConfigFile(file);
    expect(summary.ok && summary.summary).toContain(
      '  upstream secure: https://api.internal:8443, https://[::1]:8443 (h2, round_robin, connect 5s, response 20s, queue 5s, retries 2, health /healthz every 1s, passive 5/1m)',
    );
  });

  it('loads the shipped config/proxy.yaml as is (copied beside its own state dir)', () => {
    const work = mkdtempSync(join(dir, 'shipped-'));
    copyFileSync(repoConfig, join(work, 'proxy.yaml'));
    const config = loadConfig(join(work, 'proxy.yaml'));
    expect(config.listeners.map((l) => [l.host, l.port, l.protocols.join(',')])).toEqual([
      ['127.0.0.1', 4433, 'h1,h2,h3'],
      ['::1', 4433, 'h1,h2,h3'],
    ]);
    expect(config.tls.certificates).toHaveLength(1);
    expect(config.tls.certificates[0]!.selfSigned).toBe(true);
    const paths = config.routes.map((r) => r.pathPrefix);
    expect(paths).toEqual(['/healthz', '/']);
    const demo = config.routes[1]!.action;
    expect(demo.kind).toBe('respond');
    if (demo.kind === 'respond') {
      expect(demo.status).toBe(200);
      expect(demo.headers).toContainEqual(['content-type', 'text/html; charset=utf-8']);
      expect(demo.body.toString()).toContain('udpgrm-proxy');
    }
    expect(config.upstreams.size).toBe(0);
    // The admin endpoint on loopback.
    expect(config.admin).toEqual({ listen: { host: '127.0.0.1', port: 9901, family: 4 }, scrapeTimeoutMs: 1000 });
  });

  it('checkConfigFile validates the shipped config without writing state', () => {
    const result = checkConfigFile(repoConfig);
    expect(result.ok).toBe(true);
    if (result.ok) {
      expect(result.summary).toContain('listener 127.0.0.1:4433: h1, h2, h3; alt-svc h3=":4433"; ma=86400');
      expect(result.summary).toContain('listener [::1]:4433: h1, h2, h3');
      expect(result.summary).toContain('routes[0]: host * path /healthz → respond 200');
    }
  });

  it('checkConfigFile returns every error, formatted', () => {
    const result = checkConfigFile(join(fixtures, 'many-errors.yaml'));
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.errors).toMatch(/many-errors\.yaml:4:5: listeners\[1\]: duplicate listener 127\.0\.0\.1:4433/);
      expect(result.errors).toMatch(/\n\d+ errors in .*many-errors\.yaml\n$/);
    }
  });
});
