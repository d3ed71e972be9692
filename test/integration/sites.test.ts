/**
 * Sites (issue 9): two sites on one HTTP/3 listener, each its own generations in its own kernel
 * app. New connections are steered by SNI in the kernel (counted per app); a reload restarts only
 * the site that changed, and the other site's generation, workers and live connections are not
 * touched (no GOAWAY: Chromium keeps using the same QUIC connection); `reload --site` restarts one
 * site; a site whose workers are killed does not disturb the other.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchH3Chromium, type H3Browser } from '../helpers/chromium.js';
import { waitUntil } from '../helpers/deadline.js';
import { gtlsclient } from '../helpers/gtlsclient.js';
import { enterPrivateNetns, uniquePinDir } from '../helpers/netns.js';
import { freeUdpPort, runCli, startProxy, type RunningProxy } from '../helpers/proxy.js';

enterPrivateNetns();

interface Shape {
  a: number;
  b: number;
  /** Site b's names. */
  bNames?: string[];
  /** A third site c (names c.test) while true. */
  c?: boolean;
}

function sitesConfig(port: number, pinDir: string, versions: Shape): string {
  const c = versions.c
    ? `
  c:
    names: [c.test]
    routes:
      - respond: { status: 200, headers: { x-site: c }, body: "site c\\n" }`
    : '';
  return `
listeners: [{ address: "127.0.0.1:${port}", protocols: [h3] }]
tls: { state_dir: state }
workers: 1
sites:
  a:
    default: true
    names: [a.test]
    routes:
      - respond: { status: 200, headers: { x-site: a, x-version: "${versions.a}" }, body: "site a v${versions.a}\\n" }
  b:
    names: ${JSON.stringify(versions.bNames ?? ['*.b.test'])}
    workers: 2
    routes:
      - respond: { status: 200, headers: { x-site: b, x-version: "${versions.b}" }, body: "site b v${versions.b}\\n" }${c}
logging: { level: debug }
admin: { listen: "127.0.0.1:${port}" }
process: { pin_dir: "${pinDir}", ready_timeout: 30s }
`;
}

interface GenerationJson {
  id: number;
  site?: string;
  state: string;
  workers: Array<{ pid?: number; quic?: { statelessResets: number; dropped: Record<string, number> } }>;
}

async function status(proxy: RunningProxy): Promise<{ sites: Array<{ site: string; app: number; names: string[] }>; generations: GenerationJson[] }> {
  const r = await runCli('list', '--config', proxy.configFile, '--json');
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { sites: Array<{ site: string; app: number; names: string[] }>; generations: GenerationJson[] };
}

function working(st: { generations: GenerationJson[] }, site: string): GenerationJson {
  const gen = st.generations.find((g) => g.site === site && g.state === 'working');
  if (!gen) throw new Error(`no working generation for site ${site}: ${JSON.stringify(st.generations)}`);
  return gen;
}

function siteOf(output: string): string | undefined {
  return /^http: stream \S+ \[x-site: (\w+)\]$/m.exec(output)?.[1] ?? /\[x-site: (\w+)\]/.exec(output)?.[1];
}

/** What a page saw of one QUIC connection (Chromium's connectionId): its responses and their CDP times (s). */
interface SeenConnection {
  first: number;
  last: number;
  responses: number;
  remote: string;
}

interface FetchLoop {
  page: Page;
  connections: Map<string, SeenConnection>;
  protocols: Set<string>;
  /** proxy.logs.length when the loop started: the server's lines about this page's connections follow. */
  logsFrom: number;
}

