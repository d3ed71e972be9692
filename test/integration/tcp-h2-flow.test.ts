/**
 * HTTP/2 over TCP against clients that hold the worker's resources: a large upload to an upstream
 * that reads slowly must not pile up in the worker (backpressure reaches the client through the
 * stream's flow-control window), and a header block left incomplete must not hold a connection
 * beyond request_header_timeout, even while other streams are active.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTcpEdge, type TcpEdge } from '../helpers/tcp-edge.js';

const MIB = 1024 * 1024;

/**
 * An upstream that does not read a request body until told to: the worker's side of the
 * connection to it fills up, and everything after that must be held back by flow control. On a
 * unix socket: the kernel then holds a fixed ~200 KiB between the worker and it (TCP's buffers
 * would grow to megabytes), so what the client got to send, minus what the upstream read, is
 * what the worker holds, give or take that.
 */
interface SlowUpstream {
  /** The target for the config (unix:/PATH). */
  readonly target: string;
  /** Bytes of request bodies read so far. */
  readonly bytesRead: number;
  /** Start reading (and then answering with the body's length and sha256). */
  release(): void;
  close(): Promise<void>;
}

async function startSlowUpstream(): Promise<SlowUpstream> {
  let bytesRead = 0;
  let released = false;
  const waiting: IncomingMessage[] = [];
  const read = (req: IncomingMessage, res: ServerResponse): void => {
    const hash = createHash('sha256');
    let length = 0;
    req.on('data', (c: Buffer) => {
      hash.update(c);
      length += c.length;
      bytesRead += c.length;
    });
    req.on('end', () => res.end(JSON.stringify({ length, sha256: hash.digest('hex') })));
    req.resume();
  };
  const server = http.createServer((req, res) => {
    req.pause();
    if (released) read(req, res);
    else waiting.push(Object.assign(req, { res }));
  });
  const dir = mkdtempSync(path.join(tmpdir(), 'slow-upstream-'));
  const socketPath = path.join(dir, 'up.sock');
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    target: `unix:${socketPath}`,
    get bytesRead() {
      return bytesRead;
    },
    release() {
      released = true;
      for (const req of waiting.splice(0)) read(req, (req as IncomingMessage & { res: ServerResponse }).res);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => {
          rmSync(dir, { recursive: true, force: true });
          resolve();
        });
      }),
  };
}

let slow: SlowUpstream;
let edge: TcpEdge;

beforeAll(async () => {
  slow = await startSlowUpstream();
  // The smallest stream window (64 KiB): the worker's own buffers dominate what is measured.
  edge = await startTcpEdge({ upstream: slow.target, http: ['h2_initial_window: 65535'] });
});

afterAll(async () => {
  await edge?.close();
  await slow?.close();
});

describe('HTTP/2 request body backpressure', () => {
  it('a 64 MiB upload to an upstream that does not read: the worker holds at most its body buffers + the stream window, then it all arrives', async () => {
    const size = 64 * MIB;
    const chunk = Buffer.alloc(64 * 1024, 'x');
    const client = http2.connect(`https://127.0.0.1:${edge.port}`, { rejectUnauthorized: false });
    client.on('error', () => {});
    try {
      const req = client.request({ ':method': 'POST', ':path': '/up/upload', 'content-length': String(size) });
      req.on('error', () => {});
      const response = new Promise<string>((resolve, reject) => {
        let body = '';
        req.setEncoding('utf8');
        req.on('data', (d: string) => (body += d));
        req.on('end', () => resolve(body));
        req.on('close', () => reject(new Error(`stream closed (${req.rstCode})`)));
      });
      let written = 0;
      /** Writes with the client's own backpressure; resolves when the whole body is handed over. */
      const upload = (async () => {
        while (written < size) {
          written += chunk.length;
          const more = written < size ? req.write(chunk) : (req.end(chunk), true);
          if (!more) await new Promise<void>((resolve) => req.once('drain', resolve));
        }
      })();
      // The client stalls once the windows and buffers between it and the upstream are full.
      let last = -1;
      while (written !== last) {
        last = written;
        await new Promise((r) => setTimeout(r, 300));
      }
      // What the client got to send and the upstream did not read: the stream window
      // (h2_initial_window, 64 KiB) + the request body's buffer and the upstream body's view of it
      // (256 KiB each), plus what waits on the way: the kernel's unix socket buffer, a chunk in
      // the client's stream, one in the worker's socket to the upstream, one in flight.
      // (Before the view read only on demand it held 1.4 MiB here, and over 4 MiB with a 1 MiB window.)
      const held = written - slow.bytesRead;
      const onTheWay = Number(readFileSync('/proc/sys/net/core/wmem_default', 'utf8')) + 3 * chunk.length;
      expect(held).toBeLessThan(65_535 + 2 * 256 * 1024 + onTheWay);

      slow.release();
      await upload;
      const echo = JSON.parse(await response) as { length: number; sha256: string };
      const expected = createHash('sha256');
      for (let n = 0; n < size; n += chunk.length) expected.update(chunk);
      expect(echo).toEqual({ length: size, sha256: expected.digest('hex') });
    } finally {
      client.close();
    }
  });
});
