import { describe, expect, it } from 'vitest';
import { H3Error, H3_ERROR, QpackError } from '../../src/proxy/h3/errors.js';
import {
  DecoderStreamReceiver,
  EncoderStreamReceiver,
  FieldSectionTooLargeError,
  QPACK_STATIC_TABLE,
  decodeFieldSection,
  decodePrefixedInt,
  encodeFieldSection,
  encodePrefixedInt,
  type FieldLine,
} from '../../src/proxy/h3/qpack.js';
import { huffmanEncode } from '../../src/proxy/h3/huffman.js';
import { h3ErrorCode } from '../helpers/h3-error-code.js';
import { hex } from '../helpers/hex.js';
import { prng } from '../helpers/prng.js';

describe('prefixed integers (RFC 7541 §5.1, Appendix C.1)', () => {
  it('C.1.1: 10 with a 5-bit prefix', () => {
    expect(encodePrefixedInt(10, 5).toString('hex')).toBe('0a');
    expect(decodePrefixedInt(hex('0a'), 0, 5)).toEqual({ value: 10, next: 1 });
  });
  it('C.1.2: 1337 with a 5-bit prefix = 1f 9a 0a', () => {
    expect(encodePrefixedInt(1337, 5).toString('hex')).toBe('1f9a0a');
    expect(decodePrefixedInt(hex('1f9a0a'), 0, 5)).toEqual({ value: 1337, next: 3 });
    // The bits above the prefix are ignored by the reader.
    expect(decodePrefixedInt(hex('ff9a0a'), 0, 5)).toEqual({ value: 1337, next: 3 });
  });
  it('C.1.3: 42 starting at an octet boundary (8-bit prefix)', () => {
    expect(encodePrefixedInt(42, 8).toString('hex')).toBe('2a');
    expect(decodePrefixedInt(hex('2a'), 0, 8)).toEqual({ value: 42, next: 1 });
  });
  it('round-trips across prefixes and boundaries', () => {
    for (const prefix of [3, 4, 5, 6, 7, 8]) {
      for (const v of [0, 1, (1 << prefix) - 2, (1 << prefix) - 1, 1 << prefix, 127, 128, 300, 65535, 2 ** 32, 2 ** 52]) {
        const enc = encodePrefixedInt(v, prefix);
        expect(decodePrefixedInt(enc, 0, prefix)).toEqual({ value: v, next: enc.length });
      }
    }
  });
  it('reports truncation and refuses overflow', () => {
    expect(decodePrefixedInt(hex('1f9a'), 0, 5)).toBeUndefined();
    expect(decodePrefixedInt(hex('1f'), 0, 5)).toBeUndefined();
    expect(h3ErrorCode(() => decodePrefixedInt(hex('1f ffffffffffffffff7f'), 0, 5))).toBe(H3_ERROR.QPACK_DECOMPRESSION_FAILED);
    // Too many redundant continuation bytes.
    expect(h3ErrorCode(() => decodePrefixedInt(hex('1f 808080808080808080 00'), 0, 5))).toBe(
      H3_ERROR.QPACK_DECOMPRESSION_FAILED,
    );
  });
});

describe('static table (RFC 9204 Appendix A)', () => {
  it('has 99 entries with the RFC indices spot-checked', () => {
    expect(QPACK_STATIC_TABLE).toHaveLength(99);
    expect(QPACK_STATIC_TABLE[0]).toEqual([':authority', '']);
    expect(QPACK_STATIC_TABLE[17]).toEqual([':method', 'GET']);
    expect(QPACK_STATIC_TABLE[25]).toEqual([':status', '200']);
    expect(QPACK_STATIC_TABLE[31]).toEqual(['accept-encoding', 'gzip, deflate, br']);
    expect(QPACK_STATIC_TABLE[52]).toEqual(['content-type', 'text/html; charset=utf-8']);
    expect(QPACK_STATIC_TABLE[71]).toEqual([':status', '500']);
    expect(QPACK_STATIC_TABLE[95]).toEqual(['user-agent', '']);
    expect(QPACK_STATIC_TABLE[98]).toEqual(['x-frame-options', 'sameorigin']);
  });
});