/** A page on `origin` fetching / every 50 ms; records statuses, versions and the QUIC connection of each response. */
async function startFetchLoop(browser: H3Browser, proxy: RunningProxy, origin: string): Promise<FetchLoop> {
  const logsFrom = proxy.logs.length;
  // A context of its own: Chromium would otherwise reuse one site's QUIC connection for the other
  // (the test certificate is accepted for every name), which is the 421 case, not this one.
  const page = await (await browser.browser.newContext()).newPage();
  const connections = new Map<string, SeenConnection>();
  const protocols = new Set<string>();
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  cdp.on('Network.responseReceived', (ev: { timestamp: number; response: { connectionId?: number; protocol?: string; remoteIPAddress?: string; remotePort?: number } }) => {
    const id = String(ev.response.connectionId);
    const seen = connections.get(id);
    if (seen) {
      seen.last = ev.timestamp;
      seen.responses++;
    } else {
      connections.set(id, { first: ev.timestamp, last: ev.timestamp, responses: 1, remote: `${ev.response.remoteIPAddress}:${ev.response.remotePort}` });
    }
    protocols.add(ev.response.protocol ?? '');
  });
  await page.goto(`${origin}/`);
  await page.evaluate(() => {
    const w = window as unknown as { tally: { ok: number; failed: string[]; failedAt: number[]; versions: string[] }; stop: boolean };
    w.tally = { ok: 0, failed: [], failedAt: [], versions: [] };
    w.stop = false;
    void (async () => {
      while (!w.stop) {
        try {
          const r = await fetch('/', { cache: 'no-store' });
          await r.text();
          if (r.status === 200) w.tally.ok++;
          else w.tally.failed.push(`status ${r.status}`);
          w.tally.versions.push(`${r.headers.get('x-site')}${r.headers.get('x-version')}`);
        } catch (err) {
          // Wall-clock time (ms), to line up with the server's log lines in a failure's explanation.
          w.tally.failed.push(String(err));
          w.tally.failedAt.push(Date.now());
        }
        await new Promise((res) => setTimeout(res, 50));
      }
    })();
  });
  return { page, connections, protocols, logsFrom };
}

/** The server's kept log lines about `site` since `loop` started, except its access lines. */
function siteLogs(loop: FetchLoop, proxy: RunningProxy, site: string): Array<Record<string, unknown>> {
  return proxy.logs.slice(loop.logsFrom).filter((l) => l.site === site && l.log !== 'access');
}

/**
 * How many of the page's connections the server saw end without having told the client to go
 * away (no GOAWAY; a drain would have sent one; a stateless reset ends a connection with no
 * CONNECTION_CLOSE from either side, so it is never counted here): the ones we closed for a
 * transport error of the client's (under heavy load Chromium's connection is sometimes closed with
 * PROTOCOL_VIOLATION, a bug of its own: see the closing note of issue 9). Chromium's own close
 * after probing a new port ("81:net error", QUIC_CONNECTION_MIGRATION_NO_MIGRATABLE_STREAMS) is not
 * excused any more: the proxy sends disable_active_migration, so Chromium does not probe.
 */
function connectionsEndedByClient(loop: FetchLoop, proxy: RunningProxy, site: string): number {
  return siteLogs(loop, proxy, site).filter((l) => {
    if (l.msg !== 'connection closed' || l.goaway !== false) return false;
    return /^local transport error/.test(String(l.closedBy));
  }).length;
}

/**
 * The site's page kept its first connection, or every connection it replaced ended on the
 * client's side (connectionsEndedByClient). The server logs a close after its draining period
 * (3 PTOs), so that line may follow the page's new connection by a second or two.
 */
async function expectNoConnectionSentAway(loop: FetchLoop, proxy: RunningProxy, pinDir: string, site: string): Promise<void> {
  const explained = (): boolean => loop.connections.size - 1 <= connectionsEndedByClient(loop, proxy, site);
  try {
    await waitUntil(`site ${site}'s replaced connections closed by the client`, explained, { timeoutMs: 10_000, intervalMs: 100 });
  } catch {
    expect.fail(await explainConnections(loop, proxy, pinDir, site));
  }
}

/**
 * Why a site's page has the connections it has: what the page saw on each (CDP times, in s), the
 * server's lines for the site since (who closed each connection and why, the client's new paths),
 * its workers' stateless resets and drops, and the kernel's steering counters.
 */
async function explainConnections(loop: FetchLoop, proxy: RunningProxy, pinDir: string, site: string): Promise<string> {
  const page = [...loop.connections].map(([id, c]) => `  page connection ${id} to ${c.remote}: ${c.responses} responses, ${c.first.toFixed(3)} .. ${c.last.toFixed(3)}`);
  const server = siteLogs(loop, proxy, site).map((l) => `  server ${JSON.stringify(l)}`);
  const st = await status(proxy);
  const workers = st.generations.flatMap((g) => g.workers.map((w) => `  site ${g.site} gen ${g.id} ${g.state} worker ${w.pid}: ${JSON.stringify({ resets: w.quic?.statelessResets, dropped: w.quic?.dropped })}`));
  const kernel = (await runCli('list', '--pin-dir', pinDir, '-v')).stdout;
  return [`site ${site}'s page has ${loop.connections.size} connections, the server logged ${connectionsEndedByClient(loop, proxy, site)} closed by the client`, ...page, ...server, ...workers, '  kernel:', kernel].join('\n');
}

