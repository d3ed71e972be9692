/**
 * Connection attempts whose ClientHello spans datagrams (Chrome's post-quantum key share), held
 * until it is complete so the certificate can be chosen by SNI before quiche sees them. Bounded by
 * entries, total bytes and age (the oldest is evicted first; an expiry timer calls `expire`), and
 * each kept datagram is cut to its long-header packets: trailing bytes beyond the 1200 bytes
 * quiche needs to accept a client Initial are never stored.
 */
import { ClientHelloAssembler, type ClientHelloInfo } from './initial/index.js';
import { parseLongHeader } from './initial/packet.js';

export interface PendingLimits {
  readonly maxEntries: number;
  readonly maxBytes: number;
  readonly maxAgeMs: number;
}

/** One datagram's worth at most; a ClientHello is a few KiB (a 16 KiB one is refused). */
const MAX_CLIENT_HELLO_BYTES = 16 * 1024;
const MAX_DATAGRAMS_PER_ATTEMPT = 8;
/** quiche refuses a client Initial in a shorter datagram (RFC 9000 §14.1). */
const MIN_INITIAL_DATAGRAM = 1200;

interface Attempt {
  readonly assembler: ClientHelloAssembler;
  /** What quiche must be given once the certificate is chosen: the trimmed datagrams. */
  readonly replay: Buffer[];
  /** Replay bytes plus their decrypted copies in the assembler (about as much again). */
  bytes: number;
  readonly createdAt: number;
  /** Set when the Initial carried a valid Retry token (its original DCID). */
  readonly odcid: Buffer | undefined;
}

export type PushResult =
  | { readonly kind: 'need-more' }
  | {
      readonly kind: 'complete';
      readonly hello: ClientHelloInfo;
      /** What read the ClientHello (its random keys the 0-RTT replay guard). */
      readonly assembler: ClientHelloAssembler;
      readonly datagrams: Buffer[];
      readonly odcid: Buffer | undefined;
    }
  | { readonly kind: 'too-long' }
  | { readonly kind: 'undecodable'; readonly error: Error };

/**
 * The datagram cut after its last well-formed long-header packet, but never below 1200 bytes
 * (zero bytes past a packet's end are what padding would be: quiche skips them).
 */
export function trimDatagram(msg: Buffer): Buffer {
  let end = 0;
  try {
    while (end < msg.length && (msg[end]! & 0x80) !== 0) end = parseLongHeader(msg, end).end;
  } catch {
    // A malformed packet after the first ones: cut there.
  }
  if (end >= msg.length) return Buffer.from(msg);
  const out = Buffer.alloc(Math.min(msg.length, Math.max(end, MIN_INITIAL_DATAGRAM)));
  msg.copy(out, 0, 0, end > 0 ? Math.min(end, out.length) : out.length);
  return out;
}

export class PendingClientHellos {
  private readonly attempts = new Map<string, Attempt>();
  private totalBytes = 0;
  constructor(
    private readonly limits: PendingLimits,
    /** Told of every attempt removed unfinished: evicted to make room, or expired by age. */
    private readonly onDiscard: (why: 'evicted' | 'expired') => void = () => {},
  ) {}

  get size(): number {
    return this.attempts.size;
  }

  get bytes(): number {
    return this.totalBytes;
  }

  has(key: string): boolean {
    return this.attempts.has(key);
  }

  /** Adds a datagram to the attempt `key` (creating it); completes, waits or fails. */
  push(key: string, msg: Buffer, now: number, odcid?: Buffer): PushResult {
    let attempt = this.attempts.get(key);
    if (!attempt) {
      attempt = { assembler: new ClientHelloAssembler({ maxCryptoBytes: MAX_CLIENT_HELLO_BYTES }), replay: [], bytes: 0, createdAt: now, odcid };
    }
    if (attempt.replay.length >= MAX_DATAGRAMS_PER_ATTEMPT) return { kind: 'too-long' };
    const kept = trimDatagram(msg);
    let result;
    try {
      result = attempt.assembler.push(kept);
    } catch (err) {
      // This datagram is dropped; the attempt lives on (a retransmission may still complete it).
      return { kind: 'undecodable', error: err as Error };
    }
    if (result !== 'need-more') {
      this.remove(key);
      return { kind: 'complete', hello: result, assembler: attempt.assembler, datagrams: [...attempt.replay, kept], odcid: attempt.odcid };
    }
    const cost = 2 * kept.length;
    if (!this.attempts.has(key)) this.attempts.set(key, attempt);
    attempt.replay.push(kept);
    attempt.bytes += cost;
    this.totalBytes += cost;
    this.makeRoom(key);
    return { kind: 'need-more' };
  }

  /** When the oldest attempt reaches the age bound (undefined when none waits). */
  get nextExpiry(): number | undefined {
    for (const a of this.attempts.values()) return a.createdAt + this.limits.maxAgeMs;
    return undefined;
  }

  /** Drops attempts older than the age bound (insertion order is creation order). */
  expire(now: number): void {
    for (const [key, a] of this.attempts) {
      if (now - a.createdAt < this.limits.maxAgeMs) break;
      this.remove(key);
      this.onDiscard('expired');
    }
  }

  /** Evicts the oldest attempts (never `keep`, the one just added to) while over a bound. */
  private makeRoom(keep: string): void {
    for (const key of this.attempts.keys()) {
      if (this.attempts.size <= this.limits.maxEntries && this.totalBytes <= this.limits.maxBytes) return;
      if (key === keep) continue;
      this.remove(key);
      this.onDiscard('evicted');
    }
  }

  private remove(key: string): void {
    const a = this.attempts.get(key);
    if (!a) return;
    this.attempts.delete(key);
    this.totalBytes -= a.bytes;
  }
}
