// QPACK (RFC 9204) with no dynamic table on either side: we advertise
// SETTINGS_QPACK_MAX_TABLE_CAPACITY = 0 and QPACK_BLOCKED_STREAMS = 0, and our encoder only uses
// the static table and literals (RFC 9204 §2.1 allows an encoder never to insert). So:
// - a field section referencing the dynamic table is QPACK_DECOMPRESSION_FAILED,
// - the peer's encoder stream may only carry "Set Dynamic Table Capacity 0",
// - the peer's decoder stream may only carry Stream Cancellations.
//
// Strings are latin1 JS strings: one char per byte, so bytes survive decode→encode unchanged
// (this is also how Node's http module treats header bytes). Validating names/values (lowercase,
// no CR/LF/NUL, pseudo-header rules) is the HTTP message layer's job (RFC 9114 §4.2, §4.3).

import { H3Error, H3_ERROR, QpackError } from './errors.js';
import { HuffmanError, huffmanDecodeToString, huffmanEncodedLength, huffmanEncodeInto } from './huffman.js';
import { QPACK_STATIC_TABLE } from './qpack-static-table.js';

export { QPACK_STATIC_TABLE } from './qpack-static-table.js';

export type FieldLine = [name: string, value: string];

/**
 * The peer's field section is larger than we accept (RFC 9114 §4.2.2 size: name + value + 32 per
 * field). Code H3_EXCESSIVE_LOAD; the HTTP layer may instead answer 431 on that stream only.
 */
export class FieldSectionTooLargeError extends H3Error {
  constructor(limit: number) {
    super(H3_ERROR.H3_EXCESSIVE_LOAD, `field section exceeds ${limit} bytes`);
    this.name = 'FieldSectionTooLargeError';
  }
}

// ---------------------------------------------------------------------------------------------
// Prefixed integers (RFC 7541 §5.1, used by RFC 9204 §4.1.1)

interface Cursor {
  buf: Buffer;
  pos: number;
  end: number;
}

/** 2^49: a multiplier beyond this means the integer cannot stay below 2^53. */
const MAX_INT_MULTIPLIER = 2 ** 49;

/**
 * Reads an N-bit-prefix integer at c.pos (the prefix is the low `prefixBits` bits of that byte)
 * and advances c.pos. Returns -1, leaving c.pos unchanged, if the input ends first. Values above
 * 2^53-1 (or padded with more continuation bytes than that allows) throw `errorCode`.
 */
function readInt(c: Cursor, prefixBits: number, errorCode: number): number {
  const mask = (1 << prefixBits) - 1;
  let value = c.buf[c.pos] & mask;
  let p = c.pos + 1;
  if (value < mask) {
    c.pos = p;
    return value;
  }
  let multiplier = 1;
  for (;;) {
    if (p >= c.end) return -1;
    const b = c.buf[p++];
    value += (b & 0x7f) * multiplier;
    if ((b & 0x80) === 0) break;
    multiplier *= 128;
    if (multiplier > MAX_INT_MULTIPLIER) throw new QpackError(errorCode, 'prefixed integer too long');
  }
  if (value > Number.MAX_SAFE_INTEGER) throw new QpackError(errorCode, 'prefixed integer overflows 2^53');
  c.pos = p;
  return value;
}

/**
 * Decodes an N-bit-prefix integer (RFC 7541 §5.1) at `offset`; undefined if `buf` ends first.
 * Throws QpackError(QPACK_DECOMPRESSION_FAILED) above 2^53-1.
 */
export function decodePrefixedInt(
  buf: Uint8Array,
  offset: number,
  prefixBits: number,
): { value: number; next: number } | undefined {
  const c: Cursor = { buf: asBuffer(buf), pos: offset, end: buf.length };
  if (offset >= buf.length) return undefined;
  const value = readInt(c, prefixBits, H3_ERROR.QPACK_DECOMPRESSION_FAILED);
  return value < 0 ? undefined : { value, next: c.pos };
}

/**
 * Writes `value` as an N-bit-prefix integer at out[offset]; `flags` are the bits above the prefix
 * in the first byte. Returns the offset after it.
 */
