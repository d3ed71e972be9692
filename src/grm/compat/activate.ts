/**
 * `udpgrm-proxy grm activate NAME IP:PORT [options] [-- CMD...]`, udpgrm's `udpgrm_activate.py`
 * for systemd (ExecStartPre): creates and binds SO_REUSEPORT UDP sockets, sets the dissector and
 * app on the first, stores them in systemd's fd store under NAME (sd_notify FDSTOREREMOVE, then
 * FDSTORE=1 + FDNAME with the fds), registers them as generation W+1 (W = the working generation)
 * and waits for the registration; with `--advance-working-gen` it then flips to W+1. After `--`,
 * it execs CMD with the sockets as fds 3.. (LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES set, so
 * sd_listen_fds() finds them; udpgrm leaves them wherever they were).
 * Errors print "[!] ..." and exit 1, as udpgrm's tool.
 */
import { accessSync, constants, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { GRM } from '../abi.generated.js';
import { sdNotify } from '../../sys/sd-notify.js';
import { ipAddressBytes, sockaddrBytes } from '../../sys/sockaddr.js';
import { AF_INET, AF_INET6, errno, errnoText, IPPROTO_IPV6, IPV6_V6ONLY, libc, SO_RCVBUF, SO_REUSEPORT, SOCK_CLOEXEC, SOCK_DGRAM, SOL_SOCKET } from '../../sys/libc.js';
import { boundAddress, formatAddress } from '../sockets.js';
import {
  encodeDissector,
  retryingOnFullRing,
  setDissector,
  setSocketApp,
  setSocketGen,
  setWorkingGen,
  SockoptError,
  socketGen,
  workingGen,
  type DissectorSpec,
} from './udpgrm-socket.js';

const IPPROTO_IP = 0;
const IP_FREEBIND = 15;
const IPV6_FREEBIND = 78;
const F_SETFD = 2;
const F_GETFL = 3;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;
const F_DUPFD_CLOEXEC = 1030;
const EOVERFLOW = 75;
const EPERM = 1;
/** udpgrm's tool gives a registration 0.1 s · (2^7 - 1) before it gives up. */
const REGISTRATION_WAIT_MS = 12_700;

export const ACTIVATE_USAGE = `usage: udpgrm-proxy grm activate NAME IP:PORT [options] [-- CMD [ARG...]]
Create SO_REUSEPORT UDP sockets, store them in systemd's fd store as NAME, register them as the
next generation. Needs Type=notify, NotifyAccess=all and FileDescriptorStoreMax= in the unit.

  -c, --count N            sockets in the group (default 1)
  -4, --also-ipv4          clear IPV6_V6ONLY (IPv4 traffic on an IPv6 socket)
      --freebind           IP_FREEBIND / IPV6_FREEBIND
      --rcvbuf BYTES       SO_RCVBUF (default 16777216, 0 = leave)
      --no-register        only create and store the sockets
      --advance-working-gen  set the working generation to the new one once registered
  -b, --bpf FILE           CBPF dissector from 'bpf_asm -c' output
  -d, --digest N           BESPOKE dissector (0xdead: QUIC)
  -s, --sni HOST:APP       with --digest: QUIC SNI HOST goes to APP (repeatable, at most 8)
  -n, --noop               NOOP dissector
  -m, --apps-max N         apps of the CBPF/BESPOKE dissector
  -a, --app N              the sockets' app
  -f, --flow-timeout SEC   accepted as udpgrm's (used only with --tubular, which is not supported)
  -v, --verbose            log the steps; the dissector's verbose flag
`;

export class ActivateUsageError extends Error {}

export interface ActivateOptions {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly count: number;
  readonly alsoIpv4: boolean;
  readonly freebind: boolean;
  readonly rcvbuf: number;
  readonly noRegister: boolean;
  readonly advanceWorkingGen: boolean;
  readonly dissector: DissectorSpec | null;
  readonly app: number | undefined;
  readonly appsMax: number;
  readonly verbose: boolean;
  readonly command: readonly string[];
}

function int(flag: string, v: string | undefined, min = 0, max = 0xffffffff): number {
  const n = v !== undefined && /^(0x[0-9a-f]+|\d+)$/i.test(v) ? Number(v) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) throw new ActivateUsageError(`${flag} needs an integer in ${min}..${max}, got '${v ?? ''}'`);
  return n;
}

