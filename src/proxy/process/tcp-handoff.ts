/**
 * The master's end of the TCP handoff: a worker that accepted a connection whose ClientHello names
 * another site sends it here (native handle + the bytes it read); the master offers it to a worker
 * of that site's working generation (round robin) and keeps its own copy of the handle until that
 * worker answers. `tcp-adopted` → the master closes its copy. `tcp-declined`, or the worker exits
 * first → the next worker of the site. No worker of the site (it is starting, or restarting after
 * a crash) → the connection waits for one. Too many pending, or nobody took it in time → the
 * connection is ended and the sending worker told (it counts the failure).
 */
import type { ChildProcess } from 'node:child_process';
import net from 'node:net';
import type { Logger } from 'pino';
import type { MasterToWorker, WorkerToMaster } from './ipc.js';

/** A native handle as Node's IPC delivers it (libuv TCP). */
interface NativeHandle {
  close(): void;
}

export interface TcpHandoffOptions {
  /** The processes serving `site` now (its working generation's workers); empty when none. */
  readonly workersOf: (site: string) => readonly ChildProcess[];
  readonly log: Logger;
  /** Connections held at once (offered or waiting for a worker); more are ended at once. */
  readonly maxPending?: number;
  /** How long a connection may wait for a worker of its site to take it before it is ended. */
  readonly timeoutMs?: number;
}

export interface TcpHandoffCounters {
  received: number;
  adopted: number;
  /** Offers a worker turned down (draining, or not serving yet): each went on to the next worker. */
  declined: number;
  failed: number;
}

type Handoff = Extract<WorkerToMaster, { type: 'tcp-handoff' }>;

type PendingState =
  /** Sent to `to`, whose answer (or exit) we wait for. */
  | { readonly at: 'offered'; readonly to: ChildProcess }
  /** No worker of the site to offer it to yet: tried again every RETRY_MS. */
  | { readonly at: 'waiting' };

interface Pending {
  /** The master's own id (the one in `tcp-connection`): workers number their handoffs each from 1. */
  readonly id: number;
  readonly handoff: Handoff;
  readonly handle: NativeHandle;
  /** The worker that sent it (told if it fails). */
  readonly from: ChildProcess;
  /** Workers offered it so far: each at most once. */
  readonly offered: Set<ChildProcess>;
  state: PendingState;
  readonly timer: NodeJS.Timeout;
}

const DEFAULT_MAX_PENDING = 1024;
const DEFAULT_TIMEOUT_MS = 5000;
/** How often connections waiting for a worker of their site look for one. */
const RETRY_MS = 50;

export class TcpHandoffRouter {
  readonly counters: TcpHandoffCounters = { received: 0, adopted: 0, declined: 0, failed: 0 };
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  /** Round-robin position per site. */
  readonly #turn = new Map<string, number>();
  /** Runs while some connection is waiting for a worker. */
  #retry: NodeJS.Timeout | undefined;
  readonly #maxPending: number;
  readonly #timeoutMs: number;

  constructor(private readonly opts: TcpHandoffOptions) {
    this.#maxPending = opts.maxPending ?? DEFAULT_MAX_PENDING;
    this.#timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  get pending(): number {
    return this.#pending.size;
  }

