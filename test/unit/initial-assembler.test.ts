import { describe, expect, it } from 'vitest';
import { CHROME_INITIAL_DATAGRAMS } from './initial-chrome-capture.js';
import { ClientHelloAssembler } from '../../src/proxy/quic/initial/assembler.js';
import { parseClientHello, type ClientHelloInfo } from '../../src/proxy/tls/client-hello.js';
import { extractCryptoFrames, type CryptoFragment } from '../../src/proxy/quic/initial/frames.js';
import { QUIC_V1, QUIC_V2 } from '../../src/proxy/quic/initial/keys.js';
import { decryptClientInitial } from '../../src/proxy/quic/initial/packet.js';
import { buildClientInitial, quicheClientInitial } from '../helpers/quic-initial.js';
import { expectInitialParseReason } from '../helpers/initial-parse-error.js';

/** The ClientHello bytes carried by a single-datagram Initial. */
function clientHelloOf(datagram: Buffer): Buffer {
  const fragments = extractCryptoFrames(decryptClientInitial(datagram).payload).sort((a, b) => a.offset - b.offset);
  expect(fragments[0]!.offset).toBe(0);
  return Buffer.concat(fragments.map((f) => f.data));
}

/**
 * Appends an opaque extension of `extra` bytes to a ClientHello, as a large post-quantum key share
 * does in Chrome, so that it no longer fits one datagram.
 */
function inflateClientHello(msg: Buffer, extra: number): Buffer {
  let pos = 4 + 2 + 32;
  pos += 1 + msg[pos]!; // session id
  pos += 2 + msg.readUInt16BE(pos); // cipher suites
  pos += 1 + msg[pos]!; // compression
  const extensionsLengthAt = pos;
  const ext = Buffer.alloc(4 + extra, 0x42);
  ext.writeUInt16BE(0xfafa, 0); // a GREASE codepoint: ignored by parsers
  ext.writeUInt16BE(extra, 2);
  const out = Buffer.concat([msg, ext]);
  out.writeUInt16BE(msg.readUInt16BE(extensionsLengthAt) + ext.length, extensionsLengthAt);
  out.writeUIntBE(out.length - 4, 1, 3);
  return out;
}

const dcid = Buffer.from('0011223344556677', 'hex');
const scid = Buffer.from('a1a2a3a4', 'hex');

function initialWith(pn: number, fragments: CryptoFragment[], extra: Partial<Parameters<typeof buildClientInitial>[0]> = {}): Buffer {
  return buildClientInitial({ dcid, scid, pn, cryptoFrames: fragments, ...extra });
}

function pushAll(datagrams: Buffer[]): { results: ('need-more' | ClientHelloInfo)[]; assembler: ClientHelloAssembler } {
  const assembler = new ClientHelloAssembler();
  return { results: datagrams.map((d) => assembler.push(d)), assembler };
}

describe('ClientHelloAssembler with a real quiche client', () => {
  it('reads SNI and ALPN from quiche Initials', () => {
    const datagram = quicheClientInitial('sni.example', ['h3'], scid);
    expect(datagram.length).toBeGreaterThanOrEqual(1200);
    const assembler = new ClientHelloAssembler();
    const info = assembler.push(datagram);
    expect(info).not.toBe('need-more');
    const hello = info as ClientHelloInfo;
    expect(hello.serverName).toBe('sni.example');
    expect(hello.alpn).toEqual(['h3']);
    expect(hello.quicTransportParametersPresent).toBe(true);
    expect(hello.supportedVersions).toContain(0x0304);
    expect(assembler.initial?.version).toBe(QUIC_V1);
    expect(assembler.initial?.scid.equals(scid)).toBe(true);
    expect(assembler.initial?.dcid.length).toBeGreaterThan(0);
    expect(assembler.clientHello).toBe(info);
  });

  it('reads an ALPN list and a missing SNI', () => {
    const info = new ClientHelloAssembler().push(quicheClientInitial(null, ['h3', 'hq-interop'], scid)) as ClientHelloInfo;
    expect(info.serverName).toBeUndefined();
    expect(info.alpn).toEqual(['h3', 'hq-interop']);
  });
});

