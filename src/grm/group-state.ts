/** struct grm_group <-> a plain object; the fallback order is derived, never stored by hand. */
import { GRM, grm_group } from './abi.generated.js';
import { getBytes, getU, setBytes, setU } from './struct-view.js';

export interface GroupState {
  id: number;
  flags: number;
  /** The listen address as struct grm_group_key bytes. */
  addrKey: Buffer;
  attemptTtlMs: number;
  lastGen: number;
  workingSlot: number[]; // per app, GRM.SLOT_NONE = none
  slotState: number[];
  slotApp: number[];
  slotWorkers: number[];
  slotGen: number[];
}

const F = grm_group.fields;

export function decodeGroup(buf: Buffer): GroupState {
  const list = (field: (typeof F)[keyof typeof F], n: number): number[] => Array.from({ length: n }, (_, i) => getU(buf, field, i));
  return {
    id: getU(buf, F.id),
    flags: getU(buf, F.flags),
    addrKey: getBytes(buf, F.addr),
    attemptTtlMs: getU(buf, F.attempt_ttl_ms),
    lastGen: getU(buf, F.last_gen),
    workingSlot: list(F.working_slot, GRM.MAX_APPS),
    slotState: list(F.slot_state, GRM.MAX_SLOTS),
    slotApp: list(F.slot_app, GRM.MAX_SLOTS),
    slotWorkers: list(F.slot_workers, GRM.MAX_SLOTS),
    slotGen: list(F.slot_gen, GRM.MAX_SLOTS),
  };
}

export function encodeGroup(s: GroupState): Buffer {
  const buf = Buffer.alloc(grm_group.size);
  setU(buf, F.id, s.id);
  setU(buf, F.flags, s.flags);
  setBytes(buf, F.addr, s.addrKey);
  setU(buf, F.attempt_ttl_ms, s.attemptTtlMs);
  setU(buf, F.last_gen, s.lastGen);
  for (let a = 0; a < GRM.MAX_APPS; a++) setU(buf, F.working_slot, s.workingSlot[a]!, a);
  for (let i = 0; i < GRM.MAX_SLOTS; i++) {
    setU(buf, F.slot_state, s.slotState[i]!, i);
    setU(buf, F.slot_app, s.slotApp[i]!, i);
    setU(buf, F.slot_workers, s.slotWorkers[i]!, i);
    setU(buf, F.slot_gen, s.slotGen[i]!, i);
  }
  for (let a = 0; a < GRM.MAX_APPS; a++) {
    fallbackOrder(s, a).forEach((slot, i) => setU(buf, F.fallback_order, slot, a * GRM.MAX_SLOTS + i));
  }
  return buf;
}

/** In-use slots for a new connection of `app` when its working slot has no live socket: that
 * app's generations first, newest first, then the other apps' (newest first); SLOT_NONE padded. */
export function fallbackOrder(s: GroupState, app: number): number[] {
  const used = s.slotState.flatMap((st, slot) => (st === GRM.SLOT_IN_USE ? [slot] : []));
  const newestFirst = (x: number, y: number): number => s.slotGen[y]! - s.slotGen[x]!;
  const own = used.filter((slot) => s.slotApp[slot] === app).sort(newestFirst);
  const others = used.filter((slot) => s.slotApp[slot] !== app).sort(newestFirst);
  const order = [...own, ...others];
  while (order.length < GRM.MAX_SLOTS) order.push(GRM.SLOT_NONE);
  return order;
}

export function emptyGroup(id: number, addrKey: Buffer, attemptTtlMs: number, flags: number): GroupState {
  return {
    id,
    flags: flags | GRM.GROUP_IN_USE,
    addrKey,
    attemptTtlMs,
    lastGen: 0,
    workingSlot: Array<number>(GRM.MAX_APPS).fill(GRM.SLOT_NONE),
    slotState: Array<number>(GRM.MAX_SLOTS).fill(GRM.SLOT_FREE),
    slotApp: Array<number>(GRM.MAX_SLOTS).fill(0),
    slotWorkers: Array<number>(GRM.MAX_SLOTS).fill(0),
    slotGen: Array<number>(GRM.MAX_SLOTS).fill(0),
  };
}
