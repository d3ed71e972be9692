/**
 * Stateless reset tokens (RFC 9000 §10.3). Every listener address has its own CID table, so it
 * gets its own keys: per CID length L, an AES-128 key HKDF(reset key, "listener <host> <port> cid
 * <L>"). A CID seen on one listener and sent to another then draws a reset whose token is useless
 * against the real connection (§21.11: no oracle). The reset key itself is shared by every worker
 * and generation, so a worker that lost a connection (restart, crash) still resets it on the
 * listener it lived on.
 *
 * token = AES-128(key_L, CID zero-padded to 16 bytes) for L ≤ 16; for L = 17..20 the two-block
 * CBC-MAC AES(key_L, AES(key_L, CID[0..16]) xor CID[16..] zero-padded). Each length has its own
 * key, so both are PRFs on fixed-length inputs (a block cipher; CBC-MAC on messages of one
 * length): unpredictable 128-bit tokens. One ECB cipher object per length is made once and
 * reused for every CID (ECB carries no state between blocks); an HMAC made per CID cost several
 * times more, a few times per new connection.
 */
import { createCipheriv, hkdfSync, type Cipher } from 'node:crypto';
import type { HostPort } from './native.js';

export const RESET_TOKEN_LENGTH = 16;

/** The per-listener key for CIDs of `cidLength` bytes; exported so tests compute expected tokens the same documented way. */
export function listenerResetKey(resetKey: Buffer, listener: HostPort, cidLength: number): Buffer {
  return Buffer.from(hkdfSync('sha256', resetKey, Buffer.alloc(0), `udpgrm-proxy reset listener ${listener.host} ${listener.port} cid ${cidLength}`, RESET_TOKEN_LENGTH));
}

export class ResetTokens {
  private readonly ciphers = new Map<number, Cipher>();
  private readonly block = Buffer.alloc(RESET_TOKEN_LENGTH);

  constructor(
    private readonly resetKey: Buffer,
    private readonly listener: HostPort,
  ) {}

  token(cid: Buffer): Buffer {
    const length = cid.length;
    if (length < 1 || length > 2 * RESET_TOKEN_LENGTH) throw new RangeError(`reset token: a CID of ${length} bytes`);
    const cipher = this.cipher(length);
    const block = this.block;
    block.fill(0);
    if (length <= RESET_TOKEN_LENGTH) {
      cid.copy(block);
      return cipher.update(block);
    }
    const first = cipher.update(cid.subarray(0, RESET_TOKEN_LENGTH));
    cid.copy(block, 0, RESET_TOKEN_LENGTH);
    for (let i = 0; i < RESET_TOKEN_LENGTH; i++) block[i] = block[i]! ^ first[i]!;
    return cipher.update(block);
  }

  /** The token as the u128 quiche's newSourceCid takes. */
  tokenBigInt(cid: Buffer): bigint {
    const t = this.token(cid);
    return (t.readBigUInt64BE(0) << 64n) | t.readBigUInt64BE(8);
  }

  private cipher(cidLength: number): Cipher {
    let cipher = this.ciphers.get(cidLength);
    if (!cipher) {
      cipher = createCipheriv('aes-128-ecb', listenerResetKey(this.resetKey, this.listener, cidLength), null).setAutoPadding(false);
      this.ciphers.set(cidLength, cipher);
    }
    return cipher;
  }
}
