/**
 * QuicConnection.afterReceive offering flow-control credit to the application's waiting streams,
 * against real quiche: a client and a server connection of the binding joined in memory, the
 * server's wrapped in QuicConnection with StreamWriters as its application.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { StreamWriter } from '../../src/proxy/h3/stream-writer.js';
import { QuicConnection, type QuicApplication } from '../../src/proxy/quic/connection.js';
import { quiche, type QuicheConnection } from '../../src/proxy/quic/native.js';
import { makeCert } from '../helpers/certs.js';
import { makeTempDir } from '../helpers/proxy.js';

const pair = makeCert(makeTempDir('quic-writability-'), 'server', 'localhost');
const CLIENT = { host: '127.0.0.1', port: 40000 };
const SERVER = { host: '127.0.0.1', port: 443 };
/** The client's window per stream it opened: small, so one stream runs out while the connection has plenty. */
const STREAM_WINDOW = 4096;

function config(server: boolean) {
  const cfg = new quiche.Config();
  if (server) {
    cfg.loadCertChainFromPemFile(pair.cert);
    cfg.loadPrivKeyFromPemFile(pair.key);
  }
  cfg.verifyPeer(false);
  cfg.setApplicationProtos(['h3']);
  cfg.setMaxIdleTimeout(30_000);
  cfg.setInitialMaxData(1 << 20);
  cfg.setInitialMaxStreamDataBidiLocal(STREAM_WINDOW);
  cfg.setInitialMaxStreamDataBidiRemote(1 << 16);
  cfg.setInitialMaxStreamsBidi(100);
  return cfg;
}

function packets(from: QuicheConnection): Buffer[] {
  const out: Buffer[] = [];
  for (;;) {
    const buf = Buffer.alloc(1500);
    const r = from.send(buf);
    if (r === null) return out;
    out.push(buf.subarray(0, r[0]));
  }
}

function deliver(to: QuicheConnection, datagrams: Buffer[], toServer: boolean): void {
  for (const d of datagrams) to.recv(d, toServer ? { from: CLIENT, to: SERVER } : { from: SERVER, to: CLIENT });
}

function read(conn: QuicheConnection, id: number): number {
  const buf = Buffer.alloc(65536);
  let n = 0;
  for (let r = conn.streamRecv(id, buf); r !== null; r = conn.streamRecv(id, buf)) n += r[0];
  return n;
}

describe('QuicConnection: credit for waiting streams', () => {
  it('a stream out of its own credit does not hold back a later one that has credit', () => {
    const client = quiche.Connection.connect('localhost', randomBytes(16), CLIENT, SERVER, config(false));
    const first = packets(client);
    const quic = quiche.Connection.accept(randomBytes(16), null, SERVER, CLIENT, config(true));
    deliver(quic, first, true);
    for (let i = 0; i < 10 && !(client.isEstablished() && quic.isEstablished()); i++) {
      deliver(client, packets(quic), false);
      deliver(quic, packets(client), true);
    }
    expect(quic.isEstablished()).toBe(true);
    const conn = new QuicConnection(quic, 'test', 'test', SERVER, CLIENT, { wake: () => {} });
    const writers = new Map<number, StreamWriter>();
    const app: QuicApplication = {
      onReady: () => {},
      onHandshakeComplete: () => {},
      onStreamReadable: (id) => void read(quic, id),
      onStreamWritable: (id) => writers.get(id)!.flush(),
      // Stream 0 first: it is the one out of credit.
      streamsAwaitingCredit: () => [...writers.values()].filter((w) => w.blocked).map((w) => w.streamId),
      sending: false,
      onClosed: () => {},
    };
    conn.app = app;
    for (const id of [0, 4]) client.streamSend(id, Buffer.from('GET'), true);
    deliver(quic, packets(client), true);
    conn.afterReceive();
    for (const id of [0, 4]) {
      const w = new StreamWriter(conn, id);
      writers.set(id, w);
      w.write(Buffer.alloc(64 * 1024, id));
      expect(w.blocked).toBe(true);
    }
    deliver(client, packets(quic), false);
    // Stream 0 is never read by the client: it stays out of credit.
    expect(read(client, 4)).toBe(STREAM_WINDOW);
    // Reading stream 4 gave it credit (MAX_STREAM_DATA); stream 0 has none.
    deliver(quic, packets(client), true);
    conn.afterReceive();
    deliver(client, packets(quic), false);
    expect(read(client, 4)).toBeGreaterThan(0);
    expect(writers.get(0)!.blocked).toBe(true);
  });
});