describe('ClientHelloAssembler with captured Chromium Initials', () => {
  const chrome = CHROME_INITIAL_DATAGRAMS.map((h) => Buffer.from(h, 'hex'));
  const expected = {
    serverName: 'sni.example',
    alpn: ['h3'],
    quicTransportParametersPresent: true,
    legacyVersion: 0x0303,
    supportedVersions: [0x0304],
    offersEarlyData: false,
  };

  it('needs both datagrams of the split ClientHello, in either order', () => {
    for (const [x, y] of [[0, 1], [1, 0]] as const) {
      const assembler = new ClientHelloAssembler();
      expect(assembler.push(chrome[x]!)).toBe('need-more');
      expect(assembler.push(chrome[y]!)).toEqual(expected);
    }
  });

  it('completes from PTO retransmissions alone, re-split differently', () => {
    const assembler = new ClientHelloAssembler();
    const results = chrome.slice(2, 5).map((d) => assembler.push(d));
    expect(results.at(-1)).toEqual(expected);
  });

  it('reports the CONNECTION_CLOSE Chromium sends when it gives up', () => {
    expect(() => new ClientHelloAssembler().push(chrome.at(-1)!)).toThrow(/peer-closed/);
  });
});

describe('ClientHelloAssembler reassembly', () => {
  const hello = inflateClientHello(clientHelloOf(quicheClientInitial('split.example', ['h3'], scid)), 1600);
  const expected = parseClientHello(hello);
  const cut = 1000;
  const first = initialWith(0, [{ offset: 0, data: hello.subarray(0, cut) }]);
  const second = initialWith(1, [{ offset: cut, data: hello.subarray(cut) }]);

  it('the inflated ClientHello needs two datagrams and still parses', () => {
    expect(hello.length).toBeGreaterThan(1200);
    expect(expected.serverName).toBe('split.example');
    expect(expected.alpn).toEqual(['h3']);
  });

  for (const [name, order] of [
    ['in order', [first, second]],
    ['reversed', [second, first]],
    ['with duplicates', [first, first, second]],
    ['reversed with duplicates', [second, second, first, first]],
  ] as const) {
    it(`completes on the datagram that fills the gap (${name})`, () => {
      const { results } = pushAll([...order]);
      const done = results.findIndex((r) => r !== 'need-more');
      const lastNew = order.findIndex((d, i) => i > 0 && !order.slice(0, i).includes(d));
      expect(done).toBe(lastNew);
      expect(results.slice(0, done).every((r) => r === 'need-more')).toBe(true);
      expect(results[done]).toEqual(expected);
      expect(results.slice(done).every((r) => r === results[done])).toBe(true); // retransmits return the result
    });
  }

  it('handles overlapping, out-of-order fragments across three datagrams and within one packet', () => {
    const end = hello.length;
    const a = initialWith(0, [
      { offset: end - 400, data: hello.subarray(end - 400, end - 50) },
      { offset: 0, data: hello.subarray(0, 700) },
    ]);
    const b = initialWith(1, [{ offset: 600, data: hello.subarray(600, end - 300) }]); // overlaps both sides
    const c = initialWith(2, [{ offset: end - 100, data: hello.subarray(end - 100) }]);
    for (const order of [[a, b, c], [c, b, a], [b, c, a], [c, a, b]]) {
      const { results } = pushAll(order);
      expect(results.slice(0, 2)).toEqual(['need-more', 'need-more']);
      expect(results[2]).toEqual(expected);
    }
  });

  it('accepts two Initials coalesced in one datagram', () => {
    const p0 = initialWith(0, [{ offset: 0, data: hello.subarray(0, cut) }], { padTo: 0 });
    const p1 = initialWith(1, [{ offset: cut, data: hello.subarray(cut) }], { padTo: 0 });
    expect(new ClientHelloAssembler().push(Buffer.concat([p1, p0]))).toEqual(expected);
  });

  it('works for QUIC v2 Initials', () => {
    const v2 = [0, 1].map((pn) =>
      initialWith(pn, [pn === 0 ? { offset: 0, data: hello.subarray(0, cut) } : { offset: cut, data: hello.subarray(cut) }], { version: QUIC_V2 }),
    );
    const assembler = new ClientHelloAssembler();
    expect(assembler.push(v2[1]!)).toBe('need-more');
    expect(assembler.push(v2[0]!)).toEqual(expected);
    expect(assembler.initial?.version).toBe(QUIC_V2);
  });

  it('drops a bad datagram without disturbing the collected state', () => {
    const assembler = new ClientHelloAssembler();
    expect(assembler.push(first)).toBe('need-more');
    const corrupt = Buffer.from(second);
    corrupt[corrupt.length - 3] = corrupt[corrupt.length - 3]! ^ 0x10;
    expectInitialParseReason(() => assembler.push(corrupt), 'decrypt-failed');
    expectInitialParseReason(() => assembler.push(second.subarray(0, 1100)), 'datagram-too-short');
    const foreign = buildClientInitial({ dcid: Buffer.from('ffeeddcc', 'hex'), scid, pn: 1, cryptoFrames: [{ offset: cut, data: hello.subarray(cut) }] });
    expectInitialParseReason(() => assembler.push(foreign), 'dcid-mismatch');
    const forbidden = initialWith(1, [{ offset: cut, data: hello.subarray(cut) }], { extraFrames: Buffer.from([0x08, 0x00, 0x00]) });
    expectInitialParseReason(() => assembler.push(forbidden), 'frame-not-allowed');
    expect(assembler.push(second)).toEqual(expected);
  });
});