describe('decodeFieldSection', () => {
  it('RFC 9204 B.1: literal field line with static name reference', () => {
    expect(decodeFieldSection(hex('0000 510b 2f69 6e64 6578 2e68 746d 6c'))).toEqual([[':path', '/index.html']]);
  });

  it('RFC 9204 B.2 and B.4 field sections (dynamic table) are rejected with QPACK_DECOMPRESSION_FAILED', () => {
    expect(h3ErrorCode(() => decodeFieldSection(hex('0381 10 11')))).toBe(H3_ERROR.QPACK_DECOMPRESSION_FAILED);
    expect(h3ErrorCode(() => decodeFieldSection(hex('0500 80 c1 81')))).toBe(H3_ERROR.QPACK_DECOMPRESSION_FAILED);
  });

  it('decodes indexed static lines, static name refs and literal names, plain and Huffman', () => {
    const block = Buffer.concat([
      hex('0000'),
      hex('d1'), // indexed static 17 :method GET
      hex('d7'), // indexed static 23 :scheme https
      hex('c1'), // indexed static 1 :path /
      // literal with static name ref 0 (:authority), Huffman value www.example.com
      hex('50'),
      Buffer.from([0x80 | 12]),
      huffmanEncode('www.example.com'),
      // literal with name ref, N bit set, index 95 (user-agent) needs the 4-bit prefix extension
      hex('7f 50'),
      Buffer.from([4]),
      Buffer.from('curl'),
      // literal name (plain) and plain value
      Buffer.from([0x20 | 5]),
      Buffer.from('x-foo'),
      Buffer.from([3]),
      Buffer.from('bar'),
      // literal name with N bit, Huffman name (custom-key) and Huffman value (custom-value)
      Buffer.from([0x30 | 0x08 | 7]),
      Buffer.from([8 - 7]),
      huffmanEncode('custom-key'),
      Buffer.from([0x80 | 9]),
      huffmanEncode('custom-value'),
      // static name ref 0x5f 0x1d: 4-bit prefix 15 + 29 = index 44 (content-type), empty value
      hex('5f1d 00'),
    ]);
    const fields = decodeFieldSection(block);
    expect(fields.slice(0, 7)).toEqual([
      [':method', 'GET'],
      [':scheme', 'https'],
      [':path', '/'],
      [':authority', 'www.example.com'],
      ['user-agent', 'curl'],
      ['x-foo', 'bar'],
      ['custom-key', 'custom-value'],
    ]);
    expect(fields[7]).toEqual(['content-type', '']);
  });

  it('keeps obs-text bytes (latin1) intact', () => {
    const block = Buffer.concat([hex('0000 5f50'), Buffer.from([2, 0xe9, 0xff])]);
    expect(decodeFieldSection(block)).toEqual([['user-agent', '\u00e9\u00ff']]);
  });

  it('rejects dynamic and post-base references', () => {
    for (const line of ['80', '4f00', '10', '00 00', '0800']) {
      expect(h3ErrorCode(() => decodeFieldSection(hex('0000' + line))), line).toBe(H3_ERROR.QPACK_DECOMPRESSION_FAILED);
    }
  });

  it('rejects malformed sections', () => {
    const bad = [
      '', // no prefix
      '00', // no Base
      '0000 ff 64', // static index 63+100 out of range
      '0000 ff', // truncated index
      '0000 51', // name ref without value
      '0000 5105 2f', // value runs past the end
      '0000 23 6162', // literal name runs past the end
      '0000 23 616263', // literal name without value
      '0000 5183 ffffff', // Huffman value containing EOS
      '0000 5181 ff', // Huffman padding longer than 7 bits
      '0000 517f ffffffffffffffffff7f', // length overflow
    ];
    for (const b of bad) expect(h3ErrorCode(() => decodeFieldSection(hex(b))), b).toBe(H3_ERROR.QPACK_DECOMPRESSION_FAILED);
  });

  it('ignores Base when Required Insert Count is 0 (sign bit and delta)', () => {
    expect(decodeFieldSection(hex('00 85 d1'))).toEqual([[':method', 'GET']]);
  });

  it('enforces the decoded size limit with FieldSectionTooLargeError (H3_EXCESSIVE_LOAD)', () => {
    const fields: FieldLine[] = [['x-big', 'a'.repeat(200)]];
    const block = encodeFieldSection(fields);
    expect(decodeFieldSection(block, { maxFieldSectionSize: 5 + 200 + 32 })).toEqual(fields);
    expect(() => decodeFieldSection(block, { maxFieldSectionSize: 5 + 200 + 31 })).toThrow(FieldSectionTooLargeError);
    expect(h3ErrorCode(() => decodeFieldSection(block, { maxFieldSectionSize: 100 }))).toBe(H3_ERROR.H3_EXCESSIVE_LOAD);
    // Many small indexed lines count too (32 bytes overhead each).
    const many = Buffer.concat([hex('0000'), Buffer.alloc(100, 0xd1)]);
    expect(h3ErrorCode(() => decodeFieldSection(many, { maxFieldSectionSize: 1000 }))).toBe(H3_ERROR.H3_EXCESSIVE_LOAD);
    expect(decodeFieldSection(many, { maxFieldSectionSize: 10000 })).toHaveLength(100);
  });

  it('random bytes only ever produce fields or an H3Error', () => {
    const rnd = prng(1234);
    let decoded = 0;
    for (let n = 0; n < 20000; n++) {
      const len = Math.floor(rnd() * 24);
      const b = Buffer.from(Array.from({ length: len }, () => Math.floor(rnd() * 256)));
      // Mostly use a valid prefix so the field-line code is exercised, not just the prefix check.
      if (len >= 2 && rnd() < 0.8) b[0] = b[1] = 0;
      try {
        decodeFieldSection(b, { maxFieldSectionSize: 4096 });
        decoded++;
      } catch (err) {
        expect(err).toBeInstanceOf(H3Error);
      }
    }
    expect(decoded).toBeGreaterThan(100);
  });
});

