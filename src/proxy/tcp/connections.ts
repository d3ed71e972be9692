/**
 * Every TCP connection of one worker, whatever listener accepted it: the `max_tcp_connections`
 * gate, the counters `list` shows, and what a drain waits for (the last connection gone).
 */
import type { Socket } from 'node:net';
import type { TcpStats } from '../worker-stats.js';

export type TcpCounterName = Exclude<keyof TcpStats, 'h1Connections' | 'h2Connections'>;

export class TcpConnections {
  readonly #sockets = new Set<Socket>();
  /** Open connections by the protocol their TLS handshake chose (redirect connections in neither). */
  #open = { h1: 0, h2: 0 };
  readonly #counts: Record<TcpCounterName, number> = {
    accepted: 0,
    refusedConnections: 0,
    rapidResetCutoffs: 0,
    tlsErrors: 0,
    malformed: 0,
    clientHellosRefused: 0,
    handedOff: 0,
    adopted: 0,
    handoffsFailed: 0,
  };
  #emptyWaiters: Array<() => void> = [];
  /** TLS handshakes completed (for /metrics; `list` shows the open counts instead). */
  #handshakes = 0;

  constructor(private readonly maxConnections: number) {}

  /**
   * A connection was accepted: admit it (tracked until its socket closes), or close it at once
   * when the worker already holds `maxConnections` (counted; the kernel has completed the
   * handshake, so the client sees the connection close).
   */
  admit(socket: Socket): boolean {
    if (this.#sockets.size >= this.maxConnections) {
      this.#counts.refusedConnections++;
      socket.destroy();
      return false;
    }
    this.#counts.accepted++;
    this.#sockets.add(socket);
    socket.once('close', () => {
      this.#sockets.delete(socket);
      if (this.#sockets.size === 0) this.#settleEmpty();
    });
    return true;
  }

  /** A TLS handshake settled the connection's protocol: counted open until the socket closes. */
  opened(socket: Socket, protocol: 'h1' | 'h2'): void {
    this.#handshakes++;
    this.#open[protocol]++;
    socket.once('close', () => this.#open[protocol]--);
  }

  count(name: TcpCounterName): void {
    this.#counts[name]++;
  }

  get handshakes(): number {
    return this.#handshakes;
  }

  get size(): number {
    return this.#sockets.size;
  }

  stats(): TcpStats {
    return { ...this.#counts, h1Connections: this.#open.h1, h2Connections: this.#open.h2 };
  }

  /** Resolves once no connection is left (at once when none is). */
  whenEmpty(): Promise<void> {
    if (this.#sockets.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#emptyWaiters.push(resolve));
  }

  /** The end of a drain's time: whatever is still open is cut (their requests were aborted first: TlsListener.cut). */
  destroyAll(): void {
    for (const s of this.#sockets) s.destroy();
  }

  #settleEmpty(): void {
    const waiters = this.#emptyWaiters;
    this.#emptyWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