describe('ClientHelloAssembler limits and refusals', () => {
  const data = Buffer.from([1, 0, 0, 10, 3, 3]);

  it('refuses CRYPTO data beyond the cap', () => {
    expectInitialParseReason(() => new ClientHelloAssembler().push(initialWith(0, [{ offset: 65536, data: Buffer.from([1]) }])), 'crypto-too-large');
    expectInitialParseReason(
      () => new ClientHelloAssembler({ maxCryptoBytes: 4096 }).push(initialWith(0, [{ offset: 4000, data: Buffer.alloc(200) }])),
      'crypto-too-large',
    );
    // A ClientHello that announces more than the cap fails as soon as its header is in.
    expectInitialParseReason(() => new ClientHelloAssembler().push(initialWith(0, [{ offset: 0, data: Buffer.from([1, 1, 0, 0]) }])), 'crypto-too-large');
  });

  it('refuses too many fragments', () => {
    const many = [...Array(65)].map((_, i) => ({ offset: 10 + i * 3, data: Buffer.from([0]) }));
    expectInitialParseReason(() => new ClientHelloAssembler().push(initialWith(0, many)), 'too-many-fragments');
    const assembler = new ClientHelloAssembler({ maxFragments: 4 });
    for (let i = 0; i < 4; i++) expect(assembler.push(initialWith(i, [{ offset: 100 + 10 * i, data: Buffer.from([0]) }]))).toBe('need-more');
    expectInitialParseReason(() => assembler.push(initialWith(9, [{ offset: 500, data: Buffer.from([0]) }])), 'too-many-fragments');
    // Duplicates and covered fragments do not count.
    expect(assembler.push(initialWith(10, [{ offset: 100, data: Buffer.from([0]) }]))).toBe('need-more');
    expect(assembler.push(initialWith(11, [{ offset: 95, data: Buffer.alloc(40) }]))).toBe('need-more'); // covers all four
    expect(assembler.push(initialWith(12, [{ offset: 500, data: Buffer.from([0]) }]))).toBe('need-more');
  });

  it('refuses a handshake message other than ClientHello, and stays failed', () => {
    const assembler = new ClientHelloAssembler();
    const bad = Buffer.from(data);
    bad[0] = 2;
    expectInitialParseReason(() => assembler.push(initialWith(0, [{ offset: 0, data: bad }])), 'not-client-hello');
    expectInitialParseReason(() => assembler.push(initialWith(1, [{ offset: 0, data }])), 'not-client-hello');
  });

  it('reports a client CONNECTION_CLOSE', () => {
    const close = Buffer.from('1c0a0000', 'hex');
    expectInitialParseReason(() => new ClientHelloAssembler().push(initialWith(0, [], { extraFrames: close })), 'peer-closed');
  });

  it('waits on a lone header and on a ClientHello without a start', () => {
    const assembler = new ClientHelloAssembler();
    expect(assembler.push(initialWith(0, [{ offset: 2, data: Buffer.from([0, 10]) }]))).toBe('need-more');
    expect(assembler.push(initialWith(1, [{ offset: 0, data: Buffer.from([1]) }]))).toBe('need-more');
    expect(assembler.push(initialWith(2, [], { extraFrames: Buffer.from([0x01]) }))).toBe('need-more'); // PING only
  });

  it('refuses a complete but malformed ClientHello', () => {
    const truncatedHello = Buffer.concat([Buffer.from([1, 0, 0, 3]), Buffer.from([3, 3, 0])]);
    expectInitialParseReason(() => new ClientHelloAssembler().push(initialWith(0, [{ offset: 0, data: truncatedHello }])), 'client-hello-truncated');
  });
});
