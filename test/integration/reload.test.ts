/**
 * The product's promise under load: 20 reloads (each changes a response header, half of them the
 * upstream pool) while real clients keep working:
 *   - gtlsclient connections sending requests back to back (-n), reconnecting after GOAWAY,
 *   - a loop opening a new gtlsclient connection per request,
 *   - headless Chromium fetching every 50 ms from one page,
 *   - a 50 MiB download in flight across a reload.
 * Expect 0 failed requests, the download intact, every client on the newest config within
 * drain_timeout, old generations gone, and no packet of an old connection steered elsewhere.
 * Then a binary upgrade (a new master from the same binary) under the same load fails nothing.
 */
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchH3Chromium, type H3Browser } from '../helpers/chromium.js';
import { waitForExit, waitForPidGone, waitUntil } from '../helpers/deadline.js';
import { gtlsclient } from '../helpers/gtlsclient.js';
import { enterPrivateNetns } from '../helpers/netns.js';
import { PROXY_BIN, freeUdpPort, makeTempDir, startProxy, type RunningProxy } from '../helpers/proxy.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

enterPrivateNetns();

const RELOADS = 20;
const execFileAsync = promisify(execFile);

async function run(cmd: string, args: string[]): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(cmd, args, { encoding: 'utf8' });
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? 1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}
const DOWNLOAD = 50 * 1024 * 1024;
const H3_REQUEST_REJECTED = 0x10b;
const H3_NO_ERROR = 0x100;

function configYaml(port: number, version: number, upstream: TestUpstream, pinDir: string): string {
  return `
listeners: ["127.0.0.1:${port}"]
workers: 2
drain_timeout: 60s
tls: { state_dir: state }
routes:
  - path: /api/
    upstream: app
    headers: { x-config-version: "${version}" }
  - path: /
    respond:
      status: 200
      headers: { content-type: text/html, x-config-version: "${version}" }
      body: "<!doctype html><title>reload</title><p>v${version}</p>"
upstreams:
  app: { targets: ["${upstream.origin}"] }
logging: { level: info, access_log: false }
process: { pin_dir: "${pinDir}", max_draining_generations: 8 }
`;
}

/** Responses and failures seen by one client loop. */
interface Tally {
  ok: number;
  failed: string[];
  /** Config versions seen, in order. */
  versions: number[];
}

/** Streams that gtlsclient saw closed with an error other than "not processed, retry" (§4.1.1). */
function streamErrors(output: string): string[] {
  return [...output.matchAll(/HTTP stream (\d+) closed with error code (\d+)/g)]
    .filter((m) => ![H3_NO_ERROR, H3_REQUEST_REJECTED].includes(Number(m[2])))
    .map((m) => m[0]);
}

function childrenOf(pid: number): number[] {
  const out = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
  return out ? out.split(/\s+/).map(Number) : [];
}

function versionsIn(output: string): number[] {
  return [...output.matchAll(/\[x-config-version: (\d+)\]$/gm)].map((m) => Number(m[1]));
}

