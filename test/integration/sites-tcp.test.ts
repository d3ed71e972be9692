/**
 * Sites over TCP, end to end: the real master with two sites on one address (a.test, the default,
 * and *.b.test), two workers each, every worker accepting on the one shared TCP listening socket.
 * Each site answers with its own `x-site` header; every curl connection (HTTP/1.1 and HTTP/2, by
 * SNI, without SNI) must reach its site, those a worker of the other site accepted by way of the
 * ClientHello handoff through the master (counted in `list`).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCert } from '../helpers/certs.js';
import { enterPrivateNetns } from '../helpers/netns.js';
import { PROXY_BIN, freeUdpPort, makeTempDir, startProxy, type RunningProxy } from '../helpers/proxy.js';
import { run } from '../helpers/tcp-edge.js';

enterPrivateNetns();

const execFileAsync = promisify(execFile);

let proxy: RunningProxy;
let port: number;

beforeAll(async () => {
  port = await freeUdpPort();
  const dir = makeTempDir();
  makeCert(dir, 'a', 'a.test');
  makeCert(dir, 'b', '*.b.test');
  proxy = await startProxy(
    `
listeners: ["127.0.0.1:${port}"]
workers: 2
tls: { state_dir: state }
sites:
  a:
    default: true
    names: [a.test]
    certificates: [{ names: [a.test], cert: a.crt, key: a.key }]
    routes: [{ respond: { status: 200, headers: { x-site: a }, body: "a" } }]
  b:
    names: ["*.b.test"]
    certificates: [{ names: ["*.b.test"], cert: b.crt, key: b.key }]
    routes: [{ respond: { status: 200, headers: { x-site: b }, body: "b" } }]
`,
    { dir },
  );
});
afterAll(async () => {
  await proxy?.stop();
});

/** One request on a new connection: `x-site` of the answer, or `fail <curl exit code>`. */
async function siteOf(host: string, http: '--http1.1' | '--http2'): Promise<string> {
  // No name in the URL: curl sends no SNI for an IP address.
  const target = host === '' ? [`https://127.0.0.1:${port}/`] : ['--resolve', `${host}:${port}:127.0.0.1`, `https://${host}:${port}/`];
  const r = await run('curl', ['-sk', http, '--max-time', '20', '-o', '/dev/null', '-w', '%header{x-site}', ...target]);
  return r.code === 0 ? r.stdout : `fail ${r.code}`;
}

interface ListedWorker {
  readonly pid?: number;
  readonly tcp?: { readonly handedOff: number; readonly adopted: number; readonly handoffsFailed: number };
}

interface ListedGeneration {
  readonly site?: string;
  readonly state: string;
  readonly workers: ListedWorker[];
}

async function generations(): Promise<ListedGeneration[]> {
  const { stdout } = await execFileAsync(process.execPath, [PROXY_BIN, 'list', '--config', proxy.configFile, '--json'], { encoding: 'utf8', timeout: 30_000 });
  return (JSON.parse(stdout) as { generations: ListedGeneration[] }).generations;
}

async function handoffTotals(): Promise<{ handedOff: number; adopted: number; handoffsFailed: number }> {
  const workers = (await generations()).flatMap((g) => g.workers);
  const sum = (k: 'handedOff' | 'adopted' | 'handoffsFailed'): number => workers.reduce((n, w) => n + (w.tcp?.[k] ?? 0), 0);
  return { handedOff: sum('handedOff'), adopted: sum('adopted'), handoffsFailed: sum('handoffsFailed') };
}

describe('sites over TCP', () => {
  it('every connection lands on its SNI site (h1, h2, no SNI → default); the other site’s were handed over', async () => {
    const cases: Array<[string, string]> = [
      ['a.test', 'a'],
      ['x.b.test', 'b'],
      ['y.b.test', 'b'],
      ['', 'a'],
      ['other.test', 'a'],
    ];
    const seen: string[] = [];
    const want: string[] = [];
    for (let round = 0; round < 6; round++) {
      for (const http of ['--http1.1', '--http2'] as const) {
        const results = await Promise.all(cases.map(([host]) => siteOf(host, http)));
        seen.push(...results.map((s, i) => `${cases[i]![0] || '(no sni)'} ${http} ${s}`));
        want.push(...cases.map(([host, site]) => `${host || '(no sni)'} ${http} ${site}`));
      }
    }
    expect(seen).toEqual(want);
    const totals = await handoffTotals();
    expect(totals.handedOff).toBeGreaterThan(0);
    expect(totals.adopted).toBe(totals.handedOff);
    expect(totals.handoffsFailed).toBe(0);
  });

  it("site b's workers killed: its TCP connections wait in the master for the restarted workers, site a's are served throughout", async () => {
    const workingPids = async (site: string): Promise<number[]> =>
      (await generations()).filter((g) => g.site === site && g.state === 'working').flatMap((g) => g.workers.map((w) => w.pid!));
    const bPids = await workingPids('b');
    expect(bPids).toHaveLength(2);
    for (const pid of bPids) process.kill(pid, 'SIGKILL');
    // At once: a's workers accept both, hand b's over, and the master holds them until b is back.
    const results = await Promise.all([siteOf('x.b.test', '--http1.1'), siteOf('a.test', '--http2'), siteOf('y.b.test', '--http2'), siteOf('a.test', '--http1.1')]);
    expect(results).toEqual(['b', 'a', 'b', 'a']);
    expect((await workingPids('b')).filter((p) => bPids.includes(p))).toEqual([]);
    expect((await handoffTotals()).handoffsFailed).toBe(0);
  });
});
