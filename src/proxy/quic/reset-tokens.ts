/**
 * Stateless reset tokens (RFC 9000 §10.3). Every listener address has its own CID table, so it
 * gets its own key: HKDF(reset key, "listener <host> <port>"). A CID seen on one listener and sent
 * to another then draws a reset whose token is useless against the real connection (§21.11: no
 * oracle). The reset key itself is shared by every worker and generation, so a worker that lost a
 * connection (restart, crash) still resets it on the listener it lived on.
 */
import { createHmac, hkdfSync } from 'node:crypto';
import type { HostPort } from './native.js';

export const RESET_TOKEN_LENGTH = 16;

/** The per-listener key; exported so tests compute expected tokens the same documented way. */
export function listenerResetKey(resetKey: Buffer, listener: HostPort): Buffer {
  return Buffer.from(hkdfSync('sha256', resetKey, Buffer.alloc(0), `udpgrm-proxy reset listener ${listener.host} ${listener.port}`, 32));
}

export class ResetTokens {
  private readonly key: Buffer;

  constructor(resetKey: Buffer, listener: HostPort) {
    this.key = listenerResetKey(resetKey, listener);
  }

  /** token = HMAC-SHA256(listener key, CID)[0..16]. */
  token(cid: Buffer): Buffer {
    return createHmac('sha256', this.key).update(cid).digest().subarray(0, RESET_TOKEN_LENGTH);
  }

  /** The token as the u128 quiche's newSourceCid takes. */
  tokenBigInt(cid: Buffer): bigint {
    const t = this.token(cid);
    return (t.readBigUInt64BE(0) << 64n) | t.readBigUInt64BE(8);
  }
}
