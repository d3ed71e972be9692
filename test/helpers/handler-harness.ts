/**
 * Harness for ProxyHandler tests through the in-memory exchange (memory-exchange.ts): no QUIC, no
 * root. A test proxy built from routes and pools, real node:http upstreams on 127.0.0.1 (port 0),
 * and the access log captured per test, so that every exchange can be checked to end in exactly
 * one access-log line (installHandlerHarness).
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import pino from 'pino';
import { afterEach, beforeEach, expect } from 'vitest';
import type { RouteConfig, UpstreamPoolConfig } from '../../src/proxy/config/types.js';
import { AccessLog } from '../../src/proxy/http/access-log.js';
import type { HttpExchange } from '../../src/proxy/http/exchange.js';
import { ABORT } from '../../src/proxy/http/exchange-abort.js';
import { ProxyHandler, type HandlerOptions } from '../../src/proxy/http/proxy-handler.js';
import { matchRoute } from '../../src/proxy/http/route.js';
import { UpstreamRegistry, type PoolOptions } from '../../src/proxy/upstream/index.js';
import { MemoryExchange, type MemoryExchangeOptions, type MemoryRequest } from './memory-exchange.js';
import { testPoolConfig } from './pool-config.js';

export type AccessLine = Record<string, unknown>;

interface LogSink {
  /** Parsed access-log lines, as pino wrote them. */
  readonly lines: AccessLine[];
  watchers: Array<() => void>;
}

let cleanups: Array<() => Promise<void> | void> = [];
/** This test's access log (a late line of an earlier test cannot land here). */
let log: LogSink = { lines: [], watchers: [] };
/** Exchanges handed to a ProxyHandler: each must log exactly one line. */
let proxied: MemoryExchange[] = [];

/**
 * Registers the per-test hooks: fresh state before each test; after it, abandoned exchanges are
 * aborted, cleanups run, and (for a passing test) every exchange finished with exactly one
 * access-log line. Call once at the top of a test file.
 */
export function installHandlerHarness(): void {
  beforeEach(() => {
    cleanups = [];
    log = { lines: [], watchers: [] };
    proxied = [];
  });

  afterEach(async (context) => {
    const unfinished = proxied.filter((ex) => ex.outcome === undefined);
    // A failed test may leave an exchange open: the client goes away before the servers do.
    for (const ex of unfinished) ex.abort(ABORT.connectionClosed);
    while (cleanups.length > 0) await cleanups.pop()!();
    if (context.task.result?.state === 'fail') return;
    // Every exchange finished, with exactly one access-log line each, and no other line.
    expect(unfinished.map((ex) => ex.streamId)).toEqual([]);
    expect(log.lines.map((l) => l['stream']).sort()).toEqual(proxied.map((ex) => ex.streamId).sort());
  });
}

/** Runs `fn` after this test (servers, files), before the exchange checks; last added runs first. */
export function addCleanup(fn: () => Promise<void> | void): void {
  cleanups.push(fn);
}

export function makeAccessLog(): AccessLog {
  const sink = log;
  const logger = pino(
    { base: undefined, timestamp: false },
    {
      write(line: string): void {
        sink.lines.push(JSON.parse(line) as AccessLine);
        const watchers = sink.watchers;
        sink.watchers = [];
        for (const w of watchers) w();
      },
    },
  );
  return new AccessLog(logger);
}

/** The access-log line of one exchange, once it is written. */
export function lineOf(ex: HttpExchange): Promise<AccessLine> {
  return new Promise((resolve) => {
    const check = (): void => {
      const line = log.lines.find((l) => l['stream'] === ex.streamId);
      if (line) resolve(line);
      else log.watchers.push(check);
    };
    check();
  });
}

export const poolConfig = testPoolConfig;

/** Upstream timeouts far beyond any test's own timeout. */
export const NO_TIMEOUTS: Partial<UpstreamPoolConfig> = { responseTimeoutMs: 600_000, bodyTimeoutMs: 600_000 };

export const proxyRoute = (name: string, upstream: string, pathPrefix = '/', responseHeaders: Array<[string, string]> = []): RouteConfig => ({
  name,
  hosts: [{ kind: 'any' }],
  pathPrefix,
  action: { kind: 'proxy', upstream },
  responseHeaders,
});

