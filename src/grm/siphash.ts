/**
 * SipHash-2-4 (Aumasson & Bernstein), 64-bit output, as the BPF CID decoder computes it.
 * 64-bit lanes are kept as (hi, lo) uint32 pairs: ~40x faster than BigInt arithmetic, which
 * matters because every issued CID costs one hash.
 */

// State: v0..v3 as hi/lo pairs in one typed array (index 2i = hi, 2i+1 = lo).
const v = new Uint32Array(8);

function add(a: number, b: number): void {
  const lo = (v[a + 1]! + v[b + 1]!) >>> 0;
  v[a] = (v[a]! + v[b]! + (lo < v[a + 1]! ? 1 : 0)) >>> 0;
  v[a + 1] = lo;
}

function rotl(a: number, n: number): void {
  const hi = v[a]!;
  const lo = v[a + 1]!;
  if (n === 32) {
    v[a] = lo;
    v[a + 1] = hi;
  } else if (n < 32) {
    v[a] = ((hi << n) | (lo >>> (32 - n))) >>> 0;
    v[a + 1] = ((lo << n) | (hi >>> (32 - n))) >>> 0;
  } else {
    const m = n - 32;
    v[a] = ((lo << m) | (hi >>> (32 - m))) >>> 0;
    v[a + 1] = ((hi << m) | (lo >>> (32 - m))) >>> 0;
  }
}

function xor(a: number, b: number): void {
  v[a] = (v[a]! ^ v[b]!) >>> 0;
  v[a + 1] = (v[a + 1]! ^ v[b + 1]!) >>> 0;
}

const V0 = 0;
const V1 = 2;
const V2 = 4;
const V3 = 6;

function round(): void {
  add(V0, V1);
  rotl(V1, 13);
  xor(V1, V0);
  rotl(V0, 32);
  add(V2, V3);
  rotl(V3, 16);
  xor(V3, V2);
  add(V0, V3);
  rotl(V3, 21);
  xor(V3, V0);
  add(V2, V1);
  rotl(V1, 17);
  xor(V1, V2);
  rotl(V2, 32);
}

function mix(hi: number, lo: number): void {
  v[V3] = (v[V3]! ^ hi) >>> 0;
  v[V3 + 1] = (v[V3 + 1]! ^ lo) >>> 0;
  round();
  round();
  v[V0] = (v[V0]! ^ hi) >>> 0;
  v[V0 + 1] = (v[V0 + 1]! ^ lo) >>> 0;
}

function lowWord(msg: Uint8Array, at: number, n: number): number {
  let w = 0;
  for (let i = Math.min(n, 4) - 1; i >= 0; i--) w = (w << 8) | msg[at + i]!;
  return w >>> 0;
}

/** A key split into 32-bit halves once: [k0hi, k0lo, k1hi, k1lo]. */
export function sipKey(k0: bigint, k1: bigint): Uint32Array {
  return Uint32Array.of(Number(k0 >> 32n), Number(k0 & 0xffffffffn), Number(k1 >> 32n), Number(k1 & 0xffffffffn));
}

/** SipHash-2-4 of msg; the 64-bit result is written to out as [hi, lo]. */
export function siphash24Into(key: Uint32Array, msg: Uint8Array, out: Uint32Array): void {
  v[0] = (key[0]! ^ 0x736f6d65) >>> 0;
  v[1] = (key[1]! ^ 0x70736575) >>> 0;
  v[2] = (key[2]! ^ 0x646f7261) >>> 0;
  v[3] = (key[3]! ^ 0x6e646f6d) >>> 0;
  v[4] = (key[0]! ^ 0x6c796765) >>> 0;
  v[5] = (key[1]! ^ 0x6e657261) >>> 0;
  v[6] = (key[2]! ^ 0x74656462) >>> 0;
  v[7] = (key[3]! ^ 0x79746573) >>> 0;
  const full = msg.length - (msg.length % 8);
  for (let at = 0; at < full; at += 8) mix(lowWord(msg, at + 4, 4), lowWord(msg, at, 4));
  const rest = msg.length - full;
  const lo = lowWord(msg, full, rest);
  const hi = rest > 4 ? lowWord(msg, full + 4, rest - 4) : 0;
  mix((hi | ((msg.length & 0xff) << 24)) >>> 0, lo);
  v[V2 + 1] = (v[V2 + 1]! ^ 0xff) >>> 0;
  round();
  round();
  round();
  round();
  out[0] = (v[0]! ^ v[2]! ^ v[4]! ^ v[6]!) >>> 0;
  out[1] = (v[1]! ^ v[3]! ^ v[5]! ^ v[7]!) >>> 0;
}

export function siphash24(k0: bigint, k1: bigint, msg: Uint8Array): bigint {
  const out = new Uint32Array(2);
  siphash24Into(sipKey(k0, k1), msg, out);
  return (BigInt(out[0]!) << 32n) | BigInt(out[1]!);
}
