/** The compat ABI structs ⇄ objects (layouts from abi.generated.ts). */
import {
  GRM,
  grm_compat_agent_stats,
  grm_compat_dissector,
  grm_compat_group,
  grm_compat_msg,
  grm_compat_slot,
  grm_compat_slot_key,
  grm_compat_sock,
  grm_compat_stats,
  grm_group_key,
} from '../abi.generated.js';
import { possibleCpus } from '../libbpf.js';
import { getU, getU64, setBytes, setU, setU64, sumPerCpu } from '../struct-view.js';

export interface CompatGroup {
  readonly dissectorType: number;
  readonly flowTimeoutSec: number;
  readonly maxApps: number;
  readonly digest: number;
  readonly filterLen: number;
  readonly label: string;
  readonly netnsCookie: bigint;
  readonly randomId: number;
  readonly verbose: boolean;
  readonly workingGen: readonly number[];
}

export function decodeGroup(b: Buffer): CompatGroup {
  const f = grm_compat_group.fields;
  const d = grm_compat_dissector.fields;
  const dis = f.dis.offset;
  const label = b.subarray(dis + d.label.offset, dis + d.label.offset + GRM.COMPAT_LABEL_SZ);
  const nul = label.indexOf(0);
  return {
    dissectorType: getU(b, d.dissector_type, 0, dis),
    flowTimeoutSec: getU(b, d.flow_entry_timeout_sec, 0, dis),
    maxApps: getU(b, d.max_apps, 0, dis),
    digest: getU(b, d.bespoke_digest, 0, dis),
    filterLen: getU(b, d.filter_len, 0, dis),
    label: label.subarray(0, nul < 0 ? label.length : nul).toString('latin1'),
    netnsCookie: getU64(b, f.netns_cookie),
    randomId: getU(b, f.random_id),
    verbose: (getU(b, f.flags) & GRM.COMPAT_GROUP_VERBOSE) !== 0,
    workingGen: Array.from({ length: GRM.COMPAT_MAX_APPS }, (_, i) => getU(b, f.working_gen, i)),
  };
}

/** One generation slot: socket cookies by index (0n = empty) and how many indices take new flows. */
export interface SlotRecord {
  maxIdx: number;
  readonly cookies: bigint[];
}

export function emptySlot(): SlotRecord {
  return { maxIdx: 0, cookies: Array<bigint>(GRM.COMPAT_MAX_SOCKETS_IN_GEN).fill(0n) };
}

export function decodeSlot(b: Buffer): SlotRecord {
  const f = grm_compat_slot.fields;
  return {
    maxIdx: getU(b, f.max_idx),
    cookies: Array.from({ length: GRM.COMPAT_MAX_SOCKETS_IN_GEN }, (_, i) => getU64(b, f.cookies, i)),
  };
}

export function encodeSlot(s: SlotRecord): Buffer {
  const b = Buffer.alloc(grm_compat_slot.size);
  setU(b, grm_compat_slot.fields.max_idx, s.maxIdx);
  s.cookies.forEach((c, i) => setU64(b, grm_compat_slot.fields.cookies, c, i));
  return b;
}

export function slotKey(groupKey: Buffer, slot: number): Buffer {
  const b = Buffer.alloc(grm_compat_slot_key.size);
  groupKey.copy(b, grm_compat_slot_key.fields.group.offset, 0, grm_group_key.size);
  setU(b, grm_compat_slot_key.fields.slot, slot);
  return b;
}

export interface SockRecord {
  readonly cookie: bigint;
  readonly netnsCookie: bigint;
  gen: number;
  idx: number;
  readonly app: number;
}

export function decodeSock(b: Buffer): SockRecord {
  const f = grm_compat_sock.fields;
  return { cookie: getU64(b, f.cookie), netnsCookie: getU64(b, f.netns_cookie), gen: getU(b, f.gen), idx: getU(b, f.idx), app: getU(b, f.app) };
}

export function encodeSock(s: SockRecord): Buffer {
  const f = grm_compat_sock.fields;
  const b = Buffer.alloc(grm_compat_sock.size);
  setU64(b, f.cookie, s.cookie);
  setU64(b, f.netns_cookie, s.netnsCookie);
  setU(b, f.gen, s.gen >>> 0);
  setU(b, f.idx, s.idx >>> 0);
  setU(b, f.app, s.app);
  return b;
}

