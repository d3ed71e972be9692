/**
 * Stateless Retry tokens (RFC 9000 §8.1.2–8.1.4): AES-256-GCM over the client's original DCID, the
 * CID we told it to use and the issue time, with the client's address as associated data. Nothing
 * is stored: any worker of any generation holding the same key (derived from the shared ticket
 * key) opens a token another issued. A forged, altered, replayed-from-elsewhere or stale token
 * fails to open.
 *
 *   token = 0x01 | nonce(12) | AEAD( odcid_len(1) odcid | scid_len(1) scid | issued_ms(8) ) | tag(16)
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import type { HostPort } from './native.js';

const FORMAT = 0x01;
const NONCE_LENGTH = 12;
const TAG_LENGTH = 16;
const MAX_CID = 20;
/** Long enough for a client under load to answer a Retry; short enough to bound replays. */
export const RETRY_TOKEN_LIFETIME_MS = 10_000;
/** Clock skew between workers is nil (one host); allow a little for a token issued "in the future". */
const FUTURE_SLACK_MS = 1_000;

export interface RetryTokenContents {
  /** The DCID of the client's first Initial: quiche must echo it (original_destination_connection_id). */
  readonly odcid: Buffer;
  /** The SCID of our Retry: the client's next Initial must be addressed to it. */
  readonly retryScid: Buffer;
}

export type OpenedToken = { readonly kind: 'valid'; readonly contents: RetryTokenContents } | { readonly kind: 'invalid' } | { readonly kind: 'expired' };

/** The token key from the shared key material (the ticket key), as server.ts derives the reset key. */
export function retryTokenKey(ticketKey: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', ticketKey, Buffer.alloc(0), 'udpgrm-proxy retry token', 32));
}

/** The associated data: the address the token was issued to (IP and port, as RFC 9000 §8.1.4 suggests). */
function addressBytes(peer: HostPort): Buffer {
  return Buffer.from(`${peer.host} ${peer.port}`);
}

export class RetryTokens {
  constructor(
    private readonly key: Buffer,
    private readonly lifetimeMs = RETRY_TOKEN_LIFETIME_MS,
  ) {}

  seal(peer: HostPort, contents: RetryTokenContents, nowMs = Date.now()): Buffer {
    const { odcid, retryScid } = contents;
    const plain = Buffer.allocUnsafe(1 + odcid.length + 1 + retryScid.length + 8);
    let pos = 0;
    plain[pos++] = odcid.length;
    pos += odcid.copy(plain, pos);
    plain[pos++] = retryScid.length;
    pos += retryScid.copy(plain, pos);
    plain.writeBigUInt64BE(BigInt(Math.floor(nowMs)), pos);
    const nonce = randomBytes(NONCE_LENGTH);
    const cipher = createCipheriv('aes-256-gcm', this.key, nonce, { authTagLength: TAG_LENGTH });
    cipher.setAAD(addressBytes(peer));
    return Buffer.concat([Buffer.from([FORMAT]), nonce, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
  }

  open(token: Uint8Array, peer: HostPort, nowMs = Date.now()): OpenedToken {
    const t = Buffer.from(token.buffer, token.byteOffset, token.byteLength);
    const min = 1 + NONCE_LENGTH + 1 + 1 + 8 + TAG_LENGTH;
    const max = 1 + NONCE_LENGTH + 2 * (1 + MAX_CID) + 8 + TAG_LENGTH;
    if (t.length < min || t.length > max || t[0] !== FORMAT) return { kind: 'invalid' };
    let plain: Buffer;
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, t.subarray(1, 1 + NONCE_LENGTH), { authTagLength: TAG_LENGTH });
      decipher.setAAD(addressBytes(peer));
      decipher.setAuthTag(t.subarray(t.length - TAG_LENGTH));
      plain = Buffer.concat([decipher.update(t.subarray(1 + NONCE_LENGTH, t.length - TAG_LENGTH)), decipher.final()]);
    } catch {
      return { kind: 'invalid' };
    }
    // Authenticated, so the layout is ours; still check lengths rather than trust them.
    const odcidLength = plain[0]!;
    const scidAt = 1 + odcidLength;
    const scidLength = plain[scidAt];
    if (odcidLength > MAX_CID || scidLength === undefined || scidLength > MAX_CID || plain.length !== scidAt + 1 + scidLength + 8) return { kind: 'invalid' };
    const issued = Number(plain.readBigUInt64BE(scidAt + 1 + scidLength));
    if (nowMs - issued > this.lifetimeMs || issued - nowMs > FUTURE_SLACK_MS) return { kind: 'expired' };
    return {
      kind: 'valid',
      contents: { odcid: Buffer.from(plain.subarray(1, scidAt)), retryScid: Buffer.from(plain.subarray(scidAt + 1, scidAt + 1 + scidLength)) },
    };
  }
}
