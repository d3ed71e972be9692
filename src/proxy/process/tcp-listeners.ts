/**
 * The master's TCP listening sockets, one per TCP address of the config (a listener serving h1/h2,
 * and its http_redirect address). Opened when the master starts, or adopted from the previous
 * master in a binary upgrade, and kept for the master's whole life: every worker of every
 * generation accepts on an inherited copy of the same socket.
 *
 * Why one shared socket rather than a reuseport group per generation: a reuseport socket that
 * closes resets the connections still in its own accept queue unless the kernel migrates them
 * (net.ipv4.tcp_migrate_req, a netns-wide sysctl, or a BPF_SK_REUSEPORT_SELECT_OR_MIGRATE
 * program). With one socket there is one queue; a draining worker closes only its copy, the
 * new generation's workers keep accepting from the same queue, and nothing is ever refused or
 * reset — with no kernel setting and no extra BPF program. Generations are told apart by who
 * accepts, not by the kernel.
 */
import { formatListener, servesTls } from '../config/index.js';
import type { ListenAddressConfig, ListenerConfig } from '../config/types.js';
import { closeTcpSocket, isTcpListenSocket, openTcpListenSocket, setCloseOnExec } from '../net/tcp-listen.js';

export type TcpSocketRole = 'tls' | 'redirect';

export interface TcpListenerSocket {
  /** `tls 127.0.0.1:4433`, `redirect 127.0.0.1:80`: what a handover matches sockets by. */
  readonly key: string;
  readonly fd: number;
  readonly role: TcpSocketRole;
  readonly address: ListenAddressConfig;
  /** Index of the listener in the config it was opened for. */
  readonly listenerIndex: number;
}

/** Set by an old master in the environment of the new master it starts: JSON [[key, fd], …]. */
const HANDOVER_ENV = 'UDPGRM_PROXY_TCP_FDS';

/** The first fd a handed-over socket takes in the new master (after stdin, stdout, stderr). */
const FIRST_HANDOVER_FD = 3;

export function tcpSocketKey(role: TcpSocketRole, address: ListenAddressConfig): string {
  return `${role} ${formatListener(address)}`;
}

/** Every TCP socket a config needs, in a fixed order (listener order, its redirect after it). */
export function tcpSocketsOf(listeners: readonly ListenerConfig[]): Array<Omit<TcpListenerSocket, 'fd'>> {
  const out: Array<Omit<TcpListenerSocket, 'fd'>> = [];
  listeners.forEach((l, listenerIndex) => {
    if (servesTls(l)) out.push({ key: tcpSocketKey('tls', l), role: 'tls', address: l, listenerIndex });
    if (l.httpRedirect) out.push({ key: tcpSocketKey('redirect', l.httpRedirect), role: 'redirect', address: l.httpRedirect, listenerIndex });
  });
  return out;
}

export class TcpListeners {
  private constructor(readonly sockets: readonly TcpListenerSocket[]) {}

  /**
   * Opens the config's TCP sockets, taking each from `inherited` (by key) when the previous
   * master handed it over. Inherited sockets the config no longer uses are closed. Throws with
   * the address when a bind fails (nothing is left open then).
   */
  static open(listeners: readonly ListenerConfig[], inherited: ReadonlyMap<string, number> = new Map()): TcpListeners {
    const opened: TcpListenerSocket[] = [];
    const unused = new Map(inherited);
    try {
      for (const spec of tcpSocketsOf(listeners)) {
        const given = unused.get(spec.key);
        unused.delete(spec.key);
        opened.push({ ...spec, fd: given ?? openTcpListenSocket(spec.address) });
      }
    } catch (err) {
      for (const s of opened) closeTcpSocket(s.fd);
      throw err;
    } finally {
      for (const fd of unused.values()) closeTcpSocket(fd);
    }
    return new TcpListeners(opened);
  }

  get fds(): number[] {
    return this.sockets.map((s) => s.fd);
  }

  /**
   * What a new master in a binary upgrade needs: the sockets as its fds 3, 4, … and the env naming
   * them. `extra`: other listening sockets of the master passed the same way (the admin endpoint).
   */
  handover(extra: ReadonlyArray<{ readonly key: string; readonly fd: number }> = []): { readonly fds: readonly number[]; readonly env: Record<string, string> } {
    const all = [...this.sockets, ...extra];
    const named = all.map((s, i) => [s.key, FIRST_HANDOVER_FD + i] as const);
    return { fds: all.map((s) => s.fd), env: { [HANDOVER_ENV]: JSON.stringify(named) } };
  }

  close(): void {
    for (const s of this.sockets) closeTcpSocket(s.fd);
  }
}

/**
 * In a new master: the TCP sockets the previous master handed over, by key. Clears the variable
 * (our workers and our own later upgrade must not inherit it) and marks each fd close-on-exec.
 * Entries that are not a listening TCP socket are ignored (they are opened anew).
 */
export function takeHandedOverTcp(): Map<string, number> {
  const text = process.env[HANDOVER_ENV];
  delete process.env[HANDOVER_ENV];
  const out = new Map<string, number>();
  if (!text) return out;
  let entries: unknown;
  try {
    entries = JSON.parse(text);
  } catch {
    return out;
  }
  if (!Array.isArray(entries)) return out;
  for (const entry of entries) {
    if (!Array.isArray(entry) || typeof entry[0] !== 'string' || !Number.isInteger(entry[1])) continue;
    const fd = entry[1] as number;
    if (fd < FIRST_HANDOVER_FD || !isTcpListenSocket(fd)) continue;
    setCloseOnExec(fd);
    out.set(entry[0], fd);
  }
  return out;
}
