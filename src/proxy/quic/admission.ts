/**
 * Who gets a connection (RFC 9000 §8.1, §21.1): one per worker, shared by its listeners. Counts
 * connections, handshakes in progress and connections per client IP, and decides for each new
 * client Initial: accept it, answer with a stateless Retry (address not validated yet), or refuse
 * it with CONNECTION_REFUSED. Never buffers anything itself.
 */
import type { QuicLimits } from '../config/types.js';

export type AdmissionLimit = 'connections' | 'handshakes' | 'per-ip';
export type Admission = { readonly action: 'accept' } | { readonly action: 'retry' } | { readonly action: 'refuse'; readonly limit: AdmissionLimit };

export type AdmissionLimits = Pick<QuicLimits, 'retry' | 'retryThreshold' | 'maxConnections' | 'maxHandshakes' | 'maxConnectionsPerIp'>;

export class WorkerAdmission {
  private connections = 0;
  private handshakes = 0;
  private readonly perIp = new Map<string, number>();
  /** Split ClientHellos waiting for more datagrams, per listener (they are handshakes too). */
  private readonly pendingBy = new Map<object, number>();

  constructor(readonly limits: AdmissionLimits) {}

  get connectionCount(): number {
    return this.connections;
  }

  /** Handshakes in progress: accepted but not established, plus pending ClientHellos. */
  get handshakesInProgress(): number {
    let n = this.handshakes;
    for (const p of this.pendingBy.values()) n += p;
    return n;
  }

  /** A listener reports how many split ClientHellos it holds. */
  setPending(owner: object, count: number): void {
    this.pendingBy.set(owner, count);
  }

  /** `validated`: the client proved its address with a Retry token. */
  decide(ip: string, validated: boolean): Admission {
    const l = this.limits;
    const handshakes = this.handshakesInProgress;
    const limit: AdmissionLimit | undefined =
      this.connections >= l.maxConnections ? 'connections' : handshakes >= l.maxHandshakes ? 'handshakes' : (this.perIp.get(ip) ?? 0) >= l.maxConnectionsPerIp ? 'per-ip' : undefined;
    if (!validated && l.retry !== 'never') {
      // A Retry costs us one small stateless packet; a spoofed source never comes back.
      if (l.retry === 'always' || limit !== undefined || handshakes >= l.retryThreshold) return { action: 'retry' };
    }
    return limit === undefined ? { action: 'accept' } : { action: 'refuse', limit };
  }

  /** A connection was accepted from `ip` (handshake starts). */
  opened(ip: string): void {
    this.connections++;
    this.handshakes++;
    this.perIp.set(ip, (this.perIp.get(ip) ?? 0) + 1);
  }

  /** Its handshake completed. */
  established(): void {
    this.handshakes--;
  }

  /** It is gone; `handshaking` when it never completed its handshake. */
  closed(ip: string, handshaking: boolean): void {
    this.connections--;
    if (handshaking) this.handshakes--;
    const n = (this.perIp.get(ip) ?? 1) - 1;
    if (n === 0) this.perIp.delete(ip);
    else this.perIp.set(ip, n);
  }
}

/** RFC 9000 §8.1: before validation, at most this many bytes out per byte in. */
export const AMPLIFICATION_FACTOR = 3;

/**
 * A connection's path state for the anti-amplification limit, counted by us because quiche 0.18
 * exceeds it (its PTO probes are not charged): unvalidated until the handshake completes (or
 * from the start with a Retry token), then unlimited.
 */
export class AmplificationBudget {
  private state: 'unvalidated' | 'validated';
  private received = 0;
  private sent = 0;

  constructor(validated: boolean) {
    this.state = validated ? 'validated' : 'unvalidated';
  }

  get validated(): boolean {
    return this.state === 'validated';
  }

  validate(): void {
    this.state = 'validated';
  }

  /** Every datagram attributed to the connection counts, processed or not (RFC 9000 §8.1). */
  onReceived(bytes: number): void {
    if (this.state === 'unvalidated') this.received += bytes;
  }

  onSent(bytes: number): void {
    if (this.state === 'unvalidated') this.sent += bytes;
  }

  /** Bytes we may still send; Infinity once validated. */
  get allowance(): number {
    return this.state === 'validated' ? Infinity : Math.max(0, AMPLIFICATION_FACTOR * this.received - this.sent);
  }
}
