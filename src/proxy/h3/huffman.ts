// HPACK/QPACK Huffman string coding (RFC 7541 §5.2, Appendix B).
//
// Decoding is table-driven, 4 bits at a time: the code tree's 256 internal nodes are the states,
// and for each (state, nibble) a precomputed entry gives the next state and at most one emitted
// symbol (the shortest code is 5 bits, so 4 bits can finish at most one symbol). Built once at
// module load from the code table.

import { HUFFMAN_CODES, HUFFMAN_EOS } from './huffman-table.js';

/** Thrown for an invalid Huffman string; callers wrap it into their protocol's error code. */
export class HuffmanError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HuffmanError';
  }
}

const CODE = new Uint32Array(256);
const BITS = new Uint8Array(256);
for (let s = 0; s < 256; s++) {
  CODE[s] = HUFFMAN_CODES[s][0];
  BITS[s] = HUFFMAN_CODES[s][1];
}

// Transition entry layout (Uint32): bits 0-7 next state, bits 8-15 symbol, bit 16 "emits a
// symbol", bit 17 "invalid" (the EOS code was completed, which RFC 7541 §5.2 forbids).
const EMIT = 1 << 16;
const FAIL = 1 << 17;
const TRANSITIONS = new Uint32Array(256 * 16);
/** Per state: 1 if the input may end here (root, or ≤7 bits of an all-ones prefix of EOS). */
const ACCEPTING = new Uint8Array(256);

(function buildDecoder(): void {
  // Binary tree: child[node*2 + bit] is an internal node id (>= 0) or ~symbol (< 0).
  const child = new Int32Array(256 * 2).fill(0x7fffffff);
  let nodes = 1;
  for (let sym = 0; sym <= HUFFMAN_EOS; sym++) {
    const [code, bits] = HUFFMAN_CODES[sym];
    let node = 0;
    for (let i = bits - 1; i > 0; i--) {
      const slot = node * 2 + ((code >>> i) & 1);
      if (child[slot] === 0x7fffffff) child[slot] = nodes++;
      node = child[slot];
    }
    child[node * 2 + (code & 1)] = ~sym;
  }
  if (nodes !== 256) throw new Error(`Huffman table malformed: ${nodes} internal nodes`);

  // Depth and "all ones so far" per node, for the padding rule.
  const depth = new Uint8Array(256);
  const allOnes = new Uint8Array(256);
  allOnes[0] = 1;
  for (let node = 0; node < 256; node++) {
    for (let bit = 0; bit < 2; bit++) {
      const c = child[node * 2 + bit];
      if (c >= 0) {
        depth[c] = depth[node] + 1;
        allOnes[c] = allOnes[node] & bit;
      }
    }
  }
  for (let node = 0; node < 256; node++) ACCEPTING[node] = allOnes[node] && depth[node] <= 7 ? 1 : 0;

  for (let state = 0; state < 256; state++) {
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state;
      let entry = 0;
      for (let i = 3; i >= 0; i--) {
        const c = child[node * 2 + ((nibble >>> i) & 1)];
        if (c >= 0) {
          node = c;
          continue;
        }
        const sym = ~c;
        if (sym === HUFFMAN_EOS) {
          entry |= FAIL;
          break;
        }
        entry |= EMIT | (sym << 8);
        node = 0;
      }
      TRANSITIONS[state * 16 + nibble] = entry | node;
    }
  }
})();

/** Length in bytes of the Huffman encoding of `input` (a byte string). */
export function huffmanEncodedLength(input: Uint8Array | string): number {
  let bits = 0;
  if (typeof input === 'string') {
    for (let i = 0; i < input.length; i++) bits += BITS[input.charCodeAt(i) & 0xff];
  } else {
    for (let i = 0; i < input.length; i++) bits += BITS[input[i]];
  }
  return (bits + 7) >>> 3;
}

