/**
 * Which worker serves a TCP connection. QUIC connections reach a worker of the right site by the
 * kernel's SNI steering; TCP has one listening socket per address, shared by every worker of every
 * site, so a worker may accept a connection whose ClientHello names another site. With several
 * sites each accepted connection's ClientHello is read first: a connection for this worker's site
 * goes to its TLS server with the bytes put back; one for another site is handed over (its raw
 * handle and the bytes read) through the master to a worker of that site. With one site nothing
 * is read: the connection goes to TLS at once.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { SiteNames } from '../config/site-names.js';
import { readClientHello, type ClientHelloBounds, type ClientHelloOutcome } from './client-hello-reader.js';
import type { TcpConnections } from './connections.js';

/** The site this worker serves and every site's names (replaced when a reload changes names). */
export interface SteeringSite {
  readonly name: string;
  readonly names: SiteNames;
}

/** A connection for another site, on its way out of this process. */
export interface TcpHandoff {
  /** The socket's native handle, no longer reading (a net.Socket would be read by the receiver). */
  readonly handle: object;
  /** Every byte read from the connection (its ClientHello): the receiver puts them back first. */
  readonly head: Buffer;
  readonly site: string;
  /** The config listener that accepted it: the receiver serves it on the same one. */
  readonly listenerIndex: number;
}

/** Where connections for other sites go (the worker process sends them to the master). */
export interface TcpHandoffChannel {
  /** `sent(true)` once the handoff left this process (this process then closes its copy). */
  send(handoff: TcpHandoff, sent: (ok: boolean) => void): void;
}

/** No master to hand connections to (a server running alone): a connection for another site is closed. */
export const NO_HANDOFF: TcpHandoffChannel = { send: (_handoff, sent) => sent(false) };

export interface TcpSiteSteeringOptions {
  readonly site: SteeringSite;
  readonly channel: TcpHandoffChannel;
  readonly bounds: ClientHelloBounds;
  readonly connections: TcpConnections;
  readonly log: Logger;
}

export class TcpSiteSteering {
  constructor(private readonly opts: TcpSiteSteeringOptions) {}

  /**
   * An accepted, admitted connection nothing has read yet (pauseOnConnect): `serve` it here, or
   * read its ClientHello and serve it here or hand it over, or close it.
   */
  route(socket: Socket, listenerIndex: number, serve: (socket: Socket) => void): void {
    if (this.opts.site.names.single) return serve(socket);
    void readClientHello(socket, this.opts.bounds).then((outcome) => this.#routeRead(socket, listenerIndex, outcome, serve));
  }

  #routeRead(socket: Socket, listenerIndex: number, outcome: ClientHelloOutcome, serve: (socket: Socket) => void): void {
    const { site, connections, log } = this.opts;
    switch (outcome.kind) {
      case 'gone':
        socket.destroy();
        return;
      case 'timeout':
      case 'refused':
        connections.count('clientHellosRefused');
        log.debug({ peer: socket.remoteAddress, why: outcome.kind === 'refused' ? outcome.reason : `no ClientHello within ${this.opts.bounds.timeoutMs} ms (${outcome.bytes} bytes)` }, 'TCP connection closed before TLS');
        socket.destroy();
        return;
      case 'hello': {
        const target = site.names.siteFor(outcome.serverName);
        if (target === site.name) {
          socket.unshift(outcome.head);
          serve(socket);
        } else {
          this.#handOff(socket, { site: target, listenerIndex, head: outcome.head });
        }
      }
    }
  }

  #handOff(socket: Socket, to: Omit<TcpHandoff, 'handle'>): void {
    const { channel, connections } = this.opts;
    const handle = (socket as unknown as { _handle: object | null })._handle;
    if (!handle) return void socket.destroy();
    channel.send({ ...to, handle }, (ok) => {
      connections.count(ok ? 'handedOff' : 'handoffsFailed');
      // Our copy of the descriptor: the master holds another until a worker of the site has its
      // own, so closing it neither ends nor resets the connection (unless the handoff failed).
      socket.destroy();
    });
  }
}
