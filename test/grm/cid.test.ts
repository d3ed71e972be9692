// Pure codec tests: SipHash-2-4 reference vectors, round trips, unlinkability and forgery odds.
import { randomBytes } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { GRM } from '../../src/grm/abi.generated.js';
import { createCidIssuer, cidIssuerParams, decodeCid, encodeCid, type CidKey } from '../../src/grm/cid.js';
import { GrmError } from '../../src/grm/errors.js';
import { siphash24 } from '../../src/grm/siphash.js';

// Key 00..0f, message 00..len-1: vectors from the SipHash reference implementation (vectors.h) and
// the paper's appendix (15-byte message).
test.each([
  [0, 0x726fdb47dd0e0e31n],
  [1, 0x74f839c593dc67fdn],
  [2, 0x0d6c8009d9a94f5an],
  [3, 0x85676696d7fb7e2dn],
  [8, 0x93f5f5799a932462n],
  [15, 0xa129ca6149be45e5n],
])('SipHash-2-4 reference vector, %i-byte message', (len, want) => {
  const msg = Uint8Array.from({ length: len }, (_, i) => i);
  expect(siphash24(0x0706050403020100n, 0x0f0e0d0c0b0a0908n, msg)).toBe(want);
});

function key(configId: number, cidLength: number): CidKey {
  const r = randomBytes(16);
  return { configId, cidLength, k0: r.readBigUInt64LE(0), k1: r.readBigUInt64LE(8) };
}

describe('CID codec', () => {
  test('round trip for every length, slot edges and worker edges', () => {
    for (let len = GRM.CID_MIN_LEN; len <= GRM.CID_MAX_LEN; len++) {
      const k = key(len % 7, len);
      const keys = new Map([[k.configId, k]]);
      for (const slot of [0, 1, 17, GRM.MAX_SLOTS - 1]) {
        for (const worker of [0, 1, 128, GRM.MAX_WORKERS - 1]) {
          const cid = encodeCid(k, slot, worker);
          expect(cid.length).toBe(len);
          expect(cid[0]! >> 5).toBe(k.configId);
          expect(decodeCid(keys, cid)).toEqual({ configId: k.configId, slot, worker });
        }
      }
    }
  });

  test('a key of another config id or length does not decode', () => {
    const a = key(1, 12);
    const b = key(2, 12);
    const cid = encodeCid(a, 3, 4);
    expect(decodeCid(new Map([[2, b]]), cid)).toBeNull();
    expect(decodeCid(new Map([[1, { ...a, cidLength: 13 }]]), cid)).toBeNull();
    expect(decodeCid(new Map([[1, { ...a, k0: a.k0 ^ 1n }]]), cid)).toBeNull();
  });

  test('CIDs of one socket share no fixed bytes beyond the first octet', () => {
    const k = key(3, 8);
    const n = 20_000;
    const counts = Array.from({ length: k.cidLength }, () => new Array<number>(256).fill(0));
    for (let i = 0; i < n; i++) {
      const cid = encodeCid(k, 5, 9);
      for (let j = 0; j < cid.length; j++) counts[j]![cid[j]!]!++;
    }
    // Byte 0: config id in the top 3 bits, 32 values of random low bits.
    expect(counts[0]!.filter((c) => c > 0).length).toBe(32);
    // Other bytes: uniform. Expected count n/256 ≈ 78 (σ ≈ 8.8); every value seen, none above ~2x.
    for (let j = 1; j < k.cidLength; j++) {
      expect(Math.min(...counts[j]!)).toBeGreaterThan(30);
      expect(Math.max(...counts[j]!)).toBeLessThan(140);
    }
  });

  test('random CIDs decode only by chance (~2^-11)', () => {
    const k = key(0, 8);
    const keys = new Map([[0, k]]);
    const n = 200_000;
    let decoded = 0;
    for (let i = 0; i < n; i++) {
      const cid = randomBytes(8);
      cid[0] = cid[0]! & 0x1f; // right config id: the forger's best case
      if (decodeCid(keys, cid)) decoded++;
    }
    // Chance: n / 2048 ≈ 98 (σ ≈ 10).
    expect(decoded).toBeGreaterThan(40);
    expect(decoded).toBeLessThan(170);
  });

  test('bit-flipping an observed CID does not aim it at a chosen socket', () => {
    // The attacker holds valid CIDs of socket (slot 2, worker 3) and wants socket (slot 2, worker 7):
    // XOR the routing bits by the difference and keep the check bits (the best a malleable scheme allows).
    const k = key(4, 12);
    const keys = new Map([[4, k]]);
    const n = 100_000;
    const delta = (3 ^ 7) << GRM.CHECK_BITS;
    let hit = 0;
    for (let i = 0; i < n; i++) {
      const cid = encodeCid(k, 2, 3);
      const e = ((cid[1]! << 16) | (cid[2]! << 8) | cid[3]!) ^ delta;
      cid[1] = e >>> 16;
      cid[2] = (e >>> 8) & 0xff;
      cid[3] = e & 0xff;
      const r = decodeCid(keys, cid);
      if (r && r.slot === 2 && r.worker === 7) hit++;
    }
    // A correct check value is a ~2^-11 guess: ≈ 49 of 100k, far from n.
    expect(hit).toBeLessThan(120);
  });

  test('worker-side issuer from JSON params issues decodable CIDs', () => {
    const k = key(5, 20);
    const issuer = createCidIssuer(JSON.parse(JSON.stringify(cidIssuerParams(k, 7, 200))));
    expect(issuer.cidLength).toBe(20);
    expect(decodeCid(new Map([[5, k]]), issuer.issue())).toEqual({ configId: 5, slot: 7, worker: 200 });
  });

  test('bad arguments are typed errors', () => {
    const k = key(0, 8);
    expect(() => encodeCid(k, GRM.MAX_SLOTS, 0)).toThrow(GrmError);
    expect(() => encodeCid(k, 0, GRM.MAX_WORKERS)).toThrow(GrmError);
    expect(() => createCidIssuer({ ...cidIssuerParams(k, 0, 0), cidLength: 7 })).toThrow(GrmError);
  });
});