/** No fetch of the page failed; else the failures' times, with the server's account of the site's connections. */
async function expectNoFailedFetch(t: Tally, loop: FetchLoop, proxy: RunningProxy, pinDir: string, site: string): Promise<void> {
  if (t.failed.length === 0) return;
  const failures = t.failed.map((f, i) => `  fetch failed at ${t.failedAt[i]} (${new Date(t.failedAt[i] ?? 0).toISOString()}): ${f}`);
  // Every site's kept lines within 3 s of a failure: a new connection of this site's page starts at the default site.
  const near = proxy.logs.slice(loop.logsFrom).filter((l) => l.log !== 'access' && l.site !== site && t.failedAt.some((at) => Math.abs(Number(l.time) - at) < 3000));
  const around = near.map((l) => `  near a failure ${JSON.stringify(l)}`);
  expect.fail([`site ${site}'s page: ${t.failed.length} of ${t.ok + t.failed.length} fetches failed`, ...failures, await explainConnections(loop, proxy, pinDir, site), ...around].join('\n'));
}

type Tally = { ok: number; failed: string[]; failedAt: number[]; versions: string[] };
function tally(page: Page, stop = false): Promise<Tally> {
  return page.evaluate((s) => {
    const w = window as unknown as { tally: Tally; stop: boolean };
    if (s) w.stop = true;
    return w.tally;
  }, stop);
}

