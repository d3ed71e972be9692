/**
 * The TCP edge under abuse, in this process on real sockets: HTTP/1.1 smuggling attempts, slow and
 * oversized headers, HTTP/2 rapid reset, a CONTINUATION flood, too many connections. Each gets
 * its bounded answer (400, 408, 431, GOAWAY, a closed connection), is counted, and the worker
 * goes on serving the next client.
 */
import http2 from 'node:http2';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TLSSocket } from 'node:tls';
import { waitUntil } from '../helpers/deadline.js';
import { connectTls, FRAME, H2_PREFACE, h2Frame, hpackGetRoot, hpackLiteral, parseFrames, rawH1, statusOf, type ParsedFrame } from '../helpers/raw-tls.js';
import { run, startTcpEdge, type TcpEdge } from '../helpers/tcp-edge.js';
import { startUpstream, type TestUpstream } from '../helpers/upstream.js';

let up: TestUpstream;
let edge: TcpEdge;

beforeAll(async () => {
  up = await startUpstream('a');
  edge = await startTcpEdge({ upstream: up.origin, http: ['max_header_bytes: 16KiB', 'h2_max_client_resets: 50', 'max_tcp_connections: 40', 'request_body_timeout: 1s'] });
});

/** The listener's Alt-Svc, which every response carries, the protocol layer's own answers included. */
function altSvc(): string {
  return `h3=":${edge.port}"; ma=86400`;
}

/** The status and headers of the first response a node:http2 request gets (or how its stream closed). */
function h2Answer(client: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: Buffer | 'open'): Promise<{ status: number; headers: http2.IncomingHttpHeaders } | string> {
  return new Promise((resolve) => {
    const req = client.request(headers, { endStream: body === undefined });
    req.on('response', (h) => resolve({ status: Number(h[':status']), headers: h }));
    req.on('error', () => {});
    req.on('close', () => resolve(`reset ${req.rstCode}`));
    req.resume();
    if (Buffer.isBuffer(body)) req.end(body);
    else if (body === 'open') req.write('abc');
  });
}

afterAll(async () => {
  await edge?.close();
  await up?.close();
});

async function curlStatus(version: '--http1.1' | '--http2', pathname = '/'): Promise<string> {
  const r = await run('curl', ['-sS', '-k', version, '-o', '/dev/null', '-w', '%{http_code}', `https://127.0.0.1:${edge.port}${pathname}`]);
  return r.stdout;
}

