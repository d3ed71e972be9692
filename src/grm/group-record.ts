/**
 * The one struct grm_group of a group in grm_groups: read, write, find a generation's slot. All
 * group state lives there, so a restarted manager sees exactly what the kernel steers by.
 */
import { GRM } from './abi.generated.js';
import { GrmError } from './errors.js';
import { decodeGroup, encodeGroup, type GroupState } from './group-state.js';
import type { ManagerCore } from './manager-core.js';
import { formatAddress, type SocketAddress } from './sockets.js';
import { u32 } from './struct-view.js';

export class GroupRecord {
  private readonly idKey: Buffer;

  constructor(
    readonly core: ManagerCore,
    readonly address: SocketAddress,
    readonly id: number,
  ) {
    this.idKey = u32(id);
  }

  toString(): string {
    return formatAddress(this.address);
  }

  state(): GroupState {
    const raw = this.core.maps.grm_groups.lookup(this.idKey);
    const s = raw ? decodeGroup(raw) : undefined;
    if (!s || !(s.flags & GRM.GROUP_IN_USE)) throw new GrmError('BAD_ARGUMENT', `group ${this} no longer exists`);
    return s;
  }

  write(s: GroupState): void {
    this.core.maps.grm_groups.update(this.idKey, encodeGroup(s));
  }

  /** The slot of a live generation. */
  slotOf(gen: number): number {
    const s = this.state();
    const slot = s.slotState.findIndex((st, i) => st === GRM.SLOT_IN_USE && s.slotGen[i] === gen);
    if (slot < 0) throw new GrmError('NO_SUCH_GENERATION', `${this}: generation ${gen} does not exist (never added or retired)`);
    return slot;
  }
}

export function checkApp(app: number): void {
  if (!Number.isInteger(app) || app < 0 || app >= GRM.MAX_APPS) throw new GrmError('BAD_ARGUMENT', `app must be 0..${GRM.MAX_APPS - 1}, got ${app}`);
}
