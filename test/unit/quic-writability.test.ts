/**
 * QuicConnection.afterReceive offering flow-control credit to the application's waiting streams,
 * against real quiche: a client and a server connection of the binding joined in memory, the
 * server's wrapped in QuicConnection with StreamWriters as its application.
 */
import { describe, expect, it } from 'vitest';
import { StreamWriter } from '../../src/proxy/h3/stream-writer.js';
import { QuicConnection, type QuicApplication } from '../../src/proxy/quic/connection.js';
import type { QuicheConnection } from '../../src/proxy/quic/native.js';
import { CLIENT, connectedPair, deliver, packets, SERVER } from '../helpers/quiche-pair.js';

/** The client's window per stream it opened: small, so one stream runs out while the connection has plenty. */
const STREAM_WINDOW = 4096;

function read(conn: QuicheConnection, id: number): number {
  const buf = Buffer.alloc(65536);
  let n = 0;
  for (let r = conn.streamRecv(id, buf); r !== null; r = conn.streamRecv(id, buf)) n += r[0];
  return n;
}

describe('QuicConnection: credit for waiting streams', () => {
  it('a stream out of its own credit does not hold back a later one that has credit', () => {
    const { client, server: quic } = connectedPair({ clientStreamWindow: STREAM_WINDOW });
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