describe('HTTP/1.1 smuggling attempts over raw TLS', () => {
  const cases: Array<[string, string, number]> = [
    ['Content-Length with Transfer-Encoding', 'POST /up/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n', 400],
    ['two different Content-Length', 'POST /up/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc', 400],
    ['two equal Content-Length', 'POST /up/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc', 400],
    ['a bad chunk size', 'POST /up/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3x\r\nabc\r\n0\r\n\r\n', 400],
    ['a chunk size with a sign', 'POST /up/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n', 400],
    ['obs-fold', 'GET /up/echo HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n', 400],
    ['a control character in a value', 'GET /up/echo HTTP/1.1\r\nHost: a\r\nX-A: b\x01c\r\n\r\n', 400],
    ['a space in a field name', 'GET /up/echo HTTP/1.1\r\nHost: a\r\nX A: b\r\n\r\n', 400],
    ['whitespace before the colon', 'GET /up/echo HTTP/1.1\r\nHost : a\r\n\r\n', 400],
    ['a bare LF line ending', 'GET /up/echo HTTP/1.1\nHost: a\n\n', 400],
    // llhttp refuses it after the header section: our 501 for the coding comes first (RFC 9112 §6.1).
    ['Transfer-Encoding not ending in chunked', 'POST /up/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nabc', 501],
    ['Transfer-Encoding gzip, chunked', 'POST /up/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n', 501],
    ['no Host', 'GET /up/echo HTTP/1.1\r\n\r\n', 400],
    ['two Hosts', 'GET /up/echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 400],
    ['CONNECT', 'CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n', 501],
  ];
  for (const [name, payload, status] of cases) {
    it(`${name} → ${status} and the connection closed; the worker serves the next client`, async () => {
      const before = up.requests;
      const r = await rawH1(edge.port, [payload]);
      expect(statusOf(r.response), r.response).toBe(status);
      expect(r.response.toLowerCase()).toContain('connection: close');
      expect(r.response).toContain(`\r\nalt-svc: ${altSvc()}\r\n`);
      expect(r.closed).toBe(true);
      // Nothing of it reached the upstream (no smuggled second request either).
      expect(up.requests).toBe(before);
      expect(await curlStatus('--http1.1')).toBe('200');
    });
  }

  it('counts the malformed requests', () => {
    expect(edge.server.tcpCounters().malformed).toBeGreaterThanOrEqual(13);
  });
});

describe('slow and oversized headers', () => {
  it('headers trickled byte by byte are cut at request_header_timeout (1 s) with 408', async () => {
    const head = 'GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ' + 'a'.repeat(200);
    const refusedBefore = edge.server.refusals.counts['request header timeout'] ?? 0;
    const r = await rawH1(edge.port, [...head].map((c) => c), { gapMs: 20, timeoutMs: 8000 });
    expect(statusOf(r.response)).toBe(408);
    expect(r.response).toContain(`\r\nalt-svc: ${altSvc()}\r\n`);
    expect(r.closed).toBe(true);
    // The clock is not extended by the arriving bytes: cut at about 1 s (TLS setup excluded).
    expect(r.ms).toBeGreaterThanOrEqual(900);
    expect(r.ms).toBeLessThan(3000);
    expect(edge.server.refusals.counts['request header timeout']).toBe(refusedBefore + 1);
    expect(await curlStatus('--http1.1')).toBe('200');
  });

  it('an idle new connection is closed after request_header_timeout, without a response', async () => {
    const r = await rawH1(edge.port, [], { timeoutMs: 5000 });
    expect(r.closed).toBe(true);
    expect(r.response).toBe('');
    expect(r.ms).toBeGreaterThanOrEqual(900);
  });

  it('HTTP/1.1: a header section above max_header_bytes (16 KiB) gets 431', async () => {
    const r = await rawH1(edge.port, [`GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'a'.repeat(20 * 1024)}\r\n\r\n`]);
    expect(statusOf(r.response)).toBe(431);
    expect(r.response).toContain(`\r\nalt-svc: ${altSvc()}\r\n`);
    expect(r.closed).toBe(true);
    const ok = await rawH1(edge.port, [`GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'a'.repeat(8 * 1024)}\r\nConnection: close\r\n\r\n`]);
    expect(statusOf(ok.response)).toBe(200);
  });

  it('HTTP/1.1: many small fields are measured as over HTTP/2 and HTTP/3 (name + value + 32 each): 200 pass whole to the upstream, 450 and 2,000 get 431, counted, though Node reads only ~3 and ~13 KiB of them', async () => {
    const refusedBefore = edge.server.refusals.counts['header section too large'] ?? 0;
    const get = (n: number): string => `GET /up/echo HTTP/1.1\r\nHost: a\r\n${Array.from({ length: n }, (_, i) => `x-f${i}: v\r\n`).join('')}Connection: close\r\n\r\n`;
    const ok = await rawH1(edge.port, [get(200)]);
    expect(statusOf(ok.response)).toBe(200);
    expect(Object.keys(up.log.at(-1)!.headers).filter((k) => /^x-f\d+$/.test(k))).toHaveLength(200);
    const over = await rawH1(edge.port, [get(450)]);
    expect(statusOf(over.response)).toBe(431);
    expect(over.response).toContain(`\r\nalt-svc: ${altSvc()}\r\n`);
    expect(over.closed).toBe(true);
    // 2,000 fields: Node keeps no more than 512 (16 KiB / 32) of them, already above the size, so
    // the request is refused rather than forwarded without the rest (Node's default cut at 1,000).
    const requestsBefore = up.requests;
    expect(statusOf((await rawH1(edge.port, [get(2000)])).response)).toBe(431);
    expect(up.requests).toBe(requestsBefore);
    expect(edge.server.refusals.counts['header section too large']).toBe(refusedBefore + 2);
  });

  it('HTTP/2: a header list above max_header_bytes gets 431, counted, the connection goes on; once the client acknowledged our SETTINGS nghttp2 resets it first (ENHANCE_YOUR_CALM) and Node reports nothing of it: not counted', async () => {
    const refusedBefore = edge.server.refusals.counts['header section too large'] ?? 0;
    const client = http2.connect(`https://127.0.0.1:${edge.port}`, { rejectUnauthorized: false, maxSendHeaderBlockLength: 1024 * 1024 });
    client.on('error', () => {});
    try {
      // Sent with the preface, before the client has read (and so acknowledged) our SETTINGS.
      const outcome = await h2Answer(client, { ':path': '/', 'x-big': 'a'.repeat(40 * 1024) });
      expect(outcome).toMatchObject({ status: 431, headers: { 'alt-svc': altSvc() } });
      expect(edge.server.refusals.counts['header section too large']).toBe(refusedBefore + 1);
      const status = await new Promise<number>((resolve, reject) => {
        const req = client.request({ ':path': '/' });
        req.on('response', (h) => resolve(Number(h[':status'])));
        req.on('error', reject);
        req.resume();
        req.end();
      });
      expect(status).toBe(200);
      // By now the acknowledgement has arrived (it precedes the request just served).
      expect(await h2Answer(client, { ':path': '/', 'x-big': 'a'.repeat(40 * 1024) })).toBe(`reset ${http2.constants.NGHTTP2_ENHANCE_YOUR_CALM}`);
      expect(edge.server.refusals.counts['header section too large']).toBe(refusedBefore + 1);
    } finally {
      client.close();
    }
  });

  it('HTTP/2 over raw frames: the same header list, at the limit and a byte above, before and after our SETTINGS are acknowledged', async () => {
    const { NGHTTP2_ENHANCE_YOUR_CALM } = http2.constants;
    const refusedBefore = edge.server.refusals.counts['header section too large'] ?? 0;
    const h2 = await rawH2();
    try {
      /** GET / whose header list is `size` bytes (RFC 9113 §6.5.2), in HEADERS + CONTINUATION: "headers" (an answer) or "reset CODE". */
      const get = async (stream: number, size: number): Promise<string> => {
        const pseudo = Buffer.concat([Buffer.from([0x82 /* GET */, 0x87 /* https */, 0x84 /* :path / */]), hpackLiteral(':authority', 'a.test')]);
        const pseudoSize = 3 + 7 + 32 + (7 + 5 + 32) + (5 + 1 + 32) + (10 + 6 + 32);
        const block = Buffer.concat([pseudo, hpackLiteral('x-big', 'a'.repeat(size - pseudoSize - 'x-big'.length - 32))]);
        const frames: Buffer[] = [];
        for (let at = 0; at < block.length; at += 16384) {
          const last = at + 16384 >= block.length ? 0x4 /* END_HEADERS */ : 0;
          frames.push(h2Frame(at === 0 ? FRAME.HEADERS : FRAME.CONTINUATION, (at === 0 ? 0x1 /* END_STREAM */ : 0) | last, stream, block.subarray(at, at + 16384)));
        }
        h2.socket.write(Buffer.concat(frames));
        const answer = await frameOn(h2, (f) => f.streamId === stream && (f.type === FRAME.HEADERS || f.type === FRAME.RST_STREAM));
        return answer.type === FRAME.RST_STREAM ? `reset ${answer.payload.readUInt32BE(0)}` : 'headers';
      };
      const tooLarge = (): number => (edge.server.refusals.counts['header section too large'] ?? 0) - refusedBefore;
      expect(await get(1, 16 * 1024)).toBe('headers');
      expect(await get(3, 16 * 1024 + 1)).toBe('headers'); // our 431
      expect(tooLarge()).toBe(1);
      // Acknowledge our SETTINGS; a PING answered after it says the proxy has read the acknowledgement.
      await frameOn(h2, (f) => f.type === FRAME.SETTINGS && (f.flags & 0x1) === 0);
      h2.socket.write(Buffer.concat([h2Frame(FRAME.SETTINGS, 0x1 /* ACK */, 0), h2Frame(FRAME.PING, 0, 0, Buffer.from('afterack'))]));
      await frameOn(h2, (f) => f.type === FRAME.PING && (f.flags & 0x1) === 1 && f.payload.toString() === 'afterack');
      expect(await get(5, 16 * 1024)).toBe('headers');
      expect(await get(7, 16 * 1024 + 1)).toBe(`reset ${NGHTTP2_ENHANCE_YOUR_CALM}`);
      expect(tooLarge()).toBe(1);
      expect(await get(9, 16 * 1024)).toBe('headers');
    } finally {
      h2.socket.destroy();
    }
  });
});

describe('request trailers above max_header_bytes (16 KiB)', () => {
  const { NGHTTP2_ENHANCE_YOUR_CALM } = http2.constants;
  const tooLarge = (): number => edge.server.refusals.counts['header section too large'] ?? 0;
  /** An HPACK trailer section of one field whose HTTP/2 size (name + value + 32, RFC 9113 §6.5.2) is `size`. */
  const trailerBlock = (size: number): Buffer => hpackLiteral('x-t', 'a'.repeat(size - 'x-t'.length - 32));

  it('HTTP/2, from a client that never acknowledges our SETTINGS (nghttp2 applies none then): the limit passes, a byte more resets the stream ENHANCE_YOUR_CALM, counted as a header section too large; the connection goes on', async () => {
    const h2 = await rawH2();
    const refusedBefore = tooLarge();
    try {
      /** POST /up/echo with body "abc" and `trailers` (HEADERS + CONTINUATION frames of ≤ 16 KiB): "status 200" or "reset CODE". */
      const post = async (stream: number, trailers: Buffer): Promise<string> => {
        const frames = [
          h2Frame(FRAME.HEADERS, 0x4 /* END_HEADERS */, stream, Buffer.concat([Buffer.from([0x83 /* POST */, 0x87 /* https */]), hpackLiteral(':path', '/up/echo'), hpackLiteral(':authority', 'a.test')])),
          h2Frame(FRAME.DATA, 0, stream, Buffer.from('abc')),
        ];
        for (let at = 0; at < trailers.length; at += 16384) {
          const last = at + 16384 >= trailers.length ? 0x4 /* END_HEADERS */ : 0;
          frames.push(h2Frame(at === 0 ? FRAME.HEADERS : FRAME.CONTINUATION, (at === 0 ? 0x1 /* END_STREAM */ : 0) | last, stream, trailers.subarray(at, at + 16384)));
        }
        h2.socket.write(Buffer.concat(frames));
        // The upstream answers /echo once the body has ended: HEADERS (":status 200" is static 0x88), or our reset.
        const answer = await frameOn(h2, (f) => f.streamId === stream && (f.type === FRAME.HEADERS || f.type === FRAME.RST_STREAM));
        return answer.type === FRAME.RST_STREAM ? `reset ${answer.payload.readUInt32BE(0)}` : answer.payload[0] === 0x88 ? 'status 200' : `headers 0x${answer.payload.toString('hex', 0, 4)}`;
      };
      expect(await post(1, trailerBlock(16 * 1024))).toBe('status 200');
      expect(await post(3, trailerBlock(16 * 1024 + 1))).toBe(`reset ${NGHTTP2_ENHANCE_YOUR_CALM}`);
      expect(await post(5, trailerBlock(60 * 1024))).toBe(`reset ${NGHTTP2_ENHANCE_YOUR_CALM}`);
      // Many small fields count as much as one large one.
      const many = Buffer.concat(Array.from({ length: 100 }, (_, i) => hpackLiteral(`x-t${String(i).padStart(3, '0')}`, 'v'.repeat(140))));
      expect(await post(7, many)).toBe(`reset ${NGHTTP2_ENHANCE_YOUR_CALM}`);
      expect(await post(9, hpackLiteral('x-t', 'small'))).toBe('status 200');
      expect(h2.frames().some((f) => f.type === FRAME.GOAWAY)).toBe(false);
      expect(tooLarge()).toBe(refusedBefore + 3);
    } finally {
      h2.socket.destroy();
    }
  });

  it('HTTP/2, once the client acknowledged our SETTINGS: nghttp2 resets the same sizes itself, many small fields alike (no count of fields applies), counted as ours are and not as client resets', async () => {
    const refusedBefore = tooLarge();
    const client = http2.connect(`https://127.0.0.1:${edge.port}`, { rejectUnauthorized: false, maxSendHeaderBlockLength: 1024 * 1024 });
    client.on('error', () => {});
    /** A POST of "abc" ending in `trailers`: its status, or how its stream closed. */
    const post = (trailers: http2.OutgoingHttpHeaders): Promise<string> =>
      new Promise((resolve) => {
        const req = client.request({ ':method': 'POST', ':path': '/up/echo' }, { waitForTrailers: true });
        req.on('response', (h) => resolve(`status ${h[':status']}`));
        req.on('wantTrailers', () => req.sendTrailers(trailers));
        req.on('error', () => {});
        req.on('close', () => resolve(`reset ${req.rstCode}`));
        req.resume();
        req.end('abc');
      });
    const sized = (size: number): http2.OutgoingHttpHeaders => ({ 'x-t': 'a'.repeat(size - 'x-t'.length - 32) });
    try {
      // The client acknowledges our SETTINGS before anything it sends after their arrival: a first exchange orders it.
      expect(await post({ 'x-t': 'small' })).toBe('status 200');
      expect(await post(sized(16 * 1024))).toBe('status 200');
      expect(await post(sized(16 * 1024 + 1))).toBe(`reset ${NGHTTP2_ENHANCE_YOUR_CALM}`);
      // The number of fields does not matter, only their size: 200 small ones (~7.6 KiB) pass
      // (Node's own cap of 128 reset them), 450 (~17.5 KiB) are above the size.
      const fields = (n: number): http2.OutgoingHttpHeaders => Object.fromEntries(Array.from({ length: n }, (_, i) => [`x-t${i}`, 'v']));
      expect(await post(fields(200))).toBe('status 200');
      expect(await post(fields(450))).toBe(`reset ${NGHTTP2_ENHANCE_YOUR_CALM}`);
      expect(await post({ 'x-t': 'small' })).toBe('status 200');
      expect(tooLarge()).toBe(refusedBefore + 2);
      // More of them than h2_max_client_resets (50): not a rapid reset, the connection serves on.
      // In a burst Node's reset is often INTERNAL_ERROR instead (nghttp2's, for the failed callback).
      const cutoffsBefore = edge.server.tcpCounters().rapidResetCutoffs;
      const many = await Promise.all(Array.from({ length: 60 }, () => post(sized(16 * 1024 + 1))));
      for (const answer of many) expect([`reset ${NGHTTP2_ENHANCE_YOUR_CALM}`, `reset ${http2.constants.NGHTTP2_INTERNAL_ERROR}`]).toContain(answer);
      expect(await post({ 'x-t': 'small' })).toBe('status 200');
      expect(edge.server.tcpCounters().rapidResetCutoffs).toBe(cutoffsBefore);
      expect(tooLarge()).toBe(refusedBefore + 62);
    } finally {
      client.close();
    }
  });

  it("HTTP/1.1: Node's parser bounds a chunked body's trailer section by max_header_bytes too: 431, closed, counted the same", async () => {
    const refusedBefore = tooLarge();
    const request = (trailer: number): string => `POST /up/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\nX-T: ${'a'.repeat(trailer)}\r\n\r\n`;
    expect(statusOf((await rawH1(edge.port, [request(8 * 1024)])).response)).toBe(200);
    const over = await rawH1(edge.port, [request(20 * 1024)]);
    expect(statusOf(over.response)).toBe(431);
    expect(over.closed).toBe(true);
    expect(tooLarge()).toBe(refusedBefore + 1);
  });

  it('HTTP/1.1: many small trailer fields, by the measure of HTTP/2 and HTTP/3 (name + value + 32 each): 200 fields pass, 450 (above 16 KiB, though Node reads only ~3 KiB of names and values) get 431, counted', async () => {
    const refusedBefore = tooLarge();
    const request = (n: number): string =>
      `POST /up/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n${Array.from({ length: n }, (_, i) => `x-t${i}: v\r\n`).join('')}\r\n`;
    expect(statusOf((await rawH1(edge.port, [request(200)])).response)).toBe(200);
    const over = await rawH1(edge.port, [request(450)]);
    expect(statusOf(over.response)).toBe(431);
    expect(over.response).toContain('request header fields too large');
    expect(tooLarge()).toBe(refusedBefore + 1);
  });
});

/** The first frame `match` accepts, as soon as it arrives (5 s at most). */
function frameOn(h2: { socket: TLSSocket; frames: () => ParsedFrame[] }, match: (f: ParsedFrame) => boolean): Promise<ParsedFrame> {
  return new Promise((resolve, reject) => {
    const check = (): void => {
      const found = h2.frames().find(match);
      if (found === undefined) return;
      done();
      resolve(found);
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error('the awaited HTTP/2 frame did not arrive within 5 s'));
    }, 5000);
    const done = (): void => {
      clearTimeout(timer);
      h2.socket.off('data', check);
    };
    h2.socket.on('data', check);
    check();
  });
}

