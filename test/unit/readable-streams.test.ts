/**
 * ReadableStreams against real quiche: a client and a server connection of the binding, joined in
 * memory (packets handed over by the test, so one can be held back to open a gap in stream ids).
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { quiche, type QuicheConnection } from '../../src/proxy/quic/native.js';
import { ReadableStreams } from '../../src/proxy/quic/readable-streams.js';
import { makeCert } from '../helpers/certs.js';
import { makeTempDir } from '../helpers/proxy.js';

const dir = makeTempDir('readable-streams-');
const pair = makeCert(dir, 'server', 'localhost');

const CLIENT = { host: '127.0.0.1', port: 40000 };
const SERVER = { host: '127.0.0.1', port: 443 };

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
  cfg.setInitialMaxStreamDataBidiLocal(1 << 16);
  cfg.setInitialMaxStreamDataBidiRemote(1 << 16);
  cfg.setInitialMaxStreamDataUni(1 << 16);
  cfg.setInitialMaxStreamsBidi(100);
  cfg.setInitialMaxStreamsUni(16);
  return cfg;
}

/** The datagrams `from` has to send now. */
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

function connected(): { client: QuicheConnection; server: QuicheConnection } {
  const client = quiche.Connection.connect('localhost', randomBytes(16), CLIENT, SERVER, config(false));
  const first = packets(client);
  const server = quiche.Connection.accept(randomBytes(16), null, SERVER, CLIENT, config(true));
  deliver(server, first, true);
  for (let i = 0; i < 10 && !(client.isEstablished() && server.isEstablished()); i++) {
    deliver(client, packets(server), false);
    deliver(server, packets(client), true);
  }
  expect(server.isEstablished()).toBe(true);
  deliver(client, packets(server), false);
  return { client, server };
}

/** What the server's application would be told is readable, found as QuicConnection.afterReceive does. */
function readableNow(server: QuicheConnection, streams: ReadableStreams, read: (id: number) => void = (id) => drain(server, id)): number[] {
  if (!server.isReadable()) return [];
  const found = [...streams.collect(server)];
  for (const id of found) read(id);
  const missed = streams.missed(server, found);
  for (const id of missed) read(id);
  return [...found, ...missed].sort((a, b) => a - b);
}

function drain(server: QuicheConnection, id: number): string {
  let text = '';
  const buf = Buffer.alloc(4096);
  for (;;) {
    const r = server.streamRecv(id, buf);
    if (r === null) return text;
    text += buf.toString('latin1', 0, r[0]);
    if (r[1]) return text;
  }
}

describe('ReadableStreams (real quiche)', () => {
  it('finds new bidirectional and unidirectional streams, each once, and forgets finished ones', () => {
    const { client, server } = connected();
    const streams = new ReadableStreams();
    client.streamSend(2, Buffer.from('uni'), false);
    client.streamSend(0, Buffer.from('req0'), true);
    client.streamSend(4, Buffer.from('req4'), false);
    deliver(server, packets(client), true);
    expect(readableNow(server, streams)).toEqual([0, 2, 4]);
    // Drained: nothing is readable until more arrives.
    expect(server.isReadable()).toBe(false);
    client.streamSend(4, Buffer.from('more'), true);
    client.streamSend(8, Buffer.from('req8'), true);
    deliver(server, packets(client), true);
    expect(readableNow(server, streams)).toEqual([4, 8]);
    // Every request stream was read to its FIN: the next poll drops them, only the open uni stream stays.
    client.streamSend(2, Buffer.from('more'), false);
    deliver(server, packets(client), true);
    expect(readableNow(server, streams)).toEqual([2]);
    expect(streams.size).toBe(1);
  });

  it('finds a stream above a gap (its lower neighbour lost) and the lower one once it arrives', () => {
    const { client, server } = connected();
    const streams = new ReadableStreams();
    client.streamSend(0, Buffer.from('first'), true);
    const lost = packets(client);
    client.streamSend(4, Buffer.from('second'), true);
    deliver(server, packets(client), true);
    expect(readableNow(server, streams)).toEqual([4]);
    deliver(server, lost, true);
    expect(readableNow(server, streams)).toEqual([0]);
    client.streamSend(8, Buffer.from('third'), true);
    deliver(server, packets(client), true);
    expect(readableNow(server, streams)).toEqual([8]);
  });

  it('keeps reporting a stream the application leaves unread, and reports a RESET_STREAM', () => {
    const { client, server } = connected();
    const streams = new ReadableStreams();
    client.streamSend(0, Buffer.from('body'), false);
    deliver(server, packets(client), true);
    // Back-pressure: the application reads nothing this time.
    expect(readableNow(server, streams, () => undefined)).toEqual([0]);
    expect(readableNow(server, streams)).toEqual([0]);
    client.streamShutdown(0, quiche.Shutdown.Write, 0x10c);
    deliver(server, packets(client), true);
    let error = '';
    expect(
      readableNow(server, streams, (id) => {
        try {
          drain(server, id);
        } catch (err) {
          error = (err as Error).message;
        }
      }),
    ).toEqual([0]);
    expect(error).toMatch(/^StreamReset\(268\)/);
  });
});
