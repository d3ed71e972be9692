/**
 * Hand-built TLS ClientHello handshake messages (RFC 8446 §4.1.2), for what real clients will not
 * send: exact extension lists, malformed names, oversized padding.
 */
export const u8 = (n: number): Buffer => Buffer.from([n]);
export const u16 = (n: number): Buffer => Buffer.from([n >> 8, n & 0xff]);
export const vec8 = (b: Buffer): Buffer => Buffer.concat([u8(b.length), b]);
export const vec16 = (b: Buffer): Buffer => Buffer.concat([u16(b.length), b]);

export type Extension = [type: number, body: Buffer];

/** A ClientHello handshake message with the given extensions (undefined = no extensions block). */
export function clientHello(extensions: Extension[] | undefined, legacyVersion = 0x0303): Buffer {
  const body = Buffer.concat([
    u16(legacyVersion),
    Buffer.alloc(32, 0xab),
    vec8(Buffer.alloc(32, 0xcd)),
    vec16(Buffer.from([0x13, 0x01, 0x13, 0x02])),
    vec8(Buffer.from([0])),
    ...(extensions === undefined ? [] : [vec16(Buffer.concat(extensions.map(([t, b]) => Buffer.concat([u16(t), vec16(b)]))))]),
  ]);
  return Buffer.concat([u8(1), Buffer.from([body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff]), body]);
}

/** server_name with these (name_type, name) entries; type 0 is host_name. */
export const sni = (...names: [number, string][]): Extension => [
  0,
  vec16(Buffer.concat(names.map(([t, n]) => Buffer.concat([u8(t), vec16(Buffer.from(n, 'latin1'))])))),
];

/** The padding extension (RFC 7685) of `bytes` zero bytes. */
export const padding = (bytes: number): Extension => [21, Buffer.alloc(bytes)];
