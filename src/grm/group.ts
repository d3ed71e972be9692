/**
 * One reuseport group (one listen address): its generations, sockets, working generation per app,
 * server names, counters and CID codec. All state lives in the pinned BPF maps, so a restarted
 * manager sees exactly what the kernel steers by.
 */
import { GRM, grm_gen_stats, grm_group_stats, grm_name_key, grm_name_val } from './abi.generated.js';
import { cidIssuerParams, decodeCid, encodeCid, type CidIssuerParams } from './cid.js';
import { GrmError } from './errors.js';
import { decodeGroup, encodeGroup, type GroupState } from './group-state.js';
import type { CidIssuer } from './interface.js';
import type { ManagerCore } from './manager-core.js';
import { possibleCpus } from './native.js';
import {
  attachReuseportProgram,
  checkAdoptable,
  closeFd,
  createReuseportSocket,
  detachReuseportProgram,
  formatAddress,
  type SocketAddress,
} from './sockets.js';
import { getU, getU64, setBytes, setU, sumPerCpu } from './struct-view.js';

export interface GroupOptions {
  /** Drop datagrams that are not QUIC-shaped instead of giving them to the default app. */
  readonly dropUnparseable?: boolean;
  /** How long the datagrams of one connection attempt stick to the socket of its first one. */
  readonly attemptTtlMs?: number;
  /** SO_RCVBUF/SO_SNDBUF of sockets made by createSocket(). */
  readonly socketBufferBytes?: number;
}

export interface SocketInfo {
  readonly worker: number;
  readonly cookie: bigint;
}

export interface GenerationInfo {
  readonly gen: number;
  readonly slot: number;
  readonly app: number;
  readonly working: boolean;
  /** Highest registered worker index + 1. */
  readonly workers: number;
  readonly sockets: SocketInfo[];
}

export type GroupCounters = { [K in Exclude<keyof typeof grm_group_stats.fields, 'sni_match'>]: bigint } & {
  sni_match: bigint[];
};
export type GenerationCounters = { [K in keyof typeof grm_gen_stats.fields]: bigint };

export interface GroupStats {
  readonly group: GroupCounters;
  readonly generations: ReadonlyArray<{ gen: number; slot: number; app: number; counters: GenerationCounters }>;
}

export interface DecodedCid {
  readonly slot: number;
  readonly worker: number;
  /** The generation now using that slot, if any. */
  readonly gen?: number;
}

/** Issues and decodes CIDs for the generations of one group. */
export class CidCodec {
  constructor(private readonly group: Group) {}

  issue(gen: number, worker: number): Buffer {
    return encodeCid(this.group.core.issuingKey(), this.group.slotOf(gen), worker);
  }

  decode(cid: Uint8Array): DecodedCid | null {
    const r = decodeCid(this.group.core.liveKeys(), cid);
    if (!r) return null;
    const s = this.group.state();
    const gen = s.slotState[r.slot] === GRM.SLOT_IN_USE ? s.slotGen[r.slot] : undefined;
    return gen === undefined ? { slot: r.slot, worker: r.worker } : { slot: r.slot, worker: r.worker, gen };
  }
}

export class Group {
  readonly codec: CidCodec;

  private readonly idKey: Buffer;

  constructor(
    readonly core: ManagerCore,
    readonly address: SocketAddress,
    readonly id: number,
    private readonly socketBufferBytes?: number,
  ) {
    this.codec = new CidCodec(this);
    this.idKey = Buffer.alloc(4);
    this.idKey.writeUInt32LE(id);
  }

  toString(): string {
    return formatAddress(this.address);
  }

  state(): GroupState {
    const raw = this.core.maps.grm_groups.lookup(this.idKey);
    const s = raw ? decodeGroup(raw) : undefined;
    if (!s || !(s.flags & GRM.GROUP_IN_USE)) throw new GrmError('BAD_ARGUMENT', `group ${formatAddress(this.address)} no longer exists`);
    return s;
  }

  private write(s: GroupState): void {
    this.core.maps.grm_groups.update(this.idKey, encodeGroup(s));
  }

  /** Starts a generation for `app` in a free slot; returns its number (monotonic per group). */
  addGeneration(app = 0): number {
    checkApp(app);
    const s = this.state();
    const slot = s.slotState.findIndex((st) => st === GRM.SLOT_FREE);
    if (slot < 0) {
      throw new GrmError('NO_FREE_SLOT', `${this}: all ${GRM.MAX_SLOTS} generation slots are in use: retire drained generations first`);
    }
    s.lastGen += 1;
    s.slotState[slot] = GRM.SLOT_IN_USE;
    s.slotApp[slot] = app;
    s.slotGen[slot] = s.lastGen;
    s.slotWorkers[slot] = 0;
    this.core.zeroGenStats(s.id, slot);
    this.write(s);
    return s.lastGen;
  }

