/**
 * Sites and the 421 answer (RFC 9110 §15.5.20) with real clients. Two sites on one address:
 * `a` (a.test, the default) and `b` (*.b.test), each answering with its own `x-site` header.
 *
 * - The real proxy (master, one generation per site, the kernel steering by SNI). A QUIC attempt
 *   whose server_name is only in its second datagram (the project's Initial builder, through
 *   split-hello-relay.ts) is counted by the kernel as having no SNI and lands on site a, whose
 *   worker sends it to site b with a Retry: the client (quiche, Chromium forced onto QUIC) ends on
 *   site b with no 421. When the attempt already took a Retry (quic.retry: always; or `auto`
 *   under load) it cannot be moved: site a completes the handshake, answers x.b.test 421 with a
 *   GOAWAY, and a new connection reaches site b. gtlsclient with SNI a.test asking for x.b.test
 *   gets 421; a reload that only adds a name to b has a's running workers send it away. With one
 *   site (no `sites:`) nothing is sent away.
 * - TCP, in process (no kernel steering on TCP): a worker of one site answers 421 over HTTP/1.1
 *   (curl) and over an HTTP/2 connection reused for another site's host (node:http2, coalescing).
 */
import { X509Certificate } from 'node:crypto';
import http2 from 'node:http2';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientHelloAssembler } from '../../src/proxy/quic/initial/index.js';
import { freeTcpPort, scrape } from '../helpers/admin-client.js';
import { makeCert } from '../helpers/certs.js';
import { launchH3Chromium } from '../helpers/chromium.js';
import { gtlsclient } from '../helpers/gtlsclient.js';
import { H3Client, type H3Response } from '../helpers/h3-client.js';
import { enterPrivateNetns, removePinDir, uniquePinDir } from '../helpers/netns.js';
import { samples, sum } from '../helpers/prometheus.js';
import { freeUdpPort, makeTempDir, runCli, startProxy, type RunningProxy } from '../helpers/proxy.js';
import { startSplitHelloRelay } from '../helpers/split-hello-relay.js';
import { run, useTcpEdge } from '../helpers/tcp-edge.js';

enterPrivateNetns();

const MISDIRECTED_BODY = 'misdirected request: this connection does not serve this host\n';

const header = (r: H3Response, name: string): string | undefined => r.headers.find(([n]) => n === name)?.[1];

interface TwoSites {
  readonly proxy: RunningProxy;
  readonly port: number;
  readonly adminPort: number;
  readonly dir: string;
  /** The config file's text with `bNames` as site b's names. */
  config(bNames: readonly string[]): string;
  /** The kernel's count of new connections whose first datagram had no readable SNI. */
  sniNone(): Promise<number>;
  /** An H3Client closed with the proxy. */
  connect(opts: { port: number; sni: string }): Promise<H3Client>;
}

/**
 * The real proxy with two sites on one HTTP/3 listener, started before the describe's tests and
 * stopped after them. `retry`: quic.retry (`always`: every attempt is validated with a Retry first).
 */
