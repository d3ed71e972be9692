/**
 * Test fixture: QUIC v1 client Initial datagrams (RFC 9000 §17.2.2, RFC 9001 §5) carrying a TLS
 * ClientHello with a chosen server_name, optionally split over two datagrams, built with node:crypto.
 */
import { createCipheriv, createHmac, randomBytes } from 'node:crypto';

const INITIAL_SALT_V1 = Buffer.from('38762cf7f55934b34d179ae6a4c80cadccbb7f0a', 'hex');

function hkdfExpandLabel(secret: Buffer, label: string, length: number): Buffer {
  const full = Buffer.from(`tls13 ${label}`);
  const info = Buffer.concat([Buffer.from([length >> 8, length & 0xff, full.length]), full, Buffer.from([0])]);
  return createHmac('sha256', secret).update(Buffer.concat([info, Buffer.from([1])])).digest().subarray(0, length);
}

export function clientInitialKeys(dcid: Buffer): { key: Buffer; iv: Buffer; hp: Buffer } {
  const initial = createHmac('sha256', INITIAL_SALT_V1).update(dcid).digest();
  const client = hkdfExpandLabel(initial, 'client in', 32);
  return { key: hkdfExpandLabel(client, 'quic key', 16), iv: hkdfExpandLabel(client, 'quic iv', 12), hp: hkdfExpandLabel(client, 'quic hp', 16) };
}

function u16(n: number): Buffer {
  return Buffer.from([n >> 8, n & 0xff]);
}

function varint(n: number): Buffer {
  if (n < 64) return Buffer.from([n]);
  if (n < 16384) return Buffer.from([0x40 | (n >> 8), n & 0xff]);
  const b = Buffer.alloc(4);
  b.writeUInt32BE(0x80000000 | n);
  return b;
}

function extension(type: number, body: Buffer): Buffer {
  return Buffer.concat([u16(type), u16(body.length), body]);
}

/** A TLS 1.3 ClientHello; padding extensions of `padBefore` / `padAfter` bytes around server_name. */
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

/** One protected Initial datagram (padded to 1200 bytes) with a CRYPTO frame at `offset`. */
export function initialPacket(dcid: Buffer, scid: Buffer, crypto: Buffer, offset: number, pn: number): Buffer {
  const { key, iv, hp } = clientInitialKeys(dcid);
  const frame = Buffer.concat([Buffer.from([0x06]), varint(offset), varint(crypto.length), crypto]);
  const headerLen = 1 + 4 + 1 + dcid.length + 1 + scid.length + 1 + 2 + 4;
  const payloadLen = Math.max(frame.length, 1200 - headerLen - 16);
  const plain = Buffer.concat([frame, Buffer.alloc(payloadLen - frame.length)]); // PADDING frames
  const pnBytes = Buffer.alloc(4);
  pnBytes.writeUInt32BE(pn);
  const header = Buffer.concat([
    Buffer.from([0xc3, 0, 0, 0, 1, dcid.length]),
    dcid,
    Buffer.from([scid.length]),
    scid,
    Buffer.from([0]), // token length
    Buffer.from([0x40 | ((4 + plain.length + 16) >> 8), (4 + plain.length + 16) & 0xff]),
    pnBytes,
  ]);
  const nonce = Buffer.from(iv);
  for (let i = 0; i < 4; i++) nonce[8 + i]! ^= pnBytes[i]!;
  const gcm = createCipheriv('aes-128-gcm', key, nonce);
  gcm.setAAD(header);
  const sealed = Buffer.concat([gcm.update(plain), gcm.final(), gcm.getAuthTag()]);
  const pnOffset = header.length - 4;
  const sample = sealed.subarray(4 - 4, 16); // sample starts 4 bytes after the packet number offset
  const ecb = createCipheriv('aes-128-ecb', hp, null);
  const mask = ecb.update(sample);
  const out = Buffer.concat([header, sealed]);
  out[0]! ^= mask[0]! & 0x0f;
  for (let i = 0; i < 4; i++) out[pnOffset + i]! ^= mask[1 + i]!;
  return out;
}

/** The datagrams of one attempt: the ClientHello cut at `splitAt` (0 = one datagram). */
export function clientInitials(dcid: Buffer, hello: Buffer, splitAt = 0): Buffer[] {
  const scid = randomBytes(8);
  if (!splitAt) return [initialPacket(dcid, scid, hello, 0, 0)];
  return [initialPacket(dcid, scid, hello.subarray(0, splitAt), 0, 0), initialPacket(dcid, scid, hello.subarray(splitAt), splitAt, 1)];
}