/**
 * Writes the Huffman encoding of `input` at `out[offset]` (the caller sized `out` with
 * huffmanEncodedLength) and returns the offset after it. Strings are taken as latin1: one byte
 * per char code (the caller has checked they are < 256).
 */
export function huffmanEncodeInto(input: Uint8Array | string, out: Uint8Array, offset: number): number {
  const isString = typeof input === 'string';
  let acc = 0; // pending bits, right-aligned; fewer than 8 between symbols
  let pending = 0;
  let o = offset;
  for (let i = 0; i < input.length; i++) {
    const sym = isString ? (input as string).charCodeAt(i) & 0xff : (input as Uint8Array)[i];
    let code = CODE[sym];
    let bits = BITS[sym];
    if (bits > 24) {
      // Emit the high part first so that acc never holds more than 31 bits.
      const high = bits - 16;
      acc = (acc << high) | (code >>> 16);
      pending += high;
      while (pending >= 8) {
        pending -= 8;
        out[o++] = (acc >>> pending) & 0xff;
      }
      code &= 0xffff;
      bits = 16;
    }
    acc = ((acc & ((1 << pending) - 1)) << bits) | code;
    pending += bits;
    while (pending >= 8) {
      pending -= 8;
      out[o++] = (acc >>> pending) & 0xff;
    }
  }
  if (pending > 0) {
    // Pad with the most significant bits of EOS (all ones).
    out[o++] = ((acc << (8 - pending)) | (0xff >>> pending)) & 0xff;
  }
  return o;
}

export function huffmanEncode(input: Uint8Array | string): Buffer {
  const out = Buffer.allocUnsafe(huffmanEncodedLength(input));
  huffmanEncodeInto(input, out, 0);
  return out;
}

let scratch = Buffer.allocUnsafe(4096);

/**
 * Decodes src[start, end) into `out` at `offset` and returns the offset after the last decoded
 * byte. `out` must have room for (end - start) * 8 / 5 bytes (the most a Huffman string can
 * expand to). Throws HuffmanError on EOS inside the string or invalid padding.
 */
export function huffmanDecodeInto(
  src: Uint8Array,
  start: number,
  end: number,
  out: Uint8Array,
  offset: number,
): number {
  let state = 0;
  let o = offset;
  for (let i = start; i < end; i++) {
    const byte = src[i];
    let t = TRANSITIONS[(state << 4) | (byte >>> 4)];
    if (t & FAIL) throw new HuffmanError('EOS symbol inside a Huffman string');
    if (t & EMIT) out[o++] = (t >>> 8) & 0xff;
    state = t & 0xff;
    t = TRANSITIONS[(state << 4) | (byte & 0x0f)];
    if (t & FAIL) throw new HuffmanError('EOS symbol inside a Huffman string');
    if (t & EMIT) out[o++] = (t >>> 8) & 0xff;
    state = t & 0xff;
  }
  if (!ACCEPTING[state]) {
    throw new HuffmanError('Huffman string padding is longer than 7 bits or not all ones');
  }
  return o;
}

/** Upper bound of the decoded length of an n-byte Huffman string. */
export function huffmanMaxDecodedLength(encodedLength: number): number {
  return Math.floor((encodedLength * 8) / 5);
}

export function huffmanDecode(src: Uint8Array, start = 0, end = src.length): Buffer {
  const out = Buffer.allocUnsafe(huffmanMaxDecodedLength(end - start));
  const len = huffmanDecodeInto(src, start, end, out, 0);
  return out.subarray(0, len);
}

/** Decodes straight to a latin1 string (one char per byte) using a shared scratch buffer. */
export function huffmanDecodeToString(src: Uint8Array, start: number, end: number): string {
  const max = huffmanMaxDecodedLength(end - start);
  if (scratch.length < max) scratch = Buffer.allocUnsafe(Math.max(max, scratch.length * 2));
  const len = huffmanDecodeInto(src, start, end, scratch, 0);
  return scratch.toString('latin1', 0, len);
}
