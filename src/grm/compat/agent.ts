/**
 * The registration agent (`udpgrm-proxy grm --daemon`): consumes grmc_ring and serves each request.
 * Lifecycle: idle -> running -> stopping -> stopped. A request it cannot serve (process gone,
 * socket closed, group deleted, malformed record) is logged and counted, never fatal: the app
 * sees it as a registration that does not complete, as with udpgrm.
 */
import { GRM } from '../abi.generated.js';
import { addressOfKey } from '../manager.js';
import { formatAddress } from '../sockets.js';
import { decodeAgentStats, decodeMsg, encodeAgentStats, type CompatMsg } from './records.js';
import { Registrar } from './registrar.js';
import { RingReader } from './ring.js';
import type { CompatState } from './state.js';

export interface AgentCounters {
  registered: number;
  /** Requests that could not be served (per group in grmc_agent: udpgrm's socket_critical). */
  failed: number;
  workingGenSet: number;
  dissectorSet: number;
  malformed: number;
}

export type Log = (line: string) => void;

export class Agent {
  readonly counters: AgentCounters = { registered: 0, failed: 0, workingGenSet: 0, dissectorSet: 0, malformed: 0 };
  private readonly registrar: Registrar;
  private readonly reader: RingReader;
  private state: 'idle' | 'running' | 'stopping' | 'stopped' = 'idle';

  constructor(
    private readonly compat: CompatState,
    private readonly log: Log,
  ) {
    this.registrar = new Registrar(compat.maps, compat.programs.grmc_select);
    this.reader = new RingReader(compat.maps.grmc_ring.fd, (data) => this.onRecord(data));
  }

  start(): void {
    if (this.state !== 'idle') return;
    this.state = 'running';
    this.reader.start();
  }

  /** Stops consuming; unserved requests stay queued in the pinned ring for the next agent. */
  async stop(): Promise<void> {
    if (this.state !== 'running') return;
    this.state = 'stopping';
    await this.reader.stop();
    this.state = 'stopped';
  }

  /** udpgrm's socket_critical (failures) and its gauge (the last one failed), per existing group. */
  private recordOutcome(groupKey: Buffer, ok: boolean): void {
    const maps = this.compat.maps;
    if (!maps.grmc_groups.lookup(groupKey)) return; // nothing to attribute it to (deleted group)
    try {
      const s = decodeAgentStats(maps.grmc_agent.lookup(groupKey));
      if (!ok) s.socket_critical++;
      s.socket_critical_gauge = ok ? 0n : 1n;
      maps.grmc_agent.update(groupKey, encodeAgentStats(s));
    } catch (err) {
      this.log(`[!] ${formatAddress(addressOfKey(groupKey))}: counters not updated: ${(err as Error).message}`);
    }
  }

  private onRecord(data: Uint8Array): void {
    const msg = decodeMsg(data);
    if (!msg) {
      this.counters.malformed++;
      this.log(`[!] ignoring a ring record of ${data.length} bytes`);
      return;
    }
    this.handle(msg);
  }

  private handle(msg: CompatMsg): void {
    const where = formatAddress(addressOfKey(msg.groupKey));
    switch (msg.type) {
      case GRM.COMPAT_MSG_REGISTER_SOCKET: {
        const r = this.registrar.register(msg);
        if (r.ok) {
          this.counters.registered++;
          this.log(`[+] ${r.group} pid ${msg.tgid} socket 0x${msg.cookie.toString(16)} registered: gen ${r.gen} slot ${r.slot} idx ${r.idx}`);
        } else {
          this.counters.failed++;
          this.log(`[!] pid ${msg.tgid} socket 0x${msg.cookie.toString(16)} not registered: ${r.reason}`);
        }
        this.recordOutcome(msg.groupKey, r.ok);
        return;
      }
      case GRM.COMPAT_MSG_SET_WORKING_GEN:
        this.counters.workingGenSet++;
        this.log(`[ ] ${where} app ${msg.app} working gen ${msg.value | 0} (pid ${msg.tgid})`);
        return;
      case GRM.COMPAT_MSG_DISSECTOR:
        this.counters.dissectorSet++;
        this.log(`[ ] ${where} dissector ${msg.value} (pid ${msg.tgid})`);
        return;
      default:
        this.counters.malformed++;
        this.log(`[!] ignoring a ring record of unknown type ${msg.type}`);
    }
  }
}
