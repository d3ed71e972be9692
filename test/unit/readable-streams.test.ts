/**
 * ReadableStreams against real quiche: a client and a server connection of the binding, joined in
 * memory (packets handed over by the test, so one can be held back to open a gap in stream ids).
 */
import { describe, expect, it } from 'vitest';
import { quiche, type QuicheConnection } from '../../src/proxy/quic/native.js';
import { ReadableStreams } from '../../src/proxy/quic/readable-streams.js';
import { connectedPair, deliver, packets } from '../helpers/quiche-pair.js';

const connected = connectedPair;

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