export function writePrefixedInt(out: Uint8Array, offset: number, value: number, prefixBits: number, flags: number): number {
  const mask = (1 << prefixBits) - 1;
  if (value < mask) {
    out[offset] = flags | value;
    return offset + 1;
  }
  out[offset++] = flags | mask;
  let rest = value - mask;
  while (rest >= 128) {
    out[offset++] = (rest % 128) | 0x80;
    rest = Math.floor(rest / 128);
  }
  out[offset++] = rest;
  return offset;
}

/** Encodes `value` as an N-bit-prefix integer with `flags` in the first byte's high bits. */
export function encodePrefixedInt(value: number, prefixBits: number, flags = 0): Buffer {
  const tmp = Buffer.allocUnsafe(11);
  return Buffer.from(tmp.subarray(0, writePrefixedInt(tmp, 0, value, prefixBits, flags)));
}

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.length);
}

// ---------------------------------------------------------------------------------------------
// Field section decoding (RFC 9204 §4.5)

export interface DecodeOptions {
  /** Max decoded size (sum of name + value + 32 per field, RFC 9114 §4.2.2). Default 64 KiB. */
  maxFieldSectionSize?: number;
}

const DEFAULT_MAX_FIELD_SECTION_SIZE = 64 * 1024;
const STATIC_TABLE_SIZE = QPACK_STATIC_TABLE.length;

function decompressionFailed(message: string): QpackError {
  return new QpackError(H3_ERROR.QPACK_DECOMPRESSION_FAILED, message);
}

function readFieldInt(c: Cursor, prefixBits: number): number {
  const v = readInt(c, prefixBits, H3_ERROR.QPACK_DECOMPRESSION_FAILED);
  if (v < 0) throw decompressionFailed('field section ends inside an integer');
  return v;
}

function readStaticEntry(index: number): readonly [string, string] {
  if (index >= STATIC_TABLE_SIZE) throw decompressionFailed(`static table index ${index} out of range`);
  return QPACK_STATIC_TABLE[index];
}

/** Reads a string literal whose H bit sits just above an N-bit length prefix. */
function readString(c: Cursor, prefixBits: number, budget: number, limit: number): string {
  const huffman = (c.buf[c.pos] & (1 << prefixBits)) !== 0;
  const length = readFieldInt(c, prefixBits);
  if (length > c.end - c.pos) throw decompressionFailed('string literal runs past the field section');
  const start = c.pos;
  c.pos += length;
  if (!huffman) {
    if (length > budget) throw new FieldSectionTooLargeError(limit);
    return c.buf.toString('latin1', start, c.pos);
  }
  let s: string;
  try {
    s = huffmanDecodeToString(c.buf, start, c.pos);
  } catch (err) {
    if (err instanceof HuffmanError) throw decompressionFailed(err.message);
    throw err;
  }
  if (s.length > budget) throw new FieldSectionTooLargeError(limit);
  return s;
}

/**
 * Decodes one encoded field section (the payload of a HEADERS frame) into [name, value] pairs in
 * order. Throws QpackError(QPACK_DECOMPRESSION_FAILED) for malformed input or any dynamic table
 * reference, FieldSectionTooLargeError above options.maxFieldSectionSize. The 'N' (never index)
 * bit is accepted and not reported: we never re-encode into a dynamic table.
 */
export function decodeFieldSection(block: Uint8Array, options: DecodeOptions = {}): FieldLine[] {
  const limit = options.maxFieldSectionSize ?? DEFAULT_MAX_FIELD_SECTION_SIZE;
  const c: Cursor = { buf: asBuffer(block), pos: 0, end: block.length };
  if (c.end < 2) throw decompressionFailed('field section shorter than its prefix');

  // Encoded Required Insert Count: with our capacity 0 (MaxEntries 0) only 0 is valid (§4.5.1.1).
  const requiredInsertCount = readFieldInt(c, 8);
  if (requiredInsertCount !== 0) {
    throw decompressionFailed(`Required Insert Count ${requiredInsertCount} but our dynamic table capacity is 0`);
  }
  if (c.pos >= c.end) throw decompressionFailed('field section ends before Base');
  // Sign bit + Delta Base: meaningless without dynamic references; parsed only to skip it.
  readFieldInt(c, 7);

  const fields: FieldLine[] = [];
  let size = 0;
  while (c.pos < c.end) {
    const b = c.buf[c.pos];
    let name: string;
    let value: string;
    if (b & 0x80) {
      // Indexed Field Line: 1 T index(6)
      if ((b & 0x40) === 0) throw decompressionFailed('indexed field line references the dynamic table');
      [name, value] = readStaticEntry(readFieldInt(c, 6));
      size += name.length + value.length + 32;
      if (size > limit) throw new FieldSectionTooLargeError(limit);
    } else if (b & 0x40) {
      // Literal Field Line with Name Reference: 0 1 N T index(4), then value
      if ((b & 0x10) === 0) throw decompressionFailed('literal field line references a dynamic table name');
      name = readStaticEntry(readFieldInt(c, 4))[0];
      value = readLiteralValue(c, size + name.length + 32, limit);
      size += name.length + value.length + 32;
    } else if (b & 0x20) {
      // Literal Field Line with Literal Name: 0 0 1 N H length(3) name, then value
      name = readString(c, 3, limit - size - 32, limit);
      value = readLiteralValue(c, size + name.length + 32, limit);
      size += name.length + value.length + 32;
    } else if (b & 0x10) {
      throw decompressionFailed('indexed field line with post-base index (dynamic table)');
    } else {
      throw decompressionFailed('literal field line with post-base name reference (dynamic table)');
    }
    fields.push([name, value]);
  }
  return fields;
}

