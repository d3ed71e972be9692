/**
 * The master process: owns the config, the generation manager (BPF maps, reuseport groups) and
 * the generations of workers. A reload validates the new config, starts a new generation, flips
 * the working generation in BPF once every new worker is ready, and drains the previous one.
 * The master never parses QUIC.
 */
import type { Logger } from 'pino';
import { GenerationManager, type Group } from '../../grm/index.js';
import { ConfigError, formatConfigErrors, formatListener, loadConfig, servesUdp } from '../config/index.js';
import { unservedSites } from './load-config.js';
import { siteNamesSpec } from '../config/site-names.js';
import type { ProxyConfig } from '../config/types.js';
import { Generation, type WorkerProcess } from './generation.js';
import { OrphanSlots } from './orphans.js';
import { removePidFile } from './pid-file.js';
import { TcpListeners } from './tcp-listeners.js';
import { TcpHandoffRouter } from './tcp-handoff.js';
import type { MasterHooks } from './master-hooks.js';

export type ReloadOutcome =
  /** `phases`: durations in ms (validate, start and flip). */
  | { readonly ok: true; readonly generation: number; readonly phases: Readonly<Record<string, number>> }
  | { readonly ok: false; readonly error: string };

export interface MasterOptions {
  readonly configFile: string;
  readonly log: Logger;
  /** Command that runs a worker process: [script, ...args] for child_process.fork. */
  readonly workerCommand: readonly string[];
  /**
   * Binary upgrade: another master still serves from this BPF state, so generations found in
   * it are live, not stale.
   */
  readonly upgrade?: boolean;
  /** TCP listening sockets the previous master handed over in an upgrade, by key (tcp-listeners.ts). */
  readonly handedOverTcp?: ReadonlyMap<string, number>;
  /** Told about reloads, drains and worker processes (the metrics). */
  readonly hooks?: MasterHooks;
}

export interface MasterCounters {
  reloadsOk: number;
  reloadsFailed: number;
  workerRestarts: number;
}

export class Master {
  private readonly generations: Generation[] = [];
  private nextGenerationId = 1;
  private reloading: Promise<ReloadOutcome> | undefined;
  private queuedReload: Promise<ReloadOutcome> | undefined;
  private stopping = false;
  /** Slots of a crashed previous master whose workers still drain. */
  private readonly orphans: OrphanSlots;
  /** TCP connections accepted by a worker of another site than their SNI's, on their way to one of theirs. */
  readonly tcpHandoff: TcpHandoffRouter;
  readonly counters: MasterCounters = { reloadsOk: 0, reloadsFailed: 0, workerRestarts: 0 };

  private constructor(
    private config: ProxyConfig,
    private readonly manager: GenerationManager,
    /** One reuseport group per listener serving h3, and the config.listeners index of each. */
    private readonly groups: Group[],
    private readonly udpListenerIndexes: readonly number[],
    /** Kept for the master's life (reloads cannot change listeners); handed over in an upgrade. */
    readonly tcp: TcpListeners,
    private readonly opts: MasterOptions,
  ) {
    this.orphans = new OrphanSlots(opts.log);
    this.tcpHandoff = new TcpHandoffRouter({
      workersOf: (site) => this.generations.filter((g) => g.state === 'working' && g.site === site).flatMap((g) => g.workers.map((w) => w.proc)),
      log: opts.log,
    });
  }

  /** Loads the config, opens (or adopts) the BPF state and starts the first generation. */
  static async start(config: ProxyConfig, opts: MasterOptions): Promise<Master> {
    const tcp = TcpListeners.open(config.listeners, opts.handedOverTcp);
    let manager: GenerationManager;
    try {
      manager = GenerationManager.open({ pinDir: config.process.pinDir, cidLength: config.quic.cidLength });
    } catch (err) {
      tcp.close();
      throw err;
    }
    const udpListenerIndexes = config.listeners.flatMap((l, i) => (servesUdp(l) ? [i] : []));
    const groups = udpListenerIndexes.map((i) => manager.openGroup({ host: config.listeners[i]!.host, port: config.listeners[i]!.port }));
    const master = new Master(config, manager, groups, udpListenerIndexes, tcp, opts);
    const stale = groups.map((g) => g.generations().map((info) => info.gen));
    const gen = await master.startGeneration(config);
    // Slots left by a previous master that is gone (after an upgrade the previous master still
    // manages its own): its workers may still be draining connections, so they are adopted and
    // retired once those workers exited, not cut now. Ours is working by now, so none gets new
    // connections.
    if (!opts.upgrade) {
      groups.forEach((g, i) => {
        for (const old of stale[i]!) if (old !== gen.groupGens[i]) master.orphans.adopt(g, old);
      });
    }
    return master;
  }

