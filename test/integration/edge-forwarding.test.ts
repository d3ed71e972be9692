/**
 * The request-forwarding defences through the real proxy binary (hardening defect 10), with our
 * HTTP/3 client (it sends any :path and header bytes) and gtlsclient: path spellings that used to
 * bypass a blocking /healthz route, refused targets, non-ASCII octets encoded, trusted_proxies
 * deciding whether a client's forwarding fields survive (IPv4 client trusted, IPv6 client not),
 * a comma-list authority refused, and a GET body without content-length forwarded.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gtlsclient } from '../helpers/gtlsclient.js';
import { H3Client, StreamResetError } from '../helpers/h3-client.js';
import { enterPrivateNetns } from '../helpers/netns.js';
import { freeUdpPort, startProxy, type RunningProxy } from '../helpers/proxy.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

// The proxy attaches BPF to its sockets: keep it and its clients in a private network namespace.
enterPrivateNetns();

const H3_MESSAGE_ERROR = 0x10e;

interface Echo {
  method: string;
  url: string;
  headers: Record<string, string>;
  bodyLength: number;
  bodySha256: string;
}

describe('edge forwarding: normalised routing, trusted proxies, authority, GET bodies', () => {
  let up: TestUpstream;
  let proxy: RunningProxy;
  let port: number;
  let v4: H3Client;
  let v6: H3Client;

  beforeAll(async () => {
    up = await startUpstream('app');
    port = await freeUdpPort();
    proxy = await startProxy(`
listeners: ["127.0.0.1:${port}", "[::1]:${port}"]
workers: 1
tls: { state_dir: state }
trusted_proxies: ["127.0.0.0/8"]
routes:
  - path: /healthz
    respond: { status: 403, body: "blocked\\n" }
  - path: /
    upstream: app
upstreams:
  app: { targets: ["${up.origin}"] }
logging: { level: info, access_log: true }
`);
    v4 = await H3Client.connect({ host: '127.0.0.1', port, sni: 'localhost' });
    v6 = await H3Client.connect({ host: '::1', port, sni: 'localhost' });
  });

  afterAll(async () => {
    await v4?.close();
    await v6?.close();
    await proxy?.stop();
    await up?.close();
  });

  const get = (client: H3Client, path: string, headers: Array<[string, string]> = [], authority = 'localhost') =>
    client.request([[':method', 'GET'], [':scheme', 'https'], [':authority', authority], [':path', path], ...headers]);

  it('routes every spelling of /healthz to its route; the upstream never sees them', async () => {
    const before = up.requests;
    for (const path of ['/x/../healthz', '/%68ealthz', '//healthz', '/./healthz', '/%2e%2e/healthz']) {
      const r = await get(v4, path);
      expect(r.status, path).toBe(403);
      expect(r.body.toString(), path).toBe('blocked\n');
    }
    const viaGtls = await gtlsclient('127.0.0.1', port, [`https://localhost:${port}/%68ealthz`]);
    expect(viaGtls.statuses).toEqual([403]);
    expect(up.requests).toBe(before);
  });

  it('answers 400 for a target that cannot be normalised safely, with the reason in the access log', async () => {
    const r = await get(v4, '/api/%2F../healthz');
    expect(r.status).toBe(400);
    const line = await proxy.waitForLog((l) => l.log === 'access' && l.path === '/api/%2F../healthz');
    expect(line).toMatchObject({ status: 400, reason: expect.stringMatching(/^bad request target: encoded "\/" \(%2F\)/) });
  });

  it('percent-encodes octets above 0x7E and forwards the target otherwise as received', async () => {
    const r = await get(v4, '/caf\xc3\xa9/./echo?q=\xe9');
    expect(r.status).toBe(200);
    expect((JSON.parse(r.body.toString()) as Echo).url).toBe('/caf%C3%A9/./echo?q=%E9');
  });

  it('keeps and appends to forwarding fields from a trusted proxy, replaces them from anyone else, drops x-real-ip and early-data', async () => {
    const spoof: Array<[string, string]> = [
      ['x-forwarded-for', '203.0.113.9'],
      ['x-forwarded-proto', 'http'],
      ['forwarded', 'for=203.0.113.9'],
      ['x-real-ip', '203.0.113.9'],
      ['early-data', '1'],
    ];
    const trusted = JSON.parse((await get(v4, '/echo', spoof)).body.toString()) as Echo;
    expect(trusted.headers).toMatchObject({
      'x-forwarded-for': '203.0.113.9, 127.0.0.1',
      'x-forwarded-proto': 'http',
      forwarded: 'for=203.0.113.9, for=127.0.0.1;host=localhost;proto=https',
    });
    const untrusted = JSON.parse((await get(v6, '/echo', spoof)).body.toString()) as Echo;
    expect(untrusted.headers).toMatchObject({
      'x-forwarded-for': '::1',
      'x-forwarded-proto': 'https',
      forwarded: 'for="[::1]";host=localhost;proto=https',
    });
    for (const echo of [trusted, untrusted]) {
      expect(echo.headers).not.toHaveProperty('x-real-ip');
      expect(echo.headers).not.toHaveProperty('early-data');
    }
  });

  it('resets a request whose authority is a comma list (H3_MESSAGE_ERROR); the connection lives on', async () => {
    const before = up.requests;
    const err = await get(v4, '/echo', [], 'localhost,evil.example').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(StreamResetError);
    expect((err as StreamResetError).code).toBe(H3_MESSAGE_ERROR);
    expect(up.requests).toBe(before);
    expect((await get(v4, '/healthz')).status).toBe(403);
  });

  it('forwards the body of a GET sent without content-length', async () => {
    const body = Buffer.from('{"query":"everything"}');
    const r = await v4.request([[':method', 'GET'], [':scheme', 'https'], [':authority', 'localhost'], [':path', '/search/echo']], body);
    expect(r.status).toBe(200);
    const echo = JSON.parse(r.body.toString()) as Echo;
    expect(echo).toMatchObject({ method: 'GET', bodyLength: body.length, bodySha256: createHash('sha256').update(body).digest('hex') });
  });
});
