import { describe, expect, it } from 'vitest';
import {
  HuffmanError,
  huffmanDecode,
  huffmanDecodeToString,
  huffmanEncode,
  huffmanEncodedLength,
} from '../../src/proxy/h3/huffman.js';
import { HUFFMAN_CODES } from '../../src/proxy/h3/huffman-table.js';
import { hex } from '../helpers/hex.js';
import { prng } from '../helpers/prng.js';

// RFC 7541 Appendix C.4 (requests) and C.6 (responses), Huffman-coded string literals.
const RFC_VECTORS: [string, string][] = [
  ['www.example.com', 'f1e3 c2e5 f23a 6ba0 ab90 f4ff'],
  ['no-cache', 'a8eb 1064 9cbf'],
  ['custom-key', '25a8 49e9 5ba9 7d7f'],
  ['custom-value', '25a8 49e9 5bb8 e8b4 bf'],
  ['302', '6402'],
  ['307', '640e ff'],
  ['private', 'aec3 771a 4b'],
  ['Mon, 21 Oct 2013 20:13:21 GMT', 'd07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff'],
  ['Mon, 21 Oct 2013 20:13:22 GMT', 'd07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff'],
  ['https://www.example.com', '9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3'],
  ['gzip', '9bd9 ab'],
  [
    'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1',
    '94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07',
  ],
];

describe('Huffman table (RFC 7541 Appendix B)', () => {
  it('has 257 codes forming a complete canonical prefix code', () => {
    expect(HUFFMAN_CODES).toHaveLength(257);
    // Kraft equality: a complete code satisfies sum 2^-len == 1 (exact in 2^-30 units).
    let kraft = 0;
    for (const [, bits] of HUFFMAN_CODES) kraft += 2 ** (30 - bits);
    expect(kraft).toBe(2 ** 30);
    // Canonical: sorting by (length, symbol) and counting up reproduces every code. A mistyped
    // code or length breaks this.
    const order = HUFFMAN_CODES.map((c, sym) => ({ sym, bits: c[1], code: c[0] })).sort(
      (a, b) => a.bits - b.bits || a.sym - b.sym,
    );
    let next = 0;
    let prevBits = order[0].bits;
    for (const e of order) {
      next *= 2 ** (e.bits - prevBits);
      prevBits = e.bits;
      expect(e.code, `symbol ${e.sym}`).toBe(next);
      next += 1;
    }
  });
});

describe('Huffman encode/decode', () => {
  it.each(RFC_VECTORS)('encodes %j to the RFC bytes', (text, encoded) => {
    expect(huffmanEncode(text).toString('hex')).toBe(hex(encoded).toString('hex'));
    expect(huffmanEncodedLength(text)).toBe(hex(encoded).length);
  });

  it.each(RFC_VECTORS)('decodes the RFC bytes of %j', (text, encoded) => {
    expect(huffmanDecode(hex(encoded)).toString('latin1')).toBe(text);
    const b = hex(encoded);
    expect(huffmanDecodeToString(b, 0, b.length)).toBe(text);
  });

  it('round-trips every single byte value, and all 256 bytes together', () => {
    for (let v = 0; v < 256; v++) {
      const input = Buffer.from([v]);
      expect(huffmanDecode(huffmanEncode(input))).toEqual(input);
    }
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    expect(huffmanDecode(huffmanEncode(all))).toEqual(all);
  });

  it('round-trips random byte strings', () => {
    const rnd = prng(7);
    for (let n = 0; n < 2000; n++) {
      const input = Buffer.from(Array.from({ length: Math.floor(rnd() * 40) }, () => Math.floor(rnd() * 256)));
      const enc = huffmanEncode(input);
      expect(enc.length).toBe(huffmanEncodedLength(input));
      expect(huffmanDecode(enc)).toEqual(input);
    }
  });

  it('decodes a sub-range of a buffer', () => {
    const b = Buffer.concat([Buffer.from([1, 2]), hex('a8eb 1064 9cbf'), Buffer.from([3])]);
    expect(huffmanDecode(b, 2, 8).toString()).toBe('no-cache');
  });

  it('decodes an empty string', () => {
    expect(huffmanDecode(Buffer.alloc(0))).toHaveLength(0);
  });

  it('rejects the EOS symbol inside the string', () => {
    // EOS is 30 ones; 0xffffffff holds it plus 2 padding bits.
    expect(() => huffmanDecode(hex('ffffffff'))).toThrow(HuffmanError);
    // 'a' (00011) then EOS.
    expect(() => huffmanDecode(hex('1fffffff ff'))).toThrow(HuffmanError);
  });

  it('rejects padding longer than 7 bits', () => {
    // "302" is 6402; an extra 0xff byte is 8 bits of padding.
    expect(() => huffmanDecode(hex('6402 ff'))).toThrow(/padding/);
    expect(() => huffmanDecode(hex('ff'))).toThrow(/padding/);
  });

  it('rejects padding that is not all ones', () => {
    // 'a' = 00011 followed by padding 000 instead of 111.
    expect(() => huffmanDecode(hex('18'))).toThrow(/padding/);
    expect(huffmanDecode(hex('1f')).toString()).toBe('a');
    // 'a' + 110 padding.
    expect(() => huffmanDecode(hex('1e'))).toThrow(/padding/);
  });

  it('random bytes either decode or throw HuffmanError', () => {
    const rnd = prng(99);
    let ok = 0;
    for (let n = 0; n < 5000; n++) {
      const input = Buffer.from(Array.from({ length: 1 + Math.floor(rnd() * 12) }, () => Math.floor(rnd() * 256)));
      try {
        const out = huffmanDecode(input);
        // Whatever decoded must re-encode to the same bytes (the code is canonical and padding fixed).
        expect(huffmanEncode(out)).toEqual(input);
        ok++;
      } catch (err) {
        expect(err).toBeInstanceOf(HuffmanError);
      }
    }
    expect(ok).toBeGreaterThan(0);
  });
});
