/** Reads and writes fields of ABI structs (layouts from abi.generated.ts) in little-endian buffers. */
import type { AbiField, AbiStruct } from './abi.generated.js';

function elementOffset(field: AbiField, index: number): number {
  const count = field.dims.reduce((a, b) => a * b, 1);
  if (index < 0 || index >= count) throw new RangeError(`ABI field index ${index} out of range (${count})`);
  return field.offset + index * field.elemSize;
}

/** Unsigned integer field (1, 2 or 4 bytes) or element of an array field. */
export function getU(buf: Buffer, field: AbiField, index = 0, base = 0): number {
  const at = base + elementOffset(field, index);
  switch (field.elemSize) {
    case 1:
      return buf.readUInt8(at);
    case 2:
      return buf.readUInt16LE(at);
    case 4:
      return buf.readUInt32LE(at);
    default:
      throw new TypeError(`getU: field of ${field.elemSize} bytes (use getU64)`);
  }
}

export function setU(buf: Buffer, field: AbiField, value: number, index = 0, base = 0): void {
  const at = base + elementOffset(field, index);
  switch (field.elemSize) {
    case 1:
      buf.writeUInt8(value, at);
      return;
    case 2:
      buf.writeUInt16LE(value, at);
      return;
    case 4:
      buf.writeUInt32LE(value, at);
      return;
    default:
      throw new TypeError(`setU: field of ${field.elemSize} bytes (use setU64)`);
  }
}

export function getU64(buf: Buffer, field: AbiField, index = 0, base = 0): bigint {
  if (field.elemSize !== 8) throw new TypeError('getU64: not a 64-bit field');
  return buf.readBigUInt64LE(base + elementOffset(field, index));
}

export function setU64(buf: Buffer, field: AbiField, value: bigint, index = 0, base = 0): void {
  if (field.elemSize !== 8) throw new TypeError('setU64: not a 64-bit field');
  buf.writeBigUInt64LE(value, base + elementOffset(field, index));
}

/** The bytes of an array-of-u8 field (a copy). */
export function getBytes(buf: Buffer, field: AbiField, base = 0): Buffer {
  const len = field.dims.reduce((a, b) => a * b, 1) * field.elemSize;
  return Buffer.from(buf.subarray(base + field.offset, base + field.offset + len));
}

export function setBytes(buf: Buffer, field: AbiField, bytes: Uint8Array, base = 0): void {
  const len = field.dims.reduce((a, b) => a * b, 1) * field.elemSize;
  if (bytes.length > len) throw new RangeError(`ABI field holds ${len} bytes, got ${bytes.length}`);
  buf.fill(0, base + field.offset, base + field.offset + len);
  Buffer.from(bytes).copy(buf, base + field.offset);
}

/** Sums every 64-bit counter of a per-CPU value (stride rounded up to 8 bytes) into one buffer. */
export function sumPerCpu<F extends string>(s: AbiStruct<F>, raw: Buffer, cpus: number): Buffer {
  const stride = Math.ceil(s.size / 8) * 8;
  const out = Buffer.alloc(s.size);
  for (let off = 0; off + 8 <= s.size; off += 8) {
    let total = 0n;
    for (let cpu = 0; cpu < cpus; cpu++) total += raw.readBigUInt64LE(cpu * stride + off);
    out.writeBigUInt64LE(total, off);
  }
  return out;
}

/** A little-endian u32: the key of every array map, and the value of the u32-valued ones. */
export function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
}
