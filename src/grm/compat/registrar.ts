/**
 * Serves one registration request (GRM_COMPAT_MSG_REGISTER_SOCKET): places the socket at an index
 * of its generation's slot and makes the kernel steer to it. Order matters, because the app treats
 * a valid idx as "registered" and flips the working generation next:
 *   1. grmc_socks[cookie] = socket      (selectable)
 *   2. grmc_slots[group, slot]          (new flows may pick it)
 *   3. attach grmc_select to the group  (steering on)
 *   4. grmc_sk idx                      (the app sees it registered)
 * Idempotent: a request served twice (an agent killed mid-request) keeps the socket's index.
 * As udpgrm: a socket re-registered to another generation also stays in its previous slot (the
 * cookies it handed out there keep reaching it until it closes); the slot's max_idx is
 * recomputed on each registration (up to its last live socket, so it may shrink).
 */
import { GRM } from '../abi.generated.js';
import { addressOfKey } from '../manager.js';
import { attachReuseportProgram, boundAddress, formatAddress } from '../sockets.js';
import { libc } from '../../sys/libc.js';
import { slotOf } from './cookie.js';
import { isLiveSocket, type CompatMaps } from './maps.js';
import { decodeGroup, decodeSlot, decodeSock, emptySlot, encodeSlot, encodeSock, slotKey, type CompatMsg, type SlotRecord } from './records.js';
import { takeSocket } from './socket-finder.js';

export type Outcome =
  | { readonly ok: true; readonly group: string; readonly gen: number; readonly slot: number; readonly idx: number }
  | { readonly ok: false; readonly reason: string };

function u64(v: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return b;
}

export class Registrar {
  constructor(
    private readonly maps: CompatMaps,
    private readonly selectProgFd: number,
  ) {}

  register(msg: CompatMsg): Outcome {
    const where = formatAddress(addressOfKey(msg.groupKey));
    const raw = this.maps.grmc_groups.lookup(msg.groupKey);
    if (!raw) return { ok: false, reason: `${where}: no such group (deleted?)` };
    const group = decodeGroup(raw);
    const found = takeSocket(msg.tgid, msg.cookie);
    if ('error' in found) return { ok: false, reason: `${where}: ${found.error}` };
    const fd = found.fd;
    try {
      const b = boundAddress(fd);
      const k = addressOfKey(msg.groupKey);
      if (b.family !== k.family || b.port !== k.port || !b.addr.equals(k.addr)) {
        return { ok: false, reason: `${where}: socket is bound to ${formatAddress(b)}` };
      }
      const stRaw = this.maps.grmc_sk.lookup(fdKey(fd));
      if (!stRaw) return { ok: false, reason: `${where}: socket has no udpgrm storage` };
      if (decodeSock(stRaw).netnsCookie !== group.netnsCookie) return { ok: false, reason: `${where}: socket is in another netns than the group` };

      const slot = slotOf(group.maxApps, msg.app, msg.value);
      const key = slotKey(msg.groupKey, slot);
      const cur = this.maps.grmc_slots.lookup(key);
      const rec = cur ? decodeSlot(cur) : emptySlot();
      const idx = this.pickIndex(rec, msg.cookie);
      if (idx < 0) return { ok: false, reason: `${where}: too many sockets in generation ${msg.value} (slot ${slot})` };

      this.maps.grmc_socks.update(u64(msg.cookie), u64(BigInt(fd)));
      rec.cookies[idx] = msg.cookie;
      rec.maxIdx = this.liveLength(rec);
      this.maps.grmc_slots.update(key, encodeSlot(rec));
      attachReuseportProgram(fd, this.selectProgFd);
      // Re-read: the app may have changed its storage since the request (then a later request
      // follows, queued behind this one). This request's gen is what this idx belongs to.
      const st = decodeSock(this.maps.grmc_sk.lookup(fdKey(fd)) ?? stRaw);
      this.maps.grmc_sk.update(fdKey(fd), encodeSock({ ...st, gen: msg.value, idx }));
      return { ok: true, group: where, gen: msg.value, slot, idx };
    } catch (err) {
      return { ok: false, reason: `${where}: ${(err as Error).message}` };
    } finally {
      libc.close(fd);
    }
  }

  private live(cookie: bigint): boolean {
    return isLiveSocket(this.maps, cookie);
  }

  /** The socket's own index if it is already there, else the first empty or dead one. */
  private pickIndex(rec: SlotRecord, cookie: bigint): number {
    const own = rec.cookies.indexOf(cookie);
    if (own >= 0) return own;
    return rec.cookies.findIndex((c) => !this.live(c));
  }

  /** Indices 0..n-1 take new flows: up to the last live socket. */
  private liveLength(rec: SlotRecord): number {
    for (let i = GRM.COMPAT_MAX_SOCKETS_IN_GEN - 1; i >= 0; i--) if (this.live(rec.cookies[i]!)) return i + 1;
    return 0;
  }
}

function fdKey(fd: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32LE(fd);
  return b;
}
