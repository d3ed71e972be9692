/**
 * The master process: owns the config, the generation manager (BPF maps, reuseport groups) and
 * the generations of workers. A reload validates the new config, starts a new generation, flips
 * the working generation in BPF once every new worker is ready, and drains the previous one.
 * The master never parses QUIC.
 */
import type { Logger } from 'pino';
import { GenerationManager, type CidIssuerParams, type Group } from '../../grm/index.js';
import {
  ConfigError,
  diffSites,
  findSite,
  formatConfigErrors,
  formatListener,
  formatSiteChanges,
  loadConfig,
  MAX_SITES,
  servesUdp,
  siteFingerprint,
  type SiteChange,
  type SiteFingerprint,
} from '../config/index.js';
import { siteNamesSpec, type SiteNamesSpec } from '../config/site-names.js';
import { assignApps } from './site-apps.js';
import type { ProxyConfig } from '../config/types.js';
import { Generation, type WorkerProcess } from './generation.js';
import type { SitesView } from './ipc.js';
import { OrphanSlots } from './orphans.js';
import { removePidFile } from './pid-file.js';
import { TcpListeners } from './tcp-listeners.js';
import { TcpHandoffRouter } from './tcp-handoff.js';
import type { MasterHooks } from './master-hooks.js';

/** What a reload did to one site. */
export interface SiteReloadResult {
  readonly site: string;
  /** unchanged: same generation; names: names re-registered, same workers; failed: still on its previous generation. */
  readonly outcome: 'unchanged' | 'names' | 'restarted' | 'added' | 'removed' | 'failed' | 'deferred';
  /** The site's working generation after the reload (none for a removed site). */
  readonly generation?: number;
  readonly error?: string;
}

export type ReloadOutcome =
  /** `generation`: the newest working generation; `phases`: durations in ms (validate, start and flip). */
  | { readonly ok: true; readonly generation: number; readonly phases: Readonly<Record<string, number>>; readonly sites: readonly SiteReloadResult[] }
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

/** A site the master runs: its kernel app, names and what its working generation was started from. */
interface RunningSite {
  readonly name: string;
  readonly app: number;
  names: readonly string[];
  /** Taken when its working generation started (site-diff.ts says why not at reload time). */
  fingerprint: SiteFingerprint;
}

