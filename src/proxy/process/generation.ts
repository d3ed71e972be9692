/**
 * One generation of workers: the processes started from one config, their sockets (one per
 * listener and worker index, registered in the generation's BPF slot of each reuseport group) and
 * where the generation is in its life: starting → working → draining → gone.
 */
import { fork, type ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';
import { closeFd, type Group } from '../../grm/index.js';
import type { ProxyConfig } from '../config/types.js';
import { type MasterToWorker, type SitesView, type WorkerToMaster } from './ipc.js';
import type { CidIssuerParams } from '../../grm/index.js';
import type { WorkerStats } from '../worker-stats.js';
import type { TcpListenerSocket } from './tcp-listeners.js';
import type { GenerationHooks } from './master-hooks.js';
import { WORKER_V8_FLAGS } from './worker-memory.js';

export type GenerationState = 'starting' | 'working' | 'draining' | 'gone';

export interface WorkerProcess {
  readonly index: number;
  proc: ChildProcess;
  /** One UDP fd per h3 listener (the master keeps them, so a restarted worker gets the same sockets). */
  readonly fds: readonly number[];
  restarts: number;
  exited: Promise<void>;
}

export interface GenerationOptions {
  readonly id: number;
  /** The whole config file as loaded; the workers run `siteConfig(config, site)`. */
  readonly config: ProxyConfig;
  /** The site whose workers this generation runs ... */
  readonly site: string;
  /** ... in this kernel app (its slot in every group belongs to the app). */
  readonly app: number;
  /** Every site's names and steering, for the workers' init (later changes arrive as `site-names`). */
  readonly sites: () => SitesView;
  /** How many workers (the site's `workers`). */
  readonly workers: number;
  /** One reuseport group per listener serving h3 ... */
  readonly groups: readonly Group[];
  /** ... and which listener each serves (config.listeners index). */
  readonly udpListenerIndexes: readonly number[];
  /** The master's TCP listening sockets: every worker accepts on all of them. */
  readonly tcp: readonly TcpListenerSocket[];
  /** Command that runs a worker: [script, ...args] for child_process.fork. */
  readonly workerCommand: readonly string[];
  readonly log: Logger;
  /** A worker of this generation died unexpectedly (it is restarted while the generation works). */
  readonly onWorkerExit: (gen: Generation, w: WorkerProcess, code: number | null, signal: string | null) => void;
  readonly hooks?: GenerationHooks;
}

let statsRequestId = 0;

export class Generation {
  state: GenerationState = 'starting';
  readonly startedAt = Date.now();
  drainStartedAt: number | undefined;
  /** The generation number each reuseport group gave this generation (groups number independently). */
  readonly groupGens: number[] = [];
  readonly workers: WorkerProcess[] = [];
  /** Resolves once the generation released its sockets and slots. */
  readonly gone: Promise<void>;
  private markGone!: () => void;

  constructor(private readonly opts: GenerationOptions) {
    this.gone = new Promise((resolve) => (this.markGone = resolve));
  }

  get id(): number {
    return this.opts.id;
  }

  get config(): ProxyConfig {
    return this.opts.config;
  }

  get site(): string {
    return this.opts.site;
  }

  get app(): number {
    return this.opts.app;
  }

  /** Tells the live workers the sites as they are now (names changed, or a site's working generation). */
  sendSites(view: SitesView): void {
    for (const w of this.workers) if (w.proc) send(w.proc, { type: 'site-names', ...view });
  }

  /** Per reuseport group, the CID issuers of this generation's workers (what routes to each of them). */
  cidIssuers(): CidIssuerParams[][] {
    return this.opts.groups.map((g, i) => this.workers.map((w) => g.cidIssuerParams(this.groupGens[i]!, w.index)));
  }

  /**
   * Allocates the BPF slots, creates and registers the sockets, starts the workers and waits until
   * every one is serving. Throws (after cleaning up) when any step fails or times out.
   */
  async start(): Promise<void> {
    const { config, groups } = this.opts;
    try {
      for (const g of groups) this.groupGens.push(g.addGeneration(this.opts.app));
      for (let index = 0; index < this.opts.workers; index++) {
        // Recorded before registering, so a failure part-way still closes what was created.
        const fds: number[] = [];
        this.workers.push({ index, fds, proc: undefined as unknown as ChildProcess, restarts: 0, exited: Promise.resolve() });
        groups.forEach((g, i) => {
          const fd = g.createSocket();
          fds.push(fd);
          g.register(this.groupGens[i]!, index, fd);
        });
      }
      await withTimeout(
        Promise.all(this.workers.map((w) => this.spawn(w))),
        config.process.readyTimeoutMs,
        `workers of generation ${this.id} not ready within ${config.process.readyTimeoutMs} ms`,
      );
    } catch (err) {
      await this.kill();
      this.release();
      throw err;
    }
  }

  /** Starts (or restarts) one worker on its sockets; resolves when it reports ready. */
  spawn(w: WorkerProcess): Promise<void> {
    const { config, groups, udpListenerIndexes, tcp, workerCommand, log } = this.opts;
    const [script, ...args] = workerCommand;
    const proc = fork(script!, args, { execArgv: [...WORKER_V8_FLAGS, ...process.execArgv], stdio: ['ignore', 'inherit', 'inherit', 'ipc', ...w.fds, ...tcp.map((t) => t.fd)] });
    w.proc = proc;
    this.opts.hooks?.workerSpawned?.(this.id, proc);
    // A failed fork or a send on a channel that just closed: the 'exit' handling covers it.
    proc.on('error', (err) => log.warn({ gen: this.id, worker: w.index, err: err.message }, 'worker process error'));
    w.exited = new Promise((resolve) => proc.once('exit', () => resolve()));
    proc.once('exit', (code, signal) => this.opts.onWorkerExit(this, w, code, signal));
    const init: MasterToWorker = {
      type: 'init',
      configFile: config.file,
      generation: this.id,
      site: this.opts.site,
      siteNames: this.opts.sites().spec,
      steering: this.opts.sites().steering,
      workerIndex: w.index,
      sockets: groups.map((g, i) => {
        const l = config.listeners[udpListenerIndexes[i]!]!;
        return { index: i, listenerIndex: udpListenerIndexes[i]!, host: l.host, port: l.port, family: l.family, cid: g.cidIssuerParams(this.groupGens[i]!, w.index) };
      }),
      tcpSockets: tcp.map((t, j) => ({ index: groups.length + j, listenerIndex: t.listenerIndex, role: t.role, host: t.address.host, port: t.address.port })),
    };
    proc.send(init);
    return new Promise((resolve, reject) => {
      const onMessage = (m: WorkerToMaster): void => {
        if (m.type === 'ready') {
          proc.off('message', onMessage);
          log.debug({ gen: this.id, worker: w.index, pid: proc.pid }, 'worker ready');
          resolve();
        } else if (m.type === 'failed') {
          proc.off('message', onMessage);
          reject(new Error(`worker ${w.index} of generation ${this.id} failed to start: ${m.error}`));
        }
      };
      proc.on('message', onMessage);
      proc.once('exit', (code, signal) => reject(new Error(`worker ${w.index} of generation ${this.id} exited during start (${signal ?? code})`)));
    });
  }

  /** GOAWAY everywhere, wait for the workers to finish (or the drain timeout), then free everything. */
  async drain(timeoutMs: number): Promise<{ timedOut: boolean; durationMs: number }> {
    this.state = 'draining';
    this.drainStartedAt = Date.now();
    for (const w of this.workers) send(w.proc, { type: 'drain', timeoutMs });
    // Workers stop themselves at timeoutMs; the grace covers a worker that cannot.
    let timedOut = false;
    await withTimeout(Promise.all(this.workers.map((w) => w.exited)), timeoutMs + 5000, '').catch(async () => {
      timedOut = true;
      await this.kill();
    });
    this.release();
    return { timedOut, durationMs: Date.now() - this.drainStartedAt };
  }

  /** Stops the workers at once (SIGKILL) and waits for them. */
  async kill(): Promise<void> {
    for (const w of this.workers) if (w.proc && w.proc.exitCode === null && w.proc.signalCode === null) w.proc.kill('SIGKILL');
    await Promise.all(this.workers.map((w) => w.exited));
  }

  /** Closes the master's copies of the sockets and frees the BPF slots. */
  release(): void {
    if (this.state === 'gone') return;
    this.state = 'gone';
    this.markGone();
    this.opts.hooks?.releasing?.(this.id, this.opts.groups.flatMap((group, i) => (this.groupGens[i] === undefined ? [] : [{ group, gen: this.groupGens[i]! }])));
    for (const w of this.workers) for (const fd of w.fds) closeFd(fd);
    this.opts.groups.forEach((g, i) => {
      const gen = this.groupGens[i];
      if (gen === undefined) return;
      // The working slot of a stopping master stays: BPF keeps steering to it (nothing else
      // serves), and the next master finds it stale and retires it once it works itself.
      if (g.working(this.opts.app) === gen) {
        this.opts.log.debug({ gen: this.id, group: String(g) }, 'working generation slot left for the next master');
        return;
      }
      try {
        g.retire(gen);
      } catch (err) {
        this.opts.log.warn({ gen: this.id, group: String(g), err: (err as Error).message }, 'cannot retire generation slot');
      }
    });
  }

  /** Live connection and request counts, asked from every worker (missing answers count as 0). */
  async stats(timeoutMs = 1000): Promise<Array<WorkerStats & { index: number; pid: number | undefined }>> {
    return Promise.all(
      this.workers.map(async (w) => {
        const id = ++statsRequestId;
        let onMessage: ((m: WorkerToMaster) => void) | undefined;
        const answer = await withTimeout(
          new Promise<WorkerStats>((resolve) => {
            onMessage = (m: WorkerToMaster): void => {
              if (m.type === 'stats' && m.id === id) resolve({ connections: m.connections, activeRequests: m.activeRequests, quic: m.quic, tcp: m.tcp, refused: m.refused });
            };
            w.proc.on('message', onMessage);
            send(w.proc, { type: 'stats', id });
          }),
          timeoutMs,
          'stats timeout',
        )
          .catch(() => ({ connections: 0, activeRequests: 0 }))
          .finally(() => w.proc.off('message', onMessage!));
        return { index: w.index, pid: w.proc.pid, ...answer };
      }),
    );
  }
}

function send(proc: ChildProcess, msg: MasterToWorker): void {
  if (proc.connected) proc.send(msg);
}

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(message)), ms);
    }),
  ]);
}