describe('encodeFieldSection', () => {
  it('uses static exact matches, static name references and literal names', () => {
    const block = encodeFieldSection([
      [':method', 'GET'],
      [':path', '/index.html'],
      ['x-foo', 'bar'],
    ]);
    const expected = Buffer.concat([
      hex('0000'),
      hex('d1'), // :method GET = static 17, indexed
      hex('51'), // :path = static name 1, literal value
      Buffer.from([0x80 | 8]), // "/index.html" Huffman-codes to 8 bytes (< 11 plain)
      huffmanEncode('/index.html'),
      Buffer.from([0x20 | 0x08 | 4]), // literal name, Huffman (5 chars -> 4 bytes)
      huffmanEncode('x-foo'),
      Buffer.from([3]), // "bar" stays plain: Huffman is also 3 bytes
      Buffer.from('bar'),
    ]);
    expect(block.toString('hex')).toBe(expected.toString('hex'));
    // Decoding our form and the RFC 9204 B.1 plain form gives the same field.
    expect(decodeFieldSection(block.subarray(0, 13))).toEqual([
      [':method', 'GET'],
      [':path', '/index.html'],
    ]);
  });

  it('chooses Huffman only when strictly shorter', () => {
    // "{}" has 15-bit codes: Huffman would be 4 bytes, plain is 2.
    const block = encodeFieldSection([['x-a', '{}']]);
    expect(block.subarray(block.length - 3).toString('hex')).toBe('027b7d');
    const h = encodeFieldSection([['x-a', 'aaaa']]);
    expect(h[h.length - 4]).toBe(0x80 | 3); // 'a' is 5 bits: 20 bits → 3 bytes
  });

  it('lowercases names', () => {
    expect(decodeFieldSection(encodeFieldSection([['Content-Type', 'text/css'], ['X-Custom', 'V']]))).toEqual([
      ['content-type', 'text/css'],
      ['x-custom', 'V'],
    ]);
  });

  it('refuses non-latin1 characters', () => {
    expect(() => encodeFieldSection([['x-a', 'caf\u00e9 \u20ac']])).toThrow(RangeError);
  });

  it('round-trips every static table entry and long values', () => {
    const all = QPACK_STATIC_TABLE.map(([n, v]) => [n, v] as FieldLine);
    expect(decodeFieldSection(encodeFieldSection(all))).toEqual(all);
    const long: FieldLine[] = [['cookie', 'x'.repeat(70000)], ['x-' + 'n'.repeat(300), 'v'.repeat(5000)]];
    expect(decodeFieldSection(encodeFieldSection(long), { maxFieldSectionSize: 1 << 20 })).toEqual(long);
  });

  it('round-trips random fields', () => {
    const rnd = prng(42);
    const names = [...new Set(QPACK_STATIC_TABLE.map(([n]) => n)), 'x-request-id', 'sec-ch-ua', 'priority'];
    const randomString = (max: number, alphabet?: string) =>
      Array.from({ length: Math.floor(rnd() * max) }, () =>
        alphabet ? alphabet[Math.floor(rnd() * alphabet.length)] : String.fromCharCode(Math.floor(rnd() * 256)),
      ).join('');
    for (let n = 0; n < 1000; n++) {
      const fields: FieldLine[] = [];
      const count = Math.floor(rnd() * 12);
      for (let i = 0; i < count; i++) {
        const r = rnd();
        if (r < 0.3) {
          const [name, value] = QPACK_STATIC_TABLE[Math.floor(rnd() * QPACK_STATIC_TABLE.length)];
          fields.push([name, value]);
        } else if (r < 0.6) {
          fields.push([names[Math.floor(rnd() * names.length)], randomString(40, 'abcdefghijklmnopqrstuvwxyz0123456789-/=;, ')]);
        } else {
          fields.push([randomString(20, 'abcdefghijklmnopqrstuvwxyz-_0123456789') || 'x', randomString(60)]);
        }
      }
      expect(decodeFieldSection(encodeFieldSection(fields))).toEqual(fields);
    }
  });
});

