/**
 * GenerationManager: loads bpf/grm.bpf.o with its maps pinned under pinDir (adopting the pins a
 * previous manager left, so a restart keeps the live state), owns the CID keys and opens groups.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, rmdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GRM, grm_group_key, MAP_NAMES, type MapName } from './abi.generated.js';
import type { BpfMap } from './bpf-map.js';
import { ensureBpffs } from './bpffs.js';
import { validateCidLength, type CidKey } from './cid.js';
import { clearCidKey, readCidKeys, writeCidKey } from './cid-keys.js';
import { GrmError } from './errors.js';
import { Group, type GroupOptions } from './group.js';
import { emptyGroup, decodeGroup, encodeGroup } from './group-state.js';
import { genStatsKey } from './group-stats.js';
import type { ManagerCore } from './manager-core.js';
import { mapFromFd } from './map-specs.js';
import { bpf } from './libbpf.js';
import { loadPinnedObject } from './object-load.js';
import { StateLock } from './state-lock.js';
import { toSocketAddress, type ListenAddress, type SocketAddress } from './sockets.js';
import { getU, setBytes, setU, u32 } from './struct-view.js';

export const DEFAULT_PIN_DIR = '/sys/fs/bpf/udpgrm-proxy';
export const DEFAULT_CID_LENGTH = 16;
const PROGRAM_NAME = 'grm_select';
const BPF_NOEXIST = 1n;

export interface ManagerOptions {
  /** bpffs directory holding the pinned maps (default /sys/fs/bpf/udpgrm-proxy). */
  readonly pinDir?: string;
  /** Path of grm.bpf.o (default: bpf/grm.bpf.o of this package). */
  readonly objectPath?: string;
  /** Length of issued CIDs, 8..20 (default 16, or what the pinned state already uses). Changing
   * it on a restart rotates the CID key, which keeps CIDs of the previous length routable. */
  readonly cidLength?: number;
}

export function defaultObjectPath(): string {
  const here = fileURLToPath(new URL('.', import.meta.url));
  const candidates = [join(here, '../../bpf/grm.bpf.o'), join(here, '../../../bpf/grm.bpf.o')];
  return candidates.find((p) => existsSync(p)) ?? candidates[0]!;
}

export class GenerationManager implements ManagerCore {
  private liveKeyMap = new Map<number, CidKey>();
  private issuing: CidKey | undefined;
  private closed = false;
  private readonly lock: StateLock;

  private constructor(
    readonly pinDir: string,
    private readonly obj: unknown,
    readonly progFd: number,
    readonly maps: Readonly<Record<MapName, BpfMap>>,
  ) {
    this.lock = new StateLock(pinDir);
  }

  static open(opts: ManagerOptions = {}): GenerationManager {
    const pinDir = opts.pinDir ?? DEFAULT_PIN_DIR;
    const objectPath = opts.objectPath ?? defaultObjectPath();
    if (!existsSync(objectPath)) throw new GrmError('OBJECT', `BPF object ${objectPath} not found: run 'npm run build' (make -C bpf)`);
    ensureBpffs(pinDir);
    const obj = loadObject(objectPath, pinDir);
    try {
      const prog = bpf.findProgramByName(obj, PROGRAM_NAME);
      if (!prog) throw new GrmError('OBJECT', `${objectPath} has no program ${PROGRAM_NAME}`);
      const maps = {} as Record<MapName, BpfMap>;
      for (const name of MAP_NAMES) {
        const m = bpf.findMapByName(obj, name);
        if (!m) throw new GrmError('OBJECT', `${objectPath} has no map ${name}`);
        maps[name] = mapFromFd(name, bpf.mapFd(m) as number);
      }
      const mgr = new GenerationManager(pinDir, obj, bpf.programFd(prog) as number, maps);
      try {
        mgr.withStateLock(() => mgr.loadKeys(opts.cidLength));
      } catch (err) {
        mgr.lock.close();
        throw err;
      }
      return mgr;
    } catch (err) {
      bpf.objectClose(obj);
      throw err;
    }
  }

  // ---- CID keys ----

