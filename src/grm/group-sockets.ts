/**
 * A group's sockets: creating them, registering them in grm_socks by (slot, worker), listing the
 * live ones, and the steering program attached to the kernel's reuseport group.
 */
import { GRM } from './abi.generated.js';
import { GrmError } from './errors.js';
import type { GroupRecord } from './group-record.js';
import {
  attachReuseportProgram,
  checkAdoptable,
  closeFd,
  createReuseportSocket,
  detachReuseportProgram,
} from './sockets.js';
import { u32 } from './struct-view.js';

export interface SocketInfo {
  readonly worker: number;
  readonly cookie: bigint;
}

export class GroupSockets {
  constructor(
    private readonly record: GroupRecord,
    private readonly bufferBytes?: number,
  ) {}

  /** A new reuseport socket bound to the group's address (not yet registered). The caller owns the fd. */
  create(): number {
    return createReuseportSocket(this.record.address, this.bufferBytes);
  }

  /**
   * Registers a socket as `workerIndex` of generation `gen` (replacing a previous socket there) and
   * makes sure the group runs our program. Synchronous: steering applies when this returns.
   */
  register(gen: number, workerIndex: number, fd: number): void {
    if (!Number.isInteger(workerIndex) || workerIndex < 0 || workerIndex >= GRM.MAX_WORKERS) {
      throw new GrmError('BAD_ARGUMENT', `worker index ${workerIndex} out of range 0..${GRM.MAX_WORKERS - 1}`);
    }
    checkAdoptable(fd, this.record.address);
    const s = this.record.state();
    const slot = this.record.slotOf(gen);
    const value = Buffer.alloc(8);
    value.writeBigUInt64LE(BigInt(fd));
    this.record.core.maps.grm_socks.update(sockKey(s.id, slot, workerIndex), value);
    if (s.slotWorkers[slot]! < workerIndex + 1) {
      s.slotWorkers[slot] = workerIndex + 1;
      this.record.write(s);
    }
    attachReuseportProgram(fd, this.record.core.progFd);
  }

  /** The live sockets of a slot's first `workers` indices (closed sockets leave grm_socks by themselves). */
  live(slot: number, workers: number): SocketInfo[] {
    const out: SocketInfo[] = [];
    for (let w = 0; w < workers; w++) {
      const v = this.record.core.maps.grm_socks.lookup(sockKey(this.record.id, slot, w));
      if (v) out.push({ worker: w, cookie: v.readBigUInt64LE() });
    }
    return out;
  }

  /** Removes a slot's sockets from grm_socks (the sockets stay open: their owners close them). */
  forget(slot: number, workers: number): void {
    for (let w = 0; w < workers; w++) this.record.core.maps.grm_socks.delete(sockKey(this.record.id, slot, w));
  }

  /** Detaches the steering program from the kernel group (joins it with a throwaway socket). */
  detachProgram(): void {
    const fd = createReuseportSocket(this.record.address, 4096);
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

/** grm_socks index of (group, slot, worker): GRM_SOCK_INDEX in grm_abi.h. */
function sockKey(group: number, slot: number, worker: number): Buffer {
  return u32((group * GRM.MAX_SLOTS + slot) * GRM.MAX_WORKERS + worker);
}
