/**
 * A client and a server connection of the quiche binding joined in memory: the test hands the
 * datagrams over itself (so it can hold some back, or look between steps). No sockets, no root.
 */
import { randomBytes } from 'node:crypto';
import { quiche, type QuicheConnection } from '../../src/proxy/quic/native.js';
import { makeCert } from './certs.js';
import { makeTempDir } from './proxy.js';

export const CLIENT = { host: '127.0.0.1', port: 40000 };
export const SERVER = { host: '127.0.0.1', port: 443 };

export interface QuichePairOptions {
  /** The window the client gives the server on each bidirectional stream it opens (default 64 KiB). */
  readonly clientStreamWindow?: number;
}

let pair: { cert: string; key: string } | undefined;

function config(server: boolean, opts: QuichePairOptions) {
  const cfg = new quiche.Config();
  if (server) {
    pair ??= makeCert(makeTempDir('quiche-pair-'), 'server', 'localhost');
    cfg.loadCertChainFromPemFile(pair.cert);
    cfg.loadPrivKeyFromPemFile(pair.key);
  }
  cfg.verifyPeer(false);
  cfg.setApplicationProtos(['h3']);
  cfg.setMaxIdleTimeout(30_000);
  cfg.setInitialMaxData(1 << 20);
  cfg.setInitialMaxStreamDataBidiLocal(opts.clientStreamWindow ?? 1 << 16);
  cfg.setInitialMaxStreamDataBidiRemote(1 << 16);
  cfg.setInitialMaxStreamDataUni(1 << 16);
  cfg.setInitialMaxStreamsBidi(100);
  cfg.setInitialMaxStreamsUni(16);
  return cfg;
}

/** The datagrams `from` has to send now. */
export function packets(from: QuicheConnection): Buffer[] {
  const out: Buffer[] = [];
  for (;;) {
    const buf = Buffer.alloc(1500);
    const r = from.send(buf);
    if (r === null) return out;
    out.push(buf.subarray(0, r[0]));
  }
}

export function deliver(to: QuicheConnection, datagrams: Buffer[], toServer: boolean): void {
  for (const d of datagrams) to.recv(d, toServer ? { from: CLIENT, to: SERVER } : { from: SERVER, to: CLIENT });
}

/** A pair with its handshake complete on both sides (throws if it did not complete). */
export function connectedPair(opts: QuichePairOptions = {}): { client: QuicheConnection; server: QuicheConnection } {
  const client = quiche.Connection.connect('localhost', randomBytes(16), CLIENT, SERVER, config(false, opts));
  const first = packets(client);
  const server = quiche.Connection.accept(randomBytes(16), null, SERVER, CLIENT, config(true, opts));
  deliver(server, first, true);
  for (let i = 0; i < 10 && !(client.isEstablished() && server.isEstablished()); i++) {
    deliver(client, packets(server), false);
    deliver(server, packets(client), true);
  }
  if (!server.isEstablished() || !client.isEstablished()) throw new Error('in-memory QUIC handshake did not complete');
  deliver(client, packets(server), false);
  return { client, server };
}