function useTwoSites(retry: 'never' | 'always'): () => TwoSites {
  let running: TwoSites | undefined;
  const pinDir = uniquePinDir('misdirected');
  const clients: H3Client[] = [];
  beforeAll(async () => {
    // The certificates go next to the config file, which the proxy reads them relative to.
    const dir = makeTempDir();
    makeCert(dir, 'a', 'a.test');
    makeCert(dir, 'b', '*.b.test');
    const port = await freeUdpPort();
    const adminPort = await freeTcpPort();
    const config = (bNames: readonly string[]): string => `
# HTTP/3 only: TCP connections are not handed to their site's workers yet (the master refuses
# more than one site on a TCP listener).
listeners: [{ address: "127.0.0.1:${port}", protocols: [h3] }]
workers: 1
tls: { state_dir: state }
quic: { retry: ${retry} }
sites:
  a:
    default: true
    names: [a.test]
    certificates: [{ names: [a.test], cert: a.crt, key: a.key }]
    routes: [{ respond: { status: 200, headers: { x-site: a }, body: "site a\\n" } }]
  b:
    names: [${bNames.join(', ')}]
    certificates: [{ names: ["*.b.test"], cert: b.crt, key: b.key }]
    routes: [{ respond: { status: 200, headers: { x-site: b }, body: "site b\\n" } }]
admin: { listen: "127.0.0.1:${adminPort}" }
logging: { level: info, access_log: true }
process: { pin_dir: "${pinDir}" }
`;
    const proxy = await startProxy(config(['"*.b.test"']), { dir });
    running = {
      proxy,
      port,
      adminPort,
      dir,
      config,
      async sniNone() {
        const r = await runCli('list', '--pin-dir', pinDir, '-v');
        expect(r.code, r.stderr).toBe(0);
        return Number(/^\s*sni_none (\d+)$/m.exec(r.stdout)?.[1]);
      },
      async connect(opts) {
        const c = await H3Client.connect({ host: '127.0.0.1', timeoutMs: 15_000, ...opts });
        clients.push(c);
        return c;
      },
    };
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await running?.proxy.stop();
    removePinDir(pinDir);
    if (running) rmSync(running.dir, { recursive: true, force: true });
  });
  return () => {
    if (!running) throw new Error('useTwoSites: read before beforeAll ran');
    return running;
  };
}

/** The proxy's own reader agrees with the relay: the first datagram alone holds no server_name, both do. */
function expectSniOnlyInSecond([first, second]: readonly [Buffer, Buffer], name: string): void {
  const reader = new ClientHelloAssembler();
  expect(reader.push(first)).toBe('need-more');
  expect(reader.push(second)).toMatchObject({ serverName: name });
}

/**
 * Our quiche client connects with SNI x.b.test through the split-ClientHello relay: server_name
 * only in the second datagram, and the kernel counts the attempt as one without a readable SNI (so
 * the default site, a, gets it). `use` runs with the connection; the relay is closed after it.
 */
async function withSplitHelloConnection(s: TwoSites, use: (split: H3Client) => Promise<void>): Promise<void> {
  const relay = await startSplitHelloRelay({ host: '127.0.0.1', port: s.port });
  try {
    const before = await s.sniNone();
    const split = await s.connect({ port: relay.port, sni: 'x.b.test' });
    expectSniOnlyInSecond(await relay.split, 'x.b.test');
    expect((await s.sniNone()) - before).toBe(1);
    await use(split);
  } finally {
    await relay.close();
  }
}

