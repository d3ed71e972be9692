/**
 * `udpgrm-proxy --config FILE`: the master process. Loads the config, starts the first generation
 * of workers and serves until a signal:
 *   SIGHUP          reload (new generation, flip, old one drains)
 *   SIGTERM/SIGINT  graceful stop (every generation drains, bounded by drain_timeout)
 *   SIGQUIT         fast stop
 * The same reload and a status view are available on the control socket (`udpgrm-proxy reload`).
 */
import { fileURLToPath } from 'node:url';
import { loadConfig, formatConfigErrors, ConfigError } from './config/index.js';
import type { ProxyConfig } from './config/types.js';
import { ControlServer, controlRequest, type ControlRequest } from './control.js';
import { createLogger } from './log.js';
import { Master } from './master.js';

/** The CLI entry (dist/src/cli.js) runs workers with its hidden `__worker` command. */
const WORKER_COMMAND = [fileURLToPath(new URL('../cli.js', import.meta.url)), '__worker'];

export function loadOrReport(configFile: string): ProxyConfig | undefined {
  try {
    return loadConfig(configFile);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${formatConfigErrors(err)}\n`);
      return undefined;
    }
    throw err;
  }
}

export async function runProxy(configFile: string): Promise<number> {
  const config = loadOrReport(configFile);
  if (!config) return 1;
  const log = createLogger(config.logging, { role: 'master' });

  // One master per control socket: a second one would fight over the same BPF state.
  try {
    await controlRequest(config.process.controlSocket, { cmd: 'status' }, 2000);
    process.stderr.write(`udpgrm-proxy: a master is already running on ${config.process.controlSocket}; use "udpgrm-proxy reload"\n`);
    return 1;
  } catch {
    // nobody answers: we are the master
  }

  const master = await Master.start(config, { configFile: config.file, log, workerCommand: WORKER_COMMAND });
  const control = await ControlServer.listen(config.process.controlSocket, (req) => handleControl(master, req, stop));
  log.info({ config: config.file, listeners: config.listeners.length, workers: config.workers, pid: process.pid }, 'ready');

  let resolveExit!: (code: number) => void;
  const exited = new Promise<number>((r) => (resolveExit = r));
  let stopping = false;
  async function stop(graceful: boolean): Promise<void> {
    if (stopping) return;
    stopping = true;
    log.info({ graceful }, 'stopping');
    control.close();
    await master.stop(graceful);
    log.info('stopped');
    resolveExit(0);
  }
  process.on('SIGHUP', () => void master.reload());
  process.on('SIGTERM', () => void stop(true));
  process.on('SIGINT', () => void stop(true));
  process.on('SIGQUIT', () => void stop(false));
  return exited;
}

async function handleControl(master: Master, req: ControlRequest, stop: (graceful: boolean) => Promise<void>): Promise<unknown> {
  switch (req.cmd) {
    case 'reload':
      return master.reload();
    case 'stop':
      setImmediate(() => void stop(req.graceful));
      return { ok: true };
    case 'status': {
      const generations = await Promise.all(
        master.allGenerations.map(async (g) => ({
          id: g.id,
          state: g.state,
          ageMs: Date.now() - g.startedAt,
          drainingForMs: g.drainStartedAt ? Date.now() - g.drainStartedAt : undefined,
          slots: g.groupGens,
          workers: await g.stats(),
        })),
      );
      return { ok: true, pid: process.pid, config: master.currentConfig.file, counters: master.counters, generations };
    }
  }
}

/** `udpgrm-proxy reload --config FILE`: asks the running master to reload and waits for the outcome. */
export async function runReload(configFile: string): Promise<number> {
  // The file is validated here too, so errors print with positions even before the master sees them.
  const config = loadOrReport(configFile);
  if (!config) return 1;
  const reply = await controlRequest(config.process.controlSocket, { cmd: 'reload' });
  if (reply.ok) {
    process.stdout.write(`reloaded: generation ${String(reply.generation)} is working (${JSON.stringify(reply.phases)})\n`);
    return 0;
  }
  process.stderr.write(`reload failed: ${String(reply.error)}\n`);
  return 1;
}

/** `udpgrm-proxy list --config FILE`: the master's generations, workers and live counts. */
export async function printMasterStatus(configFile: string): Promise<number> {
  const config = loadOrReport(configFile);
  if (!config) return 1;
  const reply = (await controlRequest(config.process.controlSocket, { cmd: 'status' })) as {
    pid: number;
    counters: Record<string, number>;
    generations: Array<{ id: number; state: string; ageMs: number; drainingForMs?: number; slots: number[]; workers: Array<{ index: number; pid?: number; connections: number; activeRequests: number }> }>;
  };
  const lines = [`master pid ${reply.pid}  reloads ok ${reply.counters.reloadsOk} failed ${reply.counters.reloadsFailed}  worker restarts ${reply.counters.workerRestarts}`];
  for (const g of reply.generations) {
    const conns = g.workers.reduce((n, w) => n + w.connections, 0);
    const reqs = g.workers.reduce((n, w) => n + w.activeRequests, 0);
    lines.push(
      `generation ${g.id}  ${g.state}  age ${(g.ageMs / 1000).toFixed(1)}s${g.drainingForMs !== undefined ? `  draining ${(g.drainingForMs / 1000).toFixed(1)}s` : ''}  bpf gens ${g.slots.join(',')}  connections ${conns}  requests ${reqs}`,
    );
    for (const w of g.workers) lines.push(`\tworker ${w.index}  pid ${w.pid ?? '-'}  connections ${w.connections}  requests ${w.activeRequests}`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}
