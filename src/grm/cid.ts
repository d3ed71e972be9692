/**
 * Server connection IDs that carry (generation slot, worker) hidden under a key. Layout and the
 * reasoning: bpf/grm_abi.h ("Connection ID"). This module is pure: keys in, bytes out.
 */
import { randomBytes } from 'node:crypto';
import { GRM } from './abi.generated.js';
import { GrmError } from './errors.js';
import { sipKey, siphash24Into } from './siphash.js';
import type { CidIssuer } from './interface.js';

/** One CID configuration: a QUIC-LB-style config id (0..6), its CID length and SipHash key. */
export interface CidKey {
  readonly configId: number;
  readonly cidLength: number;
  readonly k0: bigint;
  readonly k1: bigint;
}

export interface CidRoute {
  readonly configId: number;
  readonly slot: number;
  readonly worker: number;
}

// The layout, from grm_abi.h (which static-asserts that these fit together).
const RANDOM_MASK = (1 << GRM.CONFIG_SHIFT) - 1;
const ROUTE_BITS = 8 * GRM.CID_ROUTE_BYTES;
const ROUTE_MASK = 2 ** ROUTE_BITS - 1;
const WORKER_MASK = (1 << GRM.WORKER_BITS) - 1;
const CHECK_MASK = (1 << GRM.CHECK_BITS) - 1;
const PRODUCT_MOD = 2 ** GRM.CHECK_PRODUCT_BITS;
const CHECK_SHIFT = 2 ** (GRM.CHECK_PRODUCT_BITS - GRM.CHECK_BITS);
const HI_SHIFT = 2 ** (32 - ROUTE_BITS);
const LO_SHIFT = 2 ** ROUTE_BITS;
const hashOut = new Uint32Array(2);
const splitKeys = new WeakMap<CidKey, Uint32Array>();

/** H = SipHash-2-4(key, nonce) as [hi, lo] in hashOut. */
function hashNonce(key: CidKey, cid: Uint8Array): void {
  let k = splitKeys.get(key);
  if (!k) {
    k = sipKey(key.k0, key.k1);
    splitKeys.set(key, k);
  }
  siphash24Into(k, cid.subarray(GRM.CID_NONCE_OFFSET), hashOut);
}

/** check = ((sw + 1) * ((H >> ROUTE_BITS) | 1) mod 2^PRODUCT_BITS) >> (PRODUCT_BITS - CHECK_BITS) with
 * sw = slot << WORKER_BITS | worker; exact in doubles (grm_abi.h keeps the product below 2^53). */
function checkBits(sw: number): number {
  const a = (hashOut[0]! * HI_SHIFT + Math.floor(hashOut[1]! / LO_SHIFT)) % PRODUCT_MOD;
  const odd = a % 2 === 0 ? a + 1 : a;
  return Math.floor(((sw + 1) * odd) % PRODUCT_MOD / CHECK_SHIFT);
}

export function validateCidLength(len: number): void {
  if (!Number.isInteger(len) || len < GRM.CID_MIN_LEN || len > GRM.CID_MAX_LEN) {
    throw new GrmError('BAD_ARGUMENT', `CID length must be ${GRM.CID_MIN_LEN}..${GRM.CID_MAX_LEN}, got ${len}`);
  }
}

// Nonces come from a pooled CSPRNG buffer: one randomBytes() call per 4 KiB instead of per CID.
let pool = Buffer.alloc(0);
let poolAt = 0;
function randomChunk(n: number): Buffer {
  if (poolAt + n > pool.length) {
    pool = randomBytes(4096);
    poolAt = 0;
  }
  const out = pool.subarray(poolAt, poolAt + n);
  poolAt += n;
  return out;
}

/** Issues a CID routing to (slot, worker) under key. `random` supplies the nonce (tests). */
export function encodeCid(key: CidKey, slot: number, worker: number, random: Buffer = randomChunk(key.cidLength)): Buffer {
  if (!Number.isInteger(slot) || slot < 0 || slot >= GRM.MAX_SLOTS) throw new GrmError('BAD_ARGUMENT', `slot ${slot} out of range`);
  if (!Number.isInteger(worker) || worker < 0 || worker >= GRM.MAX_WORKERS) {
    throw new GrmError('BAD_ARGUMENT', `worker index ${worker} out of range 0..${GRM.MAX_WORKERS - 1}`);
  }
  const cid = Buffer.from(random.subarray(0, key.cidLength));
  cid[0] = (key.configId << GRM.CONFIG_SHIFT) | (cid[0]! & RANDOM_MASK);
  hashNonce(key, cid);
  const sw = (slot << GRM.WORKER_BITS) | worker;
  const r = (sw << GRM.CHECK_BITS) | checkBits(sw);
  cid.writeUIntBE(r ^ (hashOut[1]! & ROUTE_MASK), GRM.CID_ROUTE_OFFSET, GRM.CID_ROUTE_BYTES);
  return cid;
}

/** Decodes a CID with whichever live key its config id names; null if it is not one of ours. */
export function decodeCid(keys: ReadonlyMap<number, CidKey>, cid: Uint8Array): CidRoute | null {
  if (cid.length < 1) return null;
  const configId = cid[0]! >> GRM.CONFIG_SHIFT;
  const key = keys.get(configId);
  if (!key || cid.length !== key.cidLength) return null;
  hashNonce(key, cid);
  let e = 0;
  for (let i = 0; i < GRM.CID_ROUTE_BYTES; i++) e = (e << 8) | cid[GRM.CID_ROUTE_OFFSET + i]!;
  const r = e ^ (hashOut[1]! & ROUTE_MASK);
  const sw = r >>> GRM.CHECK_BITS;
  if ((r & CHECK_MASK) !== checkBits(sw)) return null;
  return { configId, slot: sw >>> GRM.WORKER_BITS, worker: sw & WORKER_MASK };
}

/** Everything a worker process needs to issue CIDs for its socket (JSON-safe: pass it to a child). */
export interface CidIssuerParams {
  readonly configId: number;
  readonly cidLength: number;
  readonly k0: string; // hex, 16 digits
  readonly k1: string;
  readonly slot: number;
  readonly worker: number;
}

export function cidIssuerParams(key: CidKey, slot: number, worker: number): CidIssuerParams {
  const hex = (v: bigint): string => v.toString(16).padStart(16, '0');
  return { configId: key.configId, cidLength: key.cidLength, k0: hex(key.k0), k1: hex(key.k1), slot, worker };
}

/** A CidIssuer for one (slot, worker), e.g. in a worker process from params the master sent. */
export function createCidIssuer(params: CidIssuerParams): CidIssuer {
  validateCidLength(params.cidLength);
  const key: CidKey = {
    configId: params.configId,
    cidLength: params.cidLength,
    k0: BigInt(`0x${params.k0}`),
    k1: BigInt(`0x${params.k1}`),
  };
  return {
    cidLength: key.cidLength,
    issue: () => encodeCid(key, params.slot, params.worker),
  };
}
