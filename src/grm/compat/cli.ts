/**
 * udpgrm's command line under `udpgrm-proxy grm`, so scripts written for udpgrm run unchanged:
 *   --daemon [--install[=CGROUP]] [--self] [--force] [--pin-dir=DIR] [--without-sendmsg]
 *   --install[=CGROUP] [--self]      (no CGROUP: the root cgroup, as udpgrm)
 *   list [-v] [IP:PORT] | flows [-v] [IP:PORT] | metrics | delete IP:PORT | -h
 *   activate NAME IP:PORT [...] [-- CMD...] | decoy [--] CMD...   (systemd helpers)
 * plus `uninstall` (ours): detach every hook of the pin dir, forget its groups, remove it.
 * Exit codes as udpgrm: 0 ok, 254 after -h, 255 on any error.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Agent } from './agent.js';
import { cgroup2Mount, hooksAlreadyAttached, install, pinPrograms, selfCgroup, uninstall } from './install.js';
import { closeMaps, isCompatPinDir, openPinnedCompatMaps } from './maps.js';
import { formatFlows } from './flows.js';
import { deleteCompatGroup, listCompat } from './list.js';
import { formatMetrics } from './metrics.js';
import { listProxyGroups } from './proxy-groups.js';
import { DEFAULT_PIN_DIR } from '../manager.js';
import { CompatState, DEFAULT_COMPAT_PIN_DIR, unpinCompat } from './state.js';
import { sdNotify } from '../../sys/sd-notify.js';
import { errnoText } from '../../sys/libc.js';

const EUSERS = 87;

export const EXIT_USAGE = 254;
export const EXIT_FATAL = 255;

export const COMPAT_USAGE = `usage: udpgrm-proxy grm [options] [command]
udpgrm's interface (socket options IPPROTO_UDP 200..204) for any UDP service.

  -d, --daemon         serve registration requests (state pinned: a restarted daemon adopts it)
  -i, --install[=CGROUP]  attach the hooks to CGROUP (default: the root cgroup2), with --daemon
                       or alone (short form: -iCGROUP)
  -s, --self           with --install: this process's own cgroup (appended to CGROUP)
  -f, --force          with --daemon: remove the pin dir's previous state first
  -p, --pin-dir=DIR    default ${DEFAULT_COMPAT_PIN_DIR}
  --proxy-pin-dir=DIR  list: the proxy's own groups from there too (default ${DEFAULT_PIN_DIR}; '' = none)
  --without-sendmsg    do not attach the sendmsg hooks (FLOW learns from FLOW_ASSURE only)
  -v, --verbose        list: every socket index and counter

commands:
  list [IP:PORT]       groups, dissector, socket generations, counters; then the proxy's
                       own groups, marked "(udpgrm-proxy)"
  flows [IP:PORT]      FLOW entries by socket, with their age (-v: stale ones too)
  metrics              counters in Prometheus text format
  delete IP:PORT       forget a group (its sockets keep passing packets, unsteered)
  uninstall            detach every hook of the pin dir, forget its groups, remove it
  activate NAME IP:PORT [-- CMD]  sockets into systemd's fd store, registered (activate -h)
  decoy [--] CMD       main-process stand-in for Type=notify services with KillMode=process
`;

interface Options {
  daemon: boolean;
  install: string | true | undefined;
  self: boolean;
  force: boolean;
  pinDir: string;
  proxyPinDir: string;
  verbose: boolean;
  withoutSendmsg: boolean;
  help: boolean;
  positionals: string[];
}

class UsageError extends Error {}

/** udpgrm's getopt: long options (`--install[=CG]`, `--pin-dir DIR` or `=DIR`...) and short ones
 * grouped like `-dvs`, `-iCGROUP` (optional argument attached, as `i::`), `-pDIR` or `-p DIR`. */
