/** CID keys as stored in grm_keys (an array indexed by config id): reading and writing them. */
import { GRM, grm_cid_key } from './abi.generated.js';
import type { BpfMap } from './bpf-map.js';
import type { CidKey } from './cid.js';
import { getU, getU64, setU, setU64, u32 } from './struct-view.js';

export interface CidKeys {
  readonly live: Map<number, CidKey>;
  readonly issuing: CidKey | undefined;
}

/** The live keys by config id, and the one new CIDs are issued with. */
export function readCidKeys(map: BpfMap): CidKeys {
  const live = new Map<number, CidKey>();
  let issuing: CidKey | undefined;
  for (let id = 0; id < GRM.MAX_CONFIGS; id++) {
    const v = map.lookup(u32(id));
    if (!v) continue;
    const flags = getU(v, grm_cid_key.fields.flags);
    if (!(flags & GRM.KEY_LIVE)) continue;
    const key: CidKey = {
      configId: id,
      cidLength: getU(v, grm_cid_key.fields.cid_len),
      k0: getU64(v, grm_cid_key.fields.k0),
      k1: getU64(v, grm_cid_key.fields.k1),
    };
    live.set(id, key);
    if (flags & GRM.KEY_ISSUING) issuing = key;
  }
  return { live, issuing };
}

/** Stores a key under its config id with GRM_KEY_* flags (0 = not live). */
export function writeCidKey(map: BpfMap, k: CidKey, flags: number): void {
  const v = Buffer.alloc(grm_cid_key.size);
  setU64(v, grm_cid_key.fields.k0, k.k0);
  setU64(v, grm_cid_key.fields.k1, k.k1);
  setU(v, grm_cid_key.fields.cid_len, k.cidLength);
  setU(v, grm_cid_key.fields.flags, flags);
  map.update(u32(k.configId), v);
}

/** Clears a config id: its CIDs stop routing. */
export function clearCidKey(map: BpfMap, configId: number): void {
  map.update(u32(configId), Buffer.alloc(grm_cid_key.size));
}
