/**
 * Master lifecycle: a reload with an invalid config changes nothing and reports where the error
 * is; a worker killed with SIGKILL is replaced on the same sockets; one master per control socket;
 * SIGTERM drains and exits, cutting at drain_timeout what is still open.
 */
import { execFile } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WORKER_V8_FLAGS } from '../../src/proxy/process/worker-memory.js';
import { gtlsclient } from '../helpers/gtlsclient.js';
import { H3Client } from '../helpers/h3-client.js';
import { enterPrivateNetns, removePinDir, uniquePinDir } from '../helpers/netns.js';
import { PROXY_BIN, freeUdpPort, makeTempDir, startProxy, workerPids, type RunningProxy } from '../helpers/proxy.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

enterPrivateNetns();

const execFileAsync = promisify(execFile);

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    // Bounded: a master that starts by mistake would otherwise run until the test times out.
    const { stdout, stderr } = await execFileAsync(process.execPath, [PROXY_BIN, ...args], { encoding: 'utf8', timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** proxy.yaml in `dir`: one worker answering 200, with `processKeys` as its `process:` section. */
function writeOneWorkerConfig(dir: string, port: number, processKeys: string): string {
  const file = path.join(dir, 'proxy.yaml');
  writeFileSync(
    file,
    `
listeners: ["127.0.0.1:${port}"]
workers: 1
tls: { state_dir: state }
routes: [{ path: /, respond: { status: 200 } }]
process: { ${processKeys} }
`,
  );
  return file;
}

describe('master lifecycle', () => {
  let proxy: RunningProxy;
  let port: number;
  let upstream: TestUpstream;
  // Our own directory, so the files the master removes on exit can be checked after it stopped.
  const dir = makeTempDir();
  const config = (version: string): string => `
listeners: ["127.0.0.1:${port}"]
workers: 2
drain_timeout: 5s
tls: { state_dir: state }
logging: { level: info, access_log: true }
upstreams:
  app: { targets: ["${upstream.origin}"] }
routes:
  - path: /up/
    upstream: app
  - path: /
    respond: { status: 200, headers: { x-config-version: "${version}" }, body: "${version}\\n" }
`;

  beforeAll(async () => {
    port = await freeUdpPort();
    upstream = await startUpstream('a');
    proxy = await startProxy(config('1'), { dir });
  });

  afterAll(async () => {
    await proxy?.stop();
    await upstream?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses an invalid config on reload, naming file:line:col, and keeps serving', async () => {
    const before = await cli('list', '--config', proxy.configFile);
    const pidsBefore = workerPids(proxy.proc.pid!);
    const good = readFileSync(proxy.configFile, 'utf8');
    writeFileSync(proxy.configFile, good.replace('workers: 2', 'workers: two'));
    try {
      const r = await cli('reload', '--config', proxy.configFile);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`${path.basename(proxy.configFile)}:3:\\d+: workers: expected`));
      // SIGHUP with the same broken file: logged with its position, nothing changes.
      process.kill(proxy.proc.pid!, 'SIGHUP');
      const logged = await proxy.waitForLog((l) => l.msg === 'reload refused: invalid config; still serving the current generation');
      expect(String(logged.error)).toMatch(/:3:\d+: workers/);
      expect(workerPids(proxy.proc.pid!)).toEqual(pidsBefore);
    } finally {
      writeFileSync(proxy.configFile, good);
    }
    const after = await cli('list', '--config', proxy.configFile);
    expect(after.stdout.match(/^generation \d+/m)?.[0]).toBe(before.stdout.match(/^generation \d+/m)?.[0]);
    const res = await gtlsclient('127.0.0.1', port, [`https://localhost:${port}/`]);
    expect(res.statuses).toEqual([200]);
    expect(res.output).toMatch(/\[x-config-version: 1\]/);
  });

  it('replaces a worker killed with SIGKILL, on the same sockets', async () => {
    const pids = workerPids(proxy.proc.pid!);
    expect(pids).toHaveLength(2);
    process.kill(pids[0]!, 'SIGKILL');
    await proxy.waitForLog((l) => l.msg === 'worker died; restarting it on the same sockets');
    await proxy.waitForLog((l) => l.msg === 'worker ready' && l.pid !== pids[0] && !pids.includes(Number(l.pid)));
    const now = workerPids(proxy.proc.pid!);
    expect(now).toHaveLength(2);
    expect(now).not.toContain(pids[0]);
    expect(now).toContain(pids[1]);
    const status = await cli('list', '--config', proxy.configFile);
    expect(status.stdout).toMatch(/worker restarts 1/);
    // Both sockets serve again: several fresh connections all succeed.
    for (let i = 0; i < 6; i++) expect((await gtlsclient('127.0.0.1', port, [`https://localhost:${port}/`])).statuses).toEqual([200]);
    // The workers' QUIC counters add up to those handshakes.
    const after = await cli('list', '--config', proxy.configFile);
    const accepted = [...after.stdout.matchAll(/accepted (\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
    expect(accepted).toBeGreaterThanOrEqual(6);
  });

  it('runs every worker, a restarted one too, with the young-generation cap', () => {
    // After the SIGKILL above, one of these was started by the restart path.
    for (const pid of workerPids(proxy.proc.pid!)) {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      for (const flag of WORKER_V8_FLAGS) expect(argv).toContain(flag);
    }
  });

  it('refuses to start a second master on the same control socket', async () => {
    const r = await cli('--config', proxy.configFile);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`a master is already running on ${path.join(proxy.dir, 'state/control.sock')}`);
    expect(readFileSync(path.join(proxy.dir, 'state/udpgrm-proxy.pid'), 'utf8').trim()).toBe(String(proxy.proc.pid));
  });

  it('stops gracefully on SIGTERM: workers gone, pid file and control socket removed', async () => {
    const pidFile = path.join(proxy.dir, 'state/udpgrm-proxy.pid');
    expect(readFileSync(pidFile, 'utf8').trim()).toBe(String(proxy.proc.pid));
    const workers = workerPids(proxy.proc.pid!);
    // A request the upstream answers long after drain_timeout (5 s): cut then, and logged as our cut.
    const client = await H3Client.connect({ host: '127.0.0.1', port, sni: 'localhost' });
    const seen = new Promise<void>((resolve) => upstream.events.on('request', (url: string) => url === '/up/slow?ms=60000' && resolve()));
    const held = client.get('localhost', '/up/slow?ms=60000').catch((err: unknown) => err);
    await seen;
    const code = await proxy.stop('SIGTERM');
    expect(code).toBe(0);
    expect(await held).toBeInstanceOf(Error);
    expect(proxy.logs.filter((l) => l.log === 'access' && l.path === '/up/slow?ms=60000').map((l) => [l.protocol, l.status, l.reason])).toEqual([['h3', 499, 'drain timeout']]);
    expect(proxy.logs.some((l) => l.msg === 'drain timeout: closing the connections still open')).toBe(true);
    await client.close();
    for (const pid of workers) expect(existsSync(`/proc/${pid}`)).toBe(false);
    expect(existsSync(pidFile)).toBe(false);
    expect(existsSync(path.join(proxy.dir, 'state/control.sock'))).toBe(false);
  });
});

describe('fast stop', () => {
  it('SIGQUIT stops the master and its workers at once', async () => {
    const port = await freeUdpPort();
    const proxy = await startProxy(`
listeners: ["127.0.0.1:${port}"]
workers: 2
drain_timeout: 30s
tls: { state_dir: state }
routes: [{ path: /, respond: { status: 200 } }]
`);
    const workers = workerPids(proxy.proc.pid!);
    expect(workers).toHaveLength(2);
    const t0 = Date.now();
    expect(await proxy.stop('SIGQUIT')).toBe(0);
    // Far below drain_timeout: nothing waited for a drain.
    expect(Date.now() - t0).toBeLessThan(10_000);
    for (const pid of workers) expect(existsSync(`/proc/${pid}`)).toBe(false);
  });
});

describe('single-master check', () => {
  it('does not start when the control socket answers but not as a master, and names the socket', async () => {
    const dir = makeTempDir();
    const pinDir = uniquePinDir('impostor');
    const socket = path.join(dir, 'control.sock');
    // Something listens there but does not speak the protocol: not "no master running".
    const impostor = net.createServer((c) => c.end('not a master\n'));
    await new Promise<void>((resolve) => impostor.listen(socket, resolve));
    try {
      const port = await freeUdpPort();
      const configFile = writeOneWorkerConfig(dir, port, `control_socket: control.sock, pin_dir: "${pinDir}"`);
      const r = await cli('--config', configFile);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`bad reply from the master on ${socket}: not JSON`);
      expect(existsSync(path.join(dir, 'state/udpgrm-proxy.pid'))).toBe(false);
    } finally {
      impostor.close();
      removePinDir(pinDir);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('pid file and control socket paths (issue 13, defect 6)', () => {
  it('replaces a symlink at the pid file path instead of writing through it; the control socket is 0600', async () => {
    const dir = makeTempDir();
    const port = await freeUdpPort();
    mkdirSync(path.join(dir, 'state'), { mode: 0o700 });
    const victim = path.join(dir, 'victim');
    writeFileSync(victim, 'precious\n');
    const pidFile = path.join(dir, 'state/udpgrm-proxy.pid');
    symlinkSync(victim, pidFile);
    const proxy = await startProxy(
      `
listeners: ["127.0.0.1:${port}"]
workers: 1
tls: { state_dir: state }
routes: [{ path: /, respond: { status: 200 } }]
`,
      { dir },
    );
    try {
      expect(readFileSync(victim, 'utf8')).toBe('precious\n');
      expect(lstatSync(pidFile).isFile()).toBe(true);
      expect(readFileSync(pidFile, 'utf8')).toBe(`${proxy.proc.pid}\n`);
      const socket = lstatSync(path.join(dir, 'state/control.sock'));
      expect(socket.isSocket()).toBe(true);
      expect(socket.mode & 0o777).toBe(0o600);
    } finally {
      await proxy.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('does not start when a regular file is at the control socket path, names it, and leaves it', async () => {
    const dir = makeTempDir();
    const pinDir = uniquePinDir('not-a-socket');
    const port = await freeUdpPort();
    mkdirSync(path.join(dir, 'state'), { mode: 0o700 });
    const socket = path.join(dir, 'state/control.sock');
    writeFileSync(socket, 'not a socket\n');
    const configFile = writeOneWorkerConfig(dir, port, `pin_dir: "${pinDir}"`);
    try {
      const r = await cli('--config', configFile);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`control socket path ${socket} is a regular file, not a socket: not removing it`);
      expect(readFileSync(socket, 'utf8')).toBe('not a socket\n');
      expect(existsSync(path.join(dir, 'state/udpgrm-proxy.pid'))).toBe(false);
    } finally {
      removePinDir(pinDir);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
