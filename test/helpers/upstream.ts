/**
 * A real HTTP/1.1 origin for integration tests (node:http on 127.0.0.1, port 0). It dispatches on
 * the last path segment, so any route prefix in front of it works:
 *   /echo         JSON of method, url, headers, body length and SHA-256
 *   /slow?ms=N    headers only after N ms
 *   /until-released  headers only when the test calls releaseHeld()
 *   /bytes?n=N    N bytes of a repeating pattern, streamed
 *   /random?n=N&seed=S  N pseudo-random bytes from seed S, streamed (seededStream; no two packets alike)
 *   /reset        some body bytes, then the socket is destroyed
 *   /trailers     a chunked body followed by an x-checksum trailer
 *   anything else 200 "upstream NAME"
 */
import { createCipheriv, createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface TestUpstream {
  readonly port: number;
  readonly origin: string;
  readonly requests: number;
  /** Every request received, in arrival order (method, url, lowercased headers). */
  readonly log: ReadonlyArray<UpstreamRequestRecord>;
  /**
   * 'request' (url) for every request; 'aborted' (url) when a /slow response is cut off by our side;
   * 'upload-aborted' (url) when a request body is cut off before its end.
   */
  readonly events: EventEmitter;
  /** Answers every /until-released request waiting now ("released\n"). */
  releaseHeld(): void;
  close(): Promise<void>;
}

export interface UpstreamRequestRecord {
  readonly method: string;
  readonly url: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

export async function startUpstream(name = 'up'): Promise<TestUpstream> {
  let requests = 0;
  const log: UpstreamRequestRecord[] = [];
  const events = new EventEmitter();
  const held = new Set<http.ServerResponse>();
  // Every field a request brings, as far as the proxy's own limits let through (max_header_bytes
  // goes up to 1 MiB; Node's defaults would answer 431 above 16 KiB and drop fields beyond 1,000).
  const server = http.createServer({ maxHeaderSize: 2 * 1024 * 1024 }, (req, res) => {
    requests++;
    log.push({ method: req.method ?? '', url: req.url ?? '', headers: { ...req.headers } });
    events.emit('request', req.url);
    const url = new URL(req.url ?? '/', 'http://x');
    const leaf = `/${url.pathname.split('/').pop()}`;
    if (leaf === '/slow') {
      const t = setTimeout(() => res.end('slow\n'), Number(url.searchParams.get('ms') ?? 1000));
      res.on('close', () => {
        clearTimeout(t);
        if (!res.writableFinished) events.emit('aborted', req.url);
      });
      return;
    }
    if (leaf === '/until-released') {
      held.add(res);
      res.on('close', () => held.delete(res));
      return;
    }
    if (leaf === '/bytes') {
      const n = Number(url.searchParams.get('n') ?? 0);
      const chunk = Buffer.alloc(64 * 1024, 'abcdefghijklmnopqrstuvwxyz');
      streamBody(res, n, (len) => chunk.subarray(0, len));
      return;
    }
    if (leaf === '/random') {
      const n = Number(url.searchParams.get('n') ?? 0);
      streamBody(res, n, seededStream(url.searchParams.get('seed') ?? ''));
      return;
    }
    if (leaf === '/trailers') {
      res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
      res.write('chunk one\n');
      res.write('chunk two\n');
      res.addTrailers({ 'x-checksum': createHash('sha256').update('chunk one\nchunk two\n').digest('hex') });
      res.end();
      return;
    }
    if (leaf === '/reset') {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100000' });
      res.write(Buffer.alloc(1000, 'x'), () => res.socket?.destroy());
      return;
    }
    const hash = createHash('sha256');
    let length = 0;
    req.on('error', () => {}); // a cut upload: reported below
    req.on('close', () => {
      if (!req.complete) events.emit('upload-aborted', req.url);
    });
    req.on('data', (c: Buffer) => {
      hash.update(c);
      length += c.length;
    });
    req.on('end', () => {
      if (leaf === '/echo') {
        const body = JSON.stringify({ name, method: req.method, url: req.url, headers: req.headers, bodyLength: length, bodySha256: hash.digest('hex') });
        res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': name, connection: 'keep-alive', 'keep-alive': 'timeout=5' });
        res.end(body);
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain', 'x-upstream': name });
      res.end(`upstream ${name}\n`);
    });
  });
  server.maxHeadersCount = 0;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    origin: `http://127.0.0.1:${port}`,
    get requests() {
      return requests;
    },
    log,
    events,
    releaseHeld: () => {
      for (const res of held) res.end('released\n');
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Streams `n` bytes taken from `next(len)` (at most 64 KiB at a time), honouring backpressure. */
function streamBody(res: http.ServerResponse, n: number, next: (len: number) => Buffer): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(n) });
  let sent = 0;
  const pump = (): void => {
    while (sent < n) {
      const part = next(Math.min(64 * 1024, n - sent));
      sent += part.length;
      if (!res.write(part)) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  pump();
}

/**
 * Pseudo-random bytes determined by `seed` (AES-128-CTR keystream): each call returns the next
 * `len`. The upstream's /random body, and what a test hashes to know what the client must get.
 */
export function seededStream(seed: string): (len: number) => Buffer {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return (len) => cipher.update(Buffer.alloc(len));
}

/** SHA-256 (hex) of the first `n` bytes of seededStream(seed). */
export function seededSha256(seed: string, n: number): string {
  const next = seededStream(seed);
  const hash = createHash('sha256');
  for (let done = 0; done < n; done += 64 * 1024) hash.update(next(Math.min(64 * 1024, n - done)));
  return hash.digest('hex');
}
