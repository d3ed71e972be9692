import { createCipheriv, createDecipheriv } from 'node:crypto';
import { InitialParseError } from './errors.js';
import { deriveInitialSecrets, isSupportedVersion, QUIC_V2, type InitialKeys, type SupportedQuicVersion } from './keys.js';
import { ByteReader } from './byte-reader.js';

/** Longest connection ID QUIC v1/v2 allow (RFC 9000 §17.2). */
export const MAX_CID_LENGTH = 20;
/** Header-protection sample size and AEAD tag size for AES-128-GCM (RFC 9001 §5.4.2, §5.3). */
const SAMPLE_LENGTH = 16;
const TAG_LENGTH = 16;

export type LongPacketType = 'initial' | '0rtt' | 'handshake' | 'retry';

// The 2-bit type field is numbered differently in v2 (RFC 9369 §3.2).
const V1_TYPES: readonly LongPacketType[] = ['initial', '0rtt', 'handshake', 'retry'];
const V2_TYPES: readonly LongPacketType[] = ['retry', 'initial', '0rtt', 'handshake'];

export function longPacketTypeBits(type: LongPacketType, version: SupportedQuicVersion): number {
  return (version === QUIC_V2 ? V2_TYPES : V1_TYPES).indexOf(type);
}

/** A long header as far as it can be read without removing header protection. */
export interface LongHeader {
  /** Offset of the packet's first byte in the datagram. */
  readonly start: number;
  /** First byte as received (low 4 bits still protected). */
  readonly protectedFirstByte: number;
  readonly version: SupportedQuicVersion;
  readonly type: Exclude<LongPacketType, 'retry'>;
  /** Views into the datagram (not copies). */
  readonly dcid: Buffer;
  readonly scid: Buffer;
  /** Initial packets only; empty otherwise. */
  readonly token: Buffer;
  /** Offset of the (protected) packet number; the Length field counts from here. */
  readonly pnOffset: number;
  /** Offset just past this packet: where a coalesced next packet starts. */
  readonly end: number;
}

/**
 * Reads the long header starting at `offset` (RFC 9000 §17.2, §17.2.2). Accepts QUIC v1 and v2
 * Initial, 0-RTT and Handshake packets; Retry and Version Negotiation never come from a client.
 */
export function parseLongHeader(datagram: Buffer, offset: number): LongHeader {
  const r = new ByteReader(datagram, offset, datagram.length, 'truncated');
  const first = r.u8();
  if ((first & 0x80) === 0) throw new InitialParseError('not-long-header', `first byte 0x${first.toString(16)}`);
  const version = r.u32();
  if (!isSupportedVersion(version)) throw new InitialParseError('unsupported-version', `0x${version.toString(16)}`);
  if ((first & 0x40) === 0) throw new InitialParseError('fixed-bit-clear');
  const dcidLength = r.u8();
  if (dcidLength > MAX_CID_LENGTH) throw new InitialParseError('cid-too-long', `dcid ${dcidLength} bytes`);
  const dcid = r.bytes(dcidLength);
  const scidLength = r.u8();
  if (scidLength > MAX_CID_LENGTH) throw new InitialParseError('cid-too-long', `scid ${scidLength} bytes`);
  const scid = r.bytes(scidLength);
  const type = (version === QUIC_V2 ? V2_TYPES : V1_TYPES)[(first >> 4) & 0x03]!;
  if (type === 'retry') throw new InitialParseError('unexpected-packet-type', 'Retry from a client');
  const token = type === 'initial' ? r.bytes(r.varint()) : datagram.subarray(0, 0);
  const length = r.varint();
  const pnOffset = r.pos;
  if (length > datagram.length - pnOffset) {
    throw new InitialParseError('bad-length', `Length ${length} exceeds the ${datagram.length - pnOffset} bytes left`);
  }
  return { start: offset, protectedFirstByte: first, version, type, dcid, scid, token, pnOffset, end: pnOffset + length };
}

export interface OpenedPacket {
  /** Truncated packet number as sent; equals the full number for a connection's first packets. */
  readonly packetNumber: number;
  /** Decrypted frames. */
  readonly payload: Buffer;
}

/**
 * Removes header protection and AEAD protection from one long-header packet (RFC 9001 §5.3, §5.4).
 * Never modifies `datagram`. Packet-number recovery (RFC 9000 §A.3) is not needed: the proxy only
 * reads a connection attempt's first few packets, whose numbers fit the 1–4 bytes sent.
 */
