/**
 * `udpgrm-proxy grm decoy [--] CMD [ARG...]`, udpgrm's `mmdecoy` for Type=notify services with
 * KillMode=process: the decoy is the unit's main process and CMD its child. Signals to the decoy
 * go to CMD; when CMD exits, the decoy exits with its status; when CMD sends SIGURG (it has started
 * draining), the decoy exits 0 at once, so systemd considers the service stopped and starts the
 * next instance while the old CMD drains in the cgroup and exits on its own.
 * CMD gets the decoy's LISTEN_FDS fds at 3.. and LISTEN_PID rewritten to its own pid, so
 * sd_listen_fds() accepts them (a shell execs CMD: its $$ is CMD's pid).
 * Difference: Node does not tell who sent a signal, so any SIGURG ends the decoy (mmdecoy checks
 * that CMD sent it); nothing else has a reason to send SIGURG to it.
 */
import { spawn, type StdioOptions } from 'node:child_process';
import { constants } from 'node:os';

export const DECOY_USAGE = 'usage: udpgrm-proxy grm decoy [--] CMD [ARG...]\n';

/** Signals passed on to CMD (SIGURG is CMD's "I am draining"; SIGKILL and SIGSTOP cannot be caught). */
const FORWARDED = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH', 'SIGCONT', 'SIGTSTP', 'SIGTTIN', 'SIGTTOU'] as const;
/** At most this many inherited LISTEN_FDS are passed on (systemd's own cap is far higher than any service uses). */
const MAX_LISTEN_FDS = 1024;

export function runDecoy(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const cmd = argv[0] === '--' ? argv.slice(1) : argv;
  if (cmd.length === 0) {
    process.stderr.write(DECOY_USAGE);
    return Promise.resolve(255);
  }
  const listenFds = Number(env.LISTEN_FDS ?? 0);
  const n = Number.isInteger(listenFds) && listenFds > 0 ? Math.min(listenFds, MAX_LISTEN_FDS) : 0;
  const stdio: StdioOptions = ['inherit', 'inherit', 'inherit', ...Array.from({ length: n }, (_, i) => 3 + i)];
  const child =
    env.LISTEN_PID !== undefined
      ? spawn('/bin/sh', ['-c', 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"', 'decoy', ...cmd], { stdio, env })
      : spawn(cmd[0]!, cmd.slice(1), { stdio, env });
  return new Promise((resolve) => {
    const handlers = new Map<string, () => void>();
    const done = (code: number): void => {
      for (const [sig, h] of handlers) process.off(sig, h);
      resolve(code);
    };
    for (const sig of FORWARDED) {
      const h = (): void => void child.kill(sig);
      handlers.set(sig, h);
      process.on(sig, h);
    }
    const urg = (): void => {
      child.unref(); // CMD drains on its own now: nothing keeps the decoy
      done(0);
    };
    handlers.set('SIGURG', urg);
    process.on('SIGURG', urg);
    child.on('error', (e) => {
      process.stderr.write(`decoy: ${cmd[0]}: ${e.message}\n`);
      done(127);
    });
    child.on('exit', (code, signal) => done(code ?? 128 + (signal ? constants.signals[signal] : 0)));
  });
}
