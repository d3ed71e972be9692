/**
 * The admin endpoint of a running master: its socket (admin-socket.ts), its HTTP server
 * (admin-server.ts) and the metrics (metrics.ts), wired to the master. run-master.ts creates one
 * when the config has `admin:`.
 */
import type { Logger } from 'pino';
import type { AdminConfig } from '../config/types.js';
import { AdminServer } from './admin-server.js';
import { AdminSocket } from './admin-socket.js';
import { status } from './control-dispatch.js';
import type { Master } from './master.js';
import type { MasterHooks } from './master-hooks.js';
import { ProxyMetrics } from './metrics.js';

type AdminState =
  /** Socket bound, the master not started yet: /metrics has nothing to show. */
  | { readonly kind: 'bound' }
  | { readonly kind: 'serving'; readonly server: AdminServer; readonly master: Master }
  | { readonly kind: 'closed' };

export class Admin {
  private state: AdminState = { kind: 'bound' };
  private stopping = false;
  readonly metrics: ProxyMetrics;

  private constructor(
    readonly socket: AdminSocket,
    private readonly config: AdminConfig,
    private readonly log: Logger,
  ) {
    this.metrics = new ProxyMetrics(
      () => {
        if (this.state.kind !== 'serving') return undefined;
        const m = this.state.master;
        return { groups: m.reuseportGroups, generations: m.allGenerations.filter((g) => g.state !== 'gone'), sites: m.siteApps, counters: m.counters };
      },
      (error) => log.warn({ error }, 'worker metrics refused'),
    );
  }

  /**
   * Binds (or takes over) the admin socket before the master starts, so a busy address stops the
   * start before any generation runs. `inherited`: the sockets a previous master handed over.
   */
  static bind(config: AdminConfig, inherited: Map<string, number>, log: Logger): Admin {
    return new Admin(AdminSocket.open(config, inherited), config, log);
  }

  /** For Master.start: the metrics follow every generation and worker from the first. */
  get hooks(): MasterHooks {
    return this.metrics.hooks;
  }

  async serve(master: Master): Promise<void> {
    if (this.state.kind !== 'bound') return;
    const server = await AdminServer.start(
      this.socket.fd,
      {
        metrics: async () => ({ contentType: this.metrics.contentType, body: await this.metrics.scrape(master.currentConfig.admin?.scrapeTimeoutMs ?? this.config.scrapeTimeoutMs) }),
        notReady: () => this.notReady(master),
        generations: async () => {
          const { ok: _ok, ...doc } = await status(master);
          return doc;
        },
      },
      this.log,
    );
    this.state = { kind: 'serving', server, master };
    this.log.info({ listen: this.socket.key.replace(/^admin /, '') }, 'admin endpoint listening');
  }

  /** A graceful stop began: /ready says so, /metrics and /healthz go on while the drain runs. */
  markStopping(): void {
    this.stopping = true;
  }

  /** Stops serving (the socket closes with the server, or here if it never served). */
  close(): void {
    if (this.state.kind === 'serving') this.state.server.close();
    else if (this.state.kind === 'bound') this.socket.close();
    this.state = { kind: 'closed' };
  }

  private notReady(master: Master): string | undefined {
    if (this.stopping) return 'stopping';
    const sites = master.siteApps;
    const working = master.workingGenerations;
    const missing = sites.filter((s) => !working.some((g) => g.site === s.site));
    if (missing.length > 0 || working.length === 0) return `no working generation${missing.length > 0 ? ` for site ${missing.map((s) => s.site).join(', ')}` : ''}`;
    // Every worker serves every listener (UDP and TCP): one alive per site is enough to serve it.
    const idle = working.filter((g) => !g.workers.some((w) => w.proc.connected));
    return idle.length === 0 ? undefined : idle.map((g) => `no worker of generation ${g.id}${sites.length > 1 ? ` (site ${g.site})` : ''} is running`).join('; ');
  }
}