describe('HTTP/1.1 clients that vanish while the proxy answers', () => {
  it('a socket destroyed as its response arrives, between requests, mid-body, or right after pipelining: no error, nothing left open, the next curl is served', async () => {
    const errorsBefore = edge.logs.filter((l) => (l.level as number) >= 50).length;
    const get = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: a.test\r\n\r\n`;
    /** A raw HTTP/1.1 client: `first` sent at once; `then` runs on the first bytes of the answer. */
    const client = async (first: string, then: (socket: TLSSocket) => void): Promise<void> => {
      const socket = await connectTls(edge.port, ['http/1.1']);
      socket.on('error', () => {});
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      socket.once('data', () => then(socket));
      socket.write(first);
      await closed;
    };
    for (let i = 0; i < 5; i++) {
      await Promise.all([
        // As the response arrives, with more requests pipelined behind it (their answers go to a closed socket).
        client(get('/up/slow?ms=20') + get('/up/echo').repeat(5) + get('/').repeat(5), (s) => s.destroy()),
        // Between requests: the next request and the client's close arrive together.
        client(get('/'), (s) => s.end(get('/up/slow?ms=20') + get('/'))),
        client(get('/'), (s) => {
          s.write(get('/up/echo'));
          s.destroy();
        }),
        // In the middle of a large response body streaming from the upstream.
        client(get(`/up/bytes?n=${8 * 1024 * 1024}`) + get('/'), (s) => s.destroy()),
        // The upstream cuts its response while the client goes away.
        client(get('/up/reset') + get('/'), (s) => s.destroy()),
      ]);
      // Requests pipelined, then the connection destroyed before any answer.
      const gone = await connectTls(edge.port, ['http/1.1']);
      gone.on('error', () => {});
      gone.write(get('/up/slow?ms=20') + get('/up/echo').repeat(10));
      gone.destroy();
    }
    // Every exchange ends and every connection is let go (nothing tracked for a closed socket).
    await waitUntil('no HTTP/1.1 connection or request left', () => edge.server.tcpCounters().h1Connections === 0 && edge.server.activeRequests === 0, {
      timeoutMs: 5000,
      detail: () => `${edge.server.tcpCounters().h1Connections} connections, ${edge.server.activeRequests} requests`,
    });
    expect(edge.logs.filter((l) => (l.level as number) >= 50).slice(errorsBefore)).toEqual([]);
    expect(await curlStatus('--http1.1', '/up/echo')).toBe('200');
  });
});

describe("the protocol layer's own answers carry the listener's Alt-Svc", () => {
  it('HTTP/1.1: 408 for a request body that stops arriving (request_body_timeout 1 s)', async () => {
    const r = await rawH1(edge.port, ['POST /up/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc'], { timeoutMs: 5000 });
    expect(statusOf(r.response), r.response).toBe(408);
    expect(r.response).toContain(`\r\nalt-svc: ${altSvc()}\r\n`);
  });

  it('HTTP/2: 501 for CONNECT, 408 for a request body that stops arriving', async () => {
    const client = http2.connect(`https://127.0.0.1:${edge.port}`, { rejectUnauthorized: false });
    client.on('error', () => {});
    try {
      const connect = await h2Answer(client, { ':method': 'CONNECT', ':authority': 'a.test:443' }, 'open');
      expect(connect).toMatchObject({ status: 501, headers: { 'alt-svc': altSvc() } });
      const slow = await h2Answer(client, { ':method': 'POST', ':path': '/up/echo', 'content-length': '10' }, 'open');
      expect(slow).toMatchObject({ status: 408, headers: { 'alt-svc': altSvc() } });
    } finally {
      client.close();
    }
  });
});

