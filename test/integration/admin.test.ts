/**
 * The admin endpoint of a real proxy: /metrics parsed by the official Prometheus parser after
 * traffic over HTTP/3 (gtlsclient), HTTP/2 and HTTP/1.1 (curl) and a reload (request counters
 * equal the access log, BPF counters from the kernel, reload and drain histograms, nothing goes
 * backwards, a scrape during the drain shows both generations); HTTP refusals by reason (431s over
 * HTTP/1.1 and HTTP/3, connections beyond max_tcp_connections, request header timeouts over all
 * three protocols); /healthz, /ready, /generations
 * (= `list --config --json`), refusals of other methods, paths and bodies; and the admin socket
 * carried through a binary upgrade.
 */
import { execFile, spawn } from 'node:child_process';
import http2 from 'node:http2';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { H3_ERROR } from '../../src/proxy/h3/errors.js';
import { encodeHeadersFrame } from '../../src/proxy/h3/frames.js';
import { encodeFieldSection } from '../../src/proxy/h3/qpack.js';
import { gtlsclient } from '../helpers/gtlsclient.js';
import { H3Client, StreamResetError } from '../helpers/h3-client.js';
import { enterPrivateNetns } from '../helpers/netns.js';
import { adminGet, freeTcpPort, scrape } from '../helpers/admin-client.js';
import { counterValues, samples, sum } from '../helpers/prometheus.js';
import { PROXY_BIN, freeUdpPort, startProxy, type RunningProxy } from '../helpers/proxy.js';
import { FRAME, H2_PREFACE, connectTls, h2Frame, hpackGetRoot, parseFrames, rawH1, statusOf } from '../helpers/raw-tls.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

enterPrivateNetns();

/** Routes are named by their place in the config. */
const API = 'routes[0]';
const ROOT = 'routes[1]';

const execFileAsync = promisify(execFile);

/** Per worker (2 workers): low enough to reach, high enough for the sequential curls of the first test. */
const MAX_TCP_CONNECTIONS = 3;

/** http.request_header_timeout: short, for the timeout test; every other client sends its headers at once. */
const HEADER_TIMEOUT_MS = 1000;

/**
 * http.max_header_bytes: below 64 KiB, for gtlsclient's sake: a 70 KiB :path reached the proxy cut
 * short (answered 200), as its URL parser (http-parser's) keeps lengths in 16 bits.
 */
const MAX_HEADER_KIB = 32;

/** Opens a TLS connection and holds it: resolves with it once the handshake completed, or with undefined if the proxy closed it first. */
function tlsConnection(port: number): Promise<tls.TLSSocket | undefined> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
    s.once('secureConnect', () => resolve(s));
    s.once('error', () => resolve(undefined));
    s.once('close', () => resolve(undefined));
  });
}

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [PROXY_BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

function curl(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn('curl', ['-sS', '-k', '--max-time', '20', '-o', '/dev/null', '-w', '%{http_code} %{http_version}\\n', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    p.stderr.setEncoding('utf8').on('data', (c: string) => (out += c));
    p.once('close', (code) => resolve({ code, out }));
  });
}

/**
 * HTTP/2 by hand (no client leaves a header block open): a request answered, then HEADERS without
 * END_HEADERS on stream 3, and nothing more (not even the answer to the proxy's PING, as inside a
 * header block). Resolves with the error code of the proxy's GOAWAY once it closed the connection.
 */
async function heldH2HeaderBlock(port: number): Promise<number | undefined> {
  const socket = await connectTls(port, ['h2']);
  try {
    let received = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => (received = Buffer.concat([received, d])));
    socket.on('error', () => {});
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write(Buffer.concat([H2_PREFACE, h2Frame(FRAME.SETTINGS, 0, 0), h2Frame(FRAME.HEADERS, 0x5 /* END_STREAM | END_HEADERS */, 1, hpackGetRoot('localhost'))]));
    // Answered: past the first-request clock (an idle new connection is closed without a count).
    await until('the answer on stream 1', () => parseFrames(received).some((f) => f.type === FRAME.HEADERS && f.streamId === 1));
    socket.write(h2Frame(FRAME.HEADERS, 0x1 /* END_STREAM, no END_HEADERS */, 3, hpackGetRoot('localhost')));
    await until('the proxy to close the connection', () => socket.destroyed || socket.readableEnded, 4 * HEADER_TIMEOUT_MS + 5000);
    await closed;
    return parseFrames(received).find((f) => f.type === FRAME.GOAWAY)?.payload.readUInt32BE(4);
  } finally {
    socket.destroy();
  }
}

