/** A group's per-CPU counters (grm_gstats, grm_genstats) summed over CPUs. */
import { GRM, grm_gen_stats, grm_group_stats } from './abi.generated.js';
import type { ManagerCore } from './manager-core.js';
import { possibleCpus } from './libbpf.js';
import { getU64, sumPerCpu, u32 } from './struct-view.js';

export type GroupCounters = { [K in Exclude<keyof typeof grm_group_stats.fields, 'sni_match'>]: bigint } & {
  sni_match: bigint[];
};
export type GenerationCounters = { [K in keyof typeof grm_gen_stats.fields]: bigint };

export interface GroupStats {
  readonly group: GroupCounters;
  readonly generations: ReadonlyArray<{ gen: number; slot: number; app: number; counters: GenerationCounters }>;
}

/** grm_genstats index of a generation slot. */
export function genStatsKey(groupId: number, slot: number): Buffer {
  return u32(groupId * GRM.MAX_SLOTS + slot);
}

/** The group's counters and those of the given live generations. */
export function readStats(
  core: ManagerCore,
  groupId: number,
  generations: ReadonlyArray<{ gen: number; slot: number; app: number }>,
): GroupStats {
  const cpus = possibleCpus();
  const graw = core.maps.grm_gstats.lookup(u32(groupId));
  const g = sumPerCpu(grm_group_stats, graw ?? Buffer.alloc(core.maps.grm_gstats.lookupSize), cpus);
  const group = {} as Record<string, bigint | bigint[]>;
  for (const [name, f] of Object.entries(grm_group_stats.fields)) {
    group[name] = f.dims.length ? Array.from({ length: f.dims[0]! }, (_, i) => getU64(g, f, i)) : getU64(g, f);
  }
  const gens = generations.map((info) => {
    const raw = core.maps.grm_genstats.lookup(genStatsKey(groupId, info.slot));
    const sum = sumPerCpu(grm_gen_stats, raw ?? Buffer.alloc(core.maps.grm_genstats.lookupSize), cpus);
    const counters = {} as Record<string, bigint>;
    for (const [name, f] of Object.entries(grm_gen_stats.fields)) counters[name] = getU64(sum, f);
    return { gen: info.gen, slot: info.slot, app: info.app, counters: counters as GenerationCounters };
  });
  return { group: group as GroupCounters, generations: gens };
}