describe('sites: per-site generations steered by SNI in the kernel', () => {
  let proxy: RunningProxy;
  let port: number;
  let pinDir: string;
  let browser: H3Browser;
  const versions: Shape = { a: 1, b: 1 };

  const reconfigure = (): void => writeFileSync(proxy.configFile, sitesConfig(port, pinDir, versions));

  beforeAll(async () => {
    port = await freeUdpPort();
    pinDir = uniquePinDir('sites');
    // Debug level for the 'connection closed' (who closed and why) and 'path event' lines; only those are kept.
    proxy = await startProxy(sitesConfig(port, pinDir, versions), { keepLog: (l) => l.level !== 20 || l.msg === 'connection closed' || l.msg === 'path event' });
    browser = await launchH3Chromium(
      [
        { host: 'a.test', port },
        { host: 'x.b.test', port },
      ],
      path.join(proxy.dir, 'state/self-signed.crt'),
      { resolve: ['a.test', 'x.b.test'] },
    );
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await proxy?.stop();
    await runCli('grm', 'cleanup', '--pin-dir', pinDir);
  });

  it('steers each new connection to its site by SNI in the kernel, counted per app', async () => {
    const a = await gtlsclient('127.0.0.1', port, [`https://a.test:${port}/`], { sni: 'a.test' });
    const b = await gtlsclient('127.0.0.1', port, [`https://x.b.test:${port}/`], { sni: 'x.b.test' });
    const unmatched = await gtlsclient('127.0.0.1', port, [`https://other.test:${port}/`], { sni: 'other.test' });
    expect([siteOf(a.output), siteOf(b.output), siteOf(unmatched.output)]).toEqual(['a', 'b', 'a']);

    const st = await status(proxy);
    expect(st.sites).toEqual([
      { site: 'a', app: 0, names: ['a.test'] },
      { site: 'b', app: 1, names: ['*.b.test'] },
    ]);
    expect(working(st, 'a').workers).toHaveLength(1);
    expect(working(st, 'b').workers).toHaveLength(2);

    // The kernel's own counters: the names it matched, per app.
    const kernel = await runCli('list', '--pin-dir', pinDir, '-v');
    expect(kernel.code, kernel.stderr).toBe(0);
    expect(kernel.stdout).toMatch(/app 0 {2}working gen \d+ {2}names a\.test/);
    expect(kernel.stdout).toMatch(/app 1 {2}working gen \d+ {2}names \*\.b\.test/);
    const matched = (app: number): number => Number(new RegExp(`sni_match\\{app=${app}\\} (\\d+)`).exec(kernel.stdout)?.[1] ?? 0);
    expect(matched(0)).toBeGreaterThanOrEqual(1);
    expect(matched(1)).toBeGreaterThanOrEqual(1);

    // The same counters on the admin endpoint (TCP: the listener serves HTTP/3 only, the port is free).
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const sni = (site: string, outcome: string): number => Number(new RegExp(`^udpgrm_proxy_bpf_sni_total\\{site="${site}",outcome="${outcome}"\\} (\\d+)$`, 'm').exec(metrics)?.[1] ?? -1);
    expect(sni('a', 'matched')).toBe(matched(0));
    expect(sni('b', 'matched')).toBe(matched(1));
    expect(sni('a', 'unmatched')).toBeGreaterThanOrEqual(1);

    const list = await runCli('list', '--config', proxy.configFile);
    expect(list.stdout).toMatch(/^site a {2}app 0 {2}names a\.test$/m);
    expect(list.stdout).toMatch(/^site b {2}app 1 {2}names \*\.b\.test$/m);
  });

  it('a reload that changes only site b leaves site a its generation, workers and QUIC connection', async () => {
    const before = await status(proxy);
    const aLoop = await startFetchLoop(browser, proxy, `https://a.test:${port}`);
    const bLoop = await startFetchLoop(browser, proxy, `https://x.b.test:${port}`);
    await waitUntil('both fetch loops answered', async () => (await tally(aLoop.page)).ok >= 5 && (await tally(bLoop.page)).ok >= 5, { timeoutMs: 20_000 });

    versions.b = 2;
    reconfigure();
    const reload = await runCli('reload', '--config', proxy.configFile);
    expect(reload.code, reload.stderr).toBe(0);
    expect(reload.stdout).toMatch(/^ {2}a: unchanged \(generation \d+\)$/m);
    expect(reload.stdout).toMatch(/^ {2}b: restarted \(generation \d+\)$/m);
    const logged = await proxy.waitForLog((l) => l.msg === 'reload: site changes');
    expect(logged.changes).toBe('a: unchanged; b: changed (routes changed)');

    await waitUntil('site b answers with its new config', async () => (await tally(bLoop.page)).versions.at(-1) === 'b2', {
      timeoutMs: 20_000,
      detail: async () => JSON.stringify({ ...(await tally(bLoop.page)), versions: (await tally(bLoop.page)).versions.slice(-3), connections: [...bLoop.connections.keys()] }),
    });
    const aServedAfter = (await tally(aLoop.page)).ok + 20;
    await waitUntil('20 more answers from site a', async () => (await tally(aLoop.page)).ok >= aServedAfter, { timeoutMs: 20_000 });
    const a = await tally(aLoop.page, true);
    const b = await tally(bLoop.page, true);
    await expectNoFailedFetch(a, aLoop, proxy, pinDir, 'a');
    await expectNoFailedFetch(b, bLoop, proxy, pinDir, 'b');
    expect(new Set(a.versions)).toEqual(new Set(['a1']));
    // Every answer on x.b.test came from site b, also for Chromium's ClientHellos whose SNI is in
    // the second datagram (the default site sends those to site b with a Retry).
    expect(b.versions.filter((v) => !v.startsWith('b'))).toEqual([]);
    expect(aLoop.protocols).toEqual(new Set(['h3']));
    // Site a's browser connection was never told to go away: a new connection of site a's page is
    // allowed only where the server logged the previous one closed, with no GOAWAY, for the
    // client's own reasons (expectNoConnectionSentAway).
    await expectNoConnectionSentAway(aLoop, proxy, pinDir, 'a');

    const after = await status(proxy);
    expect(working(after, 'a')).toMatchObject({ id: working(before, 'a').id, workers: working(before, 'a').workers.map((w) => ({ pid: w.pid })) });
    expect(working(after, 'b').id).toBeGreaterThan(working(before, 'b').id);
    expect(proxy.logs.some((l) => l.msg === 'generation draining' && l.generation === working(before, 'a').id)).toBe(false);
    await aLoop.page.context().close();
    await bLoop.page.context().close();
  }, 90_000);

  it('an unchanged reload restarts nothing; reload --site a restarts only a', async () => {
    const before = await status(proxy);
    const unchanged = await runCli('reload', '--config', proxy.configFile);
    expect(unchanged.code, unchanged.stderr).toBe(0);
    expect(unchanged.stdout).toMatch(/a: unchanged/);
    expect(unchanged.stdout).toMatch(/b: unchanged/);

    const onlyA = await runCli('reload', '--config', proxy.configFile, '--site', 'a');
    expect(onlyA.code, onlyA.stderr).toBe(0);
    const after = await status(proxy);
    expect(working(after, 'a').id).toBeGreaterThan(working(before, 'a').id);
    expect(working(after, 'b').id).toBe(working(before, 'b').id);

    const unknown = await runCli('reload', '--config', proxy.configFile, '--site', 'nope');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/no site "nope" in .*proxy\.yaml \(sites: a, b\)/);
  }, 60_000);

  it('a reload adds a site in a free app, re-registers names without restarting, and removes a site', async () => {
    const before = await status(proxy);
    Object.assign(versions, { c: true, bNames: ['*.b.test', 'b2.test'] });
    reconfigure();
    const added = await runCli('reload', '--config', proxy.configFile);
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).toMatch(/^ {2}b: names \(generation \d+\)$/m);
    expect(added.stdout).toMatch(/^ {2}c: added \(generation \d+\)$/m);
    let st = await status(proxy);
    expect(st.sites).toEqual([
      { site: 'a', app: 0, names: ['a.test'] },
      { site: 'b', app: 1, names: ['*.b.test', 'b2.test'] },
      { site: 'c', app: 2, names: ['c.test'] },
    ]);
    expect(working(st, 'b').id).toBe(working(before, 'b').id);
    for (const [sni, site] of [['b2.test', 'b'], ['c.test', 'c'], ['x.b.test', 'b']] as const) {
      expect(siteOf((await gtlsclient('127.0.0.1', port, [`https://${sni}:${port}/`], { sni })).output), sni).toBe(site);
    }

    Object.assign(versions, { c: false, bNames: ['*.b.test'] });
    reconfigure();
    const removed = await runCli('reload', '--config', proxy.configFile);
    expect(removed.code, removed.stderr).toBe(0);
    expect(removed.stdout).toMatch(/^ {2}c: removed$/m);
    st = await status(proxy);
    expect(st.sites.map((x) => x.site)).toEqual(['a', 'b']);
    // c's names are withdrawn from the kernel: c.test now lands on the default site.
    expect(siteOf((await gtlsclient('127.0.0.1', port, [`https://c.test:${port}/`], { sni: 'c.test' })).output)).toBe('a');
    await waitUntil('site c retired', async () => !(await status(proxy)).generations.some((g) => g.site === 'c'), { timeoutMs: 30_000, intervalMs: 200 });
    const kernel = await runCli('list', '--pin-dir', pinDir);
    expect(kernel.stdout).not.toMatch(/c\.test/);
    expect(kernel.stdout).not.toMatch(/app 2 {2}working gen \d/);
  }, 90_000);

  it("killing site b's workers does not disturb site a; b's workers are restarted", async () => {
    const before = await status(proxy);
    const bPids = working(before, 'b').workers.map((w) => w.pid!);
    const aLoop = await startFetchLoop(browser, proxy, `https://a.test:${port}`);
    await waitUntil('site a answers', async () => (await tally(aLoop.page)).ok >= 5, { timeoutMs: 20_000 });
    for (const pid of bPids) process.kill(pid, 'SIGKILL');
    await waitUntil(
      "site b's workers restarted",
      async () => {
        const pids = working(await status(proxy), 'b').workers.map((w) => w.pid);
        return pids.every((p) => p !== undefined && !bPids.includes(p));
      },
      { timeoutMs: 20_000, intervalMs: 200 },
    );
    const b = await gtlsclient('127.0.0.1', port, [`https://x.b.test:${port}/`], { sni: 'x.b.test' });
    expect(siteOf(b.output)).toBe('b');
    const servedAfter = (await tally(aLoop.page)).ok + 10;
    await waitUntil('10 more answers from site a', async () => (await tally(aLoop.page)).ok >= servedAfter, { timeoutMs: 20_000 });
    const a = await tally(aLoop.page, true);
    expect(a.failed).toEqual([]);
    await expectNoConnectionSentAway(aLoop, proxy, pinDir, 'a');
    expect(working(await status(proxy), 'a').workers.map((w) => w.pid)).toEqual(working(before, 'a').workers.map((w) => w.pid));
    await aLoop.page.context().close();
  }, 60_000);
});