describe('HTTP/2 rapid reset (CVE-2023-44487)', () => {
  // The codes the proxy's own refusals use count too when the client sends them (on a stream it
  // has not ended, as an unfinished upload): a refusal is told apart by who closed the stream.
  it.each([
    ['GET', 'CANCEL', http2.constants.NGHTTP2_CANCEL],
    ['POST with its body open', 'ENHANCE_YOUR_CALM', http2.constants.NGHTTP2_ENHANCE_YOUR_CALM],
    ['POST with its body open', 'INTERNAL_ERROR', http2.constants.NGHTTP2_INTERNAL_ERROR],
  ] as const)('a client resetting streams (%s, %s) in a loop gets GOAWAY ENHANCE_YOUR_CALM and is counted; another client still gets 200', async (request, _name, code) => {
    const refusedBefore = edge.server.refusals.counts['header section too large'] ?? 0;
    const cutoffsBefore = edge.server.tcpCounters().rapidResetCutoffs;
    const upstreamBefore = up.requests;
    const client = http2.connect(`https://127.0.0.1:${edge.port}`, { rejectUnauthorized: false });
    client.on('error', () => {});
    let opened = 0;
    let lastStreamId = -1;
    const goaway = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no GOAWAY after ${opened} resets`)), 15_000);
      client.on('goaway', (code, last) => {
        clearTimeout(timer);
        lastStreamId = last;
        resolve(code);
      });
      const loop = (): void => {
        if (client.closed || client.destroyed) return;
        // A request the upstream takes its time over, cancelled before any answer.
        for (let i = 0; i < 10; i++) {
          const req = request === 'GET' ? client.request({ ':path': '/up/slow?ms=5000' }) : client.request({ ':method': 'POST', ':path': '/up/slow?ms=5000' }, { endStream: false });
          req.on('error', () => {});
          req.close(code);
          opened++;
        }
        if (opened < 5000) setTimeout(loop, 1);
      };
      client.once('connect', loop);
    });
    client.destroy();
    expect(goaway).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    // It names the last stream we took (a client stream id: odd, among those opened), not 0.
    expect(lastStreamId % 2).toBe(1);
    expect(lastStreamId).toBeLessThanOrEqual(2 * opened - 1);
    expect(edge.server.tcpCounters().rapidResetCutoffs).toBe(cutoffsBefore + 1);
    // Cut off after about h2_max_client_resets (50) streams, not nghttp2's 1000.
    expect(opened).toBeLessThan(1000);
    expect(up.requests - upstreamBefore).toBeLessThanOrEqual(60);
    expect(edge.server.refusals.counts['header section too large'] ?? 0).toBe(refusedBefore);
    expect(await curlStatus('--http2')).toBe('200');
  });
});

describe('CONTINUATION flood', () => {
  it('an endless header block ends the connection with a GOAWAY error, memory stays bounded, the worker serves on', async () => {
    const socket = await connectTls(edge.port, ['h2']);
    expect(socket.alpnProtocol).toBe('h2');
    const received: Buffer[] = [];
    socket.on('data', (d: Buffer) => received.push(d));
    socket.on('error', () => {});
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    const heapBefore = process.memoryUsage().heapUsed;
    socket.write(Buffer.concat([H2_PREFACE, h2Frame(FRAME.SETTINGS, 0, 0)]));
    socket.write(h2Frame(FRAME.HEADERS, 0x1 /* END_STREAM, no END_HEADERS */, 1, hpackGetRoot('a.test')));
    const fragment = hpackLiteral('x-flood', 'a'.repeat(1000));
    let sent = 0;
    // Up to ~20 MB of CONTINUATION frames, until the server closes the connection.
    while (sent < 20_000 && !socket.destroyed) {
      const ok = socket.write(h2Frame(FRAME.CONTINUATION, 0, 1, fragment));
      sent++;
      if (!ok) await new Promise<void>((resolve) => {
        socket.once('drain', resolve);
        socket.once('close', resolve);
      });
    }
    await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('connection still open')), 10_000))]);
    const frames = parseFrames(Buffer.concat(received));
    const goaway = frames.find((f) => f.type === FRAME.GOAWAY);
    expect(goaway, `frames: ${frames.map((f) => f.type).join(',')}`).toBeDefined();
    expect(goaway!.payload.readUInt32BE(4)).not.toBe(0);
    expect(sent).toBeLessThan(20_000);
    expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(64 * 1024 * 1024);
    expect(await curlStatus('--http2')).toBe('200');
  });
});

/**
 * A raw HTTP/2 client over TLS that answers the server's PINGs (as every HTTP/2 client does,
 * except inside a header block, where it can send nothing but CONTINUATION).
 */
async function rawH2(): Promise<{ socket: TLSSocket; frames: () => ParsedFrame[]; closed: Promise<number>; answerPings: (on: boolean) => void }> {
  const socket = await connectTls(edge.port, ['h2']);
  let received = Buffer.alloc(0);
  let answered = 0;
  let answering = true;
  socket.on('data', (d: Buffer) => {
    received = Buffer.concat([received, d]);
    const pings = parseFrames(received).filter((f) => f.type === FRAME.PING && (f.flags & 0x1) === 0);
    for (; answering && answered < pings.length; answered++) socket.write(h2Frame(FRAME.PING, 0x1, 0, pings[answered]!.payload));
  });
  socket.on('error', () => {});
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(performance.now())));
  socket.write(Buffer.concat([H2_PREFACE, h2Frame(FRAME.SETTINGS, 0, 0)]));
  return { socket, frames: () => parseFrames(received), closed, answerPings: (on) => (answering = on) };
}

describe('HTTP/2 header block held open (request_header_timeout 1 s)', () => {
  it('HEADERS without END_HEADERS, CONTINUATION trickled, beside an active stream: GOAWAY ENHANCE_YOUR_CALM within 2 × the timeout, counted; the worker serves on', async () => {
    const refusedBefore = edge.server.refusals.counts['request header timeout'] ?? 0;
    const h2 = await rawH2();
    try {
      // Stream 1: a request the upstream takes 8 s over, so the connection has an active stream.
      const seen = new Promise<void>((resolve) => up.events.on('request', (u: string) => u === '/up/slow?ms=8000&held' && resolve()));
      h2.socket.write(h2Frame(FRAME.HEADERS, 0x5 /* END_STREAM | END_HEADERS */, 1, Buffer.concat([Buffer.from([0x82, 0x87]), hpackLiteral(':path', '/up/slow?ms=8000&held'), hpackLiteral(':authority', 'a.test')])));
      await seen;
      // Stream 3: a header block that never ends, a CONTINUATION every 700 ms (fewer than
      // nghttp2's limit of 8 before the test would end).
      const started = performance.now();
      h2.answerPings(false);
      h2.socket.write(h2Frame(FRAME.HEADERS, 0x1 /* END_STREAM only */, 3, hpackGetRoot('a.test')));
      const trickle = setInterval(() => h2.socket.writable && h2.socket.write(h2Frame(FRAME.CONTINUATION, 0, 3, hpackLiteral('x-slow', 'a'))), 700);
      const closedAt = await Promise.race([h2.closed, new Promise<number>((resolve) => setTimeout(() => resolve(Infinity), 5000))]);
      clearInterval(trickle);
      expect(closedAt - started).toBeLessThan(2 * 1000 + 1000);
      const goaway = h2.frames().find((f) => f.type === FRAME.GOAWAY);
      expect(goaway?.payload.readUInt32BE(4)).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
      // Stream 1 was taken on (the last stream id), stream 3 never was.
      expect(goaway!.payload.readUInt32BE(0) & 0x7fffffff).toBe(1);
      expect(edge.server.refusals.counts['request header timeout']).toBe(refusedBefore + 1);
    } finally {
      h2.socket.destroy();
    }
    expect(await curlStatus('--http2')).toBe('200');
  });

  it('a stream nghttp2 refuses as malformed (its complete block never reaches us) is not taken for one held open', async () => {
    const h2 = await rawH2();
    try {
      const answered = async (stream: number): Promise<void> => {
        for (let i = 0; i < 50 && !h2.frames().some((f) => f.type === FRAME.HEADERS && f.streamId === stream); i++) await new Promise((r) => setTimeout(r, 20));
        expect(h2.frames().some((f) => f.type === FRAME.HEADERS && f.streamId === stream)).toBe(true);
      };
      // A request served (so the connection is past its first-request clock), then one with an
      // uppercase field name: nghttp2 resets stream 3 (PROTOCOL_ERROR) itself.
      h2.socket.write(h2Frame(FRAME.HEADERS, 0x5, 1, hpackGetRoot('a.test')));
      await answered(1);
      h2.socket.write(h2Frame(FRAME.HEADERS, 0x5, 3, Buffer.concat([hpackGetRoot('a.test'), hpackLiteral('X-Upper', 'a')])));
      await new Promise((resolve) => setTimeout(resolve, 2500));
      const frames = h2.frames();
      expect(frames.some((f) => f.type === FRAME.RST_STREAM && f.streamId === 3)).toBe(true);
      // Our client answered the PING that asked.
      expect(frames.some((f) => f.type === FRAME.PING)).toBe(true);
      expect(h2.socket.destroyed).toBe(false);
      expect(frames.some((f) => f.type === FRAME.GOAWAY)).toBe(false);
      h2.socket.write(h2Frame(FRAME.HEADERS, 0x5, 5, hpackGetRoot('a.test')));
      await answered(5);
    } finally {
      h2.socket.destroy();
    }
  });
});

describe('max_tcp_connections (40)', () => {
  it('connections beyond it are closed at once and counted; below it they are served again', async () => {
    const refusedBefore = edge.server.tcpCounters().refusedConnections;
    const open: net.Socket[] = [];
    try {
      // Fill the worker up with plain TCP connections (each is admitted before TLS starts).
      while (edge.server.connectionCount < 40) {
        const s = net.connect(edge.port, '127.0.0.1');
        s.on('error', () => {});
        await new Promise<void>((resolve) => s.once('connect', () => resolve()));
        open.push(s);
        await new Promise<void>((resolve) => setImmediate(resolve));
        // Admitted or refused: the server has seen it once it is counted either way.
        for (let i = 0; i < 100 && edge.server.connectionCount < open.length; i++) await new Promise((r) => setTimeout(r, 5));
      }
      const extra = net.connect(edge.port, '127.0.0.1');
      extra.on('error', () => {});
      const closedAt = await new Promise<number>((resolve) => {
        const t0 = performance.now();
        extra.once('close', () => resolve(performance.now() - t0));
      });
      expect(closedAt).toBeLessThan(1000);
      expect(edge.server.tcpCounters().refusedConnections).toBe(refusedBefore + 1);
      expect(edge.server.refusals.counts['TCP connections']).toBeGreaterThanOrEqual(1);
    } finally {
      for (const s of open) s.destroy();
    }
    for (let i = 0; i < 200 && edge.server.connectionCount > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(await curlStatus('--http1.1')).toBe('200');
  });
});