describe('20 reloads and an upgrade under load with real clients', () => {
  let upA: TestUpstream;
  let upB: TestUpstream;
  let proxy: RunningProxy;
  let port: number;
  let browser: H3Browser;
  const dir = makeTempDir();
  const pinDir = `/sys/fs/bpf/reload-test-${process.pid}`;

  beforeAll(async () => {
    upA = await startUpstream('a');
    upB = await startUpstream('b');
    port = await freeUdpPort();
    proxy = await startProxy(configYaml(port, 0, upA, pinDir), { dir });
    browser = await launchH3Chromium({ host: '127.0.0.1', port }, path.join(dir, 'state/self-signed.crt'));
  });

  let newMasterPid = 0;

  afterAll(async () => {
    try {
      await browser?.close();
      await proxy?.stop();
      // The upgraded master is not our child: stop it by pid and wait until it is gone.
      if (newMasterPid) {
        process.kill(newMasterPid, 'SIGTERM');
        await waitForPidGone(newMasterPid, 'the upgraded master after SIGTERM', 30_000);
      }
    } finally {
      await upA?.close();
      await upB?.close();
      spawnSync(process.execPath, [PROXY_BIN, 'grm', 'cleanup', '--pin-dir', pinDir]);
    }
  });

  it('fails no request, keeps the download intact and moves every client to the new config', async () => {
    const masterPid = proxy.proc.pid!;
    const fdsBefore = readdirSync(`/proc/${masterPid}/fd`).length;
    let running = true;
    let version = 0;

    // 1. Back-to-back requests on long-lived connections; gtlsclient ends when GOAWAY stops it.
    const longLived: Tally = { ok: 0, failed: [], versions: [] };
    const longLivedLoop = (async () => {
      while (running) {
        const r = await gtlsclient('127.0.0.1', port, [`https://localhost:${port}/api/hello`], { requests: 400, timeoutMs: 60_000 });
        longLived.ok += r.statuses.filter((s) => s === 200).length;
        longLived.failed.push(...r.statuses.filter((s) => s !== 200).map(String), ...streamErrors(r.output));
        longLived.versions.push(...versionsIn(r.output));
      }
    })();

    // 2. A new connection per request.
    const perRequest: Tally = { ok: 0, failed: [], versions: [] };
    const perRequestLoop = (async () => {
      while (running) {
        const r = await gtlsclient('127.0.0.1', port, [`https://localhost:${port}/`]);
        if (r.statuses.length === 1 && r.statuses[0] === 200) perRequest.ok++;
        else perRequest.failed.push(`statuses ${JSON.stringify(r.statuses)}: ${r.output.split('\n').slice(-5).join(' | ')}`);
        perRequest.versions.push(...versionsIn(r.output));
      }
    })();

    // 3. Chromium fetching every 50 ms from one page.
    const { page, protocols } = await browser.newPage();
    await page.goto(`https://127.0.0.1:${port}/`);
    await page.evaluate(() => {
      const w = window as unknown as { tally: { ok: number; failed: string[]; versions: number[] }; stopFetching: boolean };
      w.tally = { ok: 0, failed: [], versions: [] };
      w.stopFetching = false;
      const tick = async (): Promise<void> => {
        while (!w.stopFetching) {
          try {
            const r = await fetch('/api/echo', { cache: 'no-store' });
            await r.text();
            if (r.status === 200) w.tally.ok++;
            else w.tally.failed.push(`status ${r.status}`);
            w.tally.versions.push(Number(r.headers.get('x-config-version')));
          } catch (err) {
            w.tally.failed.push(String(err));
          }
          await new Promise((res) => setTimeout(res, 50));
        }
      };
      void tick();
    });

    // 4. A 50 MiB download that spans a reload.
    const download = gtlsclient('127.0.0.1', port, [`https://localhost:${port}/api/bytes?n=${DOWNLOAD}`], { timeoutMs: 120_000 });

    for (let i = 1; i <= RELOADS; i++) {
      version = i;
      // Half of the reloads also move the pool to the other upstream.
      writeFileSync(proxy.configFile, configYaml(port, version, i % 2 === 0 ? upB : upA, pinDir));
      // Async: the upstreams and client loops live on this test process's event loop.
      const out = await run(process.execPath, [PROXY_BIN, 'reload', '--config', proxy.configFile]);
      expect(out.code, out.output).toBe(0);
    }

    // Every client must be on the last config within drain_timeout: wait for each to see it.
    const chromiumLast = async (): Promise<number | undefined> =>
      (await page.evaluate(() => (window as unknown as { tally: { versions: number[] } }).tally.versions.slice(-1)))[0];
    const onLatest = async (): Promise<boolean> =>
      longLived.versions.at(-1) === version && perRequest.versions.at(-1) === version && (await chromiumLast()) === version;
    await waitUntil(`every client to see config version ${version}`, onLatest, {
      timeoutMs: 20_000,
      intervalMs: 100,
      detail: async () => `last seen: long-lived ${longLived.versions.at(-1)}, per-request ${perRequest.versions.at(-1)}, chromium ${await chromiumLast()}`,
    });
    expect(await onLatest()).toBe(true);
    const downloaded = await download;

    // Old generations drain and go: one generation, two workers, no leaked fds in the master.
    const status = async (): Promise<string> => (await run(process.execPath, [PROXY_BIN, 'list', '--config', proxy.configFile])).output;
    const oneGeneration = async (): Promise<string> => {
      let listing = '';
      await waitUntil(
        'old generations to drain (one generation listed)',
        async () => {
          listing = await status();
          return listing.split('\n').filter((l) => l.startsWith('generation ')).length === 1;
        },
        { timeoutMs: 25_000, intervalMs: 200, detail: () => `last listing:\n${listing}` },
      );
      return listing;
    };
    let listing = await oneGeneration();
    expect(listing.split('\n').filter((l) => l.startsWith('generation '))).toHaveLength(1);
    expect(childrenOf(masterPid)).toHaveLength(2);
    expect(readdirSync(`/proc/${masterPid}/fd`).length).toBe(fdsBefore);

    // Binary upgrade to the same binary under the same load: a new master takes over.
    const upgraded = await run(process.execPath, [PROXY_BIN, 'upgrade', '--config', proxy.configFile]);
    expect(upgraded.code, upgraded.output).toBe(0);
    // The old master drains its clients first (drain_timeout 60 s, plus the workers' grace).
    await waitForExit(proxy.proc, 'the old master after the upgrade', 90_000);
    newMasterPid = Number(readFileSync(path.join(dir, 'state/udpgrm-proxy.pid'), 'utf8'));
    expect(newMasterPid).not.toBe(masterPid);
    // Keep the clients going on the new master for a while.
    const servedBefore = longLived.ok + perRequest.ok;
    await waitUntil('500 more requests served by the new master', () => longLived.ok + perRequest.ok >= servedBefore + 500, {
      timeoutMs: 60_000,
      intervalMs: 100,
      detail: () => `served ${longLived.ok + perRequest.ok - servedBefore}; failed so far: ${JSON.stringify([...longLived.failed, ...perRequest.failed].slice(-5))}`,
    });

    running = false;
    const chromium = await page.evaluate(() => {
      const w = window as unknown as { tally: { ok: number; failed: string[]; versions: number[] }; stopFetching: boolean };
      w.stopFetching = true;
      return w.tally;
    });
    await Promise.all([longLivedLoop, perRequestLoop]);

    console.log(
      `reload test: ${RELOADS} reloads; long-lived ${longLived.ok} ok / ${longLived.failed.length} failed; ` +
        `per-request ${perRequest.ok} ok / ${perRequest.failed.length} failed; chromium ${chromium.ok} ok / ${chromium.failed.length} failed`,
    );
    expect(longLived.failed).toEqual([]);
    expect(perRequest.failed).toEqual([]);
    expect(chromium.failed).toEqual([]);
    expect(longLived.ok).toBeGreaterThan(100);
    expect(perRequest.ok).toBeGreaterThan(10);
    expect(chromium.ok).toBeGreaterThan(20);
    expect(protocols.get(`https://127.0.0.1:${port}/`)).toBe('h3');

    // The download crossed reloads and arrived whole.
    expect(downloaded.statuses, downloaded.output.slice(-1500)).toEqual([200]);
    const body = [...downloaded.bodies.values()][0]!;
    expect(body.length, downloaded.output.slice(-800)).toBe(DOWNLOAD);
    const expected = createHash('sha256');
    const pattern = Buffer.alloc(64 * 1024, 'abcdefghijklmnopqrstuvwxyz');
    for (let sent = 0; sent < DOWNLOAD; sent += pattern.length) expected.update(pattern.subarray(0, Math.min(pattern.length, DOWNLOAD - sent)));
    expect(createHash('sha256').update(body).digest('hex')).toBe(expected.digest('hex'));

    // The new master runs one generation of two workers; the old master's generations are gone.
    listing = await oneGeneration();
    expect(listing.split('\n').filter((l) => l.startsWith('generation '))).toHaveLength(1);
    expect(childrenOf(newMasterPid)).toHaveLength(2);
    // Kernel counters: every packet carrying one of our CIDs reached its own socket.
    expect(listing).not.toMatch(/cid_gone [1-9]/);
    expect(listing).not.toMatch(/cid_fail [1-9]/);
    expect(listing).toMatch(/cid_ok [1-9]/);
    // A single BPF generation slot remains.
    expect(listing.match(/<=/g)?.length ?? 0).toBe(1);
  }, 240_000);
});
