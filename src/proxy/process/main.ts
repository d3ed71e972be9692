/**
 * `udpgrm-proxy --config FILE`: the master process. Loads the config, starts the first generation
 * of workers and serves until a signal:
 *   SIGHUP          reload (new generation, flip, old one drains)
 *   SIGTERM/SIGINT  graceful stop (every generation drains, bounded by drain_timeout)
 *   SIGQUIT         fast stop
 * The same reload and a status view are available on the control socket (`udpgrm-proxy reload`).
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { loadConfig, formatConfigErrors, ConfigError } from '../config/index.js';
import type { ProxyConfig } from '../config/types.js';
import { ControlServer, controlRequest, type ControlRequest } from './control.js';
import { createLogger } from '../log.js';
import type { WorkerStats } from '../worker-stats.js';
import { Master } from './master.js';
import { monotonicUsec, sdNotify } from './sd-notify.js';

/** The CLI entry on disk (dist/src/cli.js): workers run its hidden `__worker` command, upgrades run it anew. */
const CLI_SCRIPT = fileURLToPath(new URL('../../cli.js', import.meta.url));
const WORKER_COMMAND = [CLI_SCRIPT, '__worker'];

/** Completes a pending upgrade when the new master asks for the handover. */
let onHandover: ((pid: number) => void) | undefined;

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

/** Set by an old master in the environment of the new master it starts for a binary upgrade. */
const UPGRADE_ENV = 'UDPGRM_PROXY_UPGRADE_FROM';

export async function runProxy(configFile: string): Promise<number> {
  const config = loadOrReport(configFile);
  if (!config) return 1;
  const upgradeFrom = Number(process.env[UPGRADE_ENV]) || undefined;
  delete process.env[UPGRADE_ENV];
  const log = createLogger(config.logging, { role: 'master' });
  const { controlSocket, pidFile } = config.process;

  // One master per control socket: a second one would fight over the same BPF state.
  if (!upgradeFrom) {
    try {
      await controlRequest(controlSocket, { cmd: 'status' }, 2000);
      process.stderr.write(`udpgrm-proxy: a master is already running on ${controlSocket}; use "udpgrm-proxy reload"\n`);
      return 1;
    } catch {
      // nobody answers: we are the master
    }
  }

  // A new master in an upgrade adopts the pinned BPF state and joins the same reuseport groups;
  // the old master's generations stay live until it drains them.
  const master = await Master.start(config, { configFile: config.file, log, workerCommand: WORKER_COMMAND, upgrade: upgradeFrom !== undefined });
  if (upgradeFrom) {
    await controlRequest(controlSocket, { cmd: 'handover', pid: process.pid });
    log.info({ from: upgradeFrom }, 'took over from the previous master');
  }
  writeFileSync(pidFile, `${process.pid}\n`);

  let resolveExit!: (code: number) => void;
  const exited = new Promise<number>((r) => (resolveExit = r));
  let stopping = false;
  let upgrade: Promise<Record<string, unknown>> | undefined;
  let handedOver = false;
  const control = await ControlServer.listen(controlSocket, (req) => {
    switch (req.cmd) {
      case 'handover':
        // The new master works: give it the control socket, drain what is ours, leave.
        handedOver = true;
        control.close();
        onHandover?.(req.pid);
        log.info({ to: req.pid }, 'handing over to the new master; draining');
        setImmediate(() => void stop(true));
        return Promise.resolve({ ok: true });
      case 'upgrade':
        upgrade ??= startUpgrade(configFile, log).finally(() => (upgrade = undefined));
        return upgrade;
      case 'stop':
        setImmediate(() => void stop(req.graceful));
        return Promise.resolve({ ok: true });
      default:
        return handleControl(master, req);
    }
  });
  sdNotify(upgradeFrom ? `MAINPID=${process.pid}\nREADY=1` : 'READY=1');
  log.info({ config: config.file, listeners: config.listeners.length, workers: config.workers }, 'ready');

  async function stop(graceful: boolean): Promise<void> {
    if (stopping) {
      // A fast stop asked for while a graceful one drains: cut the drain short.
      if (!graceful) {
        log.warn('fast stop requested during a graceful stop: killing the workers');
        await master.killWorkers();
      }
      return;
    }
    stopping = true;
    // After a handover the service goes on under the new master: not "stopping".
    if (!handedOver) sdNotify('STOPPING=1');
    log.info({ graceful }, 'stopping');
    control.close();
    await master.stop(graceful);
    log.info('stopped');
    resolveExit(0);
  }
  process.on('SIGHUP', () => {
    sdNotify(`RELOADING=1\nMONOTONIC_USEC=${monotonicUsec()}`);
    void master.reload().finally(() => sdNotify('READY=1'));
  });
  process.on('SIGUSR2', () => {
    upgrade ??= startUpgrade(configFile, log).finally(() => (upgrade = undefined));
  });
  process.on('SIGTERM', () => void stop(true));
  process.on('SIGINT', () => void stop(true));
  process.on('SIGQUIT', () => void stop(false));
  return exited;
}

