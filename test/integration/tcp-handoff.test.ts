/**
 * The TCP ClientHello handoff with real processes: workers of sites a (a.test, default) and b
 * (*.b.test) accept on one shared listening socket, read each connection's ClientHello, serve
 * their own site's and send the others through the master's end (TcpHandoffRouter, in this test
 * process) to a worker of the right site. curl is the client; each site answers with its own
 * `x-site` header.
 */
import type { ChildProcess } from 'node:child_process';
import http2 from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../helpers/deadline.js';
import { startSiteWorkers, type SiteWorkers } from '../helpers/site-workers.js';
import type { MasterToWorker } from '../../src/proxy/process/ipc.js';
import { run } from '../helpers/tcp-edge.js';

const SITES = `  a:
    names: [a.test]
    routes: [{ respond: { status: 200, headers: { x-site: a }, body: "a" } }]
  b:
    names: ["*.b.test"]
    routes: [{ respond: { status: 200, headers: { x-site: b }, body: "b" } }]
  c:
    names: [c.test]
    routes: [{ respond: { status: 200, headers: { x-site: c }, body: "c" } }]
`;

let sw: SiteWorkers;
/** How long a handed-over connection may wait for a worker of its site (the router's timeout). */
const HANDOFF_TIMEOUT_MS = 2000;

beforeAll(async () => {
  sw = await startSiteWorkers(SITES, { handoffTimeoutMs: HANDOFF_TIMEOUT_MS });
  await Promise.all([sw.start('a'), sw.start('b')]);
});
afterAll(async () => {
  await sw?.close();
});

/** One request on a new connection: `x-site` of the answer, or `fail <curl exit code>`. */
async function siteOf(host: string, http: '--http1.1' | '--http2'): Promise<string> {
  // No name in the URL: curl sends no SNI for an IP address.
  const target = host === '' ? [`https://127.0.0.1:${sw.port}/`] : ['--resolve', `${host}:${sw.port}:127.0.0.1`, `https://${host}:${sw.port}/`];
  const r = await run('curl', ['-sk', http, '--max-time', '20', '-o', '/dev/null', '-w', '%header{x-site}', ...target]);
  return r.code === 0 ? r.stdout : `fail ${r.code}`;
}

const COUNTERS = ['handedOff', 'adopted', 'handoffsFailed', 'clientHellosRefused', 'tlsErrors'] as const;

/** The handoff counters of every live worker, added up. */
async function tcpTotals(): Promise<Record<(typeof COUNTERS)[number], number>> {
  const all = await Promise.all([...sw.workers.values()].flat().map((p) => sw.stats(p)));
  return Object.fromEntries(COUNTERS.map((k) => [k, all.reduce((n, s) => n + (s.tcp?.[k] ?? 0), 0)])) as Record<(typeof COUNTERS)[number], number>;
}

