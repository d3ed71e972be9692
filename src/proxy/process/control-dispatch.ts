/**
 * The master's side of the control protocol: what each request does to the running master.
 */
import type { ControlHandlers, ControlReply, StatusReply } from './control-protocol.js';
import type { Master } from './master.js';

/** What the running master lends the control socket beyond its Master. */
export interface ControlActions {
  readonly master: Master;
  upgrade(): Promise<ControlReply<'upgrade'>>;
  /** Schedules the stop (the reply goes out first). */
  stop(graceful: boolean): void;
  handOver(pid: number): void;
}

export function controlHandlers(actions: ControlActions): ControlHandlers {
  const { master } = actions;
  return {
    reload: (req) => master.reload(req.site),
    status: () => status(master),
    stop: async (req) => {
      actions.stop(req.graceful);
      return { ok: true };
    },
    upgrade: () => actions.upgrade(),
    handover: async (req) => {
      actions.handOver(req.pid);
      return { ok: true };
    },
  };
}

/** The master's generations, workers and counters: `list --config`, its --json and /generations. */
export async function status(master: Master): Promise<StatusReply> {
  const generations = await Promise.all(
    master.allGenerations.map(async (g) => ({
      id: g.id,
      site: g.site,
      app: g.app,
      state: g.state,
      ageMs: Date.now() - g.startedAt,
      drainingForMs: g.drainStartedAt ? Date.now() - g.drainStartedAt : undefined,
      slots: g.groupGens,
      workers: await g.stats(),
    })),
  );
  const sites = master.siteApps.map((s) => ({ site: s.site, app: s.app, names: [...s.names] }));
  return { ok: true, pid: process.pid, config: master.currentConfig.file, counters: master.counters, sites, generations };
}