/** `bpf_asm -c` output: lines like `{ 0x28, 0, 0, 0x0000000c },`. */
export function parseBpfAsm(text: string): Array<[number, number, number, number]> {
  const out: Array<[number, number, number, number]> = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line.startsWith('{')) continue;
    const m = /^\{\s*(0x[0-9a-f]+|\d+),\s*(\d+),\s*(\d+),\s*(0x[0-9a-f]+|\d+)\s*\},?$/i.exec(line);
    if (!m) throw new ActivateUsageError(`bad cBPF line ${JSON.stringify(line)}`);
    out.push([Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4])]);
  }
  if (out.length === 0 || out.length > GRM.COMPAT_MAX_INSTR) throw new ActivateUsageError(`a cBPF program has 1..${GRM.COMPAT_MAX_INSTR} instructions, got ${out.length}`);
  return out;
}

export function parseActivateArgs(argv: readonly string[], readFile = (p: string) => readFileSync(p, 'utf8')): ActivateOptions {
  const dash = argv.indexOf('--');
  const args = dash < 0 ? argv : argv.slice(0, dash);
  const command = dash < 0 ? [] : argv.slice(dash + 1);
  const pos: string[] = [];
  let count = 1, rcvbuf = 16 * 1024 * 1024, appsMax = 0, digest = 0;
  let app: number | undefined;
  let alsoIpv4 = false, freebind = false, noRegister = false, advance = false, noop = false, verbose = false;
  let cbpf: Array<[number, number, number, number]> | undefined;
  const sni: Array<{ app: number; host: string }> = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    const flag = eq > 0 ? a.slice(0, eq) : a;
    const value = (): string | undefined => (eq > 0 ? a.slice(eq + 1) : args[++i]);
    switch (flag) {
      case '-c': case '--count': count = int(flag, value(), 1, GRM.COMPAT_MAX_SOCKETS_IN_GEN); break;
      case '-4': case '--also-ipv4': alsoIpv4 = true; break;
      case '--freebind': freebind = true; break;
      case '--rcvbuf': rcvbuf = int(flag, value(), 0, 0x7fffffff); break;
      case '--no-register': noRegister = true; break;
      case '--advance-working-gen': advance = true; break;
      case '-b': case '--bpf': {
        const file = value();
        if (!file) throw new ActivateUsageError(`${flag} needs a file`);
        cbpf = parseBpfAsm(readFile(file));
        break;
      }
      case '-d': case '--digest': digest = int(flag, value(), 1); break;
      case '-s': case '--sni': {
        const v = value() ?? '';
        const at = v.lastIndexOf(':');
        const host = at < 0 ? v : v.slice(0, at);
        if (!host) throw new ActivateUsageError(`${flag} needs HOST:APP`);
        sni.push({ host, app: at < 0 ? 0 : int(flag, v.slice(at + 1), 0, GRM.COMPAT_MAX_APPS - 1) });
        break;
      }
      case '-n': case '--noop': noop = true; break;
      case '-m': case '--apps-max': appsMax = int(flag, value(), 0, GRM.COMPAT_MAX_APPS); break;
      case '-a': case '--app': app = int(flag, value(), 0, GRM.COMPAT_MAX_APPS - 1); break;
      case '-f': case '--flow-timeout': int(flag, value()); break;
      case '-v': case '--verbose': verbose = true; break;
      case '-t': case '--tubular': throw new ActivateUsageError('--tubular is not supported by udpgrm-proxy');
      default:
        if (a.startsWith('-')) throw new ActivateUsageError(`unknown option ${a}`);
        pos.push(a);
    }
  }
  if (pos.length !== 2) throw new ActivateUsageError('NAME and IP:PORT are required');
  const [name, address] = pos as [string, string];
  if (!/^[\x21-\x7e]+$/.test(name) || name.includes(':') || name.length > 255) throw new ActivateUsageError(`bad fd name '${name}' (printable ASCII, no ':')`);
  const m = /^\[(.+)\]:(\d+)$/.exec(address) ?? /^([^:]+):(\d+)$/.exec(address);
  if (!m) throw new ActivateUsageError(`expected IP:PORT or [IPv6]:PORT, got '${address}'`);
  try {
    ipAddressBytes(m[1]!);
  } catch {
    throw new ActivateUsageError(`not an IP address: '${m[1]}'`);
  }
  if (sni.length && !digest) throw new ActivateUsageError('--sni needs --digest (0xdead for QUIC)');
  if (sni.length > GRM.COMPAT_MAX_BESPOKE_SNI) throw new ActivateUsageError(`at most ${GRM.COMPAT_MAX_BESPOKE_SNI} --sni`);
  if (app !== undefined && !digest && !cbpf) throw new ActivateUsageError('You need to select --bpf, --digest or --sni before doing --app');
  const flags = verbose ? GRM.COMPAT_DISSECTOR_FLAG_VERBOSE : 0;
  let dissector: DissectorSpec | null = null;
  if (cbpf) dissector = { type: GRM.COMPAT_DISSECTOR_CBPF | flags, maxApps: appsMax, filter: cbpf };
  else if (digest) dissector = { type: GRM.COMPAT_DISSECTOR_BESPOKE | flags, maxApps: appsMax, digest, hostnames: sni };
  else if (noop) dissector = { type: GRM.COMPAT_DISSECTOR_NOOP | flags };
  return {
    name,
    host: m[1]!,
    port: int('port', m[2], 0, 65535),
    count,
    alsoIpv4,
    freebind,
    rcvbuf,
    noRegister,
    advanceWorkingGen: advance,
    dissector,
    app,
    appsMax,
    verbose,
    command,
  };
}