export class Master {
  /** Every site's generations, in start order. */
  private readonly generations: Generation[] = [];
  /** The sites served, in the config's order (the default site first). */
  private readonly sites = new Map<string, RunningSite>();
  /** Every site's names as the workers are told them (a reload sets the planned table first). */
  private namesSpec: SiteNamesSpec;
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
    this.namesSpec = siteNamesSpec(config);
    this.tcpHandoff = new TcpHandoffRouter({
      workersOf: (site) => this.workingOf(site)?.workers.map((w) => w.proc) ?? [],
      // A connection waits for its site's worker (restarting, starting) as long as one may take to be ready.
      timeoutMs: config.process.readyTimeoutMs,
      log: opts.log,
    });
  }

  /** Loads the config, opens (or adopts) the BPF state and starts every site's first generation. */
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
    // A site keeps the app a previous master gave it (its names are still in the kernel).
    const apps = assignApps(config.sites, { registered: groups[0]?.serverNames() ?? new Map() });
    const [first, ...rest] = config.sites;
    // The default site first: app 0 takes every connection the kernel cannot steer.
    const started = [await master.startSite(config, first!.name, apps.get(first!.name)!)];
    started.push(...(await Promise.all(rest.map((s) => master.startSite(config, s.name, apps.get(s.name)!)))));
    // Apps no site of ours uses: no name may steer to them any more.
    for (const g of groups) {
      for (const app of g.serverNames().keys()) if (![...apps.values()].includes(app)) g.setServerNames(app, []);
      for (let app = 1; app < MAX_SITES; app++) if (![...apps.values()].includes(app) && g.working(app) !== null) g.clearWorking(app);
    }
    // Slots left by a previous master that is gone (after an upgrade the previous master still
    // manages its own): its workers may still be draining connections, so they are adopted and
    // retired once those workers exited, not cut now. Ours are working by now, so none gets new
    // connections.
    if (!opts.upgrade) {
      groups.forEach((g, i) => {
        const ours = new Set(started.map((gen) => gen.groupGens[i]));
        for (const old of stale[i]!) if (!ours.has(old)) master.orphans.adopt(g, old);
      });
    }
    return master;
  }

  get currentConfig(): ProxyConfig {
    return this.config;
  }

  /** The working generation of every site, in the config's order. */
  get workingGenerations(): Generation[] {
    return [...this.sites.keys()].flatMap((site) => this.workingOf(site) ?? []);
  }

  /** The sites served and their kernel apps, in the config's order. */
  get siteApps(): ReadonlyArray<{ readonly site: string; readonly app: number; readonly names: readonly string[] }> {
    return [...this.sites.values()].map((s) => ({ site: s.name, app: s.app, names: s.names }));
  }

  /** The reuseport groups (one per h3 listener), for reading their kernel counters. */
  get reuseportGroups(): readonly Group[] {
    return this.groups;
  }

  get allGenerations(): readonly Generation[] {
    return this.generations;
  }

  private workingOf(site: string): Generation | undefined {
    return this.generations.find((g) => g.site === site && g.state === 'working');
  }

  /**
   * SIGHUP / `udpgrm-proxy reload`: one at a time. A request during a reload queues one more,
   * which reads the file as it is then (so an edit made meanwhile is not lost); every caller
   * while it waits shares its outcome. `site`: apply only that site's change (`reload --site`),
   * restarting it even when unchanged; such requests are not merged with a queued full reload.
   */
  reload(site?: string): Promise<ReloadOutcome> {
    if (!this.reloading) {
      this.reloading = this.doReload(site).finally(() => (this.reloading = undefined));
      return this.reloading;
    }
    if (site !== undefined) return this.reloading.then(() => this.reload(site));
    this.queuedReload ??= this.reloading.then(() => {
      this.queuedReload = undefined;
      return this.reload();
    });
    return this.queuedReload;
  }

  private async doReload(only: string | undefined): Promise<ReloadOutcome> {
    const { log } = this.opts;
    const t0 = performance.now();
    if (this.stopping) return { ok: false, error: 'stopping' };
    let config: ProxyConfig;
    try {
      config = loadConfig(this.opts.configFile);
    } catch (err) {
      const error = err instanceof ConfigError ? formatConfigErrors(err) : (err as Error).message;
      return this.refuse(error, 'reload refused: invalid config; still serving the current generation');
    }
    const problem = this.incompatible(config, only);
    if (problem) return this.refuse(problem, 'reload refused');
    let apps: Map<string, number>;
    try {
      apps = assignApps(config.sites, { current: new Map([...this.sites.values()].map((s) => [s.name, s.app])), busy: this.appsOfGoneSites(config) });
    } catch (err) {
      return this.refuse((err as Error).message, 'reload refused');
    }
    const fingerprints = new Map([...this.sites.values()].map((s) => [s.name, s.fingerprint]));
    const changes = diffSites(fingerprints, config);
    // Without `sites:` every reload starts a new generation, as it always did; `--site` restarts that site.
    const forced = only ?? (config.sites[0]!.implicit ? config.sites[0]!.name : undefined);
    const applied = only === undefined ? changes : changes.filter((c) => c.site === only);
    const deferred = only === undefined ? [] : changes.filter((c) => c.site !== only && c.kind !== 'unchanged');
    log.info({ changes: formatSiteChanges(changes), ...(only !== undefined && { only, deferred: formatSiteChanges(deferred) }) }, 'reload: site changes');
    const validated = performance.now();

    // The workers started now are told the names as they will be once the reload is done.
    this.namesSpec = this.plannedNames(config, applied);
    const results = await Promise.all(applied.map((change) => this.applyChange(config, change, apps.get(change.site), change.site === forced)));
    this.namesSpec = this.runningNames(config);
    this.tellWorkersSites();
    results.push(...deferred.map((c) => ({ site: c.site, outcome: 'deferred' as const, ...this.generationOf(c.site) })));

    this.config = config;
    const failed = results.filter((r) => r.outcome === 'failed');
    const phases = { validateMs: round(validated - t0), startAndFlipMs: round(performance.now() - validated) };
    const summary = results.map((r) => `${r.site}: ${r.outcome}${r.generation !== undefined ? ` (generation ${r.generation})` : ''}`).join('; ');
    if (failed.length > 0) {
      this.counters.reloadsFailed++;
      const error = `${failed.map((r) => `site ${r.site}: ${r.error}`).join('; ')} (${summary})`;
      log.error({ error }, 'reload aborted for some sites: they still serve their previous generation');
      return { ok: false, error };
    }
    this.counters.reloadsOk++;
    this.opts.hooks?.reloaded?.(phases);
    const newest = Math.max(0, ...this.workingGenerations.map((g) => g.id));
    log.info({ generation: newest, sites: summary, ...phases }, 'reload complete');
    return { ok: true, generation: newest, phases, sites: results };
  }

  private refuse(error: string, msg: string): ReloadOutcome {
    this.counters.reloadsFailed++;
    this.opts.log.error({ error }, msg);
    return { ok: false, error };
  }

  private generationOf(site: string): { generation?: number } {
    const gen = this.workingOf(site);
    return gen ? { generation: gen.id } : {};
  }

  /** One site's part of a reload. Never throws: a site that fails keeps its previous generation. */
  private async applyChange(config: ProxyConfig, change: SiteChange, app: number | undefined, forced: boolean): Promise<SiteReloadResult> {
    const { site } = change;
    const running = this.sites.get(site);
    if (change.kind === 'removed') {
      await this.removeSite(site);
      return { site, outcome: 'removed' };
    }
    if (change.kind === 'unchanged' && !forced) return { site, outcome: 'unchanged', ...this.generationOf(site) };
    if (change.kind === 'changed' && !change.restart && !forced && running) {
      running.names = findSite(config, site).names;
      running.fingerprint = siteFingerprint(config, site);
      this.registerNames(running.app, running.names);
      return { site, outcome: 'names', ...this.generationOf(site) };
    }
    const draining = this.generations.filter((g) => g.site === site && g.state === 'draining').length;
    if (draining >= config.process.maxDrainingGenerations) {
      return { site, outcome: 'failed', error: `${draining} generations are still draining (max_draining_generations ${config.process.maxDrainingGenerations}); try again later`, ...this.generationOf(site) };
    }
    try {
      const gen = await this.startSite(config, site, app!);
      return { site, outcome: change.kind === 'added' ? 'added' : 'restarted', generation: gen.id };
    } catch (err) {
      return { site, outcome: 'failed', error: (err as Error).message, ...this.generationOf(site) };
    }
  }

  /** What a reload cannot change without a restart (the reuseport groups are fixed per master). */
  private incompatible(next: ProxyConfig, only: string | undefined): string | undefined {
    // Sockets, not advertisements: alt_svc may change in a reload.
    const key = (c: ProxyConfig): string =>
      c.listeners.map((l) => `${formatListener(l)} ${l.protocols.join('+')}${l.httpRedirect ? ` redirect ${formatListener(l.httpRedirect)}` : ''}`).join(', ');
    if (key(next) !== key(this.config)) return 'listeners changed: a reload keeps the same listeners (restart or upgrade to change them)';
    if (next.process.pinDir !== this.config.process.pinDir) return 'process.pin_dir changed: restart to change it';
    if (next.quic.cidLength !== this.config.quic.cidLength) return 'quic.cid_length changed: restart to change it';
    const admin = (c: ProxyConfig): string => (c.admin ? formatListener(c.admin.listen) : 'off');
    if (admin(next) !== admin(this.config)) return 'admin.listen changed: a reload keeps the admin listener (restart or upgrade to change it)';
    const defaultNow = [...this.sites.values()].find((s) => s.app === 0)?.name;
    const defaultNext = next.sites[0]!.name;
    if (defaultNow !== undefined && defaultNow !== defaultNext && (this.sites.has(defaultNext) || next.sites.some((s) => s.name === defaultNow))) {
      // Both sites would swap kernel apps under their live connections.
      return `the default site changed from ${defaultNow} to ${defaultNext}: an upgrade (udpgrm-proxy upgrade) makes the change; a reload keeps the default site`;
    }
    if (only !== undefined && !next.sites.some((s) => s.name === only) && !this.sites.has(only)) {
      return `no site "${only}" in ${next.file} (sites: ${next.sites.map((s) => s.name).join(', ')})`;
    }
    return undefined;
  }

  /** Apps used by generations of sites the new config no longer has: not free until they are gone. */
  private appsOfGoneSites(next: ProxyConfig): Set<number> {
    const kept = new Set(next.sites.map((s) => s.name));
    return new Set(this.generations.filter((g) => g.state !== 'gone' && !kept.has(g.site)).map((g) => g.app));
  }

  /** The names table once `applied` is done: applied sites with their new names, others as they run. */
  private plannedNames(config: ProxyConfig, applied: readonly SiteChange[]): SiteNamesSpec {
    const sites = config.sites.flatMap((s) => {
      const running = this.sites.get(s.name);
      const change = applied.some((c) => c.site === s.name);
      if (change) return [{ name: s.name, names: [...s.names] }];
      return running ? [{ name: s.name, names: [...running.names] }] : [];
    });
    return { sites, defaultSite: config.sites[0]!.name };
  }

  /** What workers know of the sites: the names table, and each site's working generation's CIDs. */
  private sitesView(): SitesView {
    const steering: Record<string, CidIssuerParams[][]> = {};
    for (const gen of this.workingGenerations) steering[gen.site] = gen.cidIssuers();
    return { spec: this.namesSpec, steering };
  }

  private tellWorkersSites(): void {
    const view = this.sitesView();
    for (const gen of this.generations) if (gen.state !== 'gone') gen.sendSites(view);
  }

  /** The names table of the sites running now. */
  private runningNames(config: ProxyConfig): SiteNamesSpec {
    return { sites: [...this.sites.values()].map((s) => ({ name: s.name, names: [...s.names] })), defaultSite: config.sites[0]!.name };
  }

  /**
   * Starts a generation of `site` in `app`, makes it the app's working generation in every group
   * once all its workers are ready, registers the site's names, and drains the site's previous one.
   */
  private async startSite(config: ProxyConfig, site: string, app: number): Promise<Generation> {
    const { log } = this.opts;
    const siteConfig = findSite(config, site);
    // Before the workers read the files: a file changed meanwhile makes the next reload restart.
    const fingerprint = siteFingerprint(config, site);
    const gen = new Generation({
      id: this.nextGenerationId++,
      config,
      site,
      app,
      workers: siteConfig.workers,
      sites: () => this.sitesView(),
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
    const previous = this.workingOf(site);
    this.groups.forEach((g, i) => g.setWorking(app, gen.groupGens[i]!));
    gen.state = 'working';
    this.sites.set(site, { name: site, app, names: siteConfig.names, fingerprint });
    this.registerNames(app, siteConfig.names);
    // The default site's workers send attempts whose SNI the kernel could not read to this one.
    if (this.sites.size > 1) this.tellWorkersSites();
    log.info({ generation: gen.id, site, app, workers: siteConfig.workers, startMs: round(performance.now() - t0) }, 'generation working');
    if (previous) void this.drainGeneration(previous);
    return gen;
  }

  /**
   * A site gone from the config: its names first (new connections for them fall to the default
   * site), then its app stops having a working generation, then its generations drain.
   */
  private async removeSite(site: string): Promise<void> {
    const running = this.sites.get(site);
    if (!running) return;
    this.sites.delete(site);
    for (const g of this.groups) {
      g.setServerNames(running.app, []);
      g.clearWorking(running.app);
    }
    const gens = this.generations.filter((g) => g.site === site && g.state === 'working');
    for (const gen of gens) void this.drainGeneration(gen);
    this.tellWorkersSites();
    this.opts.log.info({ site, app: running.app }, 'site removed: its generations drain');
  }

  /**
   * The kernel steers new connections whose SNI is one of `names` to `app`. The default site's
   * (app 0) are registered too, though unmatched names go to app 0 anyway: so `sni_match` counts them.
   */
  private registerNames(app: number, names: readonly string[]): void {
    for (const g of this.groups) g.setServerNames(app, names);
  }

  private async drainGeneration(gen: Generation): Promise<void> {
    const { log } = this.opts;
    log.info({ generation: gen.id, site: gen.site, timeoutMs: gen.config.drainTimeoutMs }, 'generation draining');
    const { timedOut, durationMs } = await gen.drain(gen.config.drainTimeoutMs);
    this.generations.splice(this.generations.indexOf(gen), 1);
    this.opts.hooks?.drained?.(durationMs, timedOut);
    log.info({ generation: gen.id, site: gen.site, durationMs, timedOut }, 'generation drained and retired');
  }

  private onWorkerExit(gen: Generation, w: WorkerProcess, code: number | null, signal: string | null): void {
    if (gen.state !== 'working' || this.stopping) return;
    this.counters.workerRestarts++;
    w.restarts++;
    this.opts.log.error({ generation: gen.id, site: gen.site, worker: w.index, code, signal, restarts: w.restarts }, 'worker died; restarting it on the same sockets');
    // Same generation, same index, same sockets: CIDs it issued keep routing to its socket
    // (the new process answers their packets with stateless resets). Other sites are not touched.
    const delay = Math.min(5000, 100 * 2 ** Math.min(w.restarts - 1, 6));
    setTimeout(() => {
      if (gen.state !== 'working' || this.stopping) return;
      gen.spawn(w).catch((err: Error) => this.opts.log.error({ generation: gen.id, site: gen.site, worker: w.index, err: err.message }, 'worker restart failed'));
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