  /** The slot of a live generation. */
  slotOf(gen: number): number {
    const s = this.state();
    const slot = s.slotState.findIndex((st, i) => st === GRM.SLOT_IN_USE && s.slotGen[i] === gen);
    if (slot < 0) throw new GrmError('NO_SUCH_GENERATION', `${this}: generation ${gen} does not exist (never added or retired)`);
    return slot;
  }

  /** A new reuseport socket bound to the group's address (not yet registered). The caller owns the fd. */
  createSocket(): number {
    return createReuseportSocket(this.address, this.socketBufferBytes);
  }

  /**
   * Registers a socket as `workerIndex` of generation `gen` (replacing a previous socket there) and
   * makes sure the group runs our program. Synchronous: steering applies when this returns.
   */
  register(gen: number, workerIndex: number, fd: number): void {
    if (!Number.isInteger(workerIndex) || workerIndex < 0 || workerIndex >= GRM.MAX_WORKERS) {
      throw new GrmError('BAD_ARGUMENT', `worker index ${workerIndex} out of range 0..${GRM.MAX_WORKERS - 1}`);
    }
    checkAdoptable(fd, this.address);
    const s = this.state();
    const slot = this.slotOf(gen);
    const value = Buffer.alloc(8);
    value.writeBigUInt64LE(BigInt(fd));
    this.core.maps.grm_socks.update(sockKey(s.id, slot, workerIndex), value);
    if (s.slotWorkers[slot]! < workerIndex + 1) {
      s.slotWorkers[slot] = workerIndex + 1;
      this.write(s);
    }
    attachReuseportProgram(fd, this.core.progFd);
  }

  /** Makes `gen` the generation new connections of `app` go to. It must have a live socket. */
  setWorking(app: number, gen: number): void {
    checkApp(app);
    const slot = this.slotOf(gen);
    const s = this.state();
    if (s.slotApp[slot] !== app) throw new GrmError('BAD_ARGUMENT', `${this}: generation ${gen} belongs to app ${s.slotApp[slot]}, not ${app}`);
    if (this.socketsOf(s.id, slot, s.slotWorkers[slot]!).length === 0) {
      throw new GrmError('EMPTY_GENERATION', `${this}: generation ${gen} has no registered live socket`);
    }
    s.workingSlot[app] = slot;
    this.write(s);
  }

  /** The working generation of an app, or null. */
  working(app = 0): number | null {
    checkApp(app);
    const s = this.state();
    const slot = s.workingSlot[app]!;
    return slot === GRM.SLOT_NONE || s.slotState[slot] !== GRM.SLOT_IN_USE ? null : s.slotGen[slot]!;
  }

  /** Frees a drained generation's slot and forgets its sockets. The working generation cannot be retired. */
  retire(gen: number): void {
    const slot = this.slotOf(gen);
    const s = this.state();
    if (s.workingSlot.includes(slot)) {
      throw new GrmError('WORKING_GENERATION', `${this}: generation ${gen} is working for app ${s.workingSlot.indexOf(slot)}: flip first`);
    }
    for (let w = 0; w < s.slotWorkers[slot]!; w++) this.core.maps.grm_socks.delete(sockKey(s.id, slot, w));
    s.slotState[slot] = GRM.SLOT_FREE;
    s.slotGen[slot] = 0;
    s.slotWorkers[slot] = 0;
    s.slotApp[slot] = 0;
    this.write(s);
  }

  generations(): GenerationInfo[] {
    const s = this.state();
    const out: GenerationInfo[] = [];
    for (let slot = 0; slot < GRM.MAX_SLOTS; slot++) {
      if (s.slotState[slot] !== GRM.SLOT_IN_USE) continue;
      out.push({
        gen: s.slotGen[slot]!,
        slot,
        app: s.slotApp[slot]!,
        working: s.workingSlot[s.slotApp[slot]!] === slot,
        workers: s.slotWorkers[slot]!,
        sockets: this.socketsOf(s.id, slot, s.slotWorkers[slot]!),
      });
    }
    return out.sort((a, b) => a.gen - b.gen);
  }

  private socketsOf(id: number, slot: number, workers: number): SocketInfo[] {
    const out: SocketInfo[] = [];
    for (let w = 0; w < workers; w++) {
      const v = this.core.maps.grm_socks.lookup(sockKey(id, slot, w));
      if (v) out.push({ worker: w, cookie: v.readBigUInt64LE() });
    }
    return out;
  }

  /** Server names (exact, or "*.suffix" wildcards of one label) steering new connections to `app`. */
  setServerNames(app: number, names: readonly string[]): void {
    checkApp(app);
    const s = this.state();
    for (const [k, v] of this.serverNameEntries(s.id)) if (v === app) this.core.maps.grm_names.delete(k);
    for (const name of names) {
      const key = nameKey(s.id, name);
      const val = Buffer.alloc(grm_name_val.size);
      setU(val, grm_name_val.fields.app, app);
      this.core.maps.grm_names.update(key, val);
    }
    const any = this.serverNameEntries(s.id).length > 0;
    s.flags = any ? s.flags | GRM.GROUP_HAS_NAMES : s.flags & ~GRM.GROUP_HAS_NAMES;
    this.write(s);
  }