function setInt(fd: number, level: number, name: number, value: number, what: string): void {
  const v = Buffer.alloc(4);
  v.writeInt32LE(value);
  if ((libc.setsockopt(fd, level, name, v, 4) as number) !== 0) throw new Error(`setsockopt(${what}): ${errnoText(errno())}`);
}

/** One socket as udpgrm's tool makes it (close-on-exec; `--` clears that on the copies it execs with). */
function createSocket(o: ActivateOptions, port: number): number {
  const v6 = o.host.includes(':');
  const fd = libc.socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0) as number;
  if (fd < 0) throw new Error(`socket: ${errnoText(errno())}`);
  try {
    if (v6) setInt(fd, IPPROTO_IPV6, IPV6_V6ONLY, o.alsoIpv4 ? 0 : 1, 'IPV6_V6ONLY');
    if (o.freebind) setInt(fd, v6 ? IPPROTO_IPV6 : IPPROTO_IP, v6 ? IPV6_FREEBIND : IP_FREEBIND, 1, 'FREEBIND');
    setInt(fd, SOL_SOCKET, SO_REUSEPORT, 1, 'SO_REUSEPORT');
    if (o.rcvbuf) setInt(fd, SOL_SOCKET, SO_RCVBUF, o.rcvbuf, 'SO_RCVBUF');
    const sa = sockaddrBytes(v6 ? AF_INET6 : AF_INET, port, ipAddressBytes(o.host));
    if ((libc.bind(fd, sa, sa.length) as number) !== 0) throw new Error(`bind ${o.host}:${port}: ${errnoText(errno())}`);
    return fd;
  } catch (err) {
    libc.close(fd);
    throw err;
  }
}

type Log = (line: string) => void;

async function waitRegistered(fd: number): Promise<void> {
  const until = Date.now() + REGISTRATION_WAIT_MS;
  for (let delay = 5; ; delay = Math.min(delay * 2, 1000)) {
    if (socketGen(fd).idx !== GRM.COMPAT_NONE) return;
    // No completion event exists (udpgrm's API): poll, backing off.
    if (Date.now() >= until) throw new Error('pre-registration failed. is udpgrm still running?');
    await new Promise((r) => setTimeout(r, delay));
  }
}

