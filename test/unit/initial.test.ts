import { hkdfSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { deriveInitialSecrets, hkdfExpandLabel, hkdfExtract, QUIC_V1, QUIC_V2 } from '../../src/proxy/quic/initial/keys.js';
import { extractCryptoFrames, parseInitialFrames } from '../../src/proxy/quic/initial/frames.js';
import { decryptClientInitial, decryptClientInitials, parseLongHeader } from '../../src/proxy/quic/initial/packet.js';
import {
  CLIENT_CRYPTO_FRAME,
  CLIENT_HELLO,
  CLIENT_PADDING_LENGTH,
  RFC_DCID,
  V1_KEYS,
  V1_PROTECTED_PACKET,
  V1_UNPROTECTED_HEADER,
  V2_KEYS,
  V2_PROTECTED_PACKET,
} from './initial-rfc-vectors.js';
import { hex } from '../helpers/hex.js';
import { buildClientInitial } from '../helpers/quic-initial.js';
import { expectInitialParseReason } from '../helpers/initial-parse-error.js';

const dcid = hex(RFC_DCID);
const rfcPlaintext = Buffer.concat([hex(CLIENT_CRYPTO_FRAME), Buffer.alloc(CLIENT_PADDING_LENGTH)]);

function keysHex(k: { secret: Buffer; key: Buffer; iv: Buffer; hp: Buffer }) {
  return { secret: k.secret.toString('hex'), key: k.key.toString('hex'), iv: k.iv.toString('hex'), hp: k.hp.toString('hex') };
}

describe('deriveInitialSecrets', () => {
  it('matches RFC 9001 A.1 (v1 client and server)', () => {
    expect(keysHex(deriveInitialSecrets(dcid, QUIC_V1))).toEqual(V1_KEYS.client);
    expect(keysHex(deriveInitialSecrets(dcid, QUIC_V1, 'server'))).toEqual(V1_KEYS.server);
  });

  it('matches RFC 9369 A.1 (v2 client)', () => {
    expect(keysHex(deriveInitialSecrets(dcid, QUIC_V2))).toEqual(V2_KEYS.client);
  });

  it('hkdfExpandLabel equals node:crypto HKDF over the same HkdfLabel, also beyond one block', () => {
    const salt = hex('0dede3def700a6db819381be6e269dcbf9bd2ed9');
    for (const length of [12, 16, 32, 33, 80]) {
      const label = 'tls13 quic key';
      const info = Buffer.concat([Buffer.from([length >> 8, length & 0xff, label.length]), Buffer.from(label), Buffer.from([0])]);
      const expected = Buffer.from(hkdfSync('sha256', dcid, salt, info, length));
      expect(hkdfExpandLabel(hkdfExtract(salt, dcid), 'quic key', length).toString('hex')).toBe(expected.toString('hex'));
    }
  });

  it('refuses unknown versions with a typed error', () => {
    expectInitialParseReason(() => deriveInitialSecrets(dcid, 0xff00001d), 'unsupported-version');
  });
});

describe('RFC client Initial (A.2)', () => {
  for (const [name, version, packet] of [
    ['v1 (RFC 9001)', QUIC_V1, V1_PROTECTED_PACKET],
    ['v2 (RFC 9369)', QUIC_V2, V2_PROTECTED_PACKET],
  ] as const) {
    it(`decrypts the ${name} packet to the published plaintext`, () => {
      const datagram = hex(packet);
      const copy = Buffer.from(datagram);
      const initial = decryptClientInitial(datagram);
      expect(initial.version).toBe(version);
      expect(initial.dcid.toString('hex')).toBe(RFC_DCID);
      expect(initial.scid.length).toBe(0);
      expect(initial.token.length).toBe(0);
      expect(initial.packetNumber).toBe(2);
      expect(initial.payload.equals(rfcPlaintext)).toBe(true);
      expect(datagram.equals(copy)).toBe(true); // input untouched

      const crypto = extractCryptoFrames(initial.payload);
      expect(crypto).toHaveLength(1);
      expect(crypto[0]!.offset).toBe(0);
      expect(crypto[0]!.data.toString('hex')).toBe(CLIENT_HELLO);
    });

    it(`buildClientInitial reproduces the ${name} packet byte for byte`, () => {
      const built = buildClientInitial({
        dcid,
        scid: Buffer.alloc(0),
        pn: 2,
        pnLength: 4,
        version,
        cryptoFrames: [{ offset: 0, data: hex(CLIENT_HELLO) }],
      });
      expect(built.toString('hex')).toBe(packet);
    });
  }

  it('parses the long header of the RFC packet', () => {
    const h = parseLongHeader(hex(V1_PROTECTED_PACKET), 0);
    expect(h.version).toBe(QUIC_V1);
    expect(h.type).toBe('initial');
    expect(h.dcid.toString('hex')).toBe(RFC_DCID);
    expect(h.pnOffset).toBe(V1_UNPROTECTED_HEADER.length / 2 - 4);
    expect(h.end).toBe(1200);
  });

  it('rejects a packet whose ciphertext, tag or header was altered', () => {
    for (const at of [30, 600, 1199, 8]) {
      const d = hex(V1_PROTECTED_PACKET);
      d[at] = d[at]! ^ 0x01;
      expectInitialParseReason(() => decryptClientInitial(d), 'decrypt-failed');
    }
  });
});

describe('parseLongHeader', () => {
  const initial = () => hex(V1_PROTECTED_PACKET);

  it('types every malformed header', () => {
    expectInitialParseReason(() => parseLongHeader(Buffer.from([0x40, 1, 2, 3]), 0), 'not-long-header');
    expectInitialParseReason(() => parseLongHeader(initial().subarray(0, 3), 0), 'truncated');
    const v = initial();
    v.writeUInt32BE(0xff00001d, 1);
    expectInitialParseReason(() => parseLongHeader(v, 0), 'unsupported-version');
    const vn = initial();
    vn.writeUInt32BE(0, 1);
    expectInitialParseReason(() => parseLongHeader(vn, 0), 'unsupported-version');
    const fixed = initial();
    fixed[0] = fixed[0]! & ~0x40;
    expectInitialParseReason(() => parseLongHeader(fixed, 0), 'fixed-bit-clear');
    const longCid = initial();
    longCid[5] = 21;
    expectInitialParseReason(() => parseLongHeader(longCid, 0), 'cid-too-long');
    const retry = initial();
    retry[0] = 0xf0; // v1 type 3
    expectInitialParseReason(() => parseLongHeader(retry, 0), 'unexpected-packet-type');
    expectInitialParseReason(() => parseLongHeader(initial().subarray(0, 1199), 0), 'bad-length');
    expectInitialParseReason(() => parseLongHeader(initial().subarray(0, 16), 0), 'truncated');
  });

  it('reads the token of an Initial and walks coalesced packets by Length', () => {
    const scid = hex('c0ffee');
    const token = hex('00112233445566778899');
    const first = buildClientInitial({ dcid, scid, pn: 0, token, cryptoFrames: [{ offset: 0, data: hex(CLIENT_HELLO) }], padTo: 0 });
    const handshake = rawLongPacket(0xe0, dcid, scid, 40); // v1 Handshake
    const second = buildClientInitial({ dcid, scid, pn: 1, extraFrames: Buffer.from([0x01]), padTo: 0 });
    const d = Buffer.concat([first, handshake, second, Buffer.from([0x40, 9, 9, 9])]);
    const h0 = parseLongHeader(d, 0);
    expect(h0.token.equals(token)).toBe(true);
    expect(h0.scid.equals(scid)).toBe(true);
    expect(h0.end).toBe(first.length);
    const h1 = parseLongHeader(d, h0.end);
    expect(h1.type).toBe('handshake');
    expect(h1.token.length).toBe(0);
    expect(h1.end).toBe(first.length + handshake.length);

    const packets = decryptClientInitials(d);
    expect(packets.map((p) => p.packetNumber)).toEqual([0, 1]);
    expect(packets[0]!.token.equals(token)).toBe(true);
    expect(extractCryptoFrames(packets[0]!.payload)[0]!.data.toString('hex')).toBe(CLIENT_HELLO);
    expect(parseInitialFrames(packets[1]!.payload)).toEqual({ crypto: [], connectionClose: false });
  });

  it('ignores coalesced packets with another DCID and keeps good Initials when a later one is bad', () => {
    const other = buildClientInitial({ dcid: hex('0102030405060708'), scid: Buffer.alloc(0), pn: 7, extraFrames: Buffer.from([1]), padTo: 0 });
    const good = buildClientInitial({ dcid, scid: Buffer.alloc(0), pn: 3, extraFrames: Buffer.from([1]), padTo: 0 });
    const bad = Buffer.from(good);
    bad[bad.length - 1] = bad[bad.length - 1]! ^ 0xff;
    const packets = decryptClientInitials(Buffer.concat([good, other, bad]));
    expect(packets).toHaveLength(1);
    expect(packets[0]!.packetNumber).toBe(3);
    expect(decryptClientInitials(Buffer.concat([bad, good])).map((p) => p.packetNumber)).toEqual([3]);
    expectInitialParseReason(() => decryptClientInitials(Buffer.concat([bad, other])), 'decrypt-failed');
  });

  it('reports datagrams without any client Initial', () => {
    expectInitialParseReason(() => decryptClientInitials(rawLongPacket(0xe0, dcid, Buffer.alloc(0), 40)), 'no-initial-packet');
    expectInitialParseReason(() => decryptClientInitials(Buffer.from([0x41, 0, 0, 0])), 'not-long-header');
    expectInitialParseReason(() => decryptClientInitials(Buffer.alloc(0)), 'truncated');
  });

  it('handles 1- to 4-byte packet numbers and v2 type bits', () => {
    for (const [pn, pnLength] of [[0, 1], [0x1234, 2], [0x123456, 3], [0x12345678, 4], [5, 3]] as const) {
      for (const version of [QUIC_V1, QUIC_V2] as const) {
        const d = buildClientInitial({ dcid, scid: Buffer.alloc(0), pn, pnLength, version, extraFrames: Buffer.from([1]) });
        const p = decryptClientInitial(d);
        expect(p.packetNumber).toBe(pn);
        expect(p.version).toBe(version);
      }
    }
  });

  it('refuses a packet too short to sample for header protection', () => {
    const d = buildClientInitial({ dcid, scid: Buffer.alloc(0), pn: 0, extraFrames: Buffer.from([1]), padTo: 0 });
    // Rewrite Length (2-byte varint before the pn) to leave fewer than 20 bytes after pn_offset.
    const h = parseLongHeader(d, 0);
    d.writeUInt16BE(0x4000 | 19, h.pnOffset - 2);
    expectInitialParseReason(() => decryptClientInitials(d.subarray(0, h.pnOffset + 19)), 'bad-length');
  });

  it('refuses reserved bits set under protection, but only after authenticating the packet', () => {
    for (const reservedBits of [1, 2, 3]) {
      const d = buildClientInitial({ dcid, scid: Buffer.alloc(0), pn: 1, extraFrames: Buffer.from([1]), reservedBits });
      expectInitialParseReason(() => decryptClientInitial(d), 'reserved-bits-set');
      d[0] = d[0]! ^ 0x04; // a protected first byte that does not authenticate
      expectInitialParseReason(() => decryptClientInitial(d), 'decrypt-failed');
    }
  });
});

describe('parseInitialFrames', () => {
  it('walks PADDING, PING, ACK, ACK_ECN, CRYPTO and CONNECTION_CLOSE', () => {
    const frames = Buffer.concat([
      hex('0000'), // padding
      hex('01'), // ping
      hex('02' + '05' + '00' + '02' + '01' + '00' + '00' + '01' + '00'), // ACK: 2 extra ranges
      hex('03' + '4005' + '00' + '00' + '00' + '01' + '02' + '03'), // ACK_ECN
      hex('06' + '00' + '03' + 'aabbcc'), // CRYPTO 0..3
      hex('06' + '4100' + '02' + 'ddee'), // CRYPTO 256..258
      hex('1c' + '0a' + '00' + '03' + '626164'), // CONNECTION_CLOSE "bad"
      Buffer.alloc(5),
    ]);
    const parsed = parseInitialFrames(frames);
    expect(parsed.connectionClose).toBe(true);
    expect(parsed.crypto.map((f) => [f.offset, f.data.toString('hex')])).toEqual([
      [0, 'aabbcc'],
      [256, 'ddee'],
    ]);
  });

  it('rejects frames not allowed in Initial packets', () => {
    for (const type of ['07', '08', '0f', '10', '18', '1d', '1e', '30', '4006', '1f']) {
      expectInitialParseReason(() => extractCryptoFrames(hex(type + '00000000')), 'frame-not-allowed');
    }
  });

  it('rejects empty payloads and truncated frames', () => {
    expectInitialParseReason(() => extractCryptoFrames(Buffer.alloc(0)), 'no-frames');
    for (const bad of ['06', '0600', '06000501', '0640', '02', '020000', '02000001', '0200000100', '030000000000', '1c00', '1c000005aa', '02000080ffffff00']) {
      expectInitialParseReason(() => extractCryptoFrames(hex(bad)), 'bad-frame');
    }
    expectInitialParseReason(() => extractCryptoFrames(hex('06ffffffffffffffff01aa')), 'bad-frame'); // offset+length > 2^53
  });
});

/** A long-header packet with random (unprotected) body, for skip-by-Length tests. */
function rawLongPacket(firstByte: number, dcid: Buffer, scid: Buffer, bodyLength: number): Buffer {
  const head = Buffer.concat([
    Buffer.from([firstByte]),
    hex('00000001'),
    Buffer.from([dcid.length]),
    dcid,
    Buffer.from([scid.length]),
    scid,
    Buffer.from([0x40 | (bodyLength >> 8), bodyLength & 0xff]),
  ]);
  return Buffer.concat([head, Buffer.alloc(bodyLength, 0x5a)]);
}