export function openLongHeaderPacket(datagram: Buffer, header: LongHeader, keys: InitialKeys): OpenedPacket {
  const sampleOffset = header.pnOffset + 4;
  if (sampleOffset + SAMPLE_LENGTH > header.end) {
    throw new InitialParseError('bad-length', 'packet too short for the header-protection sample');
  }
  const maskCipher = createCipheriv('aes-128-ecb', keys.hp, null).setAutoPadding(false);
  const mask = maskCipher.update(datagram.subarray(sampleOffset, sampleOffset + SAMPLE_LENGTH));

  const firstByte = header.protectedFirstByte ^ (mask[0]! & 0x0f);
  const pnLength = (firstByte & 0x03) + 1;
  const headerLength = header.pnOffset + pnLength - header.start;
  const aad = Buffer.allocUnsafe(headerLength);
  datagram.copy(aad, 0, header.start, header.pnOffset + pnLength);
  aad[0] = firstByte;
  let packetNumber = 0;
  for (let i = 0; i < pnLength; i++) {
    const byte = datagram[header.pnOffset + i]! ^ mask[1 + i]!;
    aad[headerLength - pnLength + i] = byte;
    packetNumber = packetNumber * 256 + byte;
  }

  const payloadStart = header.pnOffset + pnLength;
  const tagStart = header.end - TAG_LENGTH;
  const nonce = Buffer.from(keys.iv);
  for (let i = 0, pn = packetNumber; i < 4; i++, pn = Math.floor(pn / 256)) nonce[11 - i] = nonce[11 - i]! ^ (pn & 0xff);

  let payload: Buffer;
  try {
    const decipher = createDecipheriv('aes-128-gcm', keys.key, nonce, { authTagLength: TAG_LENGTH });
    decipher.setAAD(aad);
    decipher.setAuthTag(datagram.subarray(tagStart, header.end));
    const body = decipher.update(datagram.subarray(payloadStart, tagStart));
    decipher.final();
    payload = body;
  } catch {
    throw new InitialParseError('decrypt-failed', `packet at offset ${header.start}`);
  }
  // Reserved bits are checked only after decryption (RFC 9000 §17.2): before that they are noise.
  if ((firstByte & 0x0c) !== 0) throw new InitialParseError('reserved-bits-set');
  return { packetNumber, payload };
}

/** Remembers the keys of the last (DCID, version) so a connection attempt derives them once. */
export class InitialKeyCache {
  private dcid: Buffer | undefined;
  private version = 0;
  private keys: InitialKeys | undefined;

  get(dcid: Buffer, version: SupportedQuicVersion): InitialKeys {
    if (this.keys === undefined || this.version !== version || !this.dcid!.equals(dcid)) {
      this.keys = deriveInitialSecrets(dcid, version);
      this.dcid = Buffer.from(dcid);
      this.version = version;
    }
    return this.keys;
  }
}

export interface DecryptedInitial {
  readonly version: SupportedQuicVersion;
  /** Copies, safe to keep after the datagram buffer is reused. */
  readonly dcid: Buffer;
  readonly scid: Buffer;
  readonly token: Buffer;
  readonly packetNumber: number;
  /** Decrypted frames of this packet. */
  readonly payload: Buffer;
}

/**
 * Decrypts every client Initial packet in a datagram. Coalesced packets (RFC 9000 §12.2) are walked
 * by their Length: 0-RTT and Handshake packets are skipped, packets with another DCID than the first
 * are ignored, and a short-header packet or trailing bytes end the walk. A packet that fails after a
 * good Initial is dropped on its own; if no Initial decrypts, the first failure is thrown.
 */
export function decryptClientInitials(datagram: Buffer, keyCache: InitialKeyCache = new InitialKeyCache()): DecryptedInitial[] {
  const out: DecryptedInitial[] = [];
  let firstError: InitialParseError | undefined;
  let firstDcid: Buffer | undefined;
  let offset = 0;
  while (offset < datagram.length && (datagram[offset]! & 0x80) !== 0) {
    let header: LongHeader;
    try {
      header = parseLongHeader(datagram, offset);
    } catch (err) {
      // Without a readable Length the rest of the datagram cannot be delimited.
      firstError ??= err as InitialParseError;
      break;
    }
    offset = header.end;
    if (firstDcid === undefined) firstDcid = header.dcid;
    else if (!header.dcid.equals(firstDcid)) continue;
    if (header.type !== 'initial') continue;
    try {
      const opened = openLongHeaderPacket(datagram, header, keyCache.get(header.dcid, header.version));
      out.push({
        version: header.version,
        dcid: Buffer.from(header.dcid),
        scid: Buffer.from(header.scid),
        token: Buffer.from(header.token),
        packetNumber: opened.packetNumber,
        payload: opened.payload,
      });
    } catch (err) {
      firstError ??= err as InitialParseError;
    }
  }
  if (out.length > 0) return out;
  if (firstError !== undefined) throw firstError;
  if (datagram.length === 0) throw new InitialParseError('truncated', 'empty datagram');
  if (offset === 0) throw new InitialParseError('not-long-header');
  throw new InitialParseError('no-initial-packet');
}

/** Decrypts the first client Initial packet of a datagram (see decryptClientInitials). */
export function decryptClientInitial(datagram: Buffer, keyCache?: InitialKeyCache): DecryptedInitial {
  return decryptClientInitials(datagram, keyCache)[0]!;
}