  private loadKeys(cidLength?: number): void {
    if (cidLength !== undefined) validateCidLength(cidLength);
    const { live, issuing } = readCidKeys(this.maps.grm_keys);
    this.liveKeyMap = live;
    this.issuing = issuing;
    if (!this.issuing || (cidLength !== undefined && cidLength !== this.issuing.cidLength)) {
      this.rotateCidKey(cidLength ?? this.issuing?.cidLength ?? DEFAULT_CID_LENGTH);
    }
  }

  /**
   * Starts issuing CIDs under a fresh key and config id (optionally with a new length). CIDs of the
   * previous config keep routing; the one before that stops. Zero-downtime if connections live
   * shorter than two rotations.
   */
  rotateCidKey(cidLength = this.issuingKey().cidLength): CidKey {
    return this.withStateLock(() => this.rotateCidKeyLocked(cidLength));
  }

  private rotateCidKeyLocked(cidLength: number): CidKey {
    validateCidLength(cidLength);
    // Another manager on these pins may have rotated since we read them: start from the map.
    const pinned = readCidKeys(this.maps.grm_keys);
    this.liveKeyMap = pinned.live;
    this.issuing = pinned.issuing ?? this.issuing;
    const prev = this.issuing;
    const configId = prev ? (prev.configId + 1) % GRM.CONFIG_UNROUTABLE : 0;
    const rnd = randomBytes(16);
    const next: CidKey = { configId, cidLength, k0: rnd.readBigUInt64LE(0), k1: rnd.readBigUInt64LE(8) };
    // New key live first, so nothing it issues is ever undecodable; then drop all but two.
    writeCidKey(this.maps.grm_keys, next, GRM.KEY_LIVE | GRM.KEY_ISSUING);
    if (prev) writeCidKey(this.maps.grm_keys, prev, GRM.KEY_LIVE);
    for (const id of [...this.liveKeyMap.keys()]) {
      if (id !== configId && id !== prev?.configId) {
        clearCidKey(this.maps.grm_keys, id);
        this.liveKeyMap.delete(id);
      }
    }
    this.liveKeyMap.set(configId, next);
    this.issuing = next;
    return next;
  }

  issuingKey(): CidKey {
    if (!this.issuing) throw new GrmError('BAD_ARGUMENT', 'no CID key (manager closed?)');
    return this.issuing;
  }

  liveKeys(): ReadonlyMap<number, CidKey> {
    return this.liveKeyMap;
  }

  withStateLock<T>(fn: () => T): T {
    return this.lock.run(fn);
  }

  zeroGenStats(groupId: number, slot: number): void {
    const m = this.maps.grm_genstats;
    m.update(genStatsKey(groupId, slot), Buffer.alloc(m.lookupSize));
  }

  // ---- groups ----

  /** The group of a listen address, created if new (options apply to new groups and update old ones). */
  openGroup(addr: ListenAddress, opts: GroupOptions = {}): Group {
    return this.withStateLock(() => this.openGroupLocked(addr, opts));
  }

  private openGroupLocked(addr: ListenAddress, opts: GroupOptions): Group {
    const sa = toSocketAddress(addr);
    const key = groupKey(sa);
    const known = this.maps.grm_group_ids.lookup(key);
    if (known) {
      const id = known.readUInt32LE();
      const raw = this.maps.grm_groups.lookup(u32(id));
      if (!raw) throw new GrmError('SYSCALL', `group ${id} of ${addr.host}:${addr.port} is missing from grm_groups`);
      const s = decodeGroup(raw);
      if (opts.attemptTtlMs !== undefined) s.attemptTtlMs = checkTtl(opts.attemptTtlMs);
      if (opts.dropUnparseable !== undefined) {
        s.flags = opts.dropUnparseable ? s.flags | GRM.GROUP_DROP_UNPARSEABLE : s.flags & ~GRM.GROUP_DROP_UNPARSEABLE;
      }
      this.maps.grm_groups.update(u32(id), encodeGroup(s));
      return new Group(this, sa, id, opts.socketBufferBytes);
    }
    const used = new Set(this.groups().map((g) => g.id));
    let id = 1;
    while (used.has(id)) id++;
    if (id >= GRM.MAX_GROUPS) throw new GrmError('TOO_MANY_GROUPS', `at most ${GRM.MAX_GROUPS - 1} listen addresses`);
    const flags = opts.dropUnparseable ? GRM.GROUP_DROP_UNPARSEABLE : 0;
    const s = emptyGroup(id, key, checkTtl(opts.attemptTtlMs ?? GRM.DEFAULT_ATTEMPT_TTL_MS), flags);
    this.maps.grm_gstats.update(u32(id), Buffer.alloc(this.maps.grm_gstats.lookupSize));
    this.maps.grm_groups.update(u32(id), encodeGroup(s));
    this.maps.grm_group_ids.update(key, u32(id), BPF_NOEXIST);
    this.indexPort(sa.port);
    return new Group(this, sa, id, opts.socketBufferBytes);
  }