/**
 * The value string of a literal field line, read after its name. `sizeWithName` is the section size
 * counted so far including this line's name and its 32-byte overhead; the value may use the rest.
 */
function readLiteralValue(c: Cursor, sizeWithName: number, limit: number): string {
  if (c.pos >= c.end) throw decompressionFailed('field section ends before a value');
  if (sizeWithName > limit) throw new FieldSectionTooLargeError(limit);
  return readString(c, 7, limit - sizeWithName, limit);
}

// ---------------------------------------------------------------------------------------------
// Field section encoding

/** A name of the static table: its lowest index (for name references) and the index of each value it has (exact matches). */
interface StaticName {
  readonly index: number;
  readonly byValue: Map<string, number>;
}
/** name → its static entries: one lookup per field. */
const STATIC_NAMES = new Map<string, StaticName>();
QPACK_STATIC_TABLE.forEach(([name, value], index) => {
  let entry = STATIC_NAMES.get(name);
  if (!entry) STATIC_NAMES.set(name, (entry = { index, byValue: new Map() }));
  if (!entry.byValue.has(value)) entry.byValue.set(value, index);
});

/** True when a character of `s` is above 0xff (not one octet). */
function hasNonLatin1(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0xff) return true;
  return false;
}

/** Writes a string literal (Huffman when strictly shorter) with an N-bit length prefix. */
function writeString(out: Buffer, o: number, s: string, prefixBits: number, flags: number): number {
  const huffmanLength = huffmanEncodedLength(s);
  if (huffmanLength < s.length) {
    o = writePrefixedInt(out, o, huffmanLength, prefixBits, flags | (1 << prefixBits));
    return huffmanEncodeInto(s, out, o);
  }
  o = writePrefixedInt(out, o, s.length, prefixBits, flags);
  return o + out.write(s, o, 'latin1');
}

/**
 * Encodes fields into a field section (the payload of a HEADERS frame) using only the static
 * table: exact matches become indexed lines, known names become literals with a static name
 * reference, the rest literals with literal names. Names are lowercased here (HTTP/3 requires
 * lowercase names, RFC 9114 §4.2). Names and values must be latin1 (RangeError otherwise).
 */
export function encodeFieldSection(fields: Iterable<readonly [string, string]>): Buffer {
  const list = Array.isArray(fields) ? (fields as readonly (readonly [string, string])[]) : [...fields];
  // Upper bound: 2 prefix bytes, then per field its strings plus up to 11 bytes per integer.
  let bound = 2;
  for (const [name, value] of list) bound += name.length + value.length + 24;
  const out = Buffer.allocUnsafe(bound);
  out[0] = 0; // Required Insert Count 0
  out[1] = 0; // Sign 0, Delta Base 0
  let o = 2;
  for (const [rawName, value] of list) {
    const name = rawName.toLowerCase();
    if (hasNonLatin1(name) || hasNonLatin1(value)) {
      throw new RangeError(`field ${JSON.stringify(rawName)} has characters outside latin1`);
    }
    const known = STATIC_NAMES.get(name);
    const exact = known?.byValue.get(value);
    if (exact !== undefined) {
      o = writePrefixedInt(out, o, exact, 6, 0xc0); // 1 T=1 index(6)
      continue;
    }
    if (known !== undefined) {
      o = writePrefixedInt(out, o, known.index, 4, 0x50); // 0 1 N=0 T=1 index(4)
    } else {
      o = writeString(out, o, name, 3, 0x20); // 0 0 1 N=0 H length(3)
    }
    o = writeString(out, o, value, 7, 0x00);
  }
  // A view, no copy: the bound is small (a few dozen bytes per field) and the frame copies it anyway.
  return out.subarray(0, o);
}

