/**
 * `grm metrics`: udpgrm's Prometheus text. `build_info{version="…"} 1`, then per group
 * `working_gen{socket="IP:PORT",app_idx="i"} N` for each app and every non-zero counter as
 * `name{socket="IP:PORT"} value`; ours after them: the per-slot counters as
 * `name{socket="IP:PORT",slot="s"} value`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GRM } from '../abi.generated.js';
import { addressOfKey } from '../manager.js';
import { formatAddress } from '../sockets.js';
import type { CompatMaps } from './maps.js';
import { decodeAgentStats, decodeGroup, decodeStats, SLOT_COUNTERS, UDPGRM_COUNTERS } from './records.js';

/** Our package's version (the nearest package.json above this module), "dev" as udpgrm without one. */
export function packageVersion(from = dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = from; ; dir = dirname(dir)) {
    const p = join(dir, 'package.json');
    if (existsSync(p)) {
      try {
        const pkg = JSON.parse(readFileSync(p, 'utf8')) as { name?: string; version?: string };
        if (pkg.name === 'udpgrm-proxy' && pkg.version) return pkg.version;
      } catch {
        // not ours: keep looking
      }
    }
    if (dirname(dir) === dir) return 'dev';
  }
}

export function formatMetrics(maps: CompatMaps, version = packageVersion()): string {
  const out = [`build_info{version="${version}"} 1`];
  for (const key of maps.grmc_groups.keys()) {
    const raw = maps.grmc_groups.lookup(key);
    if (!raw) continue;
    const g = decodeGroup(raw);
    const socket = formatAddress(addressOfKey(key));
    const apps = Math.min(Math.max(g.maxApps, 1), GRM.COMPAT_MAX_APPS);
    for (let a = 0; a < apps; a++) out.push(`working_gen{socket="${socket}",app_idx="${a}"} ${g.workingGen[a]! | 0}`);
    for (const [name, v] of Object.entries(decodeAgentStats(maps.grmc_agent.lookup(key)))) {
      if (v > 0n) out.push(`${name}{socket="${socket}"} ${v}`);
    }
    const stats = decodeStats(maps.grmc_stats.lookup(key));
    for (const name of UDPGRM_COUNTERS) {
      const v = stats[name] as bigint;
      if (v > 0n) out.push(`${name}{socket="${socket}"} ${v}`);
    }
    for (const name of SLOT_COUNTERS) {
      (stats[name] as bigint[]).forEach((v, slot) => {
        if (v > 0n) out.push(`${name}{socket="${socket}",slot="${slot}"} ${v}`);
      });
    }
  }
  return out.join('\n') + '\n';
}
