/**
 * A worker's end of the TCP handoff (the master's end: tcp-handoff.ts): connections whose
 * ClientHello names another site leave as native handles with their first bytes; connections of
 * this worker's site that other workers accepted arrive the same way and are adopted or declined.
 */
import type { ProxyServer } from '../server.js';
import type { TcpHandoff, TcpHandoffChannel } from '../tcp/site-steering.js';
import type { MasterToWorker, WorkerToMaster } from './ipc.js';

/** A native handle as Node's IPC delivers it (libuv TCP): closed when not adopted. */
interface NativeHandle {
  close(): void;
}

type Offer = { readonly msg: Extract<MasterToWorker, { type: 'tcp-connection' }>; readonly handle: NativeHandle };

type ServerState =
  /** Offers wait until the server listens (a worker the master just forked, or restarted). */
  | { readonly at: 'starting'; readonly queued: Offer[] }
  | { readonly at: 'serving'; readonly server: ProxyServer };

export class WorkerTcpHandoff implements TcpHandoffChannel {
  #nextId = 1;
  #state: ServerState = { at: 'starting', queued: [] };

  send(handoff: TcpHandoff, sent: (ok: boolean) => void): void {
    if (!process.send || !process.connected) return sent(false);
    const msg: WorkerToMaster = { type: 'tcp-handoff', id: this.#nextId++, site: handoff.site, listenerIndex: handoff.listenerIndex, head: handoff.head.toString('base64') };
    // A native handle, not a net.Socket: Node would turn a net.Socket back into a reading one in
    // the master, and the bytes it read there would be lost to the worker that gets it.
    process.send(msg, handoff.handle as never, {}, (err) => sent(!err));
  }

  /** The master's offer of a connection of this worker's site. */
  offered(msg: Extract<MasterToWorker, { type: 'tcp-connection' }>, handle: unknown): void {
    if (!isNativeHandle(handle)) return reply({ type: 'tcp-declined', id: msg.id });
    if (this.#state.at === 'starting') this.#state.queued.push({ msg, handle });
    else this.#answer({ msg, handle }, this.#state.server);
  }

  /** The server listens: offers that came while it started are answered now. */
  serving(server: ProxyServer): void {
    const queued = this.#state.at === 'starting' ? this.#state.queued : [];
    this.#state = { at: 'serving', server };
    for (const offer of queued) this.#answer(offer, server);
  }

  #answer({ msg, handle }: Offer, server: ProxyServer): void {
    const taken = server.adoptTcpConnection(msg.listenerIndex, handle, Buffer.from(msg.head, 'base64'));
    // Our copy: the master's stays open until it reads the answer, and offers it elsewhere.
    if (!taken) handle.close();
    reply({ type: taken ? 'tcp-adopted' : 'tcp-declined', id: msg.id });
  }
}

function isNativeHandle(h: unknown): h is NativeHandle & object {
  return typeof h === 'object' && h !== null && typeof (h as NativeHandle).close === 'function';
}

function reply(msg: WorkerToMaster): void {
  if (process.connected) process.send?.(msg);
}
