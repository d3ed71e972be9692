/**
 * udpgrm_proxy_bpf_packets_total from the kernel's per-CPU counters (grm/group-stats.ts), read
 * on each scrape: per generation of ours (its slot in every group, summed over groups) the
 * packets routed by CID, new connections, fallbacks and CIDs whose socket is gone; per group
 * (generation "none": a packet that did not decode cannot be attributed) the failed CID decodes,
 * unparseable datagrams and drops. A slot's counters are zeroed when it is reused, so a
 * generation's last counts are added to generation "retired" just before it frees its slots.
 */
import type { Group, GenerationCounters, GroupStats } from '../../grm/index.js';
import type { Series } from '../metrics/snapshot.js';
import { SeriesSums } from './metric-totals.js';

const PER_GENERATION: ReadonlyArray<[keyof GenerationCounters, string]> = [
  ['cid_ok', 'routed_by_cid'],
  ['new_conns', 'new_connection'],
  ['fallbacks', 'fallback'],
  ['cid_gone', 'gone'],
];
const PER_GROUP: ReadonlyArray<['cid_fail' | 'unparseable' | 'drops', string]> = [
  ['cid_fail', 'failed'],
  ['unparseable', 'unparseable'],
  ['drops', 'dropped'],
];

export const RETIRED_GENERATION = 'retired';
export const NO_GENERATION = 'none';

export interface GenerationSlots {
  readonly id: number;
  /** The generation's number in each group, in group order. */
  readonly groupGens: readonly number[];
}

export class BpfPacketCounters {
  readonly #retired = new SeriesSums();

  /** Labels [generation, outcome]. */
  read(groups: readonly Group[], generations: readonly GenerationSlots[]): Series[] {
    const out = this.#retired.copy();
    // One read of each group's maps per scrape (per-CPU values, summed in grm/group-stats.ts).
    const stats = groups.map((g) => g.stats());
    for (const s of perGeneration(stats, generations)) out.add(s);
    for (const { group: c } of stats) {
      for (const [field, outcome] of PER_GROUP) out.add({ labels: [NO_GENERATION, outcome], value: Number(c[field]) });
    }
    return out.series();
  }

  /** Just before generation `id` frees its slots: keep its final counts under "retired". */
  retire(id: number, slots: ReadonlyArray<{ readonly group: Group; readonly gen: number }>): void {
    const groups = slots.map((s) => s.group);
    const gen = { id, groupGens: slots.map((s) => s.gen) };
    for (const s of perGeneration(groups.map((g) => g.stats()), [gen])) this.#retired.add({ labels: [RETIRED_GENERATION, s.labels[1]!], value: s.value });
  }
}

function perGeneration(stats: readonly GroupStats[], generations: readonly GenerationSlots[]): Series[] {
  const sums = new SeriesSums();
  stats.forEach((st, i) => {
    for (const g of generations) {
      const counters = st.generations.find((l) => l.gen === g.groupGens[i])?.counters;
      if (!counters) continue;
      for (const [field, outcome] of PER_GENERATION) sums.add({ labels: [String(g.id), outcome], value: Number(counters[field]) });
    }
  });
  return sums.series();
}

/**
 * udpgrm_proxy_bpf_sni_total: what the kernel made of new QUIC connections' SNI, labels
 * [site, outcome]: `matched` per site (by its app), and for the default site also `unmatched`
 * (an SNI no site names) and `none` (no SNI readable in the first datagram: absent, split into a
 * later datagram, or undecryptable). Summed over groups; counters since the groups were created.
 */
export function sniSeries(groups: readonly Group[], sites: ReadonlyArray<{ readonly site: string; readonly app: number }>): Series[] {
  const sums = new SeriesSums();
  const defaultSite = sites.find((s) => s.app === 0)?.site;
  for (const g of groups) {
    const c = g.stats().group;
    for (const { site, app } of sites) sums.add({ labels: [site, 'matched'], value: Number(c.sni_match[app] ?? 0n) });
    if (defaultSite === undefined) continue;
    sums.add({ labels: [defaultSite, 'unmatched'], value: Number(c.sni_unmatched) });
    sums.add({ labels: [defaultSite, 'none'], value: Number(c.sni_none) });
  }
  return sums.series();
}
