/** What a Group needs from its manager: the maps, the program and the CID keys. */
import type { MapName } from './abi.generated.js';
import type { BpfMap } from './bpf-map.js';
import type { CidKey } from './cid.js';

export interface ManagerCore {
  readonly maps: Readonly<Record<MapName, BpfMap>>;
  readonly progFd: number;
  issuingKey(): CidKey;
  liveKeys(): ReadonlyMap<number, CidKey>;
  zeroGenStats(groupId: number, slot: number): void;
  /** Runs a synchronous read-modify-write of the pinned state holding the pin dir's writers' lock. */
  withStateLock<T>(fn: () => T): T;
}
