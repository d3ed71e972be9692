/**
 * One reuseport group (one listen address): the facade the proxy uses, and the lifecycle of its
 * generation slots (add, flip, retire). Sockets, server names, counters and CIDs have their own
 * modules; all state lives in the pinned BPF maps.
 */
import { GRM } from './abi.generated.js';
import { cidIssuerParams, decodeCid, type CidIssuerParams } from './cid.js';
import { GrmError } from './errors.js';
import { GroupNames } from './group-names.js';
import { checkApp, GroupRecord } from './group-record.js';
import { GroupSockets, type SocketInfo } from './group-sockets.js';
import type { GroupState } from './group-state.js';
import { readStats, type GroupStats } from './group-stats.js';
import type { ManagerCore } from './manager-core.js';
import type { SocketAddress } from './sockets.js';

export interface GroupOptions {
  /** Drop datagrams that are not QUIC-shaped instead of giving them to the default app. */
  readonly dropUnparseable?: boolean;
  /** How long the datagrams of one connection attempt stick to the socket of its first one. */
  readonly attemptTtlMs?: number;
  /** SO_RCVBUF/SO_SNDBUF of sockets made by createSocket(). */
  readonly socketBufferBytes?: number;
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

export interface DecodedCid {
  readonly slot: number;
  readonly worker: number;
  /** The generation now using that slot, if any. */
  readonly gen?: number;
}

export class Group {
  private readonly record: GroupRecord;
  private readonly sockets: GroupSockets;
  private readonly names: GroupNames;

  constructor(
    readonly core: ManagerCore,
    readonly address: SocketAddress,
    readonly id: number,
    socketBufferBytes?: number,
  ) {
    this.record = new GroupRecord(core, address, id);
    this.sockets = new GroupSockets(this.record, socketBufferBytes);
    this.names = new GroupNames(this.record);
  }

  toString(): string {
    return this.record.toString();
  }

  state(): GroupState {
    return this.record.state();
  }

  /** The slot of a live generation. */
  slotOf(gen: number): number {
    return this.record.slotOf(gen);
  }

  // ---- generation slots ----

  /** Starts a generation for `app` in a free slot; returns its number (monotonic per group). */
  addGeneration(app = 0): number {
    checkApp(app);
    return this.record.update((s) => {
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
      return s.lastGen;
    });
  }

  /** Makes `gen` the generation new connections of `app` go to. It must have a live socket. */
  setWorking(app: number, gen: number): void {
    checkApp(app);
    this.record.update((s) => {
      const slot = this.slotOf(gen);
      if (s.slotApp[slot] !== app) throw new GrmError('BAD_ARGUMENT', `${this}: generation ${gen} belongs to app ${s.slotApp[slot]}, not ${app}`);
      if (this.sockets.live(slot, s.slotWorkers[slot]!).length === 0) {
        throw new GrmError('EMPTY_GENERATION', `${this}: generation ${gen} has no registered live socket`);
      }
      s.workingSlot[app] = slot;
    });
  }

  /**
   * `app` has no working generation any more (its site was removed; its names were cleared first,
   * so no new connection asks for it). Its generations can then be retired as they drain.
   */
  clearWorking(app: number): void {
    checkApp(app);
    this.record.update((s) => {
      s.workingSlot[app] = GRM.SLOT_NONE;
    });
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
    this.record.update((s) => {
      const slot = this.slotOf(gen);
      if (s.workingSlot.includes(slot)) {
        throw new GrmError('WORKING_GENERATION', `${this}: generation ${gen} is working for app ${s.workingSlot.indexOf(slot)}: flip first`);
      }
      this.sockets.forget(slot, s.slotWorkers[slot]!);
      s.slotState[slot] = GRM.SLOT_FREE;
      s.slotGen[slot] = 0;
      s.slotWorkers[slot] = 0;
      s.slotApp[slot] = 0;
    });
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
        sockets: this.sockets.live(slot, s.slotWorkers[slot]!),
      });
    }
    return out.sort((a, b) => a.gen - b.gen);
  }

  // ---- sockets (group-sockets.ts) ----

  /** A new reuseport socket bound to the group's address (not yet registered). The caller owns the fd. */
  createSocket(): number {
    return this.sockets.create();
  }

  /** Registers a socket as `workerIndex` of `gen` and attaches the program; synchronous. */
  register(gen: number, workerIndex: number, fd: number): void {
    this.sockets.register(gen, workerIndex, fd);
  }

  /** Detaches the steering program from the kernel group. */
  detachProgram(): void {
    this.sockets.detachProgram();
  }

  // ---- server names (group-names.ts) ----

  /** Server names (exact, or "*.suffix" wildcards of one label) steering new connections to `app`. */
  setServerNames(app: number, names: readonly string[]): void {
    this.names.set(app, names);
  }

  /** Server names per app. */
  serverNames(): Map<number, string[]> {
    return this.names.byApp();
  }

  // ---- counters (group-stats.ts) ----

  /** Counters summed over CPUs: the group's and each live generation's. */
  stats(): GroupStats {
    return readStats(this.core, this.state().id, this.generations());
  }

  // ---- CIDs (cid.ts) ----

  /**
   * What a worker needs to issue CIDs routing to its socket, JSON-safe: the one way to issue CIDs
   * is createCidIssuer(params), in whichever process owns the socket.
   */
  cidIssuerParams(gen: number, workerIndex: number): CidIssuerParams {
    return cidIssuerParams(this.core.issuingKey(), this.slotOf(gen), workerIndex);
  }

  /** Where a CID routes: slot, worker and the generation now in that slot; null if not ours. */
  decodeCid(cid: Uint8Array): DecodedCid | null {
    const r = decodeCid(this.core.liveKeys(), cid);
    if (!r) return null;
    const s = this.state();
    const gen = s.slotState[r.slot] === GRM.SLOT_IN_USE ? s.slotGen[r.slot] : undefined;
    return gen === undefined ? { slot: r.slot, worker: r.worker } : { slot: r.slot, worker: r.worker, gen };
  }
}