export function parseCompatArgs(argv: readonly string[]): Options {
  const o: Options = { daemon: false, install: undefined, self: false, force: false, pinDir: DEFAULT_COMPAT_PIN_DIR, proxyPinDir: DEFAULT_PIN_DIR, verbose: false, withoutSendmsg: false, help: false, positionals: [] };
  const flags: Record<string, () => void> = {
    h: () => (o.help = true),
    d: () => (o.daemon = true),
    s: () => (o.self = true),
    f: () => (o.force = true),
    v: () => (o.verbose = true),
  };
  const long: Record<string, string> = { help: 'h', daemon: 'd', self: 's', force: 'f', verbose: 'v' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a.startsWith('--')) {
      const [name, value] = a.includes('=') ? [a.slice(2, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a.slice(2), undefined];
      if (long[name] && value === undefined) flags[long[name]]!();
      else if (name === 'install') o.install = value || true;
      else if (name === 'without-sendmsg' && value === undefined) o.withoutSendmsg = true;
      else if (name === 'pin-dir') {
        const v = value ?? argv[++i];
        if (!v) throw new UsageError('--pin-dir needs a directory');
        o.pinDir = v;
      } else if (name === 'proxy-pin-dir' && value !== undefined) o.proxyPinDir = value;
      else if (name === 'tubular') throw new UsageError('--tubular is not supported by udpgrm-proxy');
      else throw new UsageError(`unknown option ${a}`);
    } else if (a.startsWith('-') && a.length > 1) {
      for (let j = 1; j < a.length; j++) {
        const c = a[j]!;
        const rest = a.slice(j + 1);
        if (flags[c]) flags[c]!();
        else if (c === 'i') {
          o.install = rest || true; // optional argument: only attached (-i/sys/fs/cgroup/x)
          break;
        } else if (c === 'p') {
          const v = rest || argv[++i];
          if (!v) throw new UsageError('-p needs a directory');
          o.pinDir = v;
          break;
        } else if (c === 't') throw new UsageError('--tubular is not supported by udpgrm-proxy');
        else throw new UsageError(`unknown option -${c}`);
      }
    } else o.positionals.push(a);
  }
  if ((o.daemon || o.install !== undefined) && o.positionals.length) throw new UsageError('--daemon and --install take no command');
  return o;
}

/** The cgroup --install attaches to: the given path (or the cgroup2 root), plus this process's own with --self. */
export function installTarget(o: Options): string {
  const base = o.install === true || o.install === undefined ? cgroup2Mount() : o.install;
  if (!o.self) return base;
  return join(base, selfCgroup().slice(cgroup2Mount().length));
}

const out = (s: string): void => void process.stdout.write(s);
const err = (s: string): void => void process.stderr.write(s);

/** --install: udpgrm's warning (EUSERS, not fatal) when a udpgrm hook is already attached there,
 * then this pin dir's links for the cgroup are replaced. */
function installHooks(state: CompatState, o: Options): void {
  const cg = installTarget(o);
  if (existsSync(cg) && hooksAlreadyAttached(cg)) {
    err(`udpgrm-proxy grm: Looks like we are already loaded in that cgroup. Double program install?: ${errnoText(EUSERS)}\n`);
  }
  install(state, cg, { withoutSendmsg: o.withoutSendmsg });
  out(`[*] Installed hooks on ${cg}\n`);
}

export async function runCompatCli(argv: readonly string[], signals: NodeJS.Process = process): Promise<number> {
  // systemd helpers: command lines of their own (udpgrm_activate.py's, mmdecoy's).
  if (argv[0] === 'activate') return (await import('./activate.js')).runActivate(argv.slice(1));
  if (argv[0] === 'decoy') return (await import('./decoy.js')).runDecoy(argv.slice(1));
  let o: Options;
  try {
    o = parseCompatArgs(argv);
  } catch (e) {
    err(`udpgrm-proxy grm: ${(e as Error).message}\n${COMPAT_USAGE}`);
    return EXIT_FATAL;
  }
  if (o.help) {
    out(COMPAT_USAGE);
    return EXIT_USAGE;
  }
  try {
    if (o.daemon) return await runDaemon(o, signals);
    if (o.install !== undefined) {
      const state = CompatState.open(o.pinDir);
      try {
        installHooks(state, o);
      } finally {
        state.close();
      }
      return 0;
    }
    return runCommand(o);
  } catch (e) {
    err(`udpgrm-proxy grm: ${(e as Error).message}\n`);
    return EXIT_FATAL;
  }
}

/** Detaches every hook of a pin dir, forgets its groups (their programs then pass packets
 * unsteered) and removes the pins. */
