/** Read-mostly view of a pin dir without loading the program (for `list` and `grm cleanup`). */
import type { MapName } from './abi.generated.js';
import { GRM, grm_cid_key } from './abi.generated.js';
import type { BpfMap } from './bpf-map.js';
import type { CidKey } from './cid.js';
import { GrmError } from './errors.js';
import type { Group } from './group.js';
import type { ManagerCore } from './manager-core.js';
import { detachCloseUnpin, groupsOf } from './manager.js';
import { openPinnedMaps } from './map-specs.js';
import { getU, getU64 } from './struct-view.js';

export class PinnedState implements ManagerCore {
  readonly progFd = -1;
  private readonly keys = new Map<number, CidKey>();
  private issuing: CidKey | undefined;

  private constructor(
    readonly pinDir: string,
    readonly maps: Readonly<Record<MapName, BpfMap>>,
  ) {
    for (let id = 0; id < GRM.MAX_CONFIGS; id++) {
      const k = Buffer.alloc(4);
      k.writeUInt32LE(id);
      const v = maps.grm_keys.lookup(k);
      if (!v || !(getU(v, grm_cid_key.fields.flags) & GRM.KEY_LIVE)) continue;
      const key = {
        configId: id,
        cidLength: getU(v, grm_cid_key.fields.cid_len),
        k0: getU64(v, grm_cid_key.fields.k0),
        k1: getU64(v, grm_cid_key.fields.k1),
      };
      this.keys.set(id, key);
      if (getU(v, grm_cid_key.fields.flags) & GRM.KEY_ISSUING) this.issuing = key;
    }
  }

  static open(pinDir: string): PinnedState {
    return new PinnedState(pinDir, openPinnedMaps(pinDir));
  }

  issuingKey(): CidKey {
    if (!this.issuing) throw new GrmError('BAD_ARGUMENT', `${this.pinDir} has no issuing CID key`);
    return this.issuing;
  }

  liveKeys(): ReadonlyMap<number, CidKey> {
    return this.keys;
  }

  zeroGenStats(): void {
    throw new GrmError('BAD_ARGUMENT', 'pinned state is read-only: open a GenerationManager to change it');
  }

  groups(): Group[] {
    return groupsOf(this);
  }

  close(): void {
    for (const m of Object.values(this.maps)) m.close();
  }

  /** Detaches the program from every group (best effort), then unpins everything. */
  cleanup(): string[] {
    return detachCloseUnpin(this);
  }
}