  get currentConfig(): ProxyConfig {
    return this.config;
  }

  get working(): Generation | undefined {
    return this.generations.find((g) => g.state === 'working');
  }

  /** The reuseport groups (one per h3 listener), for reading their kernel counters. */
  get reuseportGroups(): readonly Group[] {
    return this.groups;
  }

  get allGenerations(): readonly Generation[] {
    return this.generations;
  }

  /**
   * SIGHUP / `udpgrm-proxy reload`: one at a time. A request during a reload queues one more,
   * which reads the file as it is then (so an edit made meanwhile is not lost); every caller
   * while it waits shares its outcome.
   */
  reload(): Promise<ReloadOutcome> {
    if (!this.reloading) {
      this.reloading = this.doReload().finally(() => (this.reloading = undefined));
      return this.reloading;
    }
    this.queuedReload ??= this.reloading.then(() => {
      this.queuedReload = undefined;
      return this.reload();
    });
    return this.queuedReload;
  }

  private async doReload(): Promise<ReloadOutcome> {
    const { log } = this.opts;
    const t0 = performance.now();
    if (this.stopping) return { ok: false, error: 'stopping' };
    let config: ProxyConfig;
    try {
      config = loadConfig(this.opts.configFile);
    } catch (err) {
      const error = err instanceof ConfigError ? formatConfigErrors(err) : (err as Error).message;
      this.counters.reloadsFailed++;
      log.error({ error }, 'reload refused: invalid config; still serving the current generation');
      return { ok: false, error };
    }
    const problem = this.incompatible(config);
    if (problem) {
      this.counters.reloadsFailed++;
      log.error({ error: problem }, 'reload refused');
      return { ok: false, error: problem };
    }
    const draining = this.generations.filter((g) => g.state === 'draining').length;
    if (draining >= config.process.maxDrainingGenerations) {
      this.counters.reloadsFailed++;
      const error = `${draining} generations are still draining (max_draining_generations ${config.process.maxDrainingGenerations}); try again later`;
      log.error({ error }, 'reload refused');
      return { ok: false, error };
    }
    const validated = performance.now();
    let gen: Generation;
    try {
      gen = await this.startGeneration(config);
    } catch (err) {
      this.counters.reloadsFailed++;
      const error = (err as Error).message;
      log.error({ error }, 'reload aborted: new generation did not start; still serving the current one');
      return { ok: false, error };
    }
    this.config = config;
    this.counters.reloadsOk++;
    const phases = { validateMs: round(validated - t0), startAndFlipMs: round(performance.now() - validated) };
    this.opts.hooks?.reloaded?.(phases);
    log.info({ generation: gen.id, ...phases }, 'reload complete');
    return { ok: true, generation: gen.id, phases };
  }

  /** What a reload cannot change without a restart (the reuseport groups are fixed per master). */
  private incompatible(next: ProxyConfig): string | undefined {
    // Sockets, not advertisements: alt_svc may change in a reload.
    const key = (c: ProxyConfig): string =>
      c.listeners.map((l) => `${formatListener(l)} ${l.protocols.join('+')}${l.httpRedirect ? ` redirect ${formatListener(l.httpRedirect)}` : ''}`).join(', ');
    if (key(next) !== key(this.config)) return 'listeners changed: a reload keeps the same listeners (restart or upgrade to change them)';
    if (next.process.pinDir !== this.config.process.pinDir) return 'process.pin_dir changed: restart to change it';
    if (next.quic.cidLength !== this.config.quic.cidLength) return 'quic.cid_length changed: restart to change it';
    const admin = (c: ProxyConfig): string => (c.admin ? formatListener(c.admin.listen) : 'off');
    if (admin(next) !== admin(this.config)) return 'admin.listen changed: a reload keeps the admin listener (restart or upgrade to change it)';
    return unservedSites(next);
  }

