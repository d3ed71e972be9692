import { decodeVarint } from '../varint.js';
import { InitialParseError } from './errors.js';

/**
 * Bounds-checked cursor over a byte range. Reads past `end` throw InitialParseError(reason) —
 * the reason is chosen by the owner so a short CRYPTO frame and a short header read differently.
 * Varints above 2^53 read as Infinity (see ../varint.ts): no length, offset or count we accept
 * comes near, so every bounds check refuses them.
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
    const v = decodeVarint(this.buf, this.pos, this.end);
    if (v === undefined) throw new InitialParseError(this.reason, `varint at ${this.pos} runs past ${this.end}`);
    this.pos += v.length;
    return v.value;
  }
}