describe('two sites on one address: the real proxy', { timeout: 60_000 }, () => {
  const sites = useTwoSites('never');

  it('steers each SNI to its own site', async () => {
    const { port, connect } = sites();
    const a = await connect({ port, sni: 'a.test' });
    const b = await connect({ port, sni: 'x.b.test' });
    expect(header(await a.get('a.test', '/'), 'x-site')).toBe('a');
    expect(header(await b.get('x.b.test', '/'), 'x-site')).toBe('b');
  });

  it('a ClientHello with its server_name in the second datagram lands on site a, which sends it to site b with a Retry: no 421', async () => {
    const two = sites();
    await withSplitHelloConnection(two, async (split) => {
      // The default site got the attempt, yet the connection is site b's: x.b.test is served, a.test is sent away.
      const [own, other] = await Promise.all([split.get('x.b.test', '/'), split.get('a.test', '/')]);
      expect([own.status, header(own, 'x-site'), own.body.toString()]).toEqual([200, 'b', 'site b\n']);
      expect([other.status, other.body.toString()]).toEqual([421, MISDIRECTED_BODY]);
      expect(await two.proxy.waitForLog((l) => l['log'] === 'access' && l['status'] === 421 && l['authority'] === 'a.test')).toMatchObject({ site: 'b', reason: "misdirected: the host is site a's" });
      // Told to go away with the 421, it is closed (H3_NO_ERROR) once its requests are answered.
      await split.closed;
      expect(split.peerError).toMatchObject({ isApp: true, errorCode: 0x100 });
    });
  });

  it('gtlsclient with SNI a.test asking for x.b.test gets 421', async () => {
    const { port } = sites();
    const r = await gtlsclient('127.0.0.1', port, [`https://x.b.test:${port}/`], { sni: 'a.test' });
    expect(r.statuses, r.output).toEqual([421]);
    expect(r.bodies.get('index.html')?.toString()).toBe(MISDIRECTED_BODY);
  });

  it('counts the 421s per answering site and protocol, and the attempts sent to their site', async () => {
    const families = await scrape(sites().adminPort);
    expect(sum(families, 'udpgrm_proxy_misdirected_total', { site: 'a', protocol: 'h3' })).toBe(1);
    expect(sum(families, 'udpgrm_proxy_misdirected_total', { site: 'b', protocol: 'h3' })).toBe(1);
    // The same 421s among the HTTP refusals, summed over sites and protocols.
    expect(sum(families, 'udpgrm_proxy_http_refused_total', { reason: 'misdirected' })).toBe(sum(families, 'udpgrm_proxy_misdirected_total'));
    expect(samples(families, 'udpgrm_proxy_quic_dropped_total', { reason: 'retry_to_site' }).map((s) => s.value)).toEqual([1]);
  });

  it('Chromium (forced QUIC): a split first flight ends on site b with no 421', async () => {
    const { port, proxy, dir } = sites();
    const relay = await startSplitHelloRelay({ host: '127.0.0.1', port });
    const browser = await launchH3Chromium({ host: 'x.b.test', port: relay.port }, path.join(dir, 'b.crt'), { resolve: ['x.b.test'] });
    try {
      const { page, protocols } = await browser.newPage();
      const res = await page.goto(`https://x.b.test:${relay.port}/`);
      expectSniOnlyInSecond(await relay.split, 'x.b.test');
      expect([res?.status(), await res?.headerValue('x-site'), await res?.text()]).toEqual([200, 'b', 'site b\n']);
      expect(protocols.get(`https://x.b.test:${relay.port}/`)).toBe('h3');
      expect(proxy.logs.filter((l) => l['log'] === 'access' && String(l['authority']).endsWith(`:${relay.port}`)).map((l) => l['status'])).not.toContain(421);
    } finally {
      await browser.close();
      await relay.close();
    }
  });

  it('a reload that gives site b another name has site a\'s running workers send that name away', async () => {
    const { port, proxy, config } = sites();
    const asA = (): ReturnType<typeof gtlsclient> => gtlsclient('127.0.0.1', port, [`https://c.test:${port}/`], { sni: 'a.test' });
    // Site a's working generation: its id and worker pids.
    const siteA = async (): Promise<string> => {
      const r = await runCli('list', '--config', proxy.configFile, '--json');
      expect(r.code, r.stderr).toBe(0);
      const { generations } = JSON.parse(r.stdout) as { generations: Array<{ id: number; site?: string; state: string; workers: Array<{ pid?: number }> }> };
      const gen = generations.find((g) => g.site === 'a' && g.state === 'working');
      return JSON.stringify([gen?.id, gen?.workers.map((w) => w.pid)]);
    };
    // Nobody names c.test: the default site's.
    expect((await asA()).statuses).toEqual([200]);
    const before = await siteA();
    writeFileSync(proxy.configFile, config(['"*.b.test"', 'c.test']));
    const reload = await runCli('reload', '--config', proxy.configFile);
    expect(reload.code, reload.stderr).toBe(0);
    const after = await asA();
    expect(after.statuses, after.output).toEqual([421]);
    // The same workers: they were told the new names, not restarted.
    expect(await siteA()).toBe(before);
  });
});