  /** grm_ports[port]: the only group on that port, or GRM_PORT_SHARED when addresses share it. */
  private indexPort(port: number): void {
    const ids = this.groups()
      .filter((g) => g.address.port === port)
      .map((g) => g.id);
    const value = ids.length === 0 ? 0 : ids.length === 1 ? ids[0]! : GRM.PORT_SHARED;
    this.maps.grm_ports.update(u32(port), u32(value));
  }

  /** Every group in the pinned state. */
  groups(): Group[] {
    return groupsOf(this);
  }

  /** Closes the object; pins and attached programs stay, so a new manager adopts the state. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.lock.close();
    bpf.objectClose(this.obj);
  }

  /** Detaches the program from every group, unpins everything and closes. */
  cleanup(): void {
    const errors = detachCloseUnpin(this);
    if (errors.length) throw new GrmError('SYSCALL', `cleanup could not detach: ${errors.join('; ')}`);
  }
}

function checkTtl(ms: number): number {
  if (!Number.isInteger(ms) || ms < 1 || ms > 600_000) throw new GrmError('BAD_ARGUMENT', `attemptTtlMs must be 1..600000, got ${ms}`);
  return ms;
}

/** The proxy's object, its maps pinned under pinDir. */
function loadObject(objectPath: string, pinDir: string): unknown {
  return loadPinnedObject(
    objectPath,
    pinDir,
    MAP_NAMES,
    `the kernel lacks sk_reuseport/REUSEPORT_SOCKARRAY/BTF support, or the maps pinned in ${pinDir} come from an incompatible build (run 'udpgrm-proxy grm cleanup')`,
  );
}

export function groupKey(sa: SocketAddress): Buffer {
  const k = Buffer.alloc(grm_group_key.size);
  setU(k, grm_group_key.fields.family, sa.family);
  setU(k, grm_group_key.fields.port, sa.port);
  setBytes(k, grm_group_key.fields.addr, sa.addr);
  return k;
}

export function addressOfKey(k: Buffer): SocketAddress {
  const family = getU(k, grm_group_key.fields.family) as 2 | 10;
  const port = getU(k, grm_group_key.fields.port);
  const raw = k.subarray(grm_group_key.fields.addr.offset, grm_group_key.fields.addr.offset + 16);
  return { family, port, addr: Buffer.from(family === 2 ? raw.subarray(0, 4) : raw) };
}

/** Groups of a (possibly pinned-only) state, ordered by id. */
export function groupsOf(core: ManagerCore): Group[] {
  const ids = core.maps.grm_group_ids;
  return ids
    .keys()
    .map((k) => new Group(core, addressOfKey(k), ids.lookup(k)!.readUInt32LE()))
    .sort((a, b) => a.id - b.id);
}

/**
 * Detaches the program from every group (best effort), closes the state and unpins its dir.
 * Returns one message per group that could not be detached.
 */
export function detachCloseUnpin(state: ManagerCore & { readonly pinDir: string; close(): void }): string[] {
  const errors: string[] = [];
  for (const g of groupsOf(state)) {
    try {
      g.detachProgram();
    } catch (err) {
      errors.push(`${g}: ${(err as Error).message}`);
    }
  }
  state.close();
  unpinAll(state.pinDir);
  return errors;
}

/** Unlinks every pin in a pin dir and removes it. */
export function unpinAll(pinDir: string): void {
  if (!existsSync(pinDir)) return;
  for (const f of readdirSync(pinDir)) unlinkSync(join(pinDir, f));
  rmdirSync(pinDir);
}