/** HTTP/3: a request stream with all but the last bytes of its HEADERS frame. Resolves with the code the proxy reset it with. */
async function heldH3Headers(port: number): Promise<number | string> {
  const client = await H3Client.connect({ host: '127.0.0.1', port, sni: 'localhost' });
  try {
    const frame = encodeHeadersFrame(encodeFieldSection([[':method', 'GET'], [':scheme', 'https'], [':authority', 'localhost'], [':path', '/']]));
    const { response } = client.openRaw(frame.subarray(0, frame.length - 2));
    return await response.then(
      (r) => `answered ${r.status}`,
      (err: Error) => (err instanceof StreamResetError ? err.code : err.message),
    );
  } finally {
    await client.close();
  }
}

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('admin endpoint and metrics', () => {
  let proxy: RunningProxy;
  let upstream: TestUpstream;
  let port: number;
  let adminPort: number;
  let upgradedPid = 0;
  const access: Array<Record<string, unknown>> = [];

  beforeAll(async () => {
    upstream = await startUpstream('app');
    port = await freeUdpPort();
    adminPort = await freeTcpPort();
    proxy = await startProxy(
      `
listeners: ["127.0.0.1:${port}"]
workers: 2
drain_timeout: 20s
tls: { state_dir: state }
upstreams:
  app: { targets: ["${upstream.origin}"] }
routes:
  - { path: /api/, upstream: app }
  - { path: /, respond: { status: 200, body: "hello\\n" } }
admin: { listen: "127.0.0.1:${adminPort}" }
http: { max_tcp_connections: ${MAX_TCP_CONNECTIONS}, request_header_timeout: ${HEADER_TIMEOUT_MS}ms, max_header_bytes: ${MAX_HEADER_KIB}KiB }
`,
      { onLog: (l) => void (l.log === 'access' && access.push(l)), keepLog: (l) => l.log !== 'access' },
    );
  });

  afterAll(async () => {
    // The upgraded master first (not our child): stop() then removes the pin dir it used.
    if (upgradedPid && pidAlive(upgradedPid)) {
      process.kill(upgradedPid, 'SIGTERM');
      await until('the upgraded master to exit', () => !pidAlive(upgradedPid), 30_000);
    }
    await proxy?.stop();
    await upstream?.close();
  });

  it('counts every request of h3, h2 and h1 traffic and a reload, equal to the access log, never backwards', async () => {
    // HTTP/3: 5 requests on one connection, and one proxied upstream.
    const h3 = await gtlsclient('127.0.0.1', port, [`https://localhost:${port}/`], { requests: 5 });
    expect(h3.statuses).toEqual([200, 200, 200, 200, 200]);
    expect((await gtlsclient('127.0.0.1', port, [`https://localhost:${port}/api/x`])).statuses).toEqual([200]);
    for (let i = 0; i < 3; i++) expect((await curl(['--http2', `https://127.0.0.1:${port}/`])).out).toBe('200 2\n');
    expect((await curl(['--http1.1', `https://127.0.0.1:${port}/nothing/here`])).out).toBe('200 1.1\n');
    await until('10 access-log lines', () => access.length === 10);

    const before = await scrape(adminPort);
    expect(sum(before, 'udpgrm_proxy_requests_total')).toBe(access.length);
    expect(sum(before, 'udpgrm_proxy_requests_total', { protocol: 'h3' })).toBe(6);
    expect(sum(before, 'udpgrm_proxy_requests_total', { protocol: 'h2' })).toBe(3);
    expect(sum(before, 'udpgrm_proxy_requests_total', { protocol: 'h1', route: ROOT, status_class: '2xx' })).toBe(1);
    expect(sum(before, 'udpgrm_proxy_request_duration_seconds_count', { route: ROOT })).toBe(9);
    expect(sum(before, 'udpgrm_proxy_request_duration_seconds_bucket', { route: API, le: '+Inf' })).toBe(1);
    expect(sum(before, 'udpgrm_proxy_upstream_requests_total', { upstream: 'app', outcome: '2xx' })).toBe(1);
    expect(samples(before, 'udpgrm_proxy_upstream_health', { upstream: 'app' }).map((s) => s.value)).toEqual([1]);
    // The kernel saw the two QUIC connections arrive and routed their later packets by CID.
    expect(sum(before, 'udpgrm_proxy_bpf_packets_total', { generation: '1', outcome: 'new_connection' })).toBeGreaterThanOrEqual(2);
    expect(sum(before, 'udpgrm_proxy_bpf_packets_total', { generation: '1', outcome: 'routed_by_cid' })).toBeGreaterThan(0);
    expect(sum(before, 'udpgrm_proxy_handshakes_total', { transport: 'quic', result: 'completed' })).toBe(2);
    expect(sum(before, 'udpgrm_proxy_handshakes_total', { transport: 'tcp', result: 'completed' })).toBe(4);
    expect(samples(before, 'udpgrm_proxy_reloads_total', { result: 'ok' }).map((s) => s.value)).toEqual([0]);
    // Every QUIC drop reason, in snake_case (`list`'s wording is its own), once each.
    expect(samples(before, 'udpgrm_proxy_quic_dropped_total').map((s) => s.labels.reason).sort()).toEqual([
      'amplification_limit', 'cid_not_offered', 'client_hello_too_long', 'handshake_timeout', 'internal_error', 'invalid_retry_token',
      'pending_client_hello_evicted', 'pending_client_hello_expired', 'refused_max_connections', 'refused_max_connections_per_ip', 'refused_max_handshakes',
      'rejected_by_quic', 'reply_not_sent', 'retry_sent', 'retry_to_site', 'server_only_packet_type', 'short_initial', 'short_unknown_version',
      'undecodable_initial', 'unknown_connection', 'unparseable',
    ]);

    // A reload while an HTTP/2 request is in flight on generation 1 (its response held until the
    // scrape, however long the reload takes): a scrape meanwhile shows both.
    const slow = curl(['--http2', `https://127.0.0.1:${port}/api/until-released`]);
    await until('the held request upstream', () => upstream.log.some((r) => r.url.endsWith('/until-released')));
    const reload = await cli('reload', '--config', proxy.configFile);
    expect(reload.code, reload.stderr).toBe(0);
    const during = await scrape(adminPort);
    const gens = new Set(samples(during, 'udpgrm_proxy_connections').map((s) => s.labels.generation));
    expect([...gens].sort()).toEqual(['1', '2']);
    expect(sum(during, 'udpgrm_proxy_connections', { generation: '1', protocol: 'h2' })).toBe(1);
    upstream.releaseHeld();
    expect((await slow).out).toBe('200 2\n');
    await proxy.waitForLog((l) => l.msg === 'generation drained and retired' && l.generation === 1, 30_000);

    expect((await gtlsclient('127.0.0.1', port, [`https://localhost:${port}/`], { requests: 2 })).statuses).toEqual([200, 200]);
    await until('13 access-log lines', () => access.length === 13);
    const after = await scrape(adminPort);
    expect(sum(after, 'udpgrm_proxy_requests_total')).toBe(access.length);
    expect(sum(after, 'udpgrm_proxy_upstream_requests_total', { upstream: 'app', outcome: '2xx' })).toBe(2);
    // Generation 1 is gone: its kernel counts live on under "retired", its workers' in the totals.
    expect(samples(after, 'udpgrm_proxy_bpf_packets_total', { generation: '1' })).toEqual([]);
    expect(sum(after, 'udpgrm_proxy_bpf_packets_total', { generation: 'retired' })).toBeGreaterThan(0);
    expect(sum(after, 'udpgrm_proxy_bpf_packets_total', { generation: '2', outcome: 'new_connection' })).toBeGreaterThanOrEqual(1);
    expect(samples(after, 'udpgrm_proxy_reloads_total', { result: 'ok' }).map((s) => s.value)).toEqual([1]);
    for (const phase of ['validate', 'start_and_flip']) expect(sum(after, 'udpgrm_proxy_reload_phase_seconds_count', { phase })).toBe(1);
    expect(sum(after, 'udpgrm_proxy_drain_seconds_count')).toBe(1);
    // The drain waited for the held response: not instant, and well within drain_timeout.
    expect(sum(after, 'udpgrm_proxy_drain_seconds_sum')).toBeGreaterThan(0.05);
    expect(sum(after, 'udpgrm_proxy_drain_seconds_bucket', { result: 'drained', le: '10' })).toBe(1);

    // Nothing goes backwards: each counter series still there is at least as high, and each
    // family's total (series of a retired generation folded into others) too.
    const b = counterValues(before);
    const a = counterValues(after);
    for (const [series, value] of b) if (a.has(series)) expect(a.get(series)!, series).toBeGreaterThanOrEqual(value);
    const familyTotal = (m: Map<string, number>, name: string): number => [...m].filter(([k]) => k.startsWith(`${name}{`)).reduce((n, [, v]) => n + v, 0);
    for (const name of ['udpgrm_proxy_requests_total', 'udpgrm_proxy_bpf_packets_total', 'udpgrm_proxy_handshakes_total', 'udpgrm_proxy_upstream_requests_total', 'udpgrm_proxy_request_duration_seconds_count']) {
      expect(familyTotal(a, name), name).toBeGreaterThanOrEqual(familyTotal(b, name));
    }
  });

  it('counts HTTP refusals by reason: 431s over HTTP/1.1 and TCP connections beyond max_tcp_connections', async () => {
    const refused = (f: Awaited<ReturnType<typeof scrape>>, reason: string): number => sum(f, 'udpgrm_proxy_http_refused_total', { reason });
    const before = await scrape(adminPort);
    // Every reason is there, at 0: nothing was refused yet (the first test's generation included).
    expect(samples(before, 'udpgrm_proxy_http_refused_total').map((s) => s.labels.reason).sort()).toEqual(
      ['body_timeout', 'connection_header_budget', 'header_timeout', 'header_too_large', 'misdirected', 'rapid_reset', 'request_body_too_large', 'request_limit', 'tcp_connection_limit', 'upstream_queue_full', 'upstream_queue_timeout'],
    );
    expect(sum(before, 'udpgrm_proxy_http_refused_total')).toBe(0);

    // A header section above max_header_bytes.
    const big = `x-big: ${'y'.repeat((MAX_HEADER_KIB + 6) * 1024)}`;
    for (let i = 0; i < 2; i++) expect((await curl(['--http1.1', '-H', big, `https://127.0.0.1:${port}/`])).out).toBe('431 1.1\n');

    // Ten connections at once to two workers holding at most 3 each: at least 4 closed at accept.
    const conns = await Promise.all(Array.from({ length: 10 }, () => tlsConnection(port)));
    const closed = conns.filter((c) => c === undefined).length;
    try {
      expect(closed).toBeGreaterThanOrEqual(10 - 2 * MAX_TCP_CONNECTIONS);
      const after = await scrape(adminPort);
      expect(refused(after, 'header_too_large')).toBe(2);
      expect(refused(after, 'tcp_connection_limit')).toBe(closed);
      expect(sum(after, 'udpgrm_proxy_http_refused_total')).toBe(2 + closed);
    } finally {
      for (const c of conns) c?.destroy();
    }
  });

  it('counts request header timeouts (HTTP/1.1 408, HTTP/2 GOAWAY, HTTP/3 stream reset) and HTTP/3 431s', async () => {
    const refused = (f: Awaited<ReturnType<typeof scrape>>, reason: string): number => sum(f, 'udpgrm_proxy_http_refused_total', { reason });
    const before = await scrape(adminPort);
    // Half a request over each protocol at once; each is cut at request_header_timeout.
    const [h1, h2GoawayCode, h3ResetCode] = await Promise.all([
      rawH1(port, ['GET / HTTP/1.1\r\nHost: localhost\r\nX-Half: '], { timeoutMs: 4 * HEADER_TIMEOUT_MS + 5000 }),
      heldH2HeaderBlock(port),
      heldH3Headers(port),
    ]);
    expect(statusOf(h1.response), h1.response).toBe(408);
    expect(h1.closed).toBe(true);
    expect(h2GoawayCode).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    expect(h3ResetCode).toBe(H3_ERROR.H3_REQUEST_INCOMPLETE);
    const timedOut = await scrape(adminPort);
    expect(refused(timedOut, 'header_timeout') - refused(before, 'header_timeout'), 'header_timeout: one each over HTTP/1.1, HTTP/2 and HTTP/3').toBe(3);

    // gtlsclient (ngtcp2) with a :path above max_header_bytes.
    const big = await gtlsclient('127.0.0.1', port, [`https://localhost:${port}/${'p'.repeat((MAX_HEADER_KIB + 6) * 1024)}`]);
    expect(big.statuses, big.output).toEqual([431]);
    const after = await scrape(adminPort);
    expect(refused(after, 'header_too_large') - refused(timedOut, 'header_too_large'), 'header_too_large: the HTTP/3 431').toBe(1);
    // Nothing else was counted meanwhile.
    expect(sum(after, 'udpgrm_proxy_http_refused_total') - sum(before, 'udpgrm_proxy_http_refused_total')).toBe(4);
  });

  it('answers /healthz, /ready and /generations (the same document as list --config --json)', async () => {
    expect(await adminGet(adminPort, '/healthz')).toMatchObject({ status: 200, body: 'ok\n' });
    expect(await adminGet(adminPort, '/ready')).toMatchObject({ status: 200, body: 'ready\n' });
    const viaHttp = JSON.parse((await adminGet(adminPort, '/generations')).body) as Record<string, unknown>;
    const viaCli = await cli('list', '--config', proxy.configFile, '--json');
    expect(viaCli.code, viaCli.stderr).toBe(0);
    const listed = JSON.parse(viaCli.stdout) as Record<string, unknown>;
    // Ages tick between the two reads; everything else is the same data.
    const stable = (doc: Record<string, unknown>): unknown => JSON.parse(JSON.stringify(doc, (k, v: unknown) => (k === 'ageMs' || k === 'drainingForMs' ? undefined : v)));
    expect(stable(viaHttp)).toEqual(stable(listed));
    expect(viaHttp).toMatchObject({ pid: proxy.proc.pid, counters: { reloadsOk: 1 }, generations: [{ id: 2, state: 'working' }] });
  });

  it('refuses other methods, paths and request bodies, and oversized headers', async () => {
    expect(await adminGet(adminPort, '/metrics', { method: 'POST' })).toMatchObject({ status: 405, headers: { allow: 'GET, HEAD' } });
    expect((await adminGet(adminPort, '/')).status).toBe(404);
    expect((await adminGet(adminPort, '/metricsx')).status).toBe(404);
    expect((await adminGet(adminPort, '/healthz', { method: 'GET', body: 'x'.repeat(100), headers: { 'content-length': '100' } })).status).toBe(413);
    const head = await adminGet(adminPort, '/healthz', { method: 'HEAD' });
    expect(head).toMatchObject({ status: 200, body: '' });
    const big = await adminGet(adminPort, '/healthz', { headers: { 'x-big': 'y'.repeat(16 * 1024) } }).catch((err: Error) => ({ status: 0, body: err.message }));
    expect([400, 431, 0]).toContain(big.status);
    // Still serving afterwards.
    expect((await adminGet(adminPort, '/healthz')).status).toBe(200);
  });

  it('keeps the admin socket through a binary upgrade (the new master answers on it)', async () => {
    const before = counterValues(await scrape(adminPort));
    const r = await cli('upgrade', '--config', proxy.configFile);
    expect(r.code, r.stderr).toBe(0);
    upgradedPid = Number(/master pid (\d+)/.exec(r.stdout)?.[1]);
    expect(upgradedPid).toBeGreaterThan(0);
    // Every scrape answers, from the old master or the new one, until the new one has it alone.
    await until('the new master to answer /generations', async () => {
      const g = await adminGet(adminPort, '/generations');
      expect(g.status).toBe(200);
      return (JSON.parse(g.body) as { pid: number }).pid === upgradedPid;
    });
    expect((await adminGet(adminPort, '/ready')).status).toBe(200);
    const after = await scrape(adminPort);
    // A new master process starts its counts from zero (as any restart): only their presence is checked.
    expect(samples(after, 'udpgrm_proxy_bpf_packets_total').length).toBeGreaterThan(0);
    expect(before.size).toBeGreaterThan(0);
  });
});

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