describe('two sites, every attempt validated with a Retry first (quic.retry: always)', { timeout: 60_000 }, () => {
  const sites = useTwoSites('always');

  it('a split ClientHello that already took its Retry stays on site a: 421 and GOAWAY, and a new connection reaches site b', async () => {
    const two = sites();
    const { port, proxy, connect } = two;
    await withSplitHelloConnection(two, async (split) => {
      // A client follows one Retry only (RFC 9000 §17.2.5.2): site a completes the handshake,
      // with b's certificate (every worker holds every site's).
      expect(new X509Certificate(split.peerCertificate()!).subject).toBe('CN=*.b.test');
      const [misdirected, own] = await Promise.all([split.get('x.b.test', '/'), split.get('a.test', '/')]);
      expect([misdirected.status, misdirected.body.toString()]).toEqual([421, MISDIRECTED_BODY]);
      expect([own.status, header(own, 'x-site')]).toEqual([200, 'a']);
      expect(await proxy.waitForLog((l) => l['log'] === 'access' && l['status'] === 421 && l['authority'] === 'x.b.test')).toMatchObject({ site: 'a', reason: "misdirected: the host is site b's" });
      await split.closed;
      expect(split.peerError).toMatchObject({ isApp: true, errorCode: 0x100 });

      // What a browser does next: the same request on a new connection, SNI in its first datagram.
      const fresh = await connect({ port, sni: 'x.b.test' });
      const retried = await fresh.get('x.b.test', '/');
      expect([retried.status, header(retried, 'x-site'), retried.body.toString()]).toEqual([200, 'b', 'site b\n']);
      const families = await scrape(sites().adminPort);
      expect(sum(families, 'udpgrm_proxy_misdirected_total', { site: 'a', protocol: 'h3' })).toBe(1);
      // Present at 0, not merely absent.
      expect(samples(families, 'udpgrm_proxy_quic_dropped_total', { reason: 'retry_to_site' }).map((s) => s.value)).toEqual([0]);
    });
  });
});

describe('one site (no sites:): nothing is misdirected', { timeout: 60_000 }, () => {
  it('serves every host, also on a connection whose server_name came in the second datagram', async () => {
    const port = await freeUdpPort();
    const proxy = await startProxy(`
listeners: ["127.0.0.1:${port}"]
workers: 1
tls: { state_dir: state }
quic: { retry: never }
routes: [{ respond: { status: 200, body: "one site\\n" } }]
`);
    const relay = await startSplitHelloRelay({ host: '127.0.0.1', port });
    try {
      const client = await H3Client.connect({ host: '127.0.0.1', port: relay.port, sni: 'x.b.test', timeoutMs: 15_000 });
      const [first] = await relay.split;
      expect(new ClientHelloAssembler().push(first)).toBe('need-more');
      for (const host of ['x.b.test', 'a.test', 'anything.example']) {
        const r = await client.get(host, '/');
        expect([r.status, r.body.toString()]).toEqual([200, 'one site\n']);
      }
      await client.close();
    } finally {
      await relay.close();
      await proxy.stop();
    }
  });
});

/**
 * Status, x-site, connection field and body of one curl request (-D - output) on a connection
 * whose SNI is `host`, for `authority` (Host / :authority; default: the same host). A TCP
 * connection whose SNI is another site's is handed to that site before TLS (the master does it;
 * these in-process workers have none), so a request for another site's host is made here on a
 * connection of the worker's own site: its authority differs from its SNI.
 */
async function curlGet(
  version: '--http1.1' | '--http2',
  host: string,
  port: number,
  authority?: string,
): Promise<{ status: number; site: string | undefined; connection: string | undefined; body: string }> {
  const hostField = authority === undefined ? [] : ['-H', `Host: ${authority}:${port}`];
  const r = await run('curl', ['-sS', '-k', version, '-D', '-', ...hostField, '--resolve', `${host}:${port}:127.0.0.1`, `https://${host}:${port}/`]);
  expect(r.code, r.stderr).toBe(0);
  const end = r.stdout.indexOf('\r\n\r\n');
  const head = r.stdout.slice(0, end);
  const field = (name: string): string | undefined => new RegExp(`\r\n${name}: *(\\S+)`, 'i').exec(head)?.[1];
  return { status: Number(head.split(' ')[1]), site: field('x-site'), connection: field('connection'), body: r.stdout.slice(end + 4) };
}

