/**
 * A TLS ClientHello (RFC 8446 §4.1.2), read for what routing needs: the server name, ALPN and a
 * few flags. Shared by QUIC (the ClientHello from an Initial's CRYPTO frames) and TLS over TCP
 * (the ClientHello from the first TLS records); each caller reassembles the message its own way.
 */

/** What was wrong with a ClientHello. */
export type ClientHelloReason =
  | 'not-client-hello'
  | 'client-hello-truncated'
  | 'client-hello-trailing-bytes'
  | 'client-hello-bad-vector'
  | 'client-hello-duplicate-extension'
  | 'client-hello-bad-server-name'
  | 'client-hello-bad-alpn'
  | 'client-hello-bad-supported-versions';

/** The one error parseClientHello throws: malformed input, with `reason` to count it by. */
export class ClientHelloError extends Error {
  override readonly name = 'ClientHelloError';
  constructor(
    readonly reason: ClientHelloReason,
    readonly detail?: string,
  ) {
    super(detail === undefined ? reason : `${reason}: ${detail}`);
  }
}

/** What the proxy needs from a ClientHello before choosing a certificate and accepting. */
export interface ClientHelloInfo {
  /** host_name from server_name (RFC 6066 §3), lowercased; absent if not sent or an IP literal. */
  readonly serverName?: string;
  /** application_layer_protocol_negotiation list in client order (RFC 7301); empty if not sent. */
  readonly alpn: string[];
  /** quic_transport_parameters (RFC 9001 §8.2, codepoint 57) is present. */
  readonly quicTransportParametersPresent: boolean;
  /** legacy_version (0x0303 for TLS 1.3). */
  readonly legacyVersion: number;
  /** supported_versions list, if sent (RFC 8446 §4.2.1). */
  readonly supportedVersions?: number[];
  /** early_data (RFC 8446 §4.2.10) is present: the client offers 0-RTT. */
  readonly offersEarlyData: boolean;
}

export const TLS_HANDSHAKE_CLIENT_HELLO = 1;
/** The ClientHello's random: after the handshake header (4 bytes) and legacy_version (2). */
export const CLIENT_RANDOM_OFFSET = 6;
export const CLIENT_RANDOM_LENGTH = 32;

const EXT_SERVER_NAME = 0;
const EXT_ALPN = 16;
const EXT_EARLY_DATA = 42;
const EXT_SUPPORTED_VERSIONS = 43;
const EXT_QUIC_TRANSPORT_PARAMETERS = 57;
const SNI_HOST_NAME = 0;
const MAX_HOST_NAME_LENGTH = 253;

/** Bounds-checked reader over a TLS vector; every short read is a typed error. */
class TlsReader {
  constructor(
    private readonly buf: Buffer,
    public pos: number,
    readonly end: number,
  ) {}

  get remaining(): number {
    return this.end - this.pos;
  }

  private need(n: number, what: string): void {
    if (n > this.end - this.pos) throw new ClientHelloError('client-hello-truncated', `${what}: needs ${n} bytes, has ${this.end - this.pos}`);
  }

  u8(what: string): number {
    this.need(1, what);
    return this.buf[this.pos++]!;
  }