  /** Server names per app. */
  serverNames(): Map<number, string[]> {
    const out = new Map<number, string[]>();
    for (const [k, app] of this.serverNameEntries(this.state().id)) {
      const name = k.subarray(grm_name_key.fields.name.offset).toString('latin1').replace(/\0+$/, '');
      out.set(app, [...(out.get(app) ?? []), name].sort());
    }
    return out;
  }

  private serverNameEntries(id: number): Array<[Buffer, number]> {
    const out: Array<[Buffer, number]> = [];
    for (const k of this.core.maps.grm_names.keys()) {
      if (getU(k, grm_name_key.fields.group) !== id) continue;
      const v = this.core.maps.grm_names.lookup(k);
      if (v) out.push([k, getU(v, grm_name_val.fields.app)]);
    }
    return out;
  }

  /** Counters summed over CPUs: the group's and each live generation's. */
  stats(): GroupStats {
    const s = this.state();
    const cpus = possibleCpus();
    const idKey = Buffer.alloc(4);
    idKey.writeUInt32LE(s.id);
    const graw = this.core.maps.grm_gstats.lookup(idKey);
    const g = sumPerCpu(grm_group_stats, graw ?? Buffer.alloc(this.core.maps.grm_gstats.lookupSize), cpus);
    const group = {} as Record<string, bigint | bigint[]>;
    for (const [name, f] of Object.entries(grm_group_stats.fields)) {
      group[name] = f.dims.length ? Array.from({ length: f.dims[0]! }, (_, i) => getU64(g, f, i)) : getU64(g, f);
    }
    const generations = this.generations().map((info) => {
      const k = Buffer.alloc(4);
      k.writeUInt32LE(s.id * GRM.MAX_SLOTS + info.slot);
      const raw = this.core.maps.grm_genstats.lookup(k);
      const sum = sumPerCpu(grm_gen_stats, raw ?? Buffer.alloc(this.core.maps.grm_genstats.lookupSize), cpus);
      const counters = {} as Record<string, bigint>;
      for (const [name, f] of Object.entries(grm_gen_stats.fields)) counters[name] = getU64(sum, f);
      return { gen: info.gen, slot: info.slot, app: info.app, counters: counters as GenerationCounters };
    });
    return { group: group as GroupCounters, generations };
  }

  /** A CID issuer bound to (gen, worker) for the QUIC endpoint in this process. */
  cidIssuer(gen: number, workerIndex: number): CidIssuer {
    const slot = this.slotOf(gen);
    const core = this.core;
    return {
      get cidLength(): number {
        return core.issuingKey().cidLength;
      },
      issue: () => encodeCid(core.issuingKey(), slot, workerIndex),
    };
  }

  /** The same, as JSON-safe parameters for a worker process (see createCidIssuer). */
  cidIssuerParams(gen: number, workerIndex: number): CidIssuerParams {
    return cidIssuerParams(this.core.issuingKey(), this.slotOf(gen), workerIndex);
  }

  /** Detaches the steering program from the kernel group (joins it with a throwaway socket). */
  detachProgram(): void {
    const fd = createReuseportSocket(this.address, 4096);
    try {
      detachReuseportProgram(fd);
    } catch (err) {
      // ENOENT: the group has no program (e.g. all its sockets are closed): nothing to detach.
      if (!(err instanceof GrmError && err.errno === 2)) throw err;
    } finally {
      closeFd(fd);
    }
  }
}

function checkApp(app: number): void {
  if (!Number.isInteger(app) || app < 0 || app >= GRM.MAX_APPS) throw new GrmError('BAD_ARGUMENT', `app must be 0..${GRM.MAX_APPS - 1}, got ${app}`);
}

/** grm_socks index of (group, slot, worker): GRM_SOCK_INDEX in grm_abi.h. */
export function sockKey(group: number, slot: number, worker: number): Buffer {
  const k = Buffer.alloc(4);
  k.writeUInt32LE((group * GRM.MAX_SLOTS + slot) * GRM.MAX_WORKERS + worker);
  return k;
}

const NAME_RE = /^(\*\.)?([a-z0-9]([a-z0-9-]*[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/;

function nameKey(group: number, raw: string): Buffer {
  const name = raw.toLowerCase().replace(/\.$/, '');
  if (!NAME_RE.test(name) || name.length >= GRM.NAME_MAX) {
    throw new GrmError('BAD_ARGUMENT', `bad server name '${raw}' (exact name or '*.suffix', < ${GRM.NAME_MAX} bytes)`);
  }
  const k = Buffer.alloc(grm_name_key.size);
  setU(k, grm_name_key.fields.group, group);
  setBytes(k, grm_name_key.fields.name, Buffer.from(name, 'latin1'));
  return k;
}
