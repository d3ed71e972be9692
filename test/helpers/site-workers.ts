/**
 * Real worker processes of several sites on one shared TCP listening socket, with the master's
 * end of the TCP handoff (TcpHandoffRouter) running in the test process: what the master does for
 * TCP, without BPF or generations. Workers are the built binary's (`__worker`, dist/), each told
 * its site and every site's names in its init message, as the master tells them.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { loadConfig } from '../../src/proxy/config/index.js';
import { siteNamesSpec } from '../../src/proxy/config/site-names.js';
import type { MasterToWorker, WorkerToMaster } from '../../src/proxy/process/ipc.js';
import { TcpHandoffRouter } from '../../src/proxy/process/tcp-handoff.js';
import { boundPort, closeTcpSocket, openTcpListenSocket } from '../../src/proxy/net/tcp-listen.js';
import type { WorkerStats } from '../../src/proxy/worker-stats.js';
import { makeCert } from './certs.js';
import { makeTempDir, REPO } from './proxy.js';

const WORKER_SCRIPT = path.join(REPO, 'dist/src/cli.js');

export interface SiteWorkers {
  readonly port: number;
  readonly dir: string;
  readonly router: TcpHandoffRouter;
  /** Live workers by site. */
  readonly workers: ReadonlyMap<string, readonly ChildProcess[]>;
  /**
   * Starts one more worker of `site`; resolves once it is ready. `acceptsShared: false`: it listens
   * on a socket of its own (`ownPort`), so it serves only connections handed over to it and those
   * made to that port.
   */
  start(site: string, opts?: { acceptsShared?: boolean }): Promise<ChildProcess>;
  /** The port of the listening socket of its own a worker started with `acceptsShared: false`. */
  ownPort(proc: ChildProcess): number;
  stats(proc: ChildProcess): Promise<WorkerStats>;
  close(): Promise<void>;
}

/**
 * `sitesYaml`: the `sites:` section (indented by two spaces per level under it). Certificates:
 * a.test (default) and *.b.test, in the top-level list.
 */
export async function startSiteWorkers(sitesYaml: string, opts: { handoffTimeoutMs?: number; maxPendingHandoffs?: number } = {}): Promise<SiteWorkers> {
  const dir = makeTempDir('site-workers-');
  makeCert(dir, 'a', 'a.test');
  makeCert(dir, 'b', '*.b.test');
  const fd = openTcpListenSocket({ host: '127.0.0.1', port: 0, family: 4 });
  const port = boundPort(fd);
  const configFile = path.join(dir, 'proxy.yaml');
  writeFileSync(
    configFile,
    `listeners:
  - { address: "127.0.0.1:${port}", protocols: [h1, h2] }
tls:
  state_dir: state
  certificates:
    - { names: [a.test], cert: a.crt, key: a.key, default: true }
    - { names: ["*.b.test"], cert: b.crt, key: b.key }
http: { request_header_timeout: 2s }
logging: { level: warn }
sites:
${sitesYaml}
`,
  );
  // As the master loads it: creates the state (ticket key) the workers read.
  const config = loadConfig(configFile);
  const workers = new Map<string, ChildProcess[]>();
  const router = new TcpHandoffRouter({
    workersOf: (site) => workers.get(site) ?? [],
    log: pino({ level: 'silent' }),
    ...(opts.handoffTimeoutMs ? { timeoutMs: opts.handoffTimeoutMs } : {}),
    ...(opts.maxPendingHandoffs ? { maxPending: opts.maxPendingHandoffs } : {}),
  });
  let statsId = 0;

  const ownSockets: number[] = [];
  const ownPorts = new Map<ChildProcess, number>();
  const start = async (site: string, startOpts: { acceptsShared?: boolean } = {}): Promise<ChildProcess> => {
    let listenFd = fd;
    if (startOpts.acceptsShared === false) {
      listenFd = openTcpListenSocket({ host: '127.0.0.1', port: 0, family: 4 });
      ownSockets.push(listenFd);
    }
    const proc = fork(WORKER_SCRIPT, ['__worker'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc', listenFd] });
    router.attach(proc);
    if (listenFd !== fd) ownPorts.set(proc, boundPort(listenFd));
    const init: MasterToWorker = {
      type: 'init',
      configFile,
      generation: 1,
      site,
      siteNames: siteNamesSpec(config),
      // No UDP listener: no QUIC connection to steer by CID.
      steering: {},
      workerIndex: workers.get(site)?.length ?? 0,
      sockets: [],
      tcpSockets: [{ index: 0, listenerIndex: 0, role: 'tls', host: '127.0.0.1', port }],
    };
    proc.send(init);
    await new Promise<void>((resolve, reject) => {
      proc.on('message', (m: WorkerToMaster) => {
        if (m.type === 'ready') resolve();
        else if (m.type === 'failed') reject(new Error(`worker of site ${site} failed: ${m.error}`));
      });
      proc.once('exit', (code, signal) => reject(new Error(`worker of site ${site} exited (${signal ?? code})`)));
    });
    const list = workers.get(site) ?? [];
    workers.set(site, [...list, proc]);
    proc.once('exit', () => workers.set(site, (workers.get(site) ?? []).filter((p) => p !== proc)));
    return proc;
  };

  const stats = (proc: ChildProcess): Promise<WorkerStats> =>
    new Promise((resolve, reject) => {
      const id = ++statsId;
      const timer = setTimeout(() => reject(new Error(`no stats from worker ${proc.pid}`)), 5000);
      const onMessage = (m: WorkerToMaster): void => {
        if (m.type !== 'stats' || m.id !== id) return;
        clearTimeout(timer);
        proc.off('message', onMessage);
        resolve(m);
      };
      proc.on('message', onMessage);
      proc.send({ type: 'stats', id } satisfies MasterToWorker);
    });

  return {
    port,
    dir,
    router,
    workers,
    start,
    ownPort: (proc) => {
      const own = ownPorts.get(proc);
      if (own === undefined) throw new Error(`worker ${proc.pid} listens on the shared socket only`);
      return own;
    },
    stats,
    close: async () => {
      const all = [...workers.values()].flat();
      await Promise.all(
        all.map(
          (p) =>
            new Promise<void>((resolve) => {
              if (p.exitCode !== null || p.signalCode !== null) return resolve();
              p.once('exit', () => resolve());
              p.kill('SIGKILL');
            }),
        ),
      );
      router.close();
      for (const s of [fd, ...ownSockets]) closeTcpSocket(s);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