  u16(what: string): number {
    this.need(2, what);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  u24(what: string): number {
    this.need(3, what);
    const v = this.buf.readUIntBE(this.pos, 3);
    this.pos += 3;
    return v;
  }

  skip(n: number, what: string): void {
    this.need(n, what);
    this.pos += n;
  }

  /** A sub-reader over a vector with an `lengthBytes`-byte length prefix. */
  vector(lengthBytes: 1 | 2, what: string): TlsReader {
    const length = lengthBytes === 1 ? this.u8(what) : this.u16(what);
    this.need(length, what);
    const sub = new TlsReader(this.buf, this.pos, this.pos + length);
    this.pos += length;
    return sub;
  }

  slice(): Buffer {
    return this.buf.subarray(this.pos, this.end);
  }

  expectEnd(reason: ClientHelloReason, what: string): void {
    if (this.pos !== this.end) throw new ClientHelloError(reason, `${this.end - this.pos} unexpected bytes after ${what}`);
  }
}

/**
 * Parses a complete TLS Handshake message holding a ClientHello (RFC 8446 §4.1.2): 1-byte type,
 * 3-byte length, body. Reads only what routing needs; other extensions are skipped (but must be
 * well-formed vectors, and no extension type may repeat, RFC 8446 §4.2).
 */
export function parseClientHello(msg: Buffer): ClientHelloInfo {
  const top = new TlsReader(msg, 0, msg.length);
  const type = top.u8('handshake type');
  if (type !== TLS_HANDSHAKE_CLIENT_HELLO) throw new ClientHelloError('not-client-hello', `handshake type ${type}`);
  const length = top.u24('handshake length');
  if (length !== top.remaining) {
    if (length > top.remaining) throw new ClientHelloError('client-hello-truncated', `length ${length}, ${top.remaining} bytes present`);
    throw new ClientHelloError('client-hello-trailing-bytes', `length ${length}, ${top.remaining} bytes present`);
  }

  const r = top;
  const legacyVersion = r.u16('legacy_version');
  r.skip(32, 'random');
  const sessionId = r.vector(1, 'legacy_session_id');
  if (sessionId.remaining > 32) throw new ClientHelloError('client-hello-bad-vector', 'legacy_session_id longer than 32');
  const cipherSuites = r.vector(2, 'cipher_suites');
  if (cipherSuites.remaining < 2 || cipherSuites.remaining % 2 !== 0) {
    throw new ClientHelloError('client-hello-bad-vector', `cipher_suites of ${cipherSuites.remaining} bytes`);
  }
  const compression = r.vector(1, 'legacy_compression_methods');
  if (compression.remaining < 1) throw new ClientHelloError('client-hello-bad-vector', 'empty legacy_compression_methods');

  let serverName: string | undefined;
  let alpn: string[] = [];
  let supportedVersions: number[] | undefined;
  let quicTransportParametersPresent = false;
  let offersEarlyData = false;
  // A ClientHello may end after the compression methods (RFC 8446 §4.1.2 allows no extensions
  // block for older versions); then nothing below is present and the caller refuses by ALPN.
  if (r.remaining > 0) {
    const extensions = r.vector(2, 'extensions');
    r.expectEnd('client-hello-trailing-bytes', 'extensions');
    const seen = new Set<number>();
    while (extensions.remaining > 0) {
      const extType = extensions.u16('extension type');
      const body = extensions.vector(2, `extension ${extType}`);
      if (seen.has(extType)) throw new ClientHelloError('client-hello-duplicate-extension', `extension ${extType}`);
      seen.add(extType);
      switch (extType) {
        case EXT_SERVER_NAME:
          serverName = readServerName(body);
          break;
        case EXT_ALPN:
          alpn = readAlpn(body);
          break;
        case EXT_SUPPORTED_VERSIONS:
          supportedVersions = readSupportedVersions(body);
          break;
        case EXT_QUIC_TRANSPORT_PARAMETERS:
          quicTransportParametersPresent = true;
          break;
        case EXT_EARLY_DATA:
          offersEarlyData = true;
          break;
      }
    }
  }

  const info: { -readonly [K in keyof ClientHelloInfo]: ClientHelloInfo[K] } = { alpn, quicTransportParametersPresent, legacyVersion, offersEarlyData };
  if (serverName !== undefined) info.serverName = serverName;
  if (supportedVersions !== undefined) info.supportedVersions = supportedVersions;
  return info;
}

/** ServerNameList (RFC 6066 §3). At most one host_name; other name types are skipped. */
function readServerName(body: TlsReader): string | undefined {
  const list = body.vector(2, 'server_name_list');
  body.expectEnd('client-hello-bad-server-name', 'server_name_list');
  if (list.remaining === 0) throw new ClientHelloError('client-hello-bad-server-name', 'empty server_name_list');
  let hostName: string | undefined;
  let sawHostName = false;
  while (list.remaining > 0) {
    const nameType = list.u8('name_type');
    const name = list.vector(2, 'server name').slice();
    if (nameType !== SNI_HOST_NAME) continue;
    if (sawHostName) throw new ClientHelloError('client-hello-bad-server-name', 'more than one host_name');
    sawHostName = true;
    hostName = validateHostName(name);
  }
  return hostName;
}

/**
 * RFC 6066: HostName is an ASCII DNS name without a trailing dot; IP literals are not permitted.
 * Labels are 1–63 of [a-z0-9_-] (underscore tolerated: real hosts use it and it is harmless for
 * routing). An IPv4 literal is treated as "no name" rather than an error, so such clients still
 * reach the default certificate; anything else malformed is refused.
 */
function validateHostName(name: Buffer): string | undefined {
  if (name.length === 0 || name.length > MAX_HOST_NAME_LENGTH) {
    throw new ClientHelloError('client-hello-bad-server-name', `host_name of ${name.length} bytes`);
  }
  let labelLength = 0;
  let allDigitsOrDots = true;
  for (let i = 0; i < name.length; i++) {
    let c = name[i]!;
    if (c >= 0x41 && c <= 0x5a) c += 0x20; // A-Z
    const isDigit = c >= 0x30 && c <= 0x39;
    if (c === 0x2e) {
      if (labelLength === 0) throw new ClientHelloError('client-hello-bad-server-name', 'empty label');
      labelLength = 0;
      continue;
    }
    if (!(isDigit || (c >= 0x61 && c <= 0x7a) || c === 0x2d || c === 0x5f)) {
      throw new ClientHelloError('client-hello-bad-server-name', `byte 0x${c.toString(16)} at ${i}`);
    }
    if (!isDigit) allDigitsOrDots = false;
    if (++labelLength > 63) throw new ClientHelloError('client-hello-bad-server-name', 'label longer than 63');
  }
  if (labelLength === 0) throw new ClientHelloError('client-hello-bad-server-name', 'empty last label (trailing dot)');
  if (allDigitsOrDots) return undefined;
  return name.toString('latin1').toLowerCase();
}

/** ProtocolNameList (RFC 7301 §3.1): non-empty list of non-empty names, kept byte for byte. */
function readAlpn(body: TlsReader): string[] {
  const list = body.vector(2, 'protocol_name_list');
  body.expectEnd('client-hello-bad-alpn', 'protocol_name_list');
  if (list.remaining < 2) throw new ClientHelloError('client-hello-bad-alpn', 'empty protocol_name_list');
  const names: string[] = [];
  while (list.remaining > 0) {
    const name = list.vector(1, 'protocol name');
    if (name.remaining === 0) throw new ClientHelloError('client-hello-bad-alpn', 'empty protocol name');
    names.push(name.slice().toString('latin1'));
  }
  return names;
}

/** supported_versions in a ClientHello: 1-byte length, 1–127 two-byte versions. */
function readSupportedVersions(body: TlsReader): number[] {
  const list = body.vector(1, 'supported_versions');
  body.expectEnd('client-hello-bad-supported-versions', 'supported_versions');
  if (list.remaining < 2 || list.remaining % 2 !== 0) {
    throw new ClientHelloError('client-hello-bad-supported-versions', `${list.remaining} bytes`);
  }
  const versions: number[] = [];
  while (list.remaining > 0) versions.push(list.u16('version'));
  return versions;
}