describe('TCP connections reach the worker of their SNI site', () => {
  it('every connection, h1 and h2, with and without SNI, lands on its site; the ones the other site accepted were handed over', async () => {
    const expected: Array<[string, string]> = [
      ['a.test', 'a'],
      ['x.b.test', 'b'],
      ['y.b.test', 'b'],
      ['', 'a'], // no SNI: the default site
      ['unknown.test', 'a'], // a name no site has: the default site
    ];
    const before = await tcpTotals();
    const seen: string[] = [];
    const want: string[] = [];
    for (let round = 0; round < 8; round++) {
      for (const http of ['--http1.1', '--http2'] as const) {
        const results = await Promise.all(expected.map(([host]) => siteOf(host, http)));
        seen.push(...results.map((s, i) => `${expected[i]![0] || '(no sni)'} ${http} ${s}`));
        want.push(...expected.map(([host, site]) => `${host || '(no sni)'} ${http} ${site}`));
      }
    }
    expect(seen).toEqual(want);
    const after = await tcpTotals();
    const handedOff = after.handedOff - before.handedOff;
    // 80 connections over two workers that both accept: some landed on the other site's worker.
    expect(handedOff).toBeGreaterThan(0);
    expect(after.adopted - before.adopted).toBe(handedOff);
    expect(after.handoffsFailed - before.handoffsFailed).toBe(0);
    expect(after.tlsErrors - before.tlsErrors).toBe(0);
    expect(sw.router.pending).toBe(0);
  });

  it('a ClientHello naming a site without workers: the connection waits for one, then is ended; the sender counts the failure', async () => {
    const before = await tcpTotals();
    const failedBefore = sw.router.counters.failed;
    const started = performance.now();
    expect(await siteOf('c.test', '--http2')).toMatch(/^fail /);
    expect(performance.now() - started).toBeGreaterThanOrEqual(HANDOFF_TIMEOUT_MS - 100);
    await waitUntil('the sender to count the failed handoff', async () => (await tcpTotals()).handoffsFailed > before.handoffsFailed, { timeoutMs: 5000 });
    expect(sw.router.counters.failed).toBe(failedBefore + 1);
    expect(sw.router.pending).toBe(0);
  });

  it('a connection for a site whose worker is still starting is served once it is ready', async () => {
    const request = siteOf('c.test', '--http1.1');
    await waitUntil('the connection to wait in the master', () => sw.router.pending === 1, { timeoutMs: 5000, intervalMs: 10 });
    const c = await sw.start('c');
    expect(await request).toBe('c');
    await stopAndWait(c);
  });

  it('plaintext HTTP on the TLS port is closed before TLS and counted', async () => {
    const before = await tcpTotals();
    const r = await run('curl', ['-s', '--max-time', '10', '-o', '/dev/null', `http://127.0.0.1:${sw.port}/`]);
    expect(r.code).not.toBe(0);
    await waitUntil('the refused ClientHello to be counted', async () => (await tcpTotals()).clientHellosRefused > before.clientHellosRefused, { timeoutMs: 5000 });
  });

  it('an offer to a worker that exits before answering goes to another worker of the site', async () => {
    const b2 = await sw.start('b');
    const b1 = sw.workers.get('b')!.find((p) => p !== b2)!;
    b1.kill('SIGSTOP');
    // Until a handoff to b1 waits: b1 takes no connection itself, a's handoffs alternate b1, b2.
    const requests: Array<Promise<string>> = [];
    await waitUntil(
      'a handoff offered to the stopped worker',
      () => {
        if (sw.router.pending > 0) return true;
        requests.push(siteOf('x.b.test', '--http1.1'));
        return false;
      },
      { timeoutMs: 20_000, intervalMs: 100 },
    );
    await stopAndWait(b1);
    expect(await Promise.all(requests)).toEqual(requests.map(() => 'b'));
    expect(sw.router.pending).toBe(0);
  });
});

describe('a stalled worker', () => {
  let stalled: SiteWorkers;
  beforeAll(async () => {
    stalled = await startSiteWorkers(SITES, { handoffTimeoutMs: 500 });
    await Promise.all([stalled.start('a'), stalled.start('b')]);
  });
  afterAll(async () => {
    await stalled?.close();
  });

  it('an offer not answered in time: the client sees the connection end, the sender counts the failure; later offers are served', async () => {
    const b = stalled.workers.get('b')![0]!;
    const a = stalled.workers.get('a')![0]!;
    b.kill('SIGSTOP');
    // Only a accepts now: the connection is handed over, offered to b, which does not answer.
    const started = performance.now();
    const r = await run('curl', ['-sk', '--http2', '--max-time', '20', '--resolve', `x.b.test:${stalled.port}:127.0.0.1`, '-o', '/dev/null', `https://x.b.test:${stalled.port}/`]);
    expect(r.code).not.toBe(0);
    expect(performance.now() - started).toBeLessThan(10_000);
    expect(stalled.router.counters.failed).toBe(1);
    await waitUntil('a to count the failed handoff', async () => (await stalled.stats(a)).tcp?.handoffsFailed === 1, { timeoutMs: 5000 });
    // b wakes and reads the stale offer: it finds the connection ended, and serves new ones.
    b.kill('SIGCONT');
    const r2 = await run('curl', ['-sk', '--http2', '--max-time', '20', '--resolve', `x.b.test:${stalled.port}:127.0.0.1`, '-o', '/dev/null', '-w', '%header{x-site}', `https://x.b.test:${stalled.port}/`]);
    expect(r2.stdout).toBe('b');
    expect(stalled.router.pending).toBe(0);
  });
});

