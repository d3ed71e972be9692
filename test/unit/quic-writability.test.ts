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

/** Our unidirectional stream (as the HTTP/3 control stream): the connection's capacity probe. */
const OWN_UNI_STREAM = 3;

/** The server's application: StreamWriters waiting for credit in the order they were made. */
function writersApp(quic: QuicheConnection, writers: Map<number, StreamWriter>): QuicApplication {
  return {
    onReady: () => {},
    onHandshakeComplete: () => {},
    onStreamReadable: (id) => void read(quic, id),
    onStreamWritable: (id) => writers.get(id)!.flush(),
    streamsAwaitingCredit: () => [...writers.values()].filter((w) => w.blocked).map((w) => w.streamId),
    sending: false,
    onClosed: () => {},
  };
}

/** The client opens `ids` with a request each; the server reads them and answers each with 64 KiB, more than any credit. */
function openAndAnswer(client: QuicheConnection, quic: QuicheConnection, conn: QuicConnection, ids: number[], writers: Map<number, StreamWriter>): void {
  for (const id of ids) client.streamSend(id, Buffer.from('GET'), true);
  deliver(quic, packets(client), true);
  conn.afterReceive();
  for (const id of ids) {
    const w = new StreamWriter(conn, id);
    writers.set(id, w);
    w.write(Buffer.alloc(64 * 1024, id));
    expect(w.blocked).toBe(true);
  }
}

/** `quic` with its streamCapacity calls counted. */
function countingCapacity(quic: QuicheConnection): { quic: QuicheConnection; calls: () => number } {
  let calls = 0;
  const counted = new Proxy(quic, {
    get(target, key) {
      if (key === 'streamCapacity') {
        return (id: number) => {
          calls++;
          return target.streamCapacity(id);
        };
      }
      const v: unknown = Reflect.get(target, key);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { quic: counted, calls: () => calls };
}

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
    // Stream 0 first: it is the one out of credit.
    conn.app = writersApp(quic, writers);
    openAndAnswer(client, quic, conn, [0, 4], writers);
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

  it('a stream that used up its own credit, not the connection\'s, does not hold back a later one', () => {
    const { client, server: quic } = connectedPair({ clientStreamWindow: STREAM_WINDOW });
    const conn = new QuicConnection(quic, 'test', 'test', SERVER, CLIENT, { wake: () => {} });
    const writers = new Map<number, StreamWriter>();
    conn.app = writersApp(quic, writers);
    // The capacity probe: one byte written to our unidirectional stream, far below its credit.
    expect(conn.streamSend(OWN_UNI_STREAM, Buffer.from([0]), false)).toBe(1);
    openAndAnswer(client, quic, conn, [0, 4], writers);
    deliver(client, packets(quic), false);
    expect(read(client, 0)).toBe(STREAM_WINDOW);
    expect(read(client, 4)).toBe(STREAM_WINDOW);
    // Both streams get a window more (MAX_STREAM_DATA); stream 0 uses up its own on the next
    // receive while the connection has capacity left, which stream 4 must still get.
    deliver(quic, packets(client), true);
    conn.afterReceive();
    deliver(client, packets(quic), false);
    expect(read(client, 0)).toBeGreaterThan(0);
    expect(read(client, 4)).toBeGreaterThan(0);
    expect(writers.get(0)!.blocked).toBe(true);
    expect(writers.get(4)!.blocked).toBe(true);
  });

  it('once the connection\'s capacity is used up, the streams after it are not asked', () => {
    const pair = connectedPair();
    const { quic, calls } = countingCapacity(pair.server);
    const conn = new QuicConnection(quic, 'test', 'test', SERVER, CLIENT, { wake: () => {} });
    const writers = new Map<number, StreamWriter>();
    conn.app = writersApp(quic, writers);
    conn.streamSend(OWN_UNI_STREAM, Buffer.from([0]), false);
    const ids = Array.from({ length: 20 }, (_, i) => i * 4);
    openAndAnswer(pair.client, quic, conn, ids, writers);
    // The client acknowledges the first flight: the congestion window lets more go, less than
    // the first stream alone waits to send.
    deliver(pair.client, packets(quic), false);
    for (const id of ids) read(pair.client, id);
    const before = calls();
    deliver(quic, packets(pair.client), true);
    conn.afterReceive();
    // The probe, the first stream, the probe again: not one query per waiting stream.
    expect(calls() - before).toBeLessThanOrEqual(4);
    expect(packets(quic).length).toBeGreaterThan(0);
    expect(writers.get(ids.at(-1)!)!.blocked).toBe(true);
  });
});
