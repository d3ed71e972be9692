/**
 * `udpgrm-proxy --config FILE`: the master process. Loads the config, starts the first generation
 * of workers and serves until a signal:
 *   SIGHUP          reload (new generation, flip, old one drains)
 *   SIGUSR2         binary upgrade (a new master from the binary on disk takes over)
 *   SIGTERM/SIGINT  graceful stop (every generation drains, bounded by drain_timeout)
 *   SIGQUIT         fast stop
 * The same reload and upgrade, and a status view, are available on the control socket.
 */
import type { Logger } from 'pino';
import { createLogger } from '../log.js';
import { Admin } from './admin.js';
import { CLI_SCRIPT } from './cli-script.js';
import { controlHandlers } from './control-dispatch.js';
import { ControlError, ControlServer, controlPathProblem, controlRequest } from './control.js';
import { loadOrReport } from './load-config.js';
import { Master } from './master.js';
import { writePidFile } from './pid-file.js';
import { monotonicUsec, sdNotify } from '../../sys/sd-notify.js';
import { takeHandedOverTcp } from './tcp-listeners.js';
import { Upgrade, requestHandover, takeUpgradeFrom } from './upgrade.js';

const WORKER_COMMAND = [CLI_SCRIPT, '__worker'];

/** How long a master that is there may take to answer before we call the socket unusable. */
const PROBE_TIMEOUT_MS = 2000;

export async function runProxy(configFile: string): Promise<number> {
  const config = loadOrReport(configFile);
  if (!config) return 1;
  const upgradeFrom = takeUpgradeFrom();
  const handedOverTcp = takeHandedOverTcp();
  const log = createLogger(config.logging, { role: 'master' });
  const { controlSocket, pidFile } = config.process;

  // One master per control socket: a second one would fight over the same BPF state.
  if (!upgradeFrom) {
    const refusal = controlPathProblem(controlSocket) ?? (await otherMaster(controlSocket));
    if (refusal) {
      process.stderr.write(`udpgrm-proxy: ${refusal}\n`);
      return 1;
    }
  }

  let admin: Admin | undefined;
  try {
    admin = config.admin ? Admin.bind(config.admin, handedOverTcp, log) : undefined;
  } catch (err) {
    process.stderr.write(`udpgrm-proxy: admin endpoint: ${(err as Error).message}\n`);
    return 1;
  }
  // A new master in an upgrade adopts the pinned BPF state and joins the same reuseport groups;
  // the old master's generations stay live until it drains them.
  let master: Master;
  try {
    master = await Master.start(config, { configFile: config.file, log, workerCommand: WORKER_COMMAND, upgrade: upgradeFrom !== undefined, handedOverTcp, ...(admin && { hooks: admin.hooks }) });
  } catch (err) {
    admin?.close();
    throw err;
  }
  if (upgradeFrom) {
    const refused = await requestHandover(controlSocket);
    if (refused) {
      // The old master serves on: take our generation away again.
      log.error({ from: upgradeFrom, error: refused }, 'upgrade: no handover from the previous master; stopping');
      await master.stop(false);
      admin?.close();
      return 1;
    }
    log.info({ from: upgradeFrom }, 'took over from the previous master');
  }
  // The admin socket goes to a new master with the TCP listeners, so scrapes are never refused.
  const handover = (): ReturnType<typeof master.tcp.handover> => master.tcp.handover(admin ? [{ key: admin.socket.key, fd: admin.socket.fd }] : []);
  const running = new RunningMaster(master, new Upgrade(configFile, log, handover), admin, log);
  try {
    writePidFile(pidFile);
    await running.listen(controlSocket);
    await admin?.serve(master);
  } catch (err) {
    // Checked before starting, but the paths may have changed since: without them we cannot serve.
    log.error({ error: (err as Error).message }, 'cannot write the pid file, create the control socket or serve the admin endpoint; stopping');
    process.stderr.write(`udpgrm-proxy: ${(err as Error).message}\n`);
    await master.stop(false);
    admin?.close();
    return 1;
  }
  sdNotify(upgradeFrom ? `MAINPID=${process.pid}\nREADY=1` : 'READY=1');
  log.info({ config: config.file, listeners: config.listeners.length, workers: config.workers }, 'ready');
  running.handleSignals();
  return running.exited;
}