  /** Listens to a worker process: its handoffs, its answers to offers, its exit. */
  attach(proc: ChildProcess): void {
    proc.on('message', (m: WorkerToMaster, handle?: unknown) => {
      if (m.type === 'tcp-handoff') this.#received(proc, m, handle);
      else if (m.type === 'tcp-adopted') this.#answered(proc, m.id, true);
      else if (m.type === 'tcp-declined') this.#answered(proc, m.id, false);
    });
    proc.once('exit', () => {
      // Offered to it and not answered: still ours (it read nothing), the next worker gets it.
      for (const p of this.#pending.values()) if (p.state.at === 'offered' && p.state.to === proc) this.#offer(p);
    });
  }

  /** The master stops: every connection still held is ended. */
  close(): void {
    for (const p of [...this.#pending.values()]) this.#fail(p, 'the master is stopping');
  }

  #received(from: ChildProcess, handoff: Handoff, handle: unknown): void {
    this.counters.received++;
    if (!isNativeHandle(handle)) {
      this.counters.failed++;
      this.opts.log.warn({ site: handoff.site, from: from.pid }, 'TCP handoff without a connection handle; ignored');
      return;
    }
    const id = this.#nextId++;
    const timer = setTimeout(() => this.#fail(p, `no worker of site ${handoff.site} took it within ${this.#timeoutMs} ms`), this.#timeoutMs).unref();
    const p: Pending = { id, handoff, handle, from, offered: new Set(), state: { at: 'waiting' }, timer };
    this.#pending.set(id, p);
    if (this.#pending.size > this.#maxPending) return this.#fail(p, `${this.#maxPending} handoffs pending already`);
    this.#offer(p);
  }

  /** Offers `p` to the next worker of its site not offered it yet, or lets it wait for one. */
  #offer(p: Pending): void {
    if (!this.#pending.has(p.id)) return;
    const { site } = p.handoff;
    const workers = this.opts.workersOf(site).filter((w) => w.connected && !p.offered.has(w));
    if (workers.length === 0) {
      p.state = { at: 'waiting' };
      this.#retry ??= setInterval(() => this.#retryWaiting(), RETRY_MS).unref();
      return;
    }
    const turn = this.#turn.get(site) ?? 0;
    this.#turn.set(site, turn + 1);
    const to = workers[turn % workers.length]!;
    p.state = { at: 'offered', to };
    p.offered.add(to);
    const msg: MasterToWorker = { type: 'tcp-connection', id: p.id, listenerIndex: p.handoff.listenerIndex, head: p.handoff.head };
    to.send(msg, p.handle as never, {}, (err) => {
      // Not sent (the channel just closed): the next worker, unless the exit already moved it on.
      if (err && p.state.at === 'offered' && p.state.to === to) this.#offer(p);
    });
  }

  #retryWaiting(): void {
    const waiting = [...this.#pending.values()].filter((p) => p.state.at === 'waiting');
    for (const p of waiting) this.#offer(p);
    if (![...this.#pending.values()].some((p) => p.state.at === 'waiting')) this.#stopRetry();
  }

  #answered(proc: ChildProcess, id: number, adopted: boolean): void {
    const p = this.#pending.get(id);
    if (!p || p.state.at !== 'offered' || p.state.to !== proc) return;
    if (!adopted) {
      this.counters.declined++;
      return this.#offer(p);
    }
    this.#forget(p);
    // The adopting worker holds its own copy now.
    p.handle.close();
    this.counters.adopted++;
  }

  #fail(p: Pending, reason: string): void {
    this.#forget(p);
    endConnection(p.handle);
    this.counters.failed++;
    this.opts.log.warn({ site: p.handoff.site, from: p.from.pid, reason }, 'TCP connection handoff failed; connection closed');
    const msg: MasterToWorker = { type: 'tcp-handoff-failed', id: p.handoff.id, reason };
    if (p.from.connected) p.from.send(msg);
  }

  #forget(p: Pending): void {
    clearTimeout(p.timer);
    this.#pending.delete(p.id);
    if (this.#pending.size === 0) this.#stopRetry();
  }

  #stopRetry(): void {
    clearInterval(this.#retry);
    this.#retry = undefined;
  }
}

/**
 * Ends a connection no worker took: FIN to the client, then our copy closes. Closing our copy alone
 * would not end it while a worker still holds one in an offer it has not read yet (a stalled worker
 * the timeout gave up on), which would then serve it late, to a client long gone. (Not read: the
 * socket is made write-only.)
 */
function endConnection(handle: NativeHandle): void {
  const socket = new net.Socket({ handle, readable: false, writable: true } as net.SocketConstructorOpts);
  socket.on('error', () => socket.destroy());
  socket.end(() => socket.destroy());
}

function isNativeHandle(h: unknown): h is NativeHandle {
  return typeof h === 'object' && h !== null && typeof (h as NativeHandle).close === 'function';
}