/**
 * GETs on one HTTP/2 connection whose SNI is `sni`, one after the other: status and body per
 * authority, and the GOAWAY the server sent, if any (its error code).
 */
async function h2OnOneConnection(port: number, sni: string, authorities: readonly string[]): Promise<{ responses: Array<[number, string]>; goaway: number | undefined }> {
  const session = http2.connect(`https://127.0.0.1:${port}`, { servername: sni, rejectUnauthorized: false });
  let goaway: number | undefined;
  session.on('goaway', (code: number) => (goaway ??= code));
  try {
    const out: Array<[number, string]> = [];
    for (const authority of authorities) {
      out.push(
        await new Promise<[number, string]>((resolve, reject) => {
          const req = session.request({ ':method': 'GET', ':path': '/', ':authority': authority });
          let status = 0;
          let body = '';
          req.on('response', (h) => (status = Number(h[':status'])));
          req.setEncoding('utf8').on('data', (c: string) => (body += c));
          req.on('end', () => resolve([status, body]));
          req.on('error', reject);
          req.end();
        }),
      );
    }
    return { responses: out, goaway };
  } finally {
    session.close();
  }
}

describe('TCP: a worker of site a (in process)', () => {
  const fx = useTcpEdge({ site: 'a' });

  it('HTTP/1.1: another site\'s host gets 421 and the connection closes; its own and unnamed hosts are served', async () => {
    expect(await curlGet('--http1.1', 'a.test', fx.edge.port, 'x.b.test')).toEqual({ status: 421, site: undefined, connection: 'close', body: MISDIRECTED_BODY });
    expect(await curlGet('--http1.1', 'a.test', fx.edge.port)).toMatchObject({ status: 200, connection: 'keep-alive', body: 'hello\n' });
    expect(await curlGet('--http1.1', 'a.test', fx.edge.port, 'unknown.test')).toMatchObject({ status: 200, body: 'hello\n' });
  });

  it('HTTP/2: a connection reused for another site\'s host (coalescing) gets 421 on that stream, and GOAWAY', async () => {
    expect(await h2OnOneConnection(fx.edge.port, 'a.test', ['a.test', 'x.b.test'])).toEqual({
      responses: [
        [200, 'hello\n'],
        [421, MISDIRECTED_BODY],
      ],
      goaway: http2.constants.NGHTTP2_NO_ERROR,
    });
    // Served on a connection that is not told to go away.
    expect(await h2OnOneConnection(fx.edge.port, 'a.test', ['a.test', 'unknown.test'])).toEqual({
      responses: [
        [200, 'hello\n'],
        [200, 'hello\n'],
      ],
      goaway: undefined,
    });
    const logged = fx.edge.logs.filter((l) => l['log'] === 'access' && l['status'] === 421);
    expect(logged.map((l) => [l['protocol'], l['authority']])).toEqual([
      ['h1', `x.b.test:${fx.edge.port}`],
      ['h2', 'x.b.test'],
    ]);
  });
});

describe('TCP: a worker of site b (in process)', () => {
  const fx = useTcpEdge({ site: 'b' });

  it('serves only its own names: the default site\'s hosts and hosts nobody names get 421', async () => {
    expect(await curlGet('--http2', 'x.b.test', fx.edge.port)).toEqual({ status: 200, site: undefined, connection: undefined, body: 'site b\n' });
    expect(await curlGet('--http2', 'x.b.test', fx.edge.port, 'a.test')).toMatchObject({ status: 421, body: MISDIRECTED_BODY });
    expect(await curlGet('--http2', 'x.b.test', fx.edge.port, 'unknown.test')).toMatchObject({ status: 421, body: MISDIRECTED_BODY });
    expect(fx.edge.server.refusals.counts).toMatchObject({ 'misdirected request': 2 });
  });
});
