/**
 * Certificate choice by SNI (two certificates, exact and wildcard), session resumption, and
 * malformed requests: each is a stream error (H3_MESSAGE_ERROR) and the connection lives on.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCert } from '../helpers/certs.js';
import { gtlsclient } from '../helpers/gtlsclient.js';
import { encodeFieldSection } from '../../src/proxy/h3/qpack.js';
import { H3Client, StreamResetError } from '../helpers/h3-client.js';
import { freeUdpPort, makeTempDir, startProxy, type RunningProxy } from '../helpers/proxy.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';
import { enterPrivateNetns } from '../helpers/netns.js';

// The proxy attaches BPF to its sockets: keep it and its clients in a private network namespace.
enterPrivateNetns();

const H3_MESSAGE_ERROR = 0x10e;

function commonName(der: Buffer | undefined): string | undefined {
  return der ? /CN=([^\n,]+)/.exec(new X509Certificate(der).subject)?.[1] : undefined;
}

describe('TLS by SNI, resumption, malformed requests', () => {
  let proxy: RunningProxy;
  let up: TestUpstream;
  let port: number;

  beforeAll(async () => {
    up = await startUpstream('body-checks');
    const dir = makeTempDir();
    const a = makeCert(dir, 'a', 'a.test');
    const b = makeCert(dir, 'b', 'wild.b.test');
    port = await freeUdpPort();
    proxy = await startProxy(
      `
listeners: ["127.0.0.1:${port}"]
workers: 1
tls:
  state_dir: state
  certificates:
    - { names: [a.test], cert: ${a.cert}, key: ${a.key}, default: true }
    - { names: ["*.b.test"], cert: ${b.cert}, key: ${b.key} }
routes:
  - path: /api/
    upstream: app
  - path: /
    respond: { status: 200, body: "ok\\n" }
upstreams:
  app: { targets: ["${up.origin}"] }
`,
      { dir },
    );
  });

  afterAll(async () => {
    await proxy?.stop();
    await up?.close();
  });

  it('presents the certificate matching the SNI (exact, wildcard, default)', async () => {
    for (const [sni, cn] of [
      ['a.test', 'a.test'],
      ['x.b.test', 'wild.b.test'],
      ['unknown.test', 'a.test'],
    ] as const) {
      const c = await H3Client.connect({ host: '127.0.0.1', port, sni });
      expect(commonName(c.peerCertificate()), sni).toBe(cn);
      expect((await c.get(sni, '/')).status).toBe(200);
      await c.close();
    }
  });

  it('serves gtlsclient with either certificate', async () => {
    for (const sni of ['a.test', 'x.b.test']) {
      const r = await gtlsclient('127.0.0.1', port, [`https://${sni}/`], { sni });
      expect(r.statuses, sni).toEqual([200]);
    }
  });

  it('resumes TLS sessions with the shared ticket key', async () => {
    const first = await H3Client.connect({ host: '127.0.0.1', port, sni: 'a.test' });
    await first.get('a.test', '/');
    const session = first.session();
    await first.close();
    expect(session).not.toBeNull();
    const second = await H3Client.connect({ host: '127.0.0.1', port, sni: 'a.test', session: session! });
    expect(second.isResumed).toBe(true);
    await second.close();
  });

  it('passes upstream response trailers through as a trailing HEADERS frame', async () => {
    const c = await H3Client.connect({ host: '127.0.0.1', port, sni: 'a.test' });
    const r = await c.get('a.test', '/api/trailers');
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe('chunk one\nchunk two\n');
    expect(r.trailers).toEqual([['x-checksum', createHash('sha256').update(r.body).digest('hex')]]);
    await c.close();
  });

  it('serves requests whose streams arrive out of order', async () => {
    const c = await H3Client.connect({ host: '127.0.0.1', port, sni: 'a.test' });
    const get = encodeFieldSection([
      [':method', 'GET'],
      [':scheme', 'https'],
      [':authority', 'a.test'],
      [':path', '/'],
    ]);
    // Stream 4 first (it implicitly opens stream 0), then stream 0.
    expect((await c.requestWithBlock(get, undefined, 4)).status).toBe(200);
    expect((await c.requestWithBlock(get, undefined, 0)).status).toBe(200);
    await c.close();
  });

  it('cancels the upstream exchange when the client stops a request still waiting for it', async () => {
    const c = await H3Client.connect({ host: '127.0.0.1', port, sni: 'a.test' });
    const path = '/api/slow?ms=20000';
    const seen = new Promise((resolve) => up.events.once('request', resolve));
    const aborted = new Promise((resolve) => up.events.once('aborted', resolve));
    const pending = c.requestWithBlock(encodeFieldSection([[':method', 'GET'], [':scheme', 'https'], [':authority', 'a.test'], [':path', path]]), undefined, 0);
    pending.catch(() => {});
    await seen;
    c.cancel(0, 0x10c); // H3_REQUEST_CANCELLED
    // Long before the upstream would have answered (20 s), its request is cut off.
    await aborted;
    const line = await proxy.waitForLog((l) => l.log === 'access' && l.path === path);
    expect(String(line.reason)).toMatch(/client/);
    await c.close();
  });

  it('answers malformed requests with H3_MESSAGE_ERROR and keeps the connection', async () => {
    const c = await H3Client.connect({ host: '127.0.0.1', port, sni: 'a.test' });
    const base: Array<[string, string]> = [
      [':method', 'GET'],
      [':scheme', 'https'],
      [':authority', 'a.test'],
      [':path', '/'],
    ];
    const malformed: Array<Array<[string, string]>> = [
      base.filter(([k]) => k !== ':path'), // missing :path
      [...base, ['connection', 'close']], // connection-specific field
      [['x-early', '1'], ...base], // regular field before pseudo-headers
      [...base, [':method', 'POST']], // duplicate pseudo-header
    ];
    for (const fields of malformed) {
      await expect(c.request(fields), JSON.stringify(fields)).rejects.toEqual(new StreamResetError(H3_MESSAGE_ERROR));
    }
    // An uppercase field name, which our encoder would lowercase: a literal with a literal name
    // (RFC 9204 §4.5.6: 0b001 N=0 H=0, 3-bit name length) appended to a valid section.
    const upper = Buffer.concat([encodeFieldSection(base), Buffer.from([0x25]), Buffer.from('Upper'), Buffer.from([0x01]), Buffer.from('x')]);
    await expect(c.requestWithBlock(upper)).rejects.toEqual(new StreamResetError(H3_MESSAGE_ERROR));
    // content-length that disagrees with the DATA sent (checked while the body streams upstream)
    const post = (len: string): Array<[string, string]> => [[':method', 'POST'], [':scheme', 'https'], [':authority', 'a.test'], [':path', '/api/echo'], ['content-length', len]];
    await expect(c.request(post('10'), Buffer.from('abc'))).rejects.toEqual(new StreamResetError(H3_MESSAGE_ERROR));
    await expect(c.request(post('1'), Buffer.from('abc'))).rejects.toEqual(new StreamResetError(H3_MESSAGE_ERROR));
    const echoed = await c.request(post('3'), Buffer.from('abc'));
    expect(JSON.parse(echoed.body.toString()).bodyLength).toBe(3);
    // A body the handler does not want (a built-in route answers at HEADERS, the DATA frame is
    // in the same packet) is dropped, not a connection error.
    const early = await c.request([[':method', 'POST'], [':scheme', 'https'], [':authority', 'a.test'], [':path', '/'], ['content-length', '5']], Buffer.from('hello'));
    expect(early.status).toBe(200);
    const ok = await c.get('a.test', '/');
    expect(ok.status).toBe(200);
    expect(ok.body.toString()).toBe('ok\n');
    expect(c.peerError).toBeNull();
    await c.close();
  });
});
