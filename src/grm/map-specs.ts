/** Key/value sizes of every map (from the generated ABI) and opening them from their pins. */
import { join } from 'node:path';
import {
  grm_attempt,
  grm_attempt_key,
  grm_cid_key,
  grm_gen_stats,
  grm_group,
  grm_group_key,
  grm_group_stats,
  grm_name_key,
  grm_name_val,
  MAP_NAMES,
  type MapName,
} from './abi.generated.js';
import { BpfMap } from './bpf-map.js';
import { GrmError } from './errors.js';
import { EACCES, EPERM, errnoText } from '../sys/libc.js';
import { bpf } from './libbpf.js';

export const MAP_SPECS: Record<MapName, { keySize: number; valueSize: number; perCpu: boolean }> = {
  grm_groups: { keySize: 4, valueSize: grm_group.size, perCpu: false },
  grm_group_ids: { keySize: grm_group_key.size, valueSize: 4, perCpu: false },
  grm_ports: { keySize: 4, valueSize: 4, perCpu: false },
  grm_socks: { keySize: 4, valueSize: 8, perCpu: false },
  grm_keys: { keySize: 4, valueSize: grm_cid_key.size, perCpu: false },
  grm_attempts: { keySize: grm_attempt_key.size, valueSize: grm_attempt.size, perCpu: false },
  grm_gstats: { keySize: 4, valueSize: grm_group_stats.size, perCpu: true },
  grm_genstats: { keySize: 4, valueSize: grm_gen_stats.size, perCpu: true },
  grm_names: { keySize: grm_name_key.size, valueSize: grm_name_val.size, perCpu: false },
};

export function mapFromFd(name: MapName, fd: number): BpfMap {
  const spec = MAP_SPECS[name];
  return new BpfMap(name, fd, spec.keySize, spec.valueSize, spec.perCpu);
}

/** Opens every pinned map of a pin dir (for list/cleanup without loading the program). */
export function openPinnedMaps(pinDir: string): Record<MapName, BpfMap> {
  const out: Partial<Record<MapName, BpfMap>> = {};
  try {
    for (const name of MAP_NAMES) {
      const fd = bpf.objGet(join(pinDir, name)) as number;
      if (fd < 0) {
        const code = -fd === EPERM || -fd === EACCES ? 'PERMISSION' : 'BAD_ARGUMENT';
        const hint = code === 'PERMISSION' ? ': needs root or CAP_BPF' : ': is the generation manager running with this pin dir?';
        throw new GrmError(code, `cannot open pinned map ${join(pinDir, name)}: ${errnoText(-fd)}${hint}`, -fd);
      }
      out[name] = mapFromFd(name, fd);
    }
  } catch (err) {
    for (const m of Object.values(out)) m.close();
    throw err;
  }
  return out as Record<MapName, BpfMap>;
}
