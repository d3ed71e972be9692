/**
 * http.max_request_body and routes[].max_request_body against the real proxy and real clients:
 * curl over HTTP/1.1 and HTTP/2 (a declared Content-Length, a chunked or unannounced body from
 * stdin), gtlsclient (ngtcp2) over HTTP/3, and our H3 client for a body without Content-Length.
 * Above the limit: 413, the upstream never asked when the length was declared, the refusal counted;
 * at the limit: 200 and the upstream got every byte.
 */
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gtlsclient } from '../helpers/gtlsclient.js';
import { H3_ERROR } from '../../src/proxy/h3/errors.js';
import { waitUntil } from '../helpers/deadline.js';
import { H3Client } from '../helpers/h3-client.js';
import { enterPrivateNetns } from '../helpers/netns.js';
import { PROXY_BIN, freeUdpPort, startProxy, type RunningProxy } from '../helpers/proxy.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

// The proxy attaches BPF to its sockets: keep it and its clients in a private network namespace.
enterPrivateNetns();

const LIMIT = 4096;
let up: TestUpstream;
/** Answers at once (200, a first body line) and keeps reading the request body: the response starts before the body is in. */
let early: http.Server;
let proxy: RunningProxy;
let port: number;
const files: Record<string, string> = {};
const bodies: Record<string, Buffer> = {};

beforeAll(async () => {
  up = await startUpstream('app');
  early = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('started\n');
    req.resume();
    req.on('end', () => res.end('done\n'));
  });
  await new Promise<void>((resolve) => early.listen(0, '127.0.0.1', resolve));
  port = await freeUdpPort();
  proxy = await startProxy(`
listeners: ["127.0.0.1:${port}"]
workers: 1
tls: { state_dir: state }
http: { max_request_body: 4KiB }
routes:
  - { path: /small/, upstream: app, max_request_body: 1KiB }
  - { path: /any/, upstream: app, max_request_body: none }
  - { path: /api/, upstream: app }
  - { path: /early/, upstream: early }
  - { path: /, respond: { status: 200, body: "hello\\n" } }
upstreams:
  app: { targets: ["${up.origin}"] }
  early: { targets: ["http://127.0.0.1:${(early.address() as AddressInfo).port}"] }
logging: { level: info, access_log: true }
`);
  for (const [name, size] of [['at', LIMIT], ['over', LIMIT + 1], ['big', 256 * 1024], ['kib2', 2048]] as const) {
    bodies[name] = randomBytes(size);
    files[name] = path.join(proxy.dir, `${name}.bin`);
    writeFileSync(files[name], bodies[name]);
  }
});

afterAll(async () => {
  await proxy?.stop();
  await up?.close();
  early?.closeAllConnections();
  await new Promise((resolve) => early?.close(resolve));
});

/** `p`'s value, or `late` when it has not settled within `ms` (a stream we expected closed left open). */
function within<T>(p: Promise<T>, ms: number, late: string): Promise<T | string> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<string>((resolve) => (timer = setTimeout(() => resolve(late), ms)))]).finally(() => clearTimeout(timer));
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const url = (p: string): string => `https://127.0.0.1:${port}${p}`;

let curls = 0;
/** After each transfer: its status and how many connections it opened. (`--next` needs it again.) */
const WRITE_OUT = '\\n=%{http_code} %{num_connects}\\n';

/**
 * curl to its end: its response heads, the body, and `status connects` of each transfer. Never
 * rejects; stdin (`input`) may be cut short when the answer comes first.
 */
