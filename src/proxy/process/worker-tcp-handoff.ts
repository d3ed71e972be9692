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

export class WorkerTcpHandoff implements TcpHandoffChannel {
  #nextId = 1;

  send(handoff: TcpHandoff, sent: (ok: boolean) => void): void {
    if (!process.send || !process.connected) return sent(false);
    const msg: WorkerToMaster = { type: 'tcp-handoff', id: this.#nextId++, site: handoff.site, listenerIndex: handoff.listenerIndex, head: handoff.head.toString('base64') };
    // A native handle, not a net.Socket: Node would turn a net.Socket back into a reading one in
    // the master, and the bytes it read there would be lost to the worker that gets it.
    process.send(msg, handoff.handle as never, {}, (err) => sent(!err));
  }

  /** The master's offer of a connection of this worker's site; `server` undefined while starting. */
  offered(m: Extract<MasterToWorker, { type: 'tcp-connection' }>, handle: unknown, server: ProxyServer | undefined): void {
    if (!isNativeHandle(handle)) return reply({ type: 'tcp-declined', id: m.id });
    const taken = server?.adoptTcpConnection(m.listenerIndex, handle, Buffer.from(m.head, 'base64')) ?? false;
    // Our copy: the master's stays open until it reads this answer.
    if (!taken) handle.close();
    reply({ type: taken ? 'tcp-adopted' : 'tcp-declined', id: m.id });
  }
}

function isNativeHandle(h: unknown): h is NativeHandle & object {
  return typeof h === 'object' && h !== null && typeof (h as NativeHandle).close === 'function';
}

function reply(msg: WorkerToMaster): void {
  if (process.connected) process.send?.(msg);
}
