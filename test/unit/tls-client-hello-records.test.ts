import { beforeAll, describe, expect, it } from 'vitest';
import { ClientHelloRecordReader, type ClientHelloRead } from '../../src/proxy/tls/client-hello-records.js';
import { clientHello, padding, sni } from '../helpers/client-hello-builder.js';
import { captureClientHello, handshakeOf, inRecords, segments } from '../helpers/tls-records.js';

/** Pushes `chunks` one by one; every answer before the last must be need-more. */
function readAll(chunks: readonly Buffer[], maxBytes?: number): { result: ClientHelloRead; pushes: number } {
  const reader = new ClientHelloRecordReader(maxBytes);
  let result: ClientHelloRead = { kind: 'need-more' };
  let pushes = 0;
  for (const c of chunks) {
    pushes++;
    result = reader.push(c);
    if (result.kind !== 'need-more') break;
  }
  return { result, pushes };
}

const refusal = (r: ClientHelloRead): string => (r.kind === 'refused' ? r.reason : `not refused: ${r.kind}`);

let nodeHello: Buffer;
let nodeHelloNoSni: Buffer;

beforeAll(async () => {
  nodeHello = await captureClientHello({ servername: 'x.b.test' });
  nodeHelloNoSni = await captureClientHello();
});

describe('ClientHelloRecordReader: whole and fragmented ClientHellos', () => {
  it("reads SNI and ALPN from a real client's first flight in one push", () => {
    const reader = new ClientHelloRecordReader();
    const result = reader.push(nodeHello);
    expect(result).toMatchObject({ kind: 'hello', info: { serverName: 'x.b.test', alpn: ['h2', 'http/1.1'] } });
    // The answer stays, whatever comes after.
    expect(reader.push(Buffer.from('more'))).toBe(result);
  });

  it('a ClientHello without SNI is a hello without a server name', () => {
    const { result } = readAll([nodeHelloNoSni]);
    expect(result.kind).toBe('hello');
    expect(result.kind === 'hello' && result.info.serverName).toBeUndefined();
  });

  it('the same SNI whatever the record size and the TCP segmentation, and only once the last byte is in', () => {
    const message = handshakeOf(nodeHello)!;
    for (const recordSize of [1, 2, 3, 4, 5, 7, 100, 511, message.length]) {
      const stream = inRecords(message, recordSize);
      for (const segmentSize of [1, 2, 5, 6, 13, 1000, stream.length]) {
        const chunks = segments(stream, segmentSize);
        const { result, pushes } = readAll(chunks, 64 * 1024);
        expect(result, `records of ${recordSize}, segments of ${segmentSize}`).toMatchObject({ kind: 'hello', info: { serverName: 'x.b.test' } });
        expect(pushes).toBe(chunks.length);
      }
    }
  });

  it('a ClientHello split across records whose last one also carries other bytes is whole at its own end', () => {
    const message = clientHello([sni([0, 'a.test'])]);
    // Two records: the first half, then the rest with 10 bytes of a following message.
    const half = Math.floor(message.length / 2);
    const stream = Buffer.concat([inRecords(message.subarray(0, half), half), inRecords(Buffer.concat([message.subarray(half), Buffer.alloc(10, 0xee)]), 16384)]);
    expect(readAll([stream]).result).toMatchObject({ kind: 'hello', info: { serverName: 'a.test' } });
  });

  it('bytes after the ClientHello in the same segment do not matter', () => {
    expect(readAll([Buffer.concat([nodeHello, Buffer.from('GET / HTTP/1.1\r\n')])]).result).toMatchObject({ kind: 'hello', info: { serverName: 'x.b.test' } });
  });

  it('a padded ClientHello up to the byte bound is read', () => {
    const message = clientHello([sni([0, 'a.test']), padding(12_000)]);
    expect(readAll(segments(inRecords(message, 16384), 1400)).result).toMatchObject({ kind: 'hello', info: { serverName: 'a.test' } });
  });
});

describe('ClientHelloRecordReader: refusals', () => {
  it('plaintext HTTP is refused at its first byte', () => {
    expect(refusal(new ClientHelloRecordReader().push(Buffer.from('G')))).toBe('not a TLS handshake (record type 71)');
  });

  it('garbage and other record types are refused', () => {
    expect(refusal(readAll([Buffer.from([21, 3, 3, 0, 2, 2, 40])]).result)).toMatch(/not a TLS handshake \(record type 21\)/);
    expect(refusal(readAll([Buffer.from([22, 2, 0, 0, 4])]).result)).toMatch(/record version 0x200/);
    expect(refusal(readAll([Buffer.from([22, 3, 1, 0, 0])]).result)).toMatch(/handshake record of 0 bytes/);
    expect(refusal(readAll([Buffer.from([22, 3, 1, 0x40, 0x01])]).result)).toMatch(/handshake record of 16385 bytes/);
    // A handshake message that is not a ClientHello (a ServerHello, type 2).
    expect(refusal(readAll([Buffer.from([22, 3, 3, 0, 4, 2, 0, 0, 0])]).result)).toMatch(/handshake type 2/);
  });

  it('an alert record between two fragments of the ClientHello is refused', () => {
    const message = handshakeOf(nodeHello)!;
    const stream = Buffer.concat([inRecords(message.subarray(0, 100), 100), Buffer.from([21, 3, 3, 0, 2, 2, 40]), inRecords(message.subarray(100), 16384)]);
    expect(refusal(readAll([stream]).result)).toMatch(/non-handshake record inside the ClientHello \(record type 21\)/);
  });

  it('a malformed ClientHello is refused with the parser reason', () => {
    const message = clientHello([sni([0, 'bad name!'])]);
    expect(refusal(readAll([inRecords(message, 16384)]).result)).toMatch(/^client-hello-bad-server-name/);
  });

  it('a ClientHello announcing more than the byte bound is refused before its body arrives', () => {
    const message = clientHello([sni([0, 'a.test']), padding(20_000)]);
    const { result, pushes } = readAll(segments(inRecords(message, 16384), 100));
    expect(refusal(result)).toMatch(/ClientHello of \d+ bytes \(at most 16384\)/);
    expect(pushes).toBe(1);
  });

  it('a ClientHello spread thin over tiny records is refused once the byte bound is reached', () => {
    // 1-byte records: 6 stream bytes per ClientHello byte.
    const message = clientHello([sni([0, 'a.test']), padding(3000)]);
    const stream = inRecords(message, 1);
    expect(stream.length).toBeGreaterThan(16384);
    const { result, pushes } = readAll(segments(stream, 1000));
    expect(refusal(result)).toBe('no whole ClientHello within 16384 bytes');
    expect(pushes).toBe(17);
  });

  it('a small bound applies to the stream bytes, record headers included', () => {
    const stream = inRecords(handshakeOf(nodeHello)!, 16384);
    expect(readAll([stream], stream.length).result.kind).toBe('hello');
    expect(refusal(readAll([stream], stream.length - 1).result)).toMatch(/ClientHello of \d+ bytes|no whole ClientHello/);
  });
});
