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

const CHECK_MASK = (1 << GRM.CHECK_BITS) - 1;
const TWO_40 = 2 ** 40;
const TWO_29 = 2 ** 29;
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

/** check = (((slot << 8 | worker) + 1) * ((H >> 24) | 1) mod 2^40) >> 29; exact in doubles (< 2^53). */
function checkBits(slot: number, worker: number): number {
  const a = (hashOut[0]! * 256 + (hashOut[1]! >>> 24)) % TWO_40;
  const odd = a % 2 === 0 ? a + 1 : a;
  return Math.floor((((((slot << 8) | worker) + 1) * odd) % TWO_40) / TWO_29);
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
  cid[0] = (key.configId << 5) | (cid[0]! & 0x1f);
  hashNonce(key, cid);
  const r = (((slot << 8) | worker) << GRM.CHECK_BITS) | checkBits(slot, worker);
  const e = r ^ (hashOut[1]! & 0xffffff);
  cid[1] = e >>> 16;
  cid[2] = (e >>> 8) & 0xff;
  cid[3] = e & 0xff;
  return cid;
}

/** Decodes a CID with whichever live key its config id names; null if it is not one of ours. */
export function decodeCid(keys: ReadonlyMap<number, CidKey>, cid: Uint8Array): CidRoute | null {
  if (cid.length < 1) return null;
  const configId = cid[0]! >> 5;
  const key = keys.get(configId);
  if (!key || cid.length !== key.cidLength) return null;
  hashNonce(key, cid);
  const e = (cid[1]! << 16) | (cid[2]! << 8) | cid[3]!;
  const r = e ^ (hashOut[1]! & 0xffffff);
  const sw = r >>> GRM.CHECK_BITS;
  const slot = sw >>> 8;
  const worker = sw & 0xff;
  if ((r & CHECK_MASK) !== checkBits(slot, worker)) return null;
  return { configId, slot, worker };
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
