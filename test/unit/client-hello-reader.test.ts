import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readClientHello, type ClientHelloBounds } from '../../src/proxy/tcp/client-hello-reader.js';
import { libc, MSG_DONTWAIT } from '../../src/sys/libc.js';
import { makeCert } from '../helpers/certs.js';
import { waitUntil } from '../helpers/deadline.js';
import { captureClientHello, handshakeOf, inRecords, segments } from '../helpers/tls-records.js';

const MSG_PEEK = 2;
const BOUNDS: ClientHelloBounds = { maxBytes: 16384, timeoutMs: 5000 };

let acceptor: net.Server;
let port: number;
let flight: Buffer;
let dir: string;
const accepted: Array<(s: net.Socket) => void> = [];

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'hello-reader-'));
  flight = await captureClientHello({ servername: 'x.b.test' });
  // As the TLS listener's acceptor: nothing is read until the reader resumes the socket.
  acceptor = net.createServer({ pauseOnConnect: true }, (s) => accepted.shift()?.(s));
  await new Promise<void>((resolve) => acceptor.listen(0, '127.0.0.1', resolve));
  port = (acceptor.address() as net.AddressInfo).port;
});
afterAll(() => {
  acceptor.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A raw client and the server's side of its connection. */
async function connect(): Promise<{ client: net.Socket; server: net.Socket }> {
  const server = new Promise<net.Socket>((resolve) => accepted.push(resolve));
  const client = net.connect({ port, host: '127.0.0.1', noDelay: true });
  client.on('error', () => {});
  await new Promise((resolve) => client.once('connect', resolve));
  return { client, server: await server };
}

/** Writes each chunk in its own TCP segment (Nagle off, a pause between writes). */
async function writeApart(socket: net.Socket, chunks: readonly Buffer[]): Promise<void> {
  for (const c of chunks) {
    await new Promise<void>((resolve) => socket.write(c, () => resolve()));
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** What the kernel still holds for `socket`, unread (MSG_PEEK). */
function unread(socket: net.Socket): Buffer {
  const fd = (socket as unknown as { _handle: { fd: number } })._handle.fd;
  const buf = Buffer.alloc(256);
  const n = Number(libc.recv(fd, buf, buf.length, MSG_PEEK | MSG_DONTWAIT));
  return buf.subarray(0, Math.max(0, n));
}

describe('readClientHello on a real TCP connection', () => {
  it('reads a ClientHello split over records and TCP segments; every byte read comes back in head', async () => {
    const { client, server } = await connect();
    const stream = inRecords(handshakeOf(flight)!, 200);
    const outcome = readClientHello(server, BOUNDS);
    await writeApart(client, segments(stream, 150));
    const result = await outcome;
    expect(result).toMatchObject({ kind: 'hello', serverName: 'x.b.test' });
    expect(result.kind === 'hello' && result.head.equals(stream)).toBe(true);
    client.destroy();
    server.destroy();
  });

  it('stops reading at the kernel once the ClientHello is whole: later bytes stay there for the next reader', async () => {
    const { client, server } = await connect();
    const outcome = readClientHello(server, BOUNDS);
    client.write(flight);
    expect((await outcome).kind).toBe('hello');
    client.write('after');
    await waitUntil('the bytes after the ClientHello in the kernel', () => unread(server).length === 5, { timeoutMs: 5000, intervalMs: 5 });
    expect(unread(server).toString()).toBe('after');
    expect(server.readableLength).toBe(0);
    client.destroy();
    server.destroy();
  });

  it('a connection given to a TLS server after head is put back completes its handshake', { timeout: 10_000 }, async () => {
    const cert = makeCert(dir, 'b', 'x.b.test');
    const tlsServer = tls.createServer({ cert: readFileSync(cert.cert), key: readFileSync(cert.key) });
    const servername = new Promise<string | false | null>((resolve) => tlsServer.once('secureConnection', (s: tls.TLSSocket) => resolve(s.servername)));
    const server = new Promise<net.Socket>((resolve) => accepted.push(resolve));
    const client = tls.connect({ port, host: '127.0.0.1', servername: 'x.b.test', rejectUnauthorized: false });
    client.on('error', () => {});
    const socket = await server;
    const result = await readClientHello(socket, BOUNDS);
    if (result.kind !== 'hello') throw new Error(`no hello: ${result.kind}`);
    socket.unshift(result.head);
    tlsServer.emit('connection', socket);
    await new Promise((resolve) => client.once('secureConnect', resolve));
    expect(await servername).toBe('x.b.test');
    client.destroy();
  });

  it('a ClientHello that does not complete in time: timeout, with the bytes seen', async () => {
    const { client, server } = await connect();
    const started = performance.now();
    const outcome = readClientHello(server, { ...BOUNDS, timeoutMs: 200 });
    client.write(flight.subarray(0, 100));
    expect(await outcome).toEqual({ kind: 'timeout', bytes: 100 });
    expect(performance.now() - started).toBeGreaterThanOrEqual(190);
    client.destroy();
    server.destroy();
  });

  it('a client that closes before its ClientHello is whole: gone', async () => {
    const { client, server } = await connect();
    const outcome = readClientHello(server, BOUNDS);
    client.end(flight.subarray(0, 100));
    expect(await outcome).toEqual({ kind: 'gone' });
    server.destroy();
  });

  it('plaintext HTTP on the TLS port: refused', async () => {
    const { client, server } = await connect();
    const outcome = readClientHello(server, BOUNDS);
    client.write('GET / HTTP/1.1\r\nHost: a.test\r\n\r\n');
    expect(await outcome).toEqual({ kind: 'refused', reason: 'not a TLS handshake (record type 71)' });
    client.destroy();
    server.destroy();
  });
});
