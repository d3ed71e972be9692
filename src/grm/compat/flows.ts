/**
 * `grm flows [-v] [IP:PORT]` in udpgrm's layout: per group, per live socket, the FLOW entries it
 * owns with their age (stale ones only with -v):
 *   127.0.0.1:5201
 *   \tso_cookie 0x2a
 *   \t\t127.0.0.1:40001  age 0.3s
 * udpgrm prints a 32-bit hash where we print the remote address: our table is keyed by it.
 */
import { GRM, grm_compat_flow, grm_compat_flow_key } from '../abi.generated.js';
import { addressOfKey } from '../manager.js';
import { formatAddress } from '../sockets.js';
import { AF_INET, AF_INET6 } from '../../sys/libc.js';
import { getU, getU64 } from '../struct-view.js';
import { isLiveSocket, type CompatMaps } from './maps.js';
import { parseAddress } from './list.js';
import { decodeGroup, decodeSlot, slotKey } from './records.js';

interface FlowEntry {
  readonly remote: string;
  readonly lastTxNs: bigint;
}

/** The remote of a flow key: IPv4 when only the first word is set (IPv4-mapped peers are keyed so). */
function remoteOf(k: Buffer): string {
  const f = grm_compat_flow_key.fields;
  const addr = k.subarray(f.addr.offset, f.addr.offset + 16);
  const port = getU(k, f.port) & 0xffff;
  const hostPort = ((port & 0xff) << 8) | (port >> 8); // stored in network order
  const v4 = addr.subarray(4).every((b) => b === 0);
  return formatAddress({ family: v4 ? AF_INET : AF_INET6, port: hostPort, addr: Buffer.from(v4 ? addr.subarray(0, 4) : addr) });
}

/** Every flow of the table by (group random id, owner cookie). Bounded by the table's size. */
function flowsByOwner(maps: CompatMaps): Map<string, FlowEntry[]> {
  const out = new Map<string, FlowEntry[]>();
  for (const k of maps.grmc_flows.keys()) {
    const v = maps.grmc_flows.lookup(k);
    if (!v) continue; // evicted meanwhile
    const owner = `${getU(k, grm_compat_flow_key.fields.random_id)}/${getU64(v, grm_compat_flow.fields.cookie)}`;
    const list = out.get(owner) ?? [];
    list.push({ remote: remoteOf(k), lastTxNs: getU64(v, grm_compat_flow.fields.last_tx_ns) });
    out.set(owner, list);
  }
  return out;
}

/** `now` is CLOCK_MONOTONIC in ns, the clock of bpf_ktime_get_ns (process.hrtime uses it too). */
export function formatFlows(maps: CompatMaps, verbose: boolean, only?: string, now = process.hrtime.bigint()): string {
  const byOwner = flowsByOwner(maps);
  const keys = only ? [parseAddress(only)] : maps.grmc_groups.keys();
  const out: string[] = [];
  for (const key of keys) {
    const raw = maps.grmc_groups.lookup(key);
    if (!raw) continue;
    const g = decodeGroup(raw);
    const timeoutSec = g.flowTimeoutSec || GRM.COMPAT_FLOW_DEFAULT_TIMEOUT_SEC;
    out.push(formatAddress(addressOfKey(key)));
    for (let slot = 0; slot < GRM.COMPAT_MAX_GENS; slot++) {
      const sraw = maps.grmc_slots.lookup(slotKey(key, slot));
      if (!sraw) continue;
      const rec = decodeSlot(sraw);
      for (let j = 0; j < rec.maxIdx; j++) {
        const c = rec.cookies[j]!;
        if (!isLiveSocket(maps, c)) continue;
        let first = true;
        for (const f of byOwner.get(`${g.randomId}/${c}`) ?? []) {
          const ageSec = Number(now - f.lastTxNs) / 1e9;
          const stale = ageSec > timeoutSec;
          if (stale && !verbose) continue;
          if (first) out.push(`\tso_cookie 0x${c.toString(16)}`);
          first = false;
          out.push(`\t\t${f.remote}  age ${ageSec.toFixed(1)}s ${stale ? '(stale)' : ''}`);
        }
      }
    }
  }
  return out.length ? out.join('\n') + '\n' : '';
}