  /** Starts a generation, flips BPF's working generation to it, and drains the previous one. */
  private async startGeneration(config: ProxyConfig): Promise<Generation> {
    const { log } = this.opts;
    const gen = new Generation({
      id: this.nextGenerationId++,
      config,
      site: config.sites[0]!.name,
      app: 0,
      workers: config.workers,
      siteNames: () => siteNamesSpec(config),
      groups: this.groups,
      udpListenerIndexes: this.udpListenerIndexes,
      tcp: this.tcp.sockets,
      workerCommand: this.opts.workerCommand,
      log,
      onWorkerExit: (g, w, code, signal) => this.onWorkerExit(g, w, code, signal),
      hooks: {
        ...this.opts.hooks,
        workerSpawned: (generation, proc) => {
          this.opts.hooks?.workerSpawned?.(generation, proc);
          this.tcpHandoff.attach(proc);
        },
      },
    });
    const t0 = performance.now();
    this.generations.push(gen);
    try {
      await gen.start();
    } catch (err) {
      this.generations.splice(this.generations.indexOf(gen), 1);
      throw err;
    }
    const previous = this.working;
    this.groups.forEach((g, i) => g.setWorking(0, gen.groupGens[i]!));
    gen.state = 'working';
    log.info({ generation: gen.id, workers: config.workers, startMs: round(performance.now() - t0) }, 'generation working');
    if (previous) void this.drainGeneration(previous);
    return gen;
  }

  private async drainGeneration(gen: Generation): Promise<void> {
    const { log } = this.opts;
    log.info({ generation: gen.id, timeoutMs: gen.config.drainTimeoutMs }, 'generation draining');
    const { timedOut, durationMs } = await gen.drain(gen.config.drainTimeoutMs);
    this.generations.splice(this.generations.indexOf(gen), 1);
    this.opts.hooks?.drained?.(durationMs, timedOut);
    log.info({ generation: gen.id, durationMs, timedOut }, 'generation drained and retired');
  }

  private onWorkerExit(gen: Generation, w: WorkerProcess, code: number | null, signal: string | null): void {
    if (gen.state !== 'working' || this.stopping) return;
    this.counters.workerRestarts++;
    w.restarts++;
    this.opts.log.error({ generation: gen.id, worker: w.index, code, signal, restarts: w.restarts }, 'worker died; restarting it on the same sockets');
    // Same generation, same index, same sockets: CIDs it issued keep routing to its socket
    // (the new process answers their packets with stateless resets).
    const delay = Math.min(5000, 100 * 2 ** Math.min(w.restarts - 1, 6));
    setTimeout(() => {
      if (gen.state !== 'working' || this.stopping) return;
      gen.spawn(w).catch((err: Error) => this.opts.log.error({ generation: gen.id, worker: w.index, err: err.message }, 'worker restart failed'));
    }, delay).unref();
  }

  /** SIGQUIT during a graceful stop: stop waiting for the drain, kill every worker now. */
  async killWorkers(): Promise<void> {
    await Promise.all(this.generations.map((g) => g.kill()));
  }

  /** Graceful stop: every generation drains (bounded by drain_timeout), then the master exits. */
  async stop(graceful: boolean): Promise<void> {
    this.stopping = true;
    this.orphans.stop();
    if (graceful) await this.reloading;
    const gens = [...this.generations];
    if (graceful) await Promise.all(gens.map((g) => (g.state === 'draining' ? g.gone : g.drain(g.config.drainTimeoutMs))));
    else await Promise.all(gens.map(async (g) => (await g.kill(), g.release())));
    this.tcpHandoff.close();
    // After an upgrade the pid file names the new master: leave it.
    removePidFile(this.config.process.pidFile);
    this.manager.close();
    this.tcp.close();
  }
}


function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
