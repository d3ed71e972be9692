/**
 * Test and bench helper: client Initial datagrams (RFC 9000 §17.2.2, RFC 9001 §5), the inverse of
 * src/proxy/quic/initial/. Produces exact first-flight traffic: split ClientHellos, retransmits,
 * coalesced packets, malformed fields. Concatenate buildClientInitial results to coalesce packets.
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import type { CryptoFragment } from '../../src/proxy/quic/initial/frames.js';
import { deriveInitialSecrets, QUIC_V1, type InitialKeys, type SupportedQuicVersion } from '../../src/proxy/quic/initial/keys.js';
import { longPacketTypeBits, MAX_CID_LENGTH } from '../../src/proxy/quic/initial/packet.js';
import { quiche } from '../../src/proxy/quic/native.js';
import { varintLength, writeVarint } from '../../src/proxy/quic/varint.js';

/** Smallest datagram that may carry a client Initial (RFC 9000 §14.1). */
const MIN_CLIENT_INITIAL_DATAGRAM = 1200;

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

/** Builds one protected client Initial packet (RFC 9000 §17.2.2, RFC 9001 §5). */
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

function u16(n: number): Buffer {
  return Buffer.from([n >> 8, n & 0xff]);
}

function extension(type: number, body: Buffer): Buffer {
  return Buffer.concat([u16(type), u16(body.length), body]);
}

/**
 * A TLS 1.3 ClientHello handshake message offering h3, with a server_name unless null; padding
 * extensions of `padBefore` / `padAfter` bytes around server_name move it within the message.
 */
export function clientHello(serverName: string | null, padBefore = 0, padAfter = 0): Buffer {
  const exts: Buffer[] = [];
  if (padBefore > 0) exts.push(extension(0x0015, Buffer.alloc(padBefore)));
  if (serverName !== null) {
    const name = Buffer.from(serverName);
    const entry = Buffer.concat([Buffer.from([0]), u16(name.length), name]);
    exts.push(extension(0x0000, Buffer.concat([u16(entry.length), entry])));
  }
  if (padAfter > 0) exts.push(extension(0xfafa, Buffer.alloc(padAfter))); // a GREASE-style filler
  exts.push(extension(0x002b, Buffer.from([2, 0x03, 0x04]))); // supported_versions: TLS 1.3
  exts.push(extension(0x0010, Buffer.from([0, 3, 2, 0x68, 0x33]))); // ALPN h3
  const extBytes = Buffer.concat(exts);
  const body = Buffer.concat([
    Buffer.from([0x03, 0x03]),
    randomBytes(32),
    Buffer.from([0]), // legacy_session_id
    u16(2),
    Buffer.from([0x13, 0x01]),
    Buffer.from([1, 0]),
    u16(extBytes.length),
    extBytes,
  ]);
  return Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 0xff]), body]);
}

/**
 * The QUIC v1 datagrams of one connection attempt, each padded to 1200 bytes with a 4-byte packet
 * number: the ClientHello in one, or cut at `splitAt` into two (as Chrome's post-quantum one is).
 */
export function clientInitials(dcid: Buffer, hello: Buffer, splitAt = 0): Buffer[] {
  const scid = randomBytes(8);
  const parts = splitAt ? [hello.subarray(0, splitAt), hello.subarray(splitAt)] : [hello];
  return parts.map((data, pn) => buildClientInitial({ dcid, scid, pn, pnLength: 4, cryptoFrames: [{ offset: pn === 0 ? 0 : splitAt, data }] }));
}

/** The first datagram a real quiche client sends: its Initial with a complete ClientHello. */
export function quicheClientInitial(serverName: string | null, alpn: string[], scid: Buffer): Buffer {
  const config = new quiche.Config();
  config.setApplicationProtos(alpn);
  config.verifyPeer(false);
  const conn = quiche.Connection.connect(serverName, scid, { host: '127.0.0.1', port: 40001 }, { host: '127.0.0.1', port: 40002 }, config);
  const buf = Buffer.alloc(65536);
  const sent = conn.send(buf);
  if (sent === null) throw new Error('quiche produced no Initial');
  return Buffer.from(buf.subarray(0, sent[0]));
}
