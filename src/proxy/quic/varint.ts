// QUIC variable-length integers (RFC 9000 §16), the one codec for QUIC (Initial parsing) and
// HTTP/3 (frames, settings, stream types): the two high bits of the first byte give the length
// (1, 2, 4 or 8 bytes), the remaining bits are the big-endian value, up to 2^62-1.
//
// Above 2^53 (the one place the three former codecs disagreed):
// - `decodeVarint` returns JS numbers and reports any value above Number.MAX_SAFE_INTEGER as
//   `Infinity`, never a rounded value. Infinity compares greater than every real limit, so a length,
//   offset or count that large fails its bounds check, and it never equals a known frame type or
//   setting, so a grease codepoint (0x1f*N+0x21, RFC 9114 §7.2.8) is "unknown, skip it". Nothing
//   we accept (lengths, offsets, stream IDs) comes near 2^53.
// - `decodeVarintBigInt` is exact over the whole range, for when the exact value matters.
// - Encoding takes a safe non-negative integer or a bigint up to 2^62-1, and throws RangeError
//   otherwise (an unsafe number may already be rounded: refuse rather than write a wrong value).

export const VARINT_MAX = (1n << 62n) - 1n;

export interface Varint {
  /** Exact when <= Number.MAX_SAFE_INTEGER, otherwise Infinity. */
  value: number;
  /** Bytes the encoding occupies: 1, 2, 4 or 8. */
  length: number;
}

/** Bytes needed to encode `value` in the shortest form. */
export function varintLength(value: number | bigint): 1 | 2 | 4 | 8 {
  if (typeof value === 'bigint') {
    if (value < 0n || value > VARINT_MAX) throw new RangeError(`varint out of range: ${value}`);
    if (value < 0x40n) return 1;
    if (value < 0x4000n) return 2;
    if (value < 0x40000000n) return 4;
    return 8;
  }
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`varint must be a safe non-negative integer (use bigint above 2^53): ${value}`);
  }
  if (value < 0x40) return 1;
  if (value < 0x4000) return 2;
  if (value < 0x40000000) return 4;
  return 8;
}

/**
 * Writes `value` at `offset`, in the shortest form unless `length` asks for a longer one (RFC 9000
 * §16 allows any; e.g. a Length field written before the size it counts is known); returns the
 * offset after it.
 */
export function writeVarint(buf: Uint8Array, offset: number, value: number | bigint, length?: 1 | 2 | 4 | 8): number {
  const shortest = varintLength(value);
  if (length !== undefined && length < shortest) throw new RangeError(`varint ${value} does not fit in ${length} bytes`);
  const len = length ?? shortest;
  if (offset + len > buf.length) throw new RangeError('varint does not fit in buffer');
  if (len === 8) {
    let v = BigInt(value);
    for (let i = 7; i >= 0; i--) {
      buf[offset + i] = Number(v & 0xffn);
      v >>= 8n;
    }
    buf[offset] |= 0xc0;
    return offset + 8;
  }
  const v = Number(value);
  if (len === 1) {
    buf[offset] = v;
  } else if (len === 2) {
    buf[offset] = 0x40 | (v >>> 8);
    buf[offset + 1] = v & 0xff;
  } else {
    buf[offset] = 0x80 | (v >>> 24);
    buf[offset + 1] = (v >>> 16) & 0xff;
    buf[offset + 2] = (v >>> 8) & 0xff;
    buf[offset + 3] = v & 0xff;
  }
  return offset + len;
}

/** Encodes `value` in the shortest form. */
export function encodeVarint(value: number | bigint): Buffer {
  const out = Buffer.allocUnsafe(varintLength(value));
  writeVarint(out, 0, value);
  return out;
}

/**
 * Decodes the varint at `offset`, or returns undefined if the bytes end (at `end`, default the
 * buffer's end) before it does ("need more bytes"). Values above 2^53-1 come back as Infinity
 * (see module comment).
 */
export function decodeVarint(buf: Uint8Array, offset: number, end = buf.length): Varint | undefined {
  if (offset >= end) return undefined;
  const first = buf[offset];
  const length = 1 << (first >> 6);
  if (offset + length > end) return undefined;
  switch (length) {
    case 1:
      return { value: first, length };
    case 2:
      return { value: ((first & 0x3f) << 8) | buf[offset + 1], length };
    case 4:
      return {
        value:
          (first & 0x3f) * 0x1000000 + ((buf[offset + 1] << 16) | (buf[offset + 2] << 8) | buf[offset + 3]),
        length,
      };
    default: {
      const high =
        (first & 0x3f) * 0x1000000 + ((buf[offset + 1] << 16) | (buf[offset + 2] << 8) | buf[offset + 3]);
      const low = (buf[offset + 4] * 0x1000000 + ((buf[offset + 5] << 16) | (buf[offset + 6] << 8) | buf[offset + 7])) >>> 0;
      // high < 2^30; value = high * 2^32 + low is safe while high < 2^21.
      const value = high < 0x200000 ? high * 0x100000000 + low : Infinity;
      return { value, length };
    }
  }
}

/** Like decodeVarint but exact over the whole 62-bit range. */
export function decodeVarintBigInt(buf: Uint8Array, offset: number): { value: bigint; length: number } | undefined {
  if (offset >= buf.length) return undefined;
  const length = 1 << (buf[offset] >> 6);
  if (offset + length > buf.length) return undefined;
  let value = BigInt(buf[offset] & 0x3f);
  for (let i = 1; i < length; i++) value = (value << 8n) | BigInt(buf[offset + i]);
  return { value, length };
}
