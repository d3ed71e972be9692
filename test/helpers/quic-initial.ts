import { createCipheriv } from 'node:crypto';
import type { CryptoFragment } from '../../src/proxy/quic/initial/frames.js';
import { deriveInitialSecrets, QUIC_V1, type InitialKeys, type SupportedQuicVersion } from '../../src/proxy/quic/initial/keys.js';
import { longPacketTypeBits, MAX_CID_LENGTH } from '../../src/proxy/quic/initial/packet.js';
import { varintLength, writeVarint } from '../../src/proxy/quic/varint.js';

/** Smallest datagram that may carry a client Initial (RFC 9000 §14.1). */
export const MIN_CLIENT_INITIAL_DATAGRAM = 1200;

export interface BuildClientInitialOptions {
  /** Destination CID: the Initial keys derive from it (RFC 9001 §5.2). */
  readonly dcid: Buffer;
  readonly scid: Buffer;
  /** Packet number; written in `pnLength` bytes. */
  readonly pn: number;
  readonly version?: SupportedQuicVersion;
  readonly token?: Buffer;
  /** Bytes used for the packet number (1–4); default: the fewest that hold `pn`. */
  readonly pnLength?: 1 | 2 | 3 | 4;
  /** CRYPTO frames, written in the order given. */
  readonly cryptoFrames?: readonly CryptoFragment[];
  /** Raw frames appended after the CRYPTO frames (e.g. PING, ACK), already encoded. */
  readonly extraFrames?: Buffer;
  /** PADDING is added until the packet is this long; 0 pads only to the minimum sample size. Default 1200. */
  readonly padTo?: number;
  /** Value of the two reserved header bits (must be 0 on the wire; non-zero for negative tests). */
  readonly reservedBits?: number;
  /** Keys to protect with; default: derived from dcid and version. */
  readonly keys?: InitialKeys;
}

/** One CRYPTO frame (RFC 9000 §19.6). */
export function encodeCryptoFrame(offset: number, data: Buffer): Buffer {
  const out = Buffer.allocUnsafe(1 + varintLength(offset) + varintLength(data.length) + data.length);
  out[0] = 0x06;
  let pos = writeVarint(out, 1, offset);
  pos = writeVarint(out, pos, data.length);
  data.copy(out, pos);
  return out;
}

/**
 * Builds one protected client Initial packet (RFC 9000 §17.2.2, RFC 9001 §5): the inverse of
 * decryptClientInitial. Used to produce exact test traffic (split ClientHellos, retransmits) and
 * by tools that need to speak first-flight QUIC. Concatenate results to coalesce packets.
 */
export function buildClientInitial(opts: BuildClientInitialOptions): Buffer {
  const version = opts.version ?? QUIC_V1;
  const token = opts.token ?? Buffer.alloc(0);
  if (opts.dcid.length > MAX_CID_LENGTH || opts.scid.length > MAX_CID_LENGTH) throw new RangeError('connection ID longer than 20 bytes');
  if (!Number.isInteger(opts.pn) || opts.pn < 0 || opts.pn > 0xffffffff) throw new RangeError(`packet number out of range: ${opts.pn}`);
  const pnLength = opts.pnLength ?? (opts.pn < 0x100 ? 1 : opts.pn < 0x10000 ? 2 : opts.pn < 0x1000000 ? 3 : 4);
  if (opts.pn >= 2 ** (8 * pnLength)) throw new RangeError(`packet number ${opts.pn} does not fit in ${pnLength} bytes`);
  const keys = opts.keys ?? deriveInitialSecrets(opts.dcid, version);

  const frames = Buffer.concat([
    ...(opts.cryptoFrames ?? []).map((f) => encodeCryptoFrame(f.offset, f.data)),
    opts.extraFrames ?? Buffer.alloc(0),
  ]);
  // The Length field is always written as a 2-byte varint so the header size is known up front.
  const pnOffset = 1 + 4 + 1 + opts.dcid.length + 1 + opts.scid.length + varintLength(token.length) + token.length + 2;
  const minPayload = Math.max(frames.length, 4 - pnLength); // sample needs 4 bytes after pn start
  const padTo = opts.padTo ?? MIN_CLIENT_INITIAL_DATAGRAM;
  const payloadLength = Math.max(minPayload, padTo - pnOffset - pnLength - 16);
  const length = pnLength + payloadLength + 16;
  if (length >= 0x4000) throw new RangeError(`packet too long: Length ${length}`);

  const packet = Buffer.alloc(pnOffset + length); // zero fill = PADDING frames after `frames`
  packet[0] = 0xc0 | (longPacketTypeBits('initial', version) << 4) | (((opts.reservedBits ?? 0) & 0x03) << 2) | (pnLength - 1);
  packet.writeUInt32BE(version, 1);
  let pos = 5;
  packet[pos++] = opts.dcid.length;
  pos += opts.dcid.copy(packet, pos);
  packet[pos++] = opts.scid.length;
  pos += opts.scid.copy(packet, pos);
  pos = writeVarint(packet, pos, token.length);
  pos += token.copy(packet, pos);
  pos = writeVarint(packet, pos, length, 2);
  for (let i = 0; i < pnLength; i++) packet[pos + i] = Math.floor(opts.pn / 2 ** (8 * (pnLength - 1 - i))) & 0xff;
  const headerEnd = pnOffset + pnLength;

  const plaintext = Buffer.alloc(payloadLength);
  frames.copy(plaintext);
  const nonce = Buffer.from(keys.iv);
  for (let i = 0, pn = opts.pn; i < 4; i++, pn = Math.floor(pn / 256)) nonce[11 - i] = nonce[11 - i]! ^ (pn & 0xff);
  const cipher = createCipheriv('aes-128-gcm', keys.key, nonce, { authTagLength: 16 });
  cipher.setAAD(packet.subarray(0, headerEnd));
  const sealed = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  sealed.copy(packet, headerEnd);

  const sample = packet.subarray(pnOffset + 4, pnOffset + 20);
  const mask = createCipheriv('aes-128-ecb', keys.hp, null).setAutoPadding(false).update(sample);
  packet[0] = packet[0]! ^ (mask[0]! & 0x0f);
  for (let i = 0; i < pnLength; i++) packet[pnOffset + i] = packet[pnOffset + i]! ^ mask[1 + i]!;
  return packet;
}
