/** Read-mostly view of a pin dir without loading the program (for `list` and `grm cleanup`). */
import type { MapName } from './abi.generated.js';
import type { BpfMap } from './bpf-map.js';
import type { CidKey } from './cid.js';
import { readCidKeys } from './cid-keys.js';
import { GrmError } from './errors.js';
import type { Group } from './group.js';
import type { ManagerCore } from './manager-core.js';
import { detachCloseUnpin, groupsOf } from './manager.js';
import { openPinnedMaps } from './map-specs.js';

export class PinnedState implements ManagerCore {
  readonly progFd = -1;
  private readonly keys: ReadonlyMap<number, CidKey>;
  private readonly issuing: CidKey | undefined;

  private constructor(
    readonly pinDir: string,
    readonly maps: Readonly<Record<MapName, BpfMap>>,
  ) {
    const keys = readCidKeys(maps.grm_keys);
    this.keys = keys.live;
    this.issuing = keys.issuing;
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