export function uninstallCompat(pinDir: string): void {
  if (!existsSync(pinDir)) return;
  uninstall(pinDir);
  if (isCompatPinDir(pinDir)) {
    const maps = openPinnedCompatMaps(pinDir);
    try {
      for (const k of maps.grmc_groups.keys()) maps.grmc_groups.delete(k);
    } finally {
      closeMaps(maps);
    }
  }
  unpinCompat(pinDir);
}

function runCommand(o: Options): number {
  const [cmd, arg, extra] = o.positionals;
  if (cmd === 'uninstall') {
    uninstallCompat(o.pinDir);
    out(`removed ${o.pinDir}\n`);
    return 0;
  }
  const usage: Record<string, string> = { list: 'list [-v] [IP:PORT]', flows: 'flows [-v] [IP:PORT]', metrics: 'metrics', delete: 'delete IP:PORT' };
  if (!cmd || !usage[cmd]) {
    err(cmd ? `udpgrm-proxy grm: unknown command '${cmd}'\n${COMPAT_USAGE}` : COMPAT_USAGE);
    return EXIT_FATAL;
  }
  const takesArg = cmd !== 'metrics';
  if (extra !== undefined || (cmd === 'delete' && !arg) || (!takesArg && arg !== undefined)) {
    err(`udpgrm-proxy grm: usage: ${usage[cmd]}\n`);
    return EXIT_FATAL;
  }
  if (cmd === 'list' && !existsSync(o.pinDir) && o.proxyPinDir && existsSync(o.proxyPinDir)) {
    out(listProxyGroups(o.proxyPinDir, o.verbose, arg)); // no compat state on this host: the proxy's
    return 0;
  }
  if (!existsSync(o.pinDir)) {
    err(`udpgrm-proxy grm: ${o.pinDir} does not exist: is the daemon running (--daemon), or --pin-dir wrong?\n`);
    return EXIT_FATAL;
  }
  const maps = openPinnedCompatMaps(o.pinDir);
  try {
    if (cmd === 'list') {
      out(listCompat(maps, o.verbose, arg));
      try {
        if (o.proxyPinDir) out(listProxyGroups(o.proxyPinDir, o.verbose, arg));
      } catch (e) {
        err(`udpgrm-proxy grm: the proxy's groups in ${o.proxyPinDir}: ${(e as Error).message}\n`); // compat ones were listed
      }
      return 0;
    }
    if (cmd === 'flows') {
      out(formatFlows(maps, o.verbose, arg));
      return 0;
    }
    if (cmd === 'metrics') {
      out(formatMetrics(maps));
      return 0;
    }
    if (!deleteCompatGroup(maps, arg!)) {
      err(`udpgrm-proxy grm: no group ${arg}\n`);
      return EXIT_FATAL;
    }
    return 0;
  } finally {
    closeMaps(maps);
  }
}

async function runDaemon(o: Options, signals: NodeJS.Process): Promise<number> {
  if (o.force && existsSync(o.pinDir)) {
    uninstall(o.pinDir);
    unpinCompat(o.pinDir);
  }
  const state = CompatState.open(o.pinDir);
  const agent = new Agent(state, (line) => out(`${line}\n`));
  try {
    pinPrograms(state, { withoutSendmsg: o.withoutSendmsg }); // udpgrm's pins, by hook name
    if (o.install !== undefined) installHooks(state, o);
    const stopped = new Promise<void>((resolve) => {
      signals.once('SIGTERM', resolve);
      signals.once('SIGINT', resolve);
    });
    agent.start();
    // Maps loaded, hooks attached, requests served: systemd's Type=notify may go on (udpgrm's
    // READY=1). Sent before the line below, so a reader of that line finds it delivered.
    sdNotify('READY=1');
    out(`[*] Tailing message ring buffer  pin ${join(o.pinDir, 'grmc_ring')}\n`);
    await stopped;
    // Hooks, groups and queued requests stay pinned: the next daemon carries on.
    await agent.stop();
    out(`[*] Stopped: ${agent.counters.registered} registered, ${agent.counters.failed} failed\n`);
    return 0;
  } finally {
    state.close();
  }
}