export interface CompatMsg {
  readonly type: number;
  readonly tgid: number;
  readonly value: number;
  readonly app: number;
  readonly cookie: bigint;
  readonly groupKey: Buffer;
}

/** A ring record, or null if it is not one (wrong size). */
export function decodeMsg(b: Uint8Array): CompatMsg | null {
  if (b.length !== grm_compat_msg.size) return null;
  const buf = Buffer.from(b);
  const f = grm_compat_msg.fields;
  return {
    type: getU(buf, f.type),
    tgid: getU(buf, f.tgid),
    value: getU(buf, f.value),
    app: getU(buf, f.app),
    cookie: getU64(buf, f.cookie),
    groupKey: Buffer.from(buf.subarray(f.group.offset, f.group.offset + grm_group_key.size)),
  };
}

export function encodeMsg(m: CompatMsg): Buffer {
  const b = Buffer.alloc(grm_compat_msg.size);
  const f = grm_compat_msg.fields;
  setU(b, f.type, m.type);
  setU(b, f.tgid, m.tgid);
  setU(b, f.value, m.value >>> 0);
  setU(b, f.app, m.app);
  setU64(b, f.cookie, m.cookie);
  setBytes(b, f.group, m.groupKey);
  return b;
}

/** udpgrm's counters, in its order (list and metrics print them in it). */
export const UDPGRM_COUNTERS = [
  'rx_processed_total',
  'rx_internal_state_error',
  'rx_cbpf_prog_error',
  'rx_packet_too_short_error',
  'rx_dissected_ok_total',
  'rx_flow_ok',
  'rx_flow_rg_conflict',
  'rx_flow_other_error',
  'rx_flow_new_unseen',
  'rx_flow_new_had_expired',
  'rx_flow_new_bad_cookie',
  'rx_new_flow_total',
  'rx_new_flow_working_gen_dispatch_ok',
  'rx_new_flow_working_gen_dispatch_error',
  'tx_total',
  'tx_flow_create_ok',
  'tx_flow_create_from_expired_ok',
  'tx_flow_create_error',
  'tx_flow_update_ok',
  'tx_flow_update_conflict',
] as const;

/** Per generation slot (ours), for every dissector: new flows dispatched to the slot, datagrams
 * of known flows (flow table or cookie) delivered to it. */
export const SLOT_COUNTERS = ['slot_rx_new_flow', 'slot_rx_existing_flow'] as const;

export type CompatCounters = Record<string, bigint | bigint[]>;

/** A group's per-CPU counters summed; arrays for the per-slot ones. */
export function decodeStats(raw: Buffer | null): CompatCounters {
  const sum = raw ? sumPerCpu(grm_compat_stats, raw, possibleCpus()) : Buffer.alloc(grm_compat_stats.size);
  const out: CompatCounters = {};
  for (const [name, f] of Object.entries(grm_compat_stats.fields)) {
    out[name] = f.dims.length ? Array.from({ length: f.dims[0]! }, (_, i) => getU64(sum, f, i)) : getU64(sum, f);
  }
  return out;
}

/** udpgrm's management counters (grmc_agent, the agent's), in its order before the others. */
export interface AgentStats {
  socket_critical_gauge: bigint;
  socket_critical: bigint;
}

export function decodeAgentStats(raw: Buffer | null): AgentStats {
  const f = grm_compat_agent_stats.fields;
  return raw ? { socket_critical_gauge: getU64(raw, f.socket_critical_gauge), socket_critical: getU64(raw, f.socket_critical) } : { socket_critical_gauge: 0n, socket_critical: 0n };
}

export function encodeAgentStats(s: AgentStats): Buffer {
  const f = grm_compat_agent_stats.fields;
  const b = Buffer.alloc(grm_compat_agent_stats.size);
  setU64(b, f.socket_critical, s.socket_critical);
  setU64(b, f.socket_critical_gauge, s.socket_critical_gauge);
  return b;
}