/** Creates, stores and registers the sockets; returns their fds (close-on-exec). */
export async function activate(o: ActivateOptions, log: Log): Promise<number[]> {
  const fds: number[] = [];
  try {
    let port = o.port;
    for (let i = 0; i < o.count; i++) {
      const fd = createSocket(o, port);
      fds.push(fd);
      if (i === 0) {
        port = boundAddress(fd).port; // port 0: every socket takes the first one's
        if (o.dissector) {
          try {
            await retryingOnFullRing(() => setDissector(fd, encodeDissector(o.dissector!)));
          } catch (e) {
            if (e instanceof SockoptError && e.errnum === EPERM) {
              throw new Error(`setsockopt(UDP_GRM_DISSECTOR) failed. Dissector conflict? Try 'udpgrm-proxy grm delete ${o.host.includes(':') ? `[${o.host}]` : o.host}:${port}'.`);
            }
            throw new Error(`setsockopt(UDP_GRM_DISSECTOR) failed. Is the daemon loaded? Try 'udpgrm-proxy grm --install --self'. (${(e as Error).message})`);
          }
        }
      }
      // Every socket of the group is the app's (udpgrm's tool sets it on each).
      if (o.app !== undefined || o.appsMax) {
        try {
          await retryingOnFullRing(() => setSocketApp(fd, o.app ?? 0));
        } catch (e) {
          const hint = e instanceof SockoptError && e.errnum === EOVERFLOW ? 'Perhaps conflict with --apps-max?' : 'Are the hooks installed?';
          throw new Error(`setsockopt(UDP_GRM_SOCKET_APP) failed. ${hint} (${(e as Error).message})`);
        }
      }
    }
    const where = formatAddress(boundAddress(fds[0]!));
    if (o.verbose) log(`[ ] FDNAME=${o.name} deleting old entry from fd store`);
    sdNotify(`FDSTOREREMOVE=1\nFDNAME=${o.name}`);
    if (o.verbose) log(`[ ] FDNAME=${o.name} adding ${o.count} UDP ${where} sockets to fd store`);
    if (process.env.NOTIFY_SOCKET && !sdNotify(`FDSTORE=1\nFDNAME=${o.name}`, fds)) {
      throw new Error(`sd_notify(FDSTORE=1) to ${process.env.NOTIFY_SOCKET} failed: ${errnoText(errno())}`);
    }
    if (!o.noRegister) {
      let w: number;
      try {
        w = workingGen(fds[0]!);
      } catch {
        throw new Error('getsockopt(UDP_GRM_WORKING_GEN) failed. is udpgrm still running?');
      }
      for (const fd of fds) await retryingOnFullRing(() => setSocketGen(fd, w + 1));
      for (const fd of fds) await waitRegistered(fd);
      if (o.verbose) log(`[ ] ${where} registered ${fds.length} sockets as generation ${w + 1}`);
      if (o.advanceWorkingGen) await retryingOnFullRing(() => setWorkingGen(fds[fds.length - 1]!, w + 1));
    }
    return fds;
  } catch (err) {
    for (const fd of fds) libc.close(fd);
    throw err;
  }
}

/** The executable `cmd` names, as execvp would find it, or null. */
function which(cmd: string): string | null {
  const candidates = cmd.includes('/') ? [cmd] : (process.env.PATH ?? '/usr/bin:/bin').split(delimiter).map((d) => join(d, cmd));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // next
    }
  }
  return null;
}

/** Replaces this process with `command`, the sockets as fds 3.. (sd_listen_fds(3) convention). */
export function execWithFds(command: readonly string[], fds: readonly number[], name: string): never {
  const file = which(command[0]!);
  if (!file) throw new Error(`${command[0]}: command not found`);
  // Move them out of the way first, so no target fd 3+i is one of the sources.
  const high = fds.map((fd) => {
    const h = libc.fcntl(fd, F_DUPFD_CLOEXEC, 'int', 1000) as number;
    if (h < 0) throw new Error(`fcntl(F_DUPFD_CLOEXEC): ${errnoText(errno())}`);
    return h;
  });
  process.env.LISTEN_FDS = String(fds.length);
  process.env.LISTEN_PID = String(process.pid); // exec keeps the pid
  process.env.LISTEN_FDNAMES = fds.map(() => name).join(':');
  // Node marks its stdio close-on-exec and non-blocking: give CMD plain ones, as a shell would.
  for (let std = 0; std < 3; std++) {
    libc.fcntl(std, F_SETFD, 'int', 0);
    const fl = libc.fcntl(std, F_GETFL) as number;
    if (fl >= 0) libc.fcntl(std, F_SETFL, 'int', fl & ~O_NONBLOCK);
  }
  // From here on Node's own fds 3.. are gone: nothing may run but exec.
  high.forEach((h, i) => libc.dup2(h, 3 + i)); // dup2 leaves the copy without close-on-exec
  libc.execvp(file, [...command, null]);
  process.stderr.write(`[!] exec ${file}: ${errnoText(errno())}\n`);
  process.exit(127);
}

export async function runActivate(argv: readonly string[]): Promise<number> {
  if (argv[0] === '-h' || argv[0] === '--help') {
    process.stdout.write(ACTIVATE_USAGE);
    return 0;
  }
  let o: ActivateOptions;
  try {
    o = parseActivateArgs(argv);
  } catch (e) {
    process.stderr.write(`[!] ${(e as Error).message}\n${ACTIVATE_USAGE}`);
    return 1;
  }
  try {
    const fds = await activate(o, (l) => process.stdout.write(`${l}\n`));
    if (o.command.length) execWithFds(o.command, fds, o.name);
    return 0;
  } catch (e) {
    process.stdout.write(`[!] ${(e as Error).message}\n`);
    return 1;
  }
}
