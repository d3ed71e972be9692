import { createHmac } from 'node:crypto';
import { InitialParseError } from './errors.js';

/** QUIC version 1 (RFC 9000). */
export const QUIC_V1 = 0x00000001;
/** QUIC version 2 (RFC 9369). */
export const QUIC_V2 = 0x6b3343cf;

export type SupportedQuicVersion = typeof QUIC_V1 | typeof QUIC_V2;

export function isSupportedVersion(version: number): version is SupportedQuicVersion {
  return version === QUIC_V1 || version === QUIC_V2;
}

/** Initial salts and packet-protection labels per version (RFC 9001 §5.2, RFC 9369 §3.3). */
const VERSION_PARAMS: Record<SupportedQuicVersion, { salt: Buffer; key: string; iv: string; hp: string }> = {
  [QUIC_V1]: {
    salt: Buffer.from('38762cf7f55934b34d179ae6a4c80cadccbb7f0a', 'hex'),
    key: 'quic key',
    iv: 'quic iv',
    hp: 'quic hp',
  },
  [QUIC_V2]: {
    salt: Buffer.from('0dede3def700a6db819381be6e269dcbf9bd2ed9', 'hex'),
    key: 'quicv2 key',
    iv: 'quicv2 iv',
    hp: 'quicv2 hp',
  },
};

/** AEAD_AES_128_GCM packet protection material for one direction of the Initial space. */
export interface InitialKeys {
  /** client_initial_secret or server_initial_secret (32 bytes). */
  readonly secret: Buffer;
  /** AES-128-GCM key (16 bytes). */
  readonly key: Buffer;
  /** AEAD IV (12 bytes); the nonce is this XOR the packet number. */
  readonly iv: Buffer;
  /** Header protection key, AES-128-ECB (16 bytes). */
  readonly hp: Buffer;
}

/** HKDF-Extract (RFC 5869 §2.2) with SHA-256. */
export function hkdfExtract(salt: Buffer, ikm: Buffer): Buffer {
  return createHmac('sha256', salt).update(ikm).digest();
}

/** HkdfLabel structs (RFC 8446 §7.1, empty context) followed by HKDF-Expand's first counter byte. */
const labelInfoCache = new Map<string, Buffer>();

function expandInfo(label: string, length: number, counter: number): Buffer {
  const cacheKey = `${label}\0${length}\0${counter}`;
  let info = labelInfoCache.get(cacheKey);
  if (info === undefined) {
    const fullLabel = Buffer.from(`tls13 ${label}`, 'ascii');
    info = Buffer.alloc(2 + 1 + fullLabel.length + 1 + 1);
    info.writeUInt16BE(length, 0);
    info[2] = fullLabel.length;
    fullLabel.copy(info, 3);
    // info[3 + fullLabel.length] = 0: empty context
    info[info.length - 1] = counter;
    if (labelInfoCache.size < 64) labelInfoCache.set(cacheKey, info);
  }
  return info;
}

/**
 * HKDF-Expand-Label (RFC 8446 §7.1) with SHA-256 and an empty context. hkdfSync cannot be used
 * here because it always runs Extract first; Expand is HMAC blocks T(i) = HMAC(secret, T(i-1) |
 * HkdfLabel | i), written out with createHmac.
 */
export function hkdfExpandLabel(secret: Buffer, label: string, length: number): Buffer {
  if (length > 255 * 32) throw new RangeError(`HKDF-Expand length ${length} too large`);
  const first = createHmac('sha256', secret).update(expandInfo(label, length, 1)).digest();
  if (length <= 32) return first.subarray(0, length);
  const blocks = [first];
  for (let counter = 2; blocks.length * 32 < length; counter++) {
    blocks.push(createHmac('sha256', secret).update(blocks[blocks.length - 1]!).update(expandInfo(label, length, counter)).digest());
  }
  return Buffer.concat(blocks).subarray(0, length);
}

/**
 * Initial packet protection keys derived from the client's first Destination Connection ID
 * (RFC 9001 §5.2; RFC 9369 §3.3 for v2). `side` selects which direction: the proxy decrypts the
 * client's packets, so 'client' is the default.
 */
export function deriveInitialSecrets(dcid: Buffer, version: number, side: 'client' | 'server' = 'client'): InitialKeys {
  if (!isSupportedVersion(version)) throw new InitialParseError('unsupported-version', `0x${version.toString(16)}`);
  const params = VERSION_PARAMS[version];
  const initialSecret = hkdfExtract(params.salt, dcid);
  const secret = hkdfExpandLabel(initialSecret, side === 'client' ? 'client in' : 'server in', 32);
  return {
    secret,
    key: hkdfExpandLabel(secret, params.key, 16),
    iv: hkdfExpandLabel(secret, params.iv, 12),
    hp: hkdfExpandLabel(secret, params.hp, 16),
  };
}
