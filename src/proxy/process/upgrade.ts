/**
 * Binary upgrade: a running master starts a new master from the binary on disk; the new master
 * starts its own generation beside the old one (same pinned BPF state, same reuseport groups, the
 * same TCP listening sockets passed down as fds 3, 4, …) and, once it works, asks the old master
 * for the handover on the control socket. The old master then
 * gives up the control socket, drains its generations and exits.
 */
import { spawn } from 'node:child_process';
import type { Logger } from 'pino';
import { CLI_SCRIPT } from './cli-script.js';
import { controlRequest } from './control.js';
import type { ControlReply } from './control-protocol.js';

/** Set by an old master in the environment of the new master it starts. */
const UPGRADE_ENV = 'UDPGRM_PROXY_UPGRADE_FROM';

/**
 * In a master: the pid of the master that started it for an upgrade, if any. Clears the variable
 * so the workers (and a later upgrade of our own) do not inherit it.
 */
export function takeUpgradeFrom(): number | undefined {
  const from = Number(process.env[UPGRADE_ENV]) || undefined;
  delete process.env[UPGRADE_ENV];
  return from;
}

/** In the new master, once its generation works: returns why the old master refused, or undefined. */
export async function requestHandover(controlSocket: string): Promise<string | undefined> {
  try {
    const reply = await controlRequest(controlSocket, { cmd: 'handover', pid: process.pid });
    return reply.ok ? undefined : `the master on ${controlSocket} refused the handover: ${reply.error}`;
  } catch (err) {
    return (err as Error).message;
  }
}

export type UpgradeOutcome = ControlReply<'upgrade'>;

type UpgradeState =
  | { readonly kind: 'idle' }
  /** A new master runs; `outcome` settles when it takes over or exits before that. */
  | {
      readonly kind: 'waiting';
      readonly outcome: Promise<UpgradeOutcome>;
      readonly succeed: (pid: number) => void;
    }
  /** Another master took over: this one drains and leaves. */
  | { readonly kind: 'handed-over'; readonly to: number };

/** The old master's side of an upgrade; one per running master. */
export class Upgrade {
  private state: UpgradeState = { kind: 'idle' };

  constructor(
    private readonly configFile: string,
    private readonly log: Logger,
    /** The TCP listening sockets to pass on (the new master accepts on the same queues). */
    private readonly tcpHandover: () => { readonly fds: readonly number[]; readonly env: Record<string, string> },
  ) {}

  get handedOver(): boolean {
    return this.state.kind === 'handed-over';
  }

  /**
   * SIGUSR2 or `udpgrm-proxy upgrade`: starts a new master unless one is already starting (callers
   * meanwhile share its outcome). Until it takes over, this master serves as before.
   */
  start(): Promise<UpgradeOutcome> {
    switch (this.state.kind) {
      case 'waiting':
        return this.state.outcome;
      case 'handed-over': {
        const error = `already handed over to master ${this.state.to}`;
        this.log.warn({ to: this.state.to }, 'upgrade refused: this master already handed over');
        return Promise.resolve({ ok: false, error });
      }
      case 'idle':
        break;
    }
    const tcp = this.tcpHandover();
    const child = spawn(process.execPath, [CLI_SCRIPT, '--config', this.configFile], {
      env: { ...process.env, ...tcp.env, [UPGRADE_ENV]: String(process.pid) },
      stdio: ['ignore', 'inherit', 'inherit', ...tcp.fds],
      detached: true,
    });
    child.unref();
    this.log.info({ newMaster: child.pid }, 'upgrade: started a new master');
    let settle!: (outcome: UpgradeOutcome) => void;
    const outcome = new Promise<UpgradeOutcome>((resolve) => (settle = resolve));
    const onExit = (code: number | null, signal: string | null): void => {
      this.log.error({ newMaster: child.pid, code, signal }, 'upgrade failed: the new master exited before taking over; still serving');
      this.state = { kind: 'idle' };
      settle({ ok: false, error: `new master exited (${signal ?? code}) before taking over` });
    };
    child.once('exit', onExit);
    const succeed = (pid: number): void => {
      child.off('exit', onExit);
      settle({ ok: true, pid });
    };
    this.state = { kind: 'waiting', outcome, succeed };
    return outcome;
  }

  /** The new master's handover request (whether or not this master started it). */
  handOver(pid: number): void {
    if (this.state.kind === 'waiting') this.state.succeed(pid);
    this.state = { kind: 'handed-over', to: pid };
  }
}