// ---------------------------------------------------------------------------------------------
// Encoder / decoder stream receivers (RFC 9204 §4.3, §4.4)

/**
 * Accumulates the bytes of an instruction that spans chunks. Only integer-bearing instructions we
 * accept are ever carried (everything else fails on its first byte), so the carry stays tiny.
 */
abstract class InstructionStreamReceiver {
  private carry: Buffer | undefined;
  private failure: QpackError | undefined;
  protected abstract readonly errorCode: number;

  /** Feeds the next bytes of the stream. Throws QpackError on a forbidden instruction. */
  push(chunk: Uint8Array): void {
    if (this.failure) throw this.failure;
    const data = this.carry ? Buffer.concat([this.carry, chunk]) : asBuffer(chunk);
    this.carry = undefined;
    const c: Cursor = { buf: data, pos: 0, end: data.length };
    try {
      while (c.pos < c.end) {
        const start = c.pos;
        if (!this.readInstruction(c)) {
          this.carry = Buffer.from(data.subarray(start));
          return;
        }
      }
    } catch (err) {
      if (err instanceof QpackError) this.failure = err;
      throw err;
    }
  }

  /** True when no instruction is partially received. */
  get atInstructionBoundary(): boolean {
    return this.carry === undefined;
  }

  /** Reads one instruction at c.pos; false (c.pos unchanged) if it is incomplete. */
  protected abstract readInstruction(c: Cursor): boolean;

  protected readInt(c: Cursor, prefixBits: number): number {
    return readInt(c, prefixBits, this.errorCode);
  }

  protected fail(message: string): QpackError {
    return new QpackError(this.errorCode, message);
  }
}

/**
 * The peer's QPACK encoder stream. We allow no dynamic table, so only Set Dynamic Table Capacity
 * with a value up to our advertised maximum (0) is valid; inserts and duplicates are
 * QPACK_ENCODER_STREAM_ERROR (RFC 9204 §4.3).
 */
export class EncoderStreamReceiver extends InstructionStreamReceiver {
  protected readonly errorCode = H3_ERROR.QPACK_ENCODER_STREAM_ERROR;
  private capacity = 0;

  constructor(private readonly maxTableCapacity = 0) {
    super();
  }

  /** Last capacity the peer set (always ≤ maxTableCapacity). */
  get tableCapacity(): number {
    return this.capacity;
  }

  protected readInstruction(c: Cursor): boolean {
    const b = c.buf[c.pos];
    if (b & 0x80) throw this.fail('Insert With Name Reference, but we allow no dynamic table');
    if (b & 0x40) throw this.fail('Insert With Literal Name, but we allow no dynamic table');
    if ((b & 0x20) === 0) throw this.fail('Duplicate, but the dynamic table is empty');
    const capacity = this.readInt(c, 5);
    if (capacity < 0) return false;
    if (capacity > this.maxTableCapacity) {
      throw this.fail(`Set Dynamic Table Capacity ${capacity} exceeds our maximum ${this.maxTableCapacity}`);
    }
    this.capacity = capacity;
    return true;
  }
}

/**
 * The peer's QPACK decoder stream. Our encoder never references the dynamic table, so Section
 * Acknowledgment and Insert Count Increment are QPACK_DECODER_STREAM_ERROR (RFC 9204 §4.4);
 * Stream Cancellation is valid and needs no action.
 */
export class DecoderStreamReceiver extends InstructionStreamReceiver {
  protected readonly errorCode = H3_ERROR.QPACK_DECODER_STREAM_ERROR;

  protected readInstruction(c: Cursor): boolean {
    const b = c.buf[c.pos];
    if (b & 0x80) throw this.fail('Section Acknowledgment for a section without dynamic references');
    if ((b & 0x40) === 0) throw this.fail('Insert Count Increment, but we never insert');
    return this.readInt(c, 6) >= 0; // Stream Cancellation: nothing to release
  }
}