/**
 * Binary upgrade: start a new master from the binary on disk. It takes over (handover request)
 * once its own generation works; until then this master serves as before. Resolves with the
 * outcome for `udpgrm-proxy upgrade`.
 */
function startUpgrade(configFile: string, log: Logger): Promise<Record<string, unknown>> {
  const child = spawn(process.execPath, [CLI_SCRIPT, '--config', configFile], {
    env: { ...process.env, [UPGRADE_ENV]: String(process.pid) },
    stdio: ['ignore', 'inherit', 'inherit'],
    detached: true,
  });
  child.unref();
  log.info({ newMaster: child.pid }, 'upgrade: started a new master');
  return new Promise((resolve) => {
    // The handover request stops this master; the new one answers for itself from then on.
    const onExit = (code: number | null, signal: string | null): void => {
      log.error({ newMaster: child.pid, code, signal }, 'upgrade failed: the new master exited before taking over; still serving');
      resolve({ ok: false, error: `new master exited (${signal ?? code}) before taking over` });
    };
    child.once('exit', onExit);
    onHandover = (pid) => {
      onHandover = undefined;
      child.off('exit', onExit);
      resolve({ ok: true, pid });
    };
  });
}

async function handleControl(master: Master, req: ControlRequest): Promise<unknown> {
  switch (req.cmd) {
    case 'reload':
      return master.reload();
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
    default:
      return { ok: false, error: `${req.cmd} is not handled here` };
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

/** `udpgrm-proxy upgrade --config FILE`: binary upgrade of the running master; waits for the handover. */
export async function runUpgrade(configFile: string): Promise<number> {
  const config = loadOrReport(configFile);
  if (!config) return 1;
  const reply = await controlRequest(config.process.controlSocket, { cmd: 'upgrade' });
  if (reply.ok) {
    process.stdout.write(`upgraded: master pid ${String(reply.pid)} took over; the previous master drains\n`);
    return 0;
  }
  process.stderr.write(`upgrade failed: ${String(reply.error)}\n`);
  return 1;
}

/** `udpgrm-proxy list --config FILE`: the master's generations, workers and live counts. */
export async function printMasterStatus(configFile: string): Promise<number> {
  const config = loadOrReport(configFile);
  if (!config) return 1;
  const reply = (await controlRequest(config.process.controlSocket, { cmd: 'status' })) as {
    pid: number;
    counters: Record<string, number>;
    generations: Array<{ id: number; state: string; ageMs: number; drainingForMs?: number; slots: number[]; workers: Array<WorkerStats & { index: number; pid?: number }> }>;
  };
  const lines = [`master pid ${reply.pid}  reloads ok ${reply.counters.reloadsOk} failed ${reply.counters.reloadsFailed}  worker restarts ${reply.counters.workerRestarts}`];
  for (const g of reply.generations) {
    const conns = g.workers.reduce((n, w) => n + w.connections, 0);
    const reqs = g.workers.reduce((n, w) => n + w.activeRequests, 0);
    lines.push(
      `generation ${g.id}  ${g.state}  age ${(g.ageMs / 1000).toFixed(1)}s${g.drainingForMs !== undefined ? `  draining ${(g.drainingForMs / 1000).toFixed(1)}s` : ''}  bpf gens ${g.slots.join(',')}  connections ${conns}  requests ${reqs}`,
    );
    for (const w of g.workers) {
      const q = w.quic;
      const drops = q ? Object.entries(q.dropped).map(([why, n]) => `${why}=${n}`).join(',') : '';
      lines.push(
        `\tworker ${w.index}  pid ${w.pid ?? '-'}  connections ${w.connections}  requests ${w.activeRequests}` +
          (q ? `  datagrams in ${q.datagramsIn} out ${q.datagramsOut}  accepted ${q.connectionsAccepted}  resets ${q.statelessResets}  internal errors ${q.internalErrors}  dropped ${drops || 0}` : ''),
      );
    }
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}
