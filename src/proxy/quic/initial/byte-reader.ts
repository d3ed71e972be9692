import { InitialParseError } from './errors.js';

/** Largest value a QUIC variable-length integer can carry (RFC 9000 §16). */
export const MAX_VARINT = 2 ** 62 - 1;

/**
 * Bounds-checked cursor over a byte range. Reads past `end` throw InitialParseError(reason) —
 * the reason is chosen by the owner so a short CRYPTO frame and a short header read differently.
 * Values above 2^53 cannot occur in anything we accept (lengths, offsets < 2^32), so numbers suffice.
 */
export class ByteReader {
  constructor(
    readonly buf: Buffer,
    public pos: number,
    readonly end: number,
    private readonly reason: 'truncated' | 'bad-frame' | 'bad-length',
  ) {}

  get remaining(): number {
    return this.end - this.pos;
  }

  need(n: number): void {
    if (n > this.end - this.pos) throw new InitialParseError(this.reason, `needs ${n} bytes at ${this.pos}, has ${this.end - this.pos}`);
  }

  u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }

  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  bytes(n: number): Buffer {
    this.need(n);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  skip(n: number): void {
    this.need(n);
    this.pos += n;
  }

  varint(): number {
    this.need(1);
    const first = this.buf[this.pos]!;
    const len = 1 << (first >> 6);
    this.need(len);
    let v = first & 0x3f;
    for (let i = 1; i < len; i++) v = v * 256 + this.buf[this.pos + i]!;
    this.pos += len;
    return v;
  }
}

/** Bytes needed to encode `v` as a varint. */
export function varintLength(v: number): 1 | 2 | 4 | 8 {
  if (!Number.isInteger(v) || v < 0 || v > MAX_VARINT) throw new RangeError(`varint out of range: ${v}`);
  if (v < 0x40) return 1;
  if (v < 0x4000) return 2;
  if (v < 0x40000000) return 4;
  return 8;
}

/** Writes `v` at `pos` using `len` bytes (at least varintLength(v)); returns the new position. */
export function writeVarint(buf: Buffer, pos: number, v: number, len: 1 | 2 | 4 | 8 = varintLength(v)): number {
  if (len < varintLength(v)) throw new RangeError(`varint ${v} does not fit in ${len} bytes`);
  let rest = v;
  for (let i = len - 1; i >= 0; i--) {
    buf[pos + i] = rest % 256;
    rest = Math.floor(rest / 256);
  }
  buf[pos] = buf[pos]! | ({ 1: 0x00, 2: 0x40, 4: 0x80, 8: 0xc0 } as const)[len];
  return pos + len;
}