function curl(args: string[], input?: Buffer): Promise<{ code: number | null; head: string; transfers: string[]; body: string; stderr: string }> {
  const headFile = path.join(proxy.dir, `head-${curls++}.txt`);
  return new Promise((resolve) => {
    const child = spawn('curl', ['-sS', '-k', '--max-time', '20', '-D', headFile, '-w', WRITE_OUT, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('latin1').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    // curl may exit (answered) before it read all of stdin.
    child.stdin.on('error', () => {});
    child.stdin.end(input);
    child.once('close', (code) => {
      const transfers = [...stdout.matchAll(/^=(\d{3} \d+)$/gm)].map((m) => m[1]!);
      let head = '';
      try {
        head = readFileSync(headFile, 'utf8');
      } catch {
        // no response head at all
      }
      resolve({ code, head, transfers, body: stdout.replace(/\n=\d{3} \d+\n/g, ''), stderr: `${stderr}${head}` });
    });
  });
}

/** The refusals `list` shows for the proxy's worker. */
function refusedTooLarge(): number {
  const text = execFileSync(process.execPath, [PROXY_BIN, 'list', '--config', proxy.configFile], { encoding: 'utf8' });
  const m = /refused[^\n]*request body too large=(\d+)/.exec(text);
  return m ? Number(m[1]) : 0;
}

/** The access-log lines for `p`, once `n` of them are there. */
async function accessLines(p: string, n: number): Promise<Array<Record<string, unknown>>> {
  const lines = (): Array<Record<string, unknown>> => proxy.logs.filter((l) => l.log === 'access' && l.path === p);
  await proxy.waitForLog(() => lines().length >= n);
  return lines();
}

describe('HTTP/1.1 (curl)', () => {
  it('a Content-Length above the limit gets 413 and Connection: close; the upstream is never asked', async () => {
    const before = up.requests;
    const refused = refusedTooLarge();
    const r = await curl(['--http1.1', '-H', 'Expect:', '--data-binary', `@${files.over}`, url('/api/h1-declared')]);
    expect(r.transfers, r.stderr).toEqual(['413 1']);
    expect(r.head.toLowerCase()).toContain('connection: close');
    expect(r.body).toBe('request body too large\n');
    expect(up.requests).toBe(before);
    const [line] = await accessLines('/api/h1-declared', 1);
    expect(line).toMatchObject({ protocol: 'h1', status: 413, reason: `request body too large: Content-Length ${LIMIT + 1} above max_request_body (${LIMIT} bytes)` });
    expect(refusedTooLarge()).toBe(refused + 1);
  });

  // curl waits --expect100-timeout for a 100 Continue before it sends a body anyway.
  it('Expect: 100-continue and a declared length above the limit: 413 with no 100 Continue before it (the client sends none of the body); the upstream never asked', async () => {
    const before = up.requests;
    const r = await curl(['--http1.1', '-H', 'Expect: 100-continue', '--expect100-timeout', '15', '--data-binary', `@${files.big}`, url('/api/h1-expect')]);
    expect(r.transfers, r.stderr).toEqual(['413 1']);
    expect(r.head, 'response heads').not.toMatch(/^HTTP\/1\.1 100/m);
    expect(up.requests).toBe(before);
  });

  it('Expect: 100-continue within the limit: 100 Continue once the upstream reads the body, then 200 with every byte', async () => {
    const started = Date.now();
    const r = await curl(['--http1.1', '-H', 'Expect: 100-continue', '--expect100-timeout', '15', '--data-binary', `@${files.at}`, url('/api/echo')]);
    expect(r.transfers, r.stderr).toEqual(['200 1']);
    expect(r.head, 'response heads').toMatch(/^HTTP\/1\.1 100 Continue/m);
    expect(JSON.parse(r.body)).toMatchObject({ bodyLength: LIMIT, bodySha256: sha256(bodies.at!) });
    // Not after curl's 15 s wait: the 100 came.
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('a chunked body growing past the limit gets 413 and the connection closes', async () => {
    const refused = refusedTooLarge();
    const r = await curl(['--http1.1', '-H', 'Transfer-Encoding: chunked', '--data-binary', `@${files.big}`, url('/api/h1-chunked')]);
    expect(r.transfers, r.stderr).toEqual(['413 1']);
    expect(r.head.toLowerCase()).toContain('connection: close');
    const [line] = await accessLines('/api/h1-chunked', 1);
    expect(line).toMatchObject({ protocol: 'h1', status: 413, reason: `request body too large: body above max_request_body (${LIMIT} bytes)` });
    expect(refusedTooLarge()).toBe(refused + 1);
  });

  it('a body of exactly the limit, declared or chunked, reaches the upstream whole', async () => {
    for (const extra of [[], ['-H', 'Transfer-Encoding: chunked']]) {
      const r = await curl(['--http1.1', '-H', 'Expect:', ...extra, '--data-binary', `@${files.at}`, url('/api/echo')]);
      expect(r.transfers, r.stderr).toEqual(['200 1']);
      const echo = JSON.parse(r.body) as { bodyLength: number; bodySha256: string };
      expect(echo).toMatchObject({ bodyLength: LIMIT, bodySha256: sha256(bodies.at!) });
    }
  });

  it('a respond route refuses a declared length above the limit too', async () => {
    const r = await curl(['--http1.1', '-H', 'Expect:', '--data-binary', `@${files.over}`, url('/hello')]);
    expect(r.transfers, r.stderr).toEqual(['413 1']);
    expect((await curl(['--http1.1', '--data-binary', `@${files.at}`, url('/hello')])).transfers).toEqual(['200 1']);
  });
});

describe('HTTP/2 (curl)', () => {
  it('a Content-Length above the limit gets 413 without asking the upstream; the next request on the connection is served', async () => {
    const before = up.requests;
    const refused = refusedTooLarge();
    const r = await curl(['--http2', '--data-binary', `@${files.big}`, url('/api/h2-declared'), '--next', '--http2', '-k', '-w', WRITE_OUT, url('/api/after')]);
    // Two transfers, one connection: the 413 ended only its stream.
    expect(r.transfers, r.stderr).toEqual(['413 1', '200 0']);
    expect(r.body).toContain('request body too large\n');
    expect(up.log.slice(before).map((q) => q.url)).toEqual(['/api/after']);
    const [line] = await accessLines('/api/h2-declared', 1);
    expect(line).toMatchObject({ protocol: 'h2', status: 413 });
    expect(refusedTooLarge()).toBe(refused + 1);
  });

  it('node:http2: after the 413 the stream is reset with NO_ERROR, so a client still holding its body open stops', async () => {
    const client = http2.connect(url('/'), { rejectUnauthorized: false });
    try {
      const req = client.request({ ':method': 'POST', ':path': '/api/h2-open', 'content-length': String(bodies.big!.length) });
      // Some of the declared body, the stream left open: only our RST_STREAM can close it.
      req.write(bodies.big!.subarray(0, 1000));
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('error', () => {});
      const status = new Promise<number>((resolve) => req.once('response', (h) => resolve(Number(h[':status']))));
      // Without our reset the stream would stay open (its response complete, its body no longer timed).
      const closed = within(new Promise<number | undefined>((resolve) => req.once('close', () => resolve(req.rstCode))), 10_000, 'still open after 10 s');
      expect(await status).toBe(413);
      expect(await closed).toBe(http2.constants.NGHTTP2_NO_ERROR);
      expect(Buffer.concat(chunks).toString()).toBe('request body too large\n');
    } finally {
      client.close();
    }
  });

  it('a body without Content-Length (stdin) growing past the limit gets 413', async () => {
    const refused = refusedTooLarge();
    const r = await curl(['--http2', '-X', 'POST', '-T', '-', url('/api/h2-stream')], bodies.big);
    expect(r.transfers, r.stderr).toEqual(['413 1']);
    const [line] = await accessLines('/api/h2-stream', 1);
    expect(line).toMatchObject({ protocol: 'h2', status: 413, reason: `request body too large: body above max_request_body (${LIMIT} bytes)` });
    expect(refusedTooLarge()).toBe(refused + 1);
  });

  it('a body of exactly the limit, declared or from stdin, reaches the upstream whole', async () => {
    for (const args of [['--data-binary', `@${files.at}`], ['-X', 'POST', '-T', '-']]) {
      const r = await curl(['--http2', ...args, url('/api/echo')], bodies.at);
      expect(r.transfers, r.stderr).toEqual(['200 1']);
      expect(JSON.parse(r.body)).toMatchObject({ bodyLength: LIMIT, bodySha256: sha256(bodies.at!) });
    }
  });
});

describe('HTTP/3', () => {
  it('gtlsclient: a Content-Length above the limit gets 413, the upstream never asked; at the limit 200 with every byte', async () => {
    const before = up.requests;
    const refused = refusedTooLarge();
    const over = await gtlsclient('127.0.0.1', port, [`https://localhost:${port}/api/h3-declared`], { method: 'POST', dataFile: files.big });
    expect(over.statuses, over.output).toEqual([413]);
    expect(up.requests).toBe(before);
    const [line] = await accessLines('/api/h3-declared', 1);
    expect(line).toMatchObject({ protocol: 'h3', status: 413 });
    expect(refusedTooLarge()).toBe(refused + 1);

    const at = await gtlsclient('127.0.0.1', port, [`https://localhost:${port}/api/echo`], { method: 'POST', dataFile: files.at });
    expect(at.statuses, at.output).toEqual([200]);
    expect(JSON.parse(at.bodies.get('echo')!.toString())).toMatchObject({ bodyLength: LIMIT, bodySha256: sha256(bodies.at!) });
  });

  it('after a 413 to a declared length the server sends STOP_SENDING H3_NO_ERROR on the stream the client still holds open', async () => {
    const client = await H3Client.connect({ host: '127.0.0.1', port, sni: 'localhost' });
    try {
      const fields: Array<[string, string]> = [[':method', 'POST'], [':scheme', 'https'], [':authority', 'localhost'], [':path', '/api/h3-open'], ['content-length', String(bodies.big!.length)]];
      // The whole body, more than the stream's flow-control window: bytes are still queued when the 413 comes.
      const { streamId, response } = client.openRequest(fields, bodies.big!);
      expect(await within(response.then((r) => r.status), 10_000, 'no response in 10 s')).toBe(413);
      let code: number | undefined;
      await waitUntil('STOP_SENDING on the request stream', () => (code = client.stopSendingCode(streamId)) !== undefined, { timeoutMs: 5000 });
      expect(code).toBe(H3_ERROR.H3_NO_ERROR);
    } finally {
      await client.close();
    }
  });

  it('a body without Content-Length growing past the limit gets 413; the connection serves the next request', async () => {
    const client = await H3Client.connect({ host: '127.0.0.1', port, sni: 'localhost' });
    try {
      const post = (p: string, body: Buffer) => client.request([[':method', 'POST'], [':scheme', 'https'], [':authority', 'localhost'], [':path', p]], body);
      const over = await post('/api/h3-stream', bodies.big!);
      expect(over.status).toBe(413);
      const [line] = await accessLines('/api/h3-stream', 1);
      expect(line).toMatchObject({ protocol: 'h3', status: 413, reason: `request body too large: body above max_request_body (${LIMIT} bytes)` });
      const at = await post('/api/echo', bodies.at!);
      expect(at.status).toBe(200);
      expect(JSON.parse(at.body.toString())).toMatchObject({ bodyLength: LIMIT, bodySha256: sha256(bodies.at!) });
    } finally {
      await client.close();
    }
  });
});

describe('a route\'s own limit wins over http.max_request_body', () => {
  it('1 KiB on /small/, none on /any/', async () => {
    expect((await curl(['--http2', '--data-binary', `@${files.kib2}`, url('/small/echo')])).transfers).toEqual(['413 1']);
    const any = await curl(['--http2', '--data-binary', `@${files.big}`, url('/any/echo')]);
    expect(any.transfers, any.stderr).toEqual(['200 1']);
    expect(JSON.parse(any.body)).toMatchObject({ bodyLength: bodies.big!.length, bodySha256: sha256(bodies.big!) });
    const h3 = await gtlsclient('127.0.0.1', port, [`https://localhost:${port}/small/echo`], { method: 'POST', dataFile: files.kib2 });
    expect(h3.statuses, h3.output).toEqual([413]);
  });
});

describe('a body growing past the limit once the response has started', () => {
  it('HTTP/2: the stream is reset (CANCEL), the response cut; logged with the response status and the reason', async () => {
    const client = http2.connect(url('/'), { rejectUnauthorized: false });
    try {
      const req = client.request({ ':method': 'POST', ':path': '/early/h2' });
      req.on('error', () => {});
      req.write(bodies.kib2!);
      const closed = new Promise<number | undefined>((resolve) => req.once('close', () => resolve(req.rstCode)));
      const head = await new Promise<number>((resolve) => req.once('response', (h) => resolve(Number(h[':status']))));
      expect(head).toBe(200);
      req.write(bodies.big!);
      expect(await within(closed, 10_000, 'still open after 10 s')).toBe(http2.constants.NGHTTP2_CANCEL);
      const [line] = await accessLines('/early/h2', 1);
      expect(line).toMatchObject({ protocol: 'h2', status: 200, reason: `request body too large: body above max_request_body (${LIMIT} bytes)` });
    } finally {
      client.close();
    }
  });

  it('HTTP/1.1 (chunked): the connection is closed, the response incomplete', async () => {
    const req = https.request(url('/early/h1'), { method: 'POST', rejectUnauthorized: false, headers: { 'transfer-encoding': 'chunked' } });
    req.on('error', () => {});
    req.write(bodies.kib2!);
    const res = await new Promise<http.IncomingMessage>((resolve) => req.once('response', resolve));
    expect(res.statusCode).toBe(200);
    const ended = new Promise<string>((resolve) => {
      res.on('error', () => {});
      res.once('end', () => resolve('complete'));
      res.once('close', () => resolve(res.complete ? 'complete' : 'cut'));
      res.resume();
    });
    req.write(bodies.big!);
    expect(await within(ended, 10_000, 'still open after 10 s')).toBe('cut');
    const [line] = await accessLines('/early/h1', 1);
    expect(line).toMatchObject({ protocol: 'h1', status: 200, reason: `request body too large: body above max_request_body (${LIMIT} bytes)` });
  });
});