/**
 * Why we must not start: a master answers on the control socket, or something is there that we
 * cannot talk to. Only "nobody listening" (no socket file, or a stale one) lets us start.
 */
async function otherMaster(controlSocket: string): Promise<string | undefined> {
  try {
    await controlRequest(controlSocket, { cmd: 'status' }, PROBE_TIMEOUT_MS);
  } catch (err) {
    if (!(err instanceof ControlError)) throw err;
    if (err.kind === 'no-master') return undefined;
    return `not starting: cannot tell whether a master is running: ${err.message}`;
  }
  return `a master is already running on ${controlSocket}; use "udpgrm-proxy reload"`;
}

type Phase = { readonly kind: 'serving' } | { readonly kind: 'stopping'; readonly graceful: boolean };

/** The master from "ready" to exit: control socket, signals, upgrade and stop. */
class RunningMaster {
  private phase: Phase = { kind: 'serving' };
  private control: ControlServer | undefined;
  private resolveExit!: (code: number) => void;
  /** Resolves with the exit code once the master stopped. */
  readonly exited = new Promise<number>((resolve) => (this.resolveExit = resolve));

  constructor(
    private readonly master: Master,
    private readonly upgrade: Upgrade,
    private readonly admin: Admin | undefined,
    private readonly log: Logger,
  ) {}

  async listen(controlSocket: string): Promise<void> {
    this.control = await ControlServer.listen(
      controlSocket,
      controlHandlers({
        master: this.master,
        upgrade: () => this.upgrade.start(),
        stop: (graceful) => setImmediate(() => void this.stop(graceful)),
        handOver: (pid) => this.handOver(pid),
      }),
    );
  }

  handleSignals(): void {
    process.on('SIGHUP', () => {
      sdNotify(`RELOADING=1\nMONOTONIC_USEC=${monotonicUsec()}`);
      void this.master.reload().finally(() => sdNotify('READY=1'));
    });
    process.on('SIGUSR2', () => void this.upgrade.start());
    process.on('SIGTERM', () => void this.stop(true));
    process.on('SIGINT', () => void this.stop(true));
    process.on('SIGQUIT', () => void this.stop(false));
  }

  /** The new master works: give it the control socket, drain what is ours, leave. */
  private handOver(pid: number): void {
    this.upgrade.handOver(pid);
    this.control?.close();
    // The new master accepts on the same admin socket: scrapes go to it from now on.
    this.admin?.close();
    this.log.info({ to: pid }, 'handing over to the new master; draining');
    setImmediate(() => void this.stop(true));
  }

  private async stop(graceful: boolean): Promise<void> {
    if (this.phase.kind === 'stopping') {
      // A fast stop asked for while a graceful one drains: cut the drain short.
      if (this.phase.graceful && !graceful) {
        this.phase = { kind: 'stopping', graceful: false };
        this.log.warn('fast stop requested during a graceful stop: killing the workers');
        await this.master.killWorkers();
      }
      return;
    }
    this.phase = { kind: 'stopping', graceful };
    // After a handover the service goes on under the new master: not "stopping".
    if (!this.upgrade.handedOver) sdNotify('STOPPING=1');
    this.log.info({ graceful }, 'stopping');
    this.control?.close();
    // /metrics and /healthz go on while the generations drain; /ready says we are stopping.
    this.admin?.markStopping();
    await this.master.stop(graceful);
    this.admin?.close();
    this.log.info('stopped');
    this.resolveExit(0);
  }
}