describe('EncoderStreamReceiver', () => {
  it('accepts Set Dynamic Table Capacity 0, also in long form and split', () => {
    const r = new EncoderStreamReceiver();
    r.push(hex('20'));
    r.push(hex('20 20'));
    expect(r.tableCapacity).toBe(0);
    expect(r.atInstructionBoundary).toBe(true);
  });

  it('rejects RFC 9204 B.2 (capacity 220) with QPACK_ENCODER_STREAM_ERROR, at every split', () => {
    const b2 = hex('3fbd01 c00f 7777 772e 6578 616d 706c 652e 636f 6d c10c 2f73 616d 706c 652f 7061 7468');
    for (let cut = 1; cut <= 3; cut++) {
      const r = new EncoderStreamReceiver();
      const first = () => r.push(b2.subarray(0, cut));
      if (cut < 3) {
        expect(first).not.toThrow();
        expect(r.atInstructionBoundary).toBe(false);
        expect(h3ErrorCode(() => r.push(b2.subarray(cut)))).toBe(H3_ERROR.QPACK_ENCODER_STREAM_ERROR);
      } else {
        expect(h3ErrorCode(first)).toBe(H3_ERROR.QPACK_ENCODER_STREAM_ERROR);
      }
      // The receiver stays failed.
      expect(h3ErrorCode(() => r.push(hex('20')))).toBe(H3_ERROR.QPACK_ENCODER_STREAM_ERROR);
    }
  });

  it('rejects the inserts and duplicate of RFC 9204 B.2-B.5 with QPACK_ENCODER_STREAM_ERROR', () => {
    const instructions = [
      'c00f 7777 772e 6578 616d 706c 652e 636f 6d', // B.2 Insert With Name Reference (static)
      '4a63 7573 746f 6d2d 6b65 790c 6375 7374 6f6d 2d76 616c 7565', // B.3 Insert With Literal Name
      '02', // B.4 Duplicate
      '810d 6375 7374 6f6d 2d76 616c 7565 32', // B.5 Insert With Name Reference (dynamic)
    ];
    for (const i of instructions) {
      const r = new EncoderStreamReceiver();
      r.push(hex('20')); // capacity 0 first is fine
      expect(h3ErrorCode(() => r.push(hex(i))), i).toBe(H3_ERROR.QPACK_ENCODER_STREAM_ERROR);
    }
  });

  it('handles a stream of capacity-0 instructions split at every byte boundary', () => {
    const nonZero = hex('20 3f00'); // capacity 0, then capacity 31 (> our 0)
    const zeros = hex('20 20 20 20');
    for (let cut = 0; cut <= zeros.length; cut++) {
      const r = new EncoderStreamReceiver();
      r.push(zeros.subarray(0, cut));
      r.push(zeros.subarray(cut));
      expect(r.atInstructionBoundary).toBe(true);
    }
    // A larger allowed capacity (for a receiver configured with one) split everywhere.
    const long = hex('3fbd01 3fe11f 20');
    for (let cut = 0; cut <= long.length; cut++) {
      const r = new EncoderStreamReceiver(4096);
      r.push(long.subarray(0, cut));
      r.push(long.subarray(cut));
      expect(r.tableCapacity).toBe(0);
      expect(r.atInstructionBoundary).toBe(true);
    }
    expect(h3ErrorCode(() => new EncoderStreamReceiver().push(nonZero))).toBe(H3_ERROR.QPACK_ENCODER_STREAM_ERROR);
  });

  it('fed one byte at a time, keeps the last capacity', () => {
    const r = new EncoderStreamReceiver(4096);
    for (const byte of hex('3fe11f')) r.push(Buffer.from([byte]));
    expect(r.tableCapacity).toBe(31 + 0x61 + (0x1f << 7));
  });
});