export const respondRoute = (
  name: string,
  pathPrefix: string,
  respond: { status: number; headers: Array<[string, string]>; body: string },
  responseHeaders: Array<[string, string]> = [],
): RouteConfig => ({
  name,
  hosts: [{ kind: 'exact', name: 'app.example' }],
  pathPrefix,
  action: { kind: 'respond', status: respond.status, headers: respond.headers, body: Buffer.from(respond.body) },
  responseHeaders,
});

export interface TestProxy {
  readonly handler: ProxyHandler;
  readonly registry: UpstreamRegistry;
  /** Build an exchange, dispatch it to the handler, return it. */
  send(request: MemoryRequest, options?: MemoryExchangeOptions): MemoryExchange;
}

export function makeProxy(
  routes: RouteConfig[],
  pools: UpstreamPoolConfig[] = [],
  options: Pick<HandlerOptions, 'trustedProxies' | 'refusals' | 'metrics' | 'site'> & { readonly upstreams?: PoolOptions } = {},
): TestProxy {
  const { upstreams, ...handlerOptions } = options;
  const registry = new UpstreamRegistry(new Map(pools.map((p) => [p.name, p])), upstreams);
  cleanups.push(() => registry.destroy());
  const handler = new ProxyHandler({ route: (host, path) => matchRoute(routes, host, path), upstreams: registry, accessLog: makeAccessLog(), ...handlerOptions });
  return {
    handler,
    registry,
    send(request, options) {
      const ex = new MemoryExchange(request, options);
      proxied.push(ex);
      void ex.dispatch(handler);
      return ex;
    },
  };
}

export interface Upstream {
  readonly origin: string;
  /** Resolves with the next request the server receives. */
  nextRequest(): Promise<[IncomingMessage, ServerResponse]>;
}

export async function startUpstream(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Upstream> {
  const waiting: Array<(pair: [IncomingMessage, ServerResponse]) => void> = [];
  const server = createServer((req, res) => {
    res.sendDate = false;
    handler(req, res);
    waiting.shift()?.([req, res]);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(async () => {
    server.closeAllConnections();
    server.close();
    await once(server, 'close');
  });
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    nextRequest: () => new Promise((resolve) => waiting.push(resolve)),
  };
}

export interface RawUpstream {
  readonly origin: string;
  /** Request heads (request line and fields, up to the empty line) in arrival order. */
  readonly heads: string[];
}

/**
 * An HTTP/1.1 upstream that writes raw bytes, for responses node:http would refuse to send (an
 * unsolicited 100, status 999, a 304 with a body length). `answer` gets each request head once it
 * (and its content-length body, if any) arrived, and writes the response to the socket.
 */
export async function startRawUpstream(answer: (head: string, socket: Socket) => void): Promise<RawUpstream> {
  const heads: string[] = [];
  const sockets = new Set<Socket>();
  const server = createTcpServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buffered = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buffered.subarray(0, end).toString('latin1');
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (buffered.length < end + 4 + length) return;
        buffered = buffered.subarray(end + 4 + length);
        heads.push(head);
        answer(head, socket);
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    server.close();
    await once(server, 'close');
  });
  return { origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, heads };
}

/** An origin nothing listens on (the port was just released). */
export async function refusedOrigin(): Promise<string> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  server.close();
  await once(server, 'close');
  return `http://127.0.0.1:${port}`;
}

/**
 * Resolves once `progress()` stopped changing (the same value over 200 consecutive event-loop turns,
 * with I/O polled in each) or `stop()` holds. Not a timer: it waits for the system to go quiet.
 */
export async function quiescent(progress: () => number, stop: () => boolean): Promise<void> {
  let last = progress();
  let quiet = 0;
  while (!stop() && quiet < 200) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    const now = progress();
    quiet = now === last ? quiet + 1 : 0;
    last = now;
  }
}

export const text = (s: string): Buffer => Buffer.from(s);
export const textResponse = (status: number, body: string) => [
  { type: 'respond', status, headers: [['content-type', 'text/plain; charset=utf-8'], ['content-length', String(Buffer.byteLength(body))]], endStream: false },
  { type: 'write', chunk: text(body) },
  { type: 'end', trailers: undefined },
];
