import { describe, expect, it } from 'vitest';
import {
  decodeVarint,
  decodeVarintBigInt,
  encodeVarint,
  varintLength,
  writeVarint,
} from '../../src/proxy/quic/varint.js';
import { hex } from '../helpers/hex.js';

describe('QUIC varint, the one codec of quic/ and h3/ (RFC 9000 §16, §A.1 examples)', () => {
  it('decodes the 8-byte example 0xc2197c5eff14e88c = 151288809941952652', () => {
    expect(decodeVarintBigInt(hex('c2197c5eff14e88c'), 0)).toEqual({ value: 151288809941952652n, length: 8 });
    // Above 2^53: the number decoder reports Infinity rather than a rounded value.
    expect(decodeVarint(hex('c2197c5eff14e88c'), 0)).toEqual({ value: Infinity, length: 8 });
    expect(encodeVarint(151288809941952652n).toString('hex')).toBe('c2197c5eff14e88c');
  });

  it.each([
    ['9d7f3e7d', 494878333, 4],
    ['7bbd', 15293, 2],
    ['25', 37, 1],
    ['4025', 37, 2],
  ])('decodes %s = %d', (h, value, length) => {
    expect(decodeVarint(hex(h), 0)).toEqual({ value, length });
    expect(decodeVarintBigInt(hex(h), 0)).toEqual({ value: BigInt(value), length });
  });

  it('encodes in the shortest form', () => {
    expect(encodeVarint(37).toString('hex')).toBe('25');
    expect(encodeVarint(15293).toString('hex')).toBe('7bbd');
    expect(encodeVarint(494878333).toString('hex')).toBe('9d7f3e7d');
    expect([0, 63, 64, 16383, 16384, 2 ** 30 - 1, 2 ** 30].map(varintLength)).toEqual([1, 1, 2, 2, 4, 4, 8]);
    expect(varintLength((1n << 62n) - 1n)).toBe(8);
  });

  it('round-trips boundaries and the largest safe integer', () => {
    for (const v of [0, 1, 63, 64, 16383, 16384, 2 ** 30 - 1, 2 ** 30, 2 ** 32, 2 ** 40 + 5, Number.MAX_SAFE_INTEGER]) {
      const enc = encodeVarint(v);
      expect(decodeVarint(enc, 0)).toEqual({ value: v, length: enc.length });
    }
    // 2^53 is the first value reported as Infinity.
    expect(decodeVarint(encodeVarint(2n ** 53n), 0)?.value).toBe(Infinity);
    expect(decodeVarintBigInt(encodeVarint((1n << 62n) - 1n), 0)?.value).toBe((1n << 62n) - 1n);
  });

  it('reports "need more bytes" as undefined', () => {
    expect(decodeVarint(hex(''), 0)).toBeUndefined();
    expect(decodeVarint(hex('40'), 0)).toBeUndefined();
    expect(decodeVarint(hex('9d7f3e'), 0)).toBeUndefined();
    expect(decodeVarint(hex('c2197c5eff14e8'), 0)).toBeUndefined();
    expect(decodeVarintBigInt(hex('c2'), 0)).toBeUndefined();
  });

  it('decodes at an offset and writes at an offset', () => {
    const b = Buffer.alloc(6);
    expect(writeVarint(b, 1, 15293)).toBe(3);
    expect(decodeVarint(b, 1)).toEqual({ value: 15293, length: 2 });
  });

  it('stops at a given end as if the buffer ended there', () => {
    expect(decodeVarint(hex('9d7f3e7d'), 0, 3)).toBeUndefined();
    expect(decodeVarint(hex('259d7f'), 0, 1)).toEqual({ value: 37, length: 1 });
    expect(decodeVarint(hex('259d7f'), 1, 1)).toBeUndefined();
  });

  it('writes a longer encoding than the shortest when asked, and refuses a shorter one', () => {
    const b = Buffer.alloc(8);
    expect(writeVarint(b, 0, 37, 2)).toBe(2);
    expect(b.subarray(0, 2).toString('hex')).toBe('4025'); // the §A.1 two-byte 37
    expect(writeVarint(b, 0, 15293, 8)).toBe(8);
    expect(decodeVarint(b, 0)).toEqual({ value: 15293, length: 8 });
    expect(() => writeVarint(b, 0, 16384, 2)).toThrow(RangeError);
  });

  it('refuses values it cannot encode', () => {
    expect(() => encodeVarint(-1)).toThrow(RangeError);
    expect(() => encodeVarint(1.5)).toThrow(RangeError);
    expect(() => encodeVarint(2 ** 53)).toThrow(RangeError);
    expect(() => encodeVarint(1n << 62n)).toThrow(RangeError);
  });
});
