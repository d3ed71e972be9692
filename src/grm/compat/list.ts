/**
 * `grm list [-v] [IP:PORT]` (udpgrm's layout: tabs and spacing are what scripts parse) and
 * `grm delete IP:PORT`, on the pinned compat maps.
 */
import { GRM } from '../abi.generated.js';
import { addressOfKey, groupKey } from '../manager.js';
import { formatAddress, toSocketAddress } from '../sockets.js';
import { GrmError } from '../errors.js';
import { slotOf } from './cookie.js';
import { isLiveSocket, type CompatMaps } from './maps.js';
import { decodeAgentStats, decodeGroup, decodeSlot, decodeStats, SLOT_COUNTERS, slotKey, UDPGRM_COUNTERS, type CompatGroup } from './records.js';

const DISSECTOR_NAMES: Record<number, string> = {
  [GRM.COMPAT_DISSECTOR_FLOW]: 'flow',
  [GRM.COMPAT_DISSECTOR_CBPF]: 'cbpf',
  [GRM.COMPAT_DISSECTOR_BESPOKE]: 'bespoke',
  [GRM.COMPAT_DISSECTOR_NOOP]: 'noop',
};


/** "IP:PORT" or "[IPv6]:PORT" -> grm_group_key bytes. */
export function parseAddress(text: string): Buffer {
  const m = /^\[(.+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  if (!m) throw new GrmError('BAD_ARGUMENT', `expected IP:PORT or [IPv6]:PORT, got '${text}'`);
  return groupKey(toSocketAddress({ host: m[1]!, port: Number(m[2]) }));
}

/** The apps whose working generation is in this slot (apps of the group only: 0..max_apps-1). */
function appOfSlot(g: CompatGroup, slot: number): number[] {
  const apps: number[] = [];
  const n = Math.min(Math.max(g.maxApps, 1), GRM.COMPAT_MAX_APPS);
  for (let a = 0; a < n; a++) if (slot === slotOf(g.maxApps, a, g.workingGen[a]!)) apps.push(a);
  return apps;
}

export function formatCompatGroup(maps: CompatMaps, key: Buffer, verbose: boolean): string | null {
  const raw = maps.grmc_groups.lookup(key);
  if (!raw) return null;
  const g = decodeGroup(raw);
  const out: string[] = [];
  let head = `${formatAddress(addressOfKey(key))}\n\tnetns 0x${g.netnsCookie.toString(16)}  dissector ${DISSECTOR_NAMES[g.dissectorType] ?? String(g.dissectorType)}`;
  if (g.dissectorType === GRM.COMPAT_DISSECTOR_FLOW) head += `  flow_timeout_sec ${g.flowTimeoutSec}`;
  else if (g.dissectorType === GRM.COMPAT_DISSECTOR_CBPF) head += `  apps ${g.maxApps}  filter_len ${g.filterLen}`;
  else if (g.dissectorType === GRM.COMPAT_DISSECTOR_BESPOKE) head += `  digest 0x${g.digest.toString(16)}`;
  if (g.label) head += `  label ${g.label}`;
  if (g.verbose) head += '  verbose';
  out.push(head);
  out.push('\tsocket generations:');
  for (let slot = 0; slot < GRM.COMPAT_MAX_GENS; slot++) {
    const apps = appOfSlot(g, slot);
    const sraw = maps.grmc_slots.lookup(slotKey(key, slot));
    let line = '';
    if (sraw) {
      const rec = decodeSlot(sraw);
      for (let j = 0; j < rec.maxIdx; j++) {
        const c = rec.cookies[j]!;
        if (c === 0n) continue; // an index never used: nothing to show (live sockets may follow)
        const live = isLiveSocket(maps, c);
        if (!live && apps.length === 0 && !verbose) continue;
        if (verbose) line += `${j}:`;
        line += live ? `0x${c.toString(16)} ` : 'dead ';
      }
    }
    if (line.length === 0 && apps.length === 0) continue;
    let text = `\t\tgen ${String(slot).padStart(2)}  ${line}`;
    if (apps.length) text += ' <= ' + apps.map((a) => ` app ${a}  gen ${g.workingGen[a]! | 0}`).join('');
    out.push(text);
  }
  const stats = decodeStats(maps.grmc_stats.lookup(key));
  const metrics: string[] = [];
  for (const [name, v] of Object.entries(decodeAgentStats(maps.grmc_agent.lookup(key)))) {
    if (v > 0n || verbose) metrics.push(`\t\t${name} ${v}`);
  }
  for (const name of UDPGRM_COUNTERS) {
    const v = stats[name] as bigint;
    if (v > 0n || verbose) metrics.push(`\t\t${name} ${v}`);
  }
  for (const name of SLOT_COUNTERS) {
    (stats[name] as bigint[]).forEach((v, slot) => {
      if (v > 0n) metrics.push(`\t\t${name}{slot=${slot}} ${v}`);
    });
  }
  if (metrics.length) out.push('\tmetrics:', ...metrics);
  return out.join('\n') + '\n';
}

export function listCompat(maps: CompatMaps, verbose: boolean, only?: string): string {
  const keys = only ? [parseAddress(only)] : maps.grmc_groups.keys();
  return keys.map((k) => formatCompatGroup(maps, k, verbose) ?? '').join('');
}

/** Forgets a group (udpgrm's `delete`): its sockets keep the program, which passes packets unsteered. */
export function deleteCompatGroup(maps: CompatMaps, address: string): boolean {
  const key = parseAddress(address);
  const existed = maps.grmc_groups.delete(key);
  maps.grmc_stats.delete(key);
  maps.grmc_agent.delete(key);
  for (let slot = 0; slot < GRM.COMPAT_MAX_GENS; slot++) maps.grmc_slots.delete(slotKey(key, slot));
  return existed;
}
