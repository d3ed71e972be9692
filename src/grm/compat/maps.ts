/**
 * The compat object's maps (grmc_*): key/value sizes from the generated ABI, opened from a loaded
 * object or from their pins (list, delete, cleanup need no program).
 */
import { join } from 'node:path';
import {
  COMPAT_MAP_NAMES,
  grm_compat_agent_stats,
  grm_compat_flow,
  grm_compat_flow_key,
  grm_compat_group,
  grm_compat_slot,
  grm_compat_slot_key,
  grm_compat_sock,
  grm_compat_stats,
  grm_group_key,
  type CompatMapName,
} from '../abi.generated.js';
import { BpfMap } from '../bpf-map.js';
import { GrmError } from '../errors.js';
import { bpf } from '../libbpf.js';
import { EACCES, EPERM, errnoText } from '../../sys/libc.js';

/** The ring buffer has no key/value: it is read through libbpf's ring_buffer (ring.ts). */
const SPECS: Record<CompatMapName, { keySize: number; valueSize: number; perCpu: boolean }> = {
  grmc_agent: { keySize: grm_group_key.size, valueSize: grm_compat_agent_stats.size, perCpu: false },
  grmc_groups: { keySize: grm_group_key.size, valueSize: grm_compat_group.size, perCpu: false },
  grmc_slots: { keySize: grm_compat_slot_key.size, valueSize: grm_compat_slot.size, perCpu: false },
  grmc_socks: { keySize: 8, valueSize: 8, perCpu: false },
  grmc_sk: { keySize: 4, valueSize: grm_compat_sock.size, perCpu: false },
  grmc_ring: { keySize: 0, valueSize: 0, perCpu: false },
  grmc_flows: { keySize: grm_compat_flow_key.size, valueSize: grm_compat_flow.size, perCpu: false },
  grmc_stats: { keySize: grm_group_key.size, valueSize: grm_compat_stats.size, perCpu: true },
};

export type CompatMaps = Readonly<Record<CompatMapName, BpfMap>>;

export function compatMapFromFd(name: CompatMapName, fd: number): BpfMap {
  const s = SPECS[name];
  return new BpfMap(name, fd, s.keySize, s.valueSize, s.perCpu);
}

/** Whether a pin dir holds compat state (its group table is pinned there). */
export function isCompatPinDir(pinDir: string): boolean {
  const fd = bpf.objGet(join(pinDir, 'grmc_groups')) as number;
  if (fd < 0) return false;
  compatMapFromFd('grmc_groups', fd).close();
  return true;
}

export function openPinnedCompatMaps(pinDir: string): CompatMaps {
  const out: Partial<Record<CompatMapName, BpfMap>> = {};
  try {
    for (const name of COMPAT_MAP_NAMES) {
      const fd = bpf.objGet(join(pinDir, name)) as number;
      if (fd < 0) {
        const perm = -fd === EPERM || -fd === EACCES;
        throw new GrmError(perm ? 'PERMISSION' : 'BAD_ARGUMENT', `cannot open ${join(pinDir, name)}: ${errnoText(-fd)}${perm ? ': needs root or CAP_BPF' : ''}`, -fd);
      }
      out[name] = compatMapFromFd(name, fd);
    }
  } catch (err) {
    for (const m of Object.values(out)) m.close();
    throw err;
  }
  return out as CompatMaps;
}

export function closeMaps(maps: CompatMaps): void {
  for (const m of Object.values(maps)) m.close();
}

/** Whether the socket with this SO_COOKIE is still in grmc_socks (closed sockets leave by themselves). */
export function isLiveSocket(maps: CompatMaps, cookie: bigint): boolean {
  if (cookie === 0n) return false;
  const k = Buffer.alloc(8);
  k.writeBigUInt64LE(cookie);
  return maps.grmc_socks.lookup(k) !== null;
}
