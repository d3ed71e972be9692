/**
 * Anti-replay for 0-RTT (RFC 8446 §8.2, RFC 9001 §9.2): remembers the ClientHellos a worker let
 * into early data, so that a captured first flight re-sent from anywhere (another socket, another
 * DCID: the Initial's protection is not authentication) gets no 0-RTT the second time.
 *
 * Keyed by the ClientHello's random. An attacker cannot change it and keep 0-RTT: the PSK binder
 * covers the ClientHello (RFC 8446 §4.2.11.2) and the 0-RTT keys derive from its hash, so a
 * ClientHello that can reach early data again is byte-for-byte the same one, random included.
 *
 * How long to remember: a replayed ClientHello carries the ticket age the client claimed back
 * then. BoringSSL refuses 0-RTT when that claim and the ticket's real age differ by more than
 * 60 s either way (tls13_server.cc kMaxTicketAgeSkewSeconds, RFC 8446 §8.3), so a replay can reach
 * early data at most 120 s after the original; REPLAY_WINDOW_MS adds margin (whole-second rounding,
 * clock steps). After it, TLS itself refuses the replay's 0-RTT for the rest of the ticket lifetime.
 *
 * Bounded memory: entries expire after the window, and at `capacity` entries the guard answers
 * "refuse" for every new ClientHello (fail closed: those clients fall back to 1-RTT, never a replay
 * let through) until entries expire.
 *
 * Limits: the state is per worker process. A replay steered to another worker or host is not
 * seen here; that is why only safe methods are served from early data (RFC 8470 §3).
 */

/** 2 × BoringSSL's 60 s ticket-age tolerance, plus margin. */
export const REPLAY_WINDOW_MS = 150_000;
/** ~100 bytes each: the cap bounds the guard near 10 MB per worker (≈ 650 new 0-RTT offers/s sustained). */
export const REPLAY_GUARD_CAPACITY = 100_000;

/** Whether a connection attempt may use early data. */
export type EarlyDataAdmission = 'admit' | 'refuse-replayed' | 'refuse-guard-full';

export interface ReplayGuardOptions {
  readonly windowMs?: number;
  readonly capacity?: number;
  /** Milliseconds on a monotonic clock (tests inject one). */
  readonly now?: () => number;
}

export class ReplayGuard {
  private readonly windowMs: number;
  private readonly capacity: number;
  private readonly now: () => number;
  /** ClientHello random (hex) → expiry. Insertion order is expiry order: the window is constant. */
  private readonly seen = new Map<string, number>();

  constructor(opts: ReplayGuardOptions = {}) {
    this.windowMs = opts.windowMs ?? REPLAY_WINDOW_MS;
    this.capacity = opts.capacity ?? REPLAY_GUARD_CAPACITY;
    this.now = opts.now ?? (() => performance.now());
  }

  get size(): number {
    return this.seen.size;
  }

  /**
   * Decides for a new connection attempt and records its ClientHello when admitted. Check and
   * record are one step, so two attempts with the same ClientHello can never both be admitted.
   */
  admit(clientRandom: Buffer): EarlyDataAdmission {
    const now = this.now();
    this.expire(now);
    const key = clientRandom.toString('hex');
    if (this.seen.has(key)) return 'refuse-replayed';
    if (this.seen.size >= this.capacity) return 'refuse-guard-full';
    this.seen.set(key, now + this.windowMs);
    return 'admit';
  }

  private expire(now: number): void {
    for (const [key, expiresAt] of this.seen) {
      if (expiresAt > now) break;
      this.seen.delete(key);
    }
  }
}