describe('offers a worker cannot take, and the bound on held connections', () => {
  let only: SiteWorkers;
  beforeAll(async () => {
    // At most 2 connections held by the router; a holds the shared socket alone, so every
    // connection for b or c is handed over.
    only = await startSiteWorkers(SITES, { handoffTimeoutMs: 5000, maxPendingHandoffs: 2 });
    await only.start('a');
  });
  afterAll(async () => {
    await only?.close();
  });

  const curl = (host: string): Promise<string> =>
    run('curl', ['-sk', '--http1.1', '--max-time', '20', '--resolve', `${host}:${only.port}:127.0.0.1`, '-o', '/dev/null', '-w', '%header{x-site}', `https://${host}:${only.port}/`]).then((r) =>
      r.code === 0 ? r.stdout : `fail ${r.code}`,
    );

  it('a draining worker declines an offer: the connection goes to the next worker of the site', async () => {
    const b1 = await only.start('b', { acceptsShared: false });
    const b2 = await only.start('b', { acceptsShared: false });
    // b1 keeps one request open (its body never ends), so its drain lasts and it stays connected.
    const session = http2.connect(`https://127.0.0.1:${only.ownPort(b1)}`, { servername: 'x.b.test', rejectUnauthorized: false });
    session.on('error', () => {});
    const open = session.request({ ':method': 'POST', ':path': '/', ':authority': 'x.b.test' });
    open.on('error', () => {});
    open.write('x');
    await new Promise<void>((resolve, reject) => {
      open.once('response', () => resolve());
      open.once('close', () => reject(new Error('b1 closed the open request')));
    });
    b1.send({ type: 'drain', timeoutMs: 20_000 } satisfies MasterToWorker);
    const before = { ...only.router.counters };
    const adoptedByB2 = (await only.stats(b2)).tcp?.adopted ?? 0;
    // Round robin over b1, b2: two handoffs offer b1 at least once.
    expect([await curl('x.b.test'), await curl('y.b.test')]).toEqual(['b', 'b']);
    expect(only.router.counters.declined).toBeGreaterThanOrEqual(before.declined + 1);
    expect(only.router.counters.adopted).toBe(before.adopted + 2);
    expect(only.router.counters.failed).toBe(before.failed);
    expect((await only.stats(b2)).tcp?.adopted).toBe(adoptedByB2 + 2);
    expect(b1.connected).toBe(true);
    open.close();
    session.close();
    await Promise.all([stopAndWait(b1), stopAndWait(b2)]);
  });

  it('past max pending handoffs a connection is ended at once and counted; the ones held are served when their site starts', async () => {
    const failedBefore = only.router.counters.failed;
    // Site c has no worker: two connections wait in the router.
    const held = [curl('c.test'), curl('c.test')];
    await waitUntil('two connections held for site c', () => only.router.pending === 2, { timeoutMs: 10_000, intervalMs: 10 });
    const started = performance.now();
    expect(await curl('c.test')).toMatch(/^fail /);
    // Ended by the bound, not by the 5 s wait for a worker.
    expect(performance.now() - started).toBeLessThan(3000);
    expect(only.router.counters.failed).toBe(failedBefore + 1);
    expect(only.router.pending).toBe(2);
    const c = await only.start('c');
    expect(await Promise.all(held)).toEqual(['c', 'c']);
    expect(only.router.pending).toBe(0);
    await stopAndWait(c);
  });
});

function stopAndWait(proc: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    proc.once('exit', () => resolve());
    proc.kill('SIGKILL');
  });
}
