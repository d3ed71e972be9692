import { describe, expect, it } from 'vitest';
import { ClientHelloError, parseClientHello } from '../../src/proxy/tls/client-hello.js';
import { CLIENT_HELLO } from './initial-rfc-vectors.js';
import { expectClientHelloReason } from '../helpers/initial-parse-error.js';
import { clientHello, sni, u16, u8, vec16, vec8, type Extension } from '../helpers/client-hello-builder.js';

const alpn = (...names: string[]): Extension => [16, vec16(Buffer.concat(names.map((n) => vec8(Buffer.from(n, 'latin1')))))];
const supportedVersions = (...v: number[]): Extension => [43, vec8(Buffer.concat(v.map(u16)))];
const transportParameters: Extension = [57, Buffer.from('0104800075300f00', 'hex')];

describe('parseClientHello', () => {
  it('reads the RFC 9001 A.2 ClientHello exactly', () => {
    expect(parseClientHello(Buffer.from(CLIENT_HELLO, 'hex'))).toEqual({
      serverName: 'example.com',
      alpn: ['alpn'],
      quicTransportParametersPresent: true,
      offersEarlyData: false,
      legacyVersion: 0x0303,
      supportedVersions: [0x0304],
    });
  });

  it('reads SNI (lowercased), ALPN in order, versions and transport parameters among other extensions', () => {
    const msg = clientHello([
      [0x0a0a, Buffer.alloc(0)], // GREASE
      sni([0, 'WWW.Example.COM']),
      [13, Buffer.from('000604030804 0401'.replace(/ /g, ''), 'hex')],
      alpn('h3', 'h3-29', 'hq-interop'),
      supportedVersions(0x1a1a, 0x0304),
      transportParameters,
      [0x44cd, Buffer.from('0003026833', 'hex')], // ALPS: skipped
    ]);
    expect(parseClientHello(msg)).toEqual({
      serverName: 'www.example.com',
      alpn: ['h3', 'h3-29', 'hq-interop'],
      quicTransportParametersPresent: true,
      offersEarlyData: false,
      legacyVersion: 0x0303,
      supportedVersions: [0x1a1a, 0x0304],
    });
  });

  it('returns empty ALPN and no name when the extensions are absent', () => {
    expect(parseClientHello(clientHello([]))).toEqual({ alpn: [], quicTransportParametersPresent: false, legacyVersion: 0x0303, offersEarlyData: false });
    expect(parseClientHello(clientHello(undefined, 0x0301))).toEqual({
      alpn: [],
      quicTransportParametersPresent: false,
      offersEarlyData: false,
      legacyVersion: 0x0301,
    });
  });

  it('reports an early_data offer (0-RTT, RFC 8446 §4.2.10)', () => {
    expect(parseClientHello(clientHello([alpn('h3'), [42, Buffer.alloc(0)]])).offersEarlyData).toBe(true);
    expect(parseClientHello(clientHello([alpn('h3')])).offersEarlyData).toBe(false);
  });

  it('treats an IPv4 literal as no name and skips unknown name types', () => {
    expect(parseClientHello(clientHello([sni([0, '192.0.2.1'])])).serverName).toBeUndefined();
    expect(parseClientHello(clientHello([sni([7, 'opaque'], [0, 'a.b'])])).serverName).toBe('a.b');
  });

  it('accepts the longest legal host name and labels with digits, hyphen and underscore', () => {
    const longest = [...Array(3)].map(() => 'a'.repeat(63)).join('.') + '.' + 'b'.repeat(61);
    expect(longest.length).toBe(253);
    expect(parseClientHello(clientHello([sni([0, longest])])).serverName).toBe(longest);
    expect(parseClientHello(clientHello([sni([0, 'x-1_y.example'])])).serverName).toBe('x-1_y.example');
    expect(parseClientHello(clientHello([sni([0, 'localhost'])])).serverName).toBe('localhost');
  });

  it('refuses malformed host names', () => {
    for (const bad of ['', 'example.com.', '.example.com', 'a..b', 'exa mple.com', 'ex\u00e4mple.com', 'a/b', 'x'.repeat(64) + '.com', 'a.'.repeat(127) + 'ab', 'a\u0000b']) {
      expectClientHelloReason(() => parseClientHello(clientHello([sni([0, bad])])), 'client-hello-bad-server-name');
    }
    expectClientHelloReason(() => parseClientHello(clientHello([sni([0, 'a.com'], [0, 'b.com'])])), 'client-hello-bad-server-name');
    expectClientHelloReason(() => parseClientHello(clientHello([[0, vec16(Buffer.alloc(0))]])), 'client-hello-bad-server-name');
    expectClientHelloReason(() => parseClientHello(clientHello([[0, Buffer.concat([sni([0, 'a.com'])[1], u8(0)])]])), 'client-hello-bad-server-name');
  });

  it('refuses malformed ALPN and supported_versions', () => {
    expectClientHelloReason(() => parseClientHello(clientHello([alpn()])), 'client-hello-bad-alpn');
    expectClientHelloReason(() => parseClientHello(clientHello([alpn('h3', '')])), 'client-hello-bad-alpn');
    expectClientHelloReason(() => parseClientHello(clientHello([[16, Buffer.concat([alpn('h3')[1], u8(0)])]])), 'client-hello-bad-alpn');
    expectClientHelloReason(() => parseClientHello(clientHello([[16, Buffer.from('00030268', 'hex')]])), 'client-hello-truncated');
    expectClientHelloReason(() => parseClientHello(clientHello([[43, Buffer.from('00', 'hex')]])), 'client-hello-bad-supported-versions');
    expectClientHelloReason(() => parseClientHello(clientHello([[43, Buffer.from('03030403', 'hex')]])), 'client-hello-bad-supported-versions');
  });

  it('refuses duplicate extensions, wrong types and length mismatches', () => {
    expectClientHelloReason(() => parseClientHello(clientHello([alpn('h3'), transportParameters, alpn('h3')])), 'client-hello-duplicate-extension');
    const msg = clientHello([alpn('h3')]);
    const server = Buffer.from(msg);
    server[0] = 2;
    expectClientHelloReason(() => parseClientHello(server), 'not-client-hello');
    expectClientHelloReason(() => parseClientHello(Buffer.concat([msg, u8(0)])), 'client-hello-trailing-bytes');
    // Extensions block shorter than what follows it.
    const inner = Buffer.from(msg);
    const extOffset = 4 + 2 + 32 + 33 + 6 + 2;
    inner.writeUInt16BE(msg.readUInt16BE(extOffset) - 1, extOffset);
    expectClientHelloReason(() => parseClientHello(inner), 'client-hello-trailing-bytes');
    inner.writeUInt16BE(msg.readUInt16BE(extOffset) + 1, extOffset);
    expectClientHelloReason(() => parseClientHello(inner), 'client-hello-truncated');
    expectClientHelloReason(() => parseClientHello(clientHelloWith({ sessionIdLength: 33 })), 'client-hello-bad-vector');
    expectClientHelloReason(() => parseClientHello(clientHelloWith({ suites: Buffer.from([0x13]) })), 'client-hello-bad-vector');
    expectClientHelloReason(() => parseClientHello(clientHelloWith({ suites: Buffer.alloc(0) })), 'client-hello-bad-vector');
    expectClientHelloReason(() => parseClientHello(clientHelloWith({ compression: Buffer.alloc(0) })), 'client-hello-bad-vector');
  });

  it('refuses every truncation of a valid ClientHello with a typed error', () => {
    const msg = Buffer.from(CLIENT_HELLO, 'hex');
    const extensionsStart = 4 + 2 + 32 + 1 + 0 + 2 + 4 + 1 + 1; // no session id, 2 suites, 1 compression method
    for (let n = 0; n < msg.length; n++) {
      expect(() => parseClientHello(msg.subarray(0, n))).toThrow(ClientHelloError);
      // Also with a header length that claims exactly the truncated body.
      if (n >= 4) {
        const cut = Buffer.from(msg.subarray(0, n));
        cut.writeUIntBE(n - 4, 1, 3);
        // Cut exactly before the extensions block it is a valid (extension-less) ClientHello.
        if (n === extensionsStart) expect(parseClientHello(cut).alpn).toEqual([]);
        else expect(() => parseClientHello(cut)).toThrow(ClientHelloError);
      }
    }
  });
});

function clientHelloWith(o: { sessionIdLength?: number; suites?: Buffer; compression?: Buffer }): Buffer {
  const body = Buffer.concat([
    u16(0x0303),
    Buffer.alloc(32),
    vec8(Buffer.alloc(o.sessionIdLength ?? 0)),
    vec16(o.suites ?? Buffer.from([0x13, 0x01])),
    vec8(o.compression ?? Buffer.from([0])),
    vec16(Buffer.alloc(0)),
  ]);
  return Buffer.concat([u8(1), Buffer.from([0, body.length >> 8, body.length & 0xff]), body]);
}