describe('DecoderStreamReceiver', () => {
  it('accepts Stream Cancellations, split at every byte boundary', () => {
    const s = hex('48 7f81 01 40'); // cancel 8, cancel 63+129, cancel 0
    for (let cut = 0; cut <= s.length; cut++) {
      const r = new DecoderStreamReceiver();
      r.push(s.subarray(0, cut));
      r.push(s.subarray(cut));
      expect(r.atInstructionBoundary).toBe(true);
    }
  });

  it('rejects Section Acknowledgment and Insert Count Increment with QPACK_DECODER_STREAM_ERROR', () => {
    expect(h3ErrorCode(() => new DecoderStreamReceiver().push(hex('84')))).toBe(H3_ERROR.QPACK_DECODER_STREAM_ERROR); // B.2
    expect(h3ErrorCode(() => new DecoderStreamReceiver().push(hex('01')))).toBe(H3_ERROR.QPACK_DECODER_STREAM_ERROR); // B.3
    expect(h3ErrorCode(() => new DecoderStreamReceiver().push(hex('00')))).toBe(H3_ERROR.QPACK_DECODER_STREAM_ERROR);
  });

  it('errors are QpackError instances', () => {
    try {
      new DecoderStreamReceiver().push(hex('84'));
    } catch (err) {
      expect(err).toBeInstanceOf(QpackError);
      expect((err as Error).message).toMatch(/QPACK_DECODER_STREAM_ERROR/);
    }
  });
});

describe('instruction stream receivers under random input', () => {
  it('only ever accept or throw QpackError', () => {
    const rnd = prng(5);
    for (let n = 0; n < 5000; n++) {
      const bytes = Buffer.from(Array.from({ length: Math.floor(rnd() * 16) }, () => Math.floor(rnd() * 256)));
      for (const r of [new EncoderStreamReceiver(), new EncoderStreamReceiver(1 << 20), new DecoderStreamReceiver()]) {
        try {
          for (let o = 0; o < bytes.length; o += 3) r.push(bytes.subarray(o, o + 3));
        } catch (err) {
          expect(err).toBeInstanceOf(QpackError);
        }
      }
    }
  });
});
