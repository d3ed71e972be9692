/**
 * Generation slots a crashed master left behind (a restart, not an upgrade). Its workers outlive it:
 * a worker whose IPC channel closes drains (GOAWAY, finishes its connections, exits by its
 * drain_timeout), and until it exits its sockets stay registered in the slot. Retiring the slot at
 * once would route those connections' packets to the new generation, which answers them with
 * stateless resets. So the new master adopts such slots: they stay (never working again) while any
 * of their sockets is alive, and are retired once the last one closed, i.e. their workers exited.
 */
import type { Logger } from 'pino';
import type { Group } from '../../grm/index.js';

/** How often adopted slots are checked for live sockets. */
const SWEEP_MS = 500;

interface OrphanSlot {
  readonly group: Group;
  readonly gen: number;
}

export class OrphanSlots {
  private slots: OrphanSlot[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly log: Logger) {}

  /** Takes over `gen` of `group`: retired now if no socket of it is alive, else once none is. */
  adopt(group: Group, gen: number): void {
    this.slots.push({ group, gen });
    this.sweep();
    if (this.slots.length > 0) {
      this.log.info({ group: String(group), gen }, 'adopted a generation of the previous master: its workers still drain; retired once they exit');
      this.timer ??= setInterval(() => this.sweep(), SWEEP_MS).unref();
    }
  }

  /** Adopted slots still waiting for their workers. */
  get pending(): readonly OrphanSlot[] {
    return this.slots;
  }

  /** Stops watching; slots still draining stay in the pinned state for the next master to adopt. */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private sweep(): void {
    this.slots = this.slots.filter((o) => !this.settled(o));
    if (this.slots.length === 0) this.stop();
  }

  /** True once the slot is gone (retired here, or by someone else). */
  private settled({ group, gen }: OrphanSlot): boolean {
    try {
      const info = group.generations().find((g) => g.gen === gen);
      if (info === undefined) return true;
      if (info.sockets.length > 0) return false;
      group.retire(gen);
      this.log.info({ group: String(group), gen }, 'previous master\'s generation drained: slot retired');
      return true;
    } catch (err) {
      this.log.warn({ group: String(group), gen, err: (err as Error).message }, 'cannot retire a generation of the previous master');
      return true;
    }
  }
}
