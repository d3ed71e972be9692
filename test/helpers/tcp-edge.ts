/**
 * A ProxyServer's TCP edge in the test process: listening TCP sockets opened the way the master
 * opens them (net/tcp-listen.ts, port 0), a config written around their ports (two certificates,
 * a route to a real upstream, a built-in route), and the server's log lines kept in memory. Real
 * clients (curl, h2load, node:http2, raw TLS) then talk to 127.0.0.1:port.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll } from 'vitest';
import { loadConfig, siteConfig } from '../../src/proxy/config/index.js';
import { SiteNames, siteNamesSpec } from '../../src/proxy/config/site-names.js';
import { libc } from '../../src/sys/libc.js';
import { boundPort, openTcpListenSocket } from '../../src/proxy/net/tcp-listen.js';
import { ProxyServer, type TcpServerSocket } from '../../src/proxy/server.js';
import { makeCert } from './certs.js';
import { startUpstream, type TestUpstream } from './upstream.js';

export interface TcpEdge {
  readonly server: ProxyServer;
  readonly port: number;
  readonly redirectPort: number;
  readonly dir: string;
  /** The default certificate (CN a.test), and the one for b.test. */
  readonly certA: string;
  readonly certB: string;
  /** Every JSON log line so far. */
  readonly logs: Array<Record<string, unknown>>;
  /**
   * Another ProxyServer on the same listening sockets, each on its own copy of their fds (as every
   * worker inherits one), built from the config file as it is now: a second worker of the same
   * generation, or the next generation's after a reload (same ticket key file). Drained by close().
   * Only with `keepSockets`.
   */
  startWorker(): Promise<ProxyServer>;
  close(): Promise<void>;
}

export interface TcpEdgeOptions {
  /** Origin of the upstream the /up/ route forwards to. */
  readonly upstream: string;
  /** More keys of the `app` pool's flow mapping, e.g. `protocol: h2, tls: { ca: "/x/ca.crt" }`. */
  readonly upstreamPool?: string;
  /** Extra lines for the `http:` section, e.g. "max_tcp_connections: 4". */
  readonly http?: readonly string[];
  readonly protocols?: readonly string[];
  /**
   * The helper keeps the listening sockets, as the master does, and each server accepts on its
   * own copy (needed for startWorker). Default: the server holds the only copy, so a drained
   * server's port refuses connections.
   */
  readonly keepSockets?: boolean;
  /**
   * Serve as this site's worker of a two-site config: `a` (default; a.test; the routes above) and
   * `b` (*.b.test; one route answering "site b"). Default: no `sites:` (one implicit site).
   */
  readonly site?: 'a' | 'b';
}

export async function startTcpEdge(opts: TcpEdgeOptions): Promise<TcpEdge> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tcp-edge-'));
  const a = makeCert(dir, 'a', 'a.test');
  const b = makeCert(dir, 'b', 'b.test');
  const tlsFd = openTcpListenSocket({ host: '127.0.0.1', port: 0, family: 4 });
  const redirectFd = openTcpListenSocket({ host: '127.0.0.1', port: 0, family: 4 });
  const port = boundPort(tlsFd);
  const redirectPort = boundPort(redirectFd);
  const protocols = opts.protocols ?? ['h1', 'h2', 'h3'];
  writeFileSync(
    path.join(dir, 'proxy.yaml'),
    `
listeners:
  - address: "127.0.0.1:${port}"
    protocols: [${protocols.join(', ')}]
    http_redirect: "127.0.0.1:${redirectPort}"
tls:
  state_dir: state
  certificates:
    - { names: [a.test], cert: a.crt, key: a.key, default: true }
    - { names: [b.test], cert: b.crt, key: b.key }
${routesSection(opts.site)}
upstreams:
  app: { targets: ["${opts.upstream}"]${opts.upstreamPool === undefined ? '' : `, ${opts.upstreamPool}`} }
http:
  request_header_timeout: 1s
${(opts.http ?? []).map((l) => `  ${l}`).join('\n')}
logging: { level: info, access_log: true }
`,
  );
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const log = pino({ level: 'info' }, sink);
  const start = (fds: { tls: number; redirect: number }): Promise<ProxyServer> => {
    const file = loadConfig(path.join(dir, 'proxy.yaml'));
    // What a worker of the site runs (as process/worker.ts does).
    const site = opts.site ?? file.sites[0]!.name;
    const config = siteConfig(file, site);
    const listener = config.listeners[0]!;
    const tcpSockets: TcpServerSocket[] = [
      { fd: fds.tls, listener, listenerIndex: 0, role: 'tls' },
      { fd: fds.redirect, listener, listenerIndex: 0, role: 'redirect' },
    ];
    return ProxyServer.start(config, [], tcpSockets, log, { name: site, names: new SiteNames(siteNamesSpec(file)), steering: new Map() });
  };
  const copies = (): { tls: number; redirect: number } => ({ tls: dupFd(tlsFd), redirect: dupFd(redirectFd) });
  const server = await start(opts.keepSockets ? copies() : { tls: tlsFd, redirect: redirectFd });
  const workers: ProxyServer[] = [];
  return {
    server,
    port,
    redirectPort,
    dir,
    certA: a.cert,
    certB: b.cert,
    logs,
    startWorker: async () => {
      if (!opts.keepSockets) throw new Error('startWorker needs keepSockets');
      const worker = await start(copies());
      workers.push(worker);
      return worker;
    },
    close: async () => {
      await Promise.all([server, ...workers].map((s) => s.drain(2000)));
      if (opts.keepSockets) {
        libc.close(tlsFd);
        libc.close(redirectFd);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const EDGE_ROUTES = `
  - path: /up/
    upstream: app
  - path: /
    respond: { status: 200, headers: { alt-svc: 'h2=":1"' }, body: "hello\\n" }`;

/** The config's routes: top-level, or (with a site to serve) two sites' routes. */
function routesSection(site: 'a' | 'b' | undefined): string {
  if (site === undefined) return `routes:${EDGE_ROUTES}`;
  return `sites:
  a:
    default: true
    names: [a.test]
    routes:${EDGE_ROUTES.replaceAll('\n  ', '\n      ')}
  b:
    names: ["*.b.test"]
    routes:
      - respond: { status: 200, body: "site b\\n" }`;
}

/** A test file's upstream ('a') and the TCP edge in front of it; read them inside tests and hooks. */
export interface TcpEdgeFixture {
  readonly up: TestUpstream;
  readonly edge: TcpEdge;
}

/**
 * Starts an upstream and a TCP edge routing /up/ to it before the file's tests (beforeAll) and
 * closes both after them (afterAll). Both exist only once beforeAll has run, hence getters.
 */
export function useTcpEdge(opts: Omit<TcpEdgeOptions, 'upstream'> = {}): TcpEdgeFixture {
  let up: TestUpstream | undefined;
  let edge: TcpEdge | undefined;
  beforeAll(async () => {
    up = await startUpstream('a');
    edge = await startTcpEdge({ ...opts, upstream: up.origin });
  });
  afterAll(async () => {
    await edge?.close();
    await up?.close();
  });
  const started = <T>(v: T | undefined): T => {
    if (v === undefined) throw new Error('useTcpEdge: read before beforeAll ran');
    return v;
  };
  return {
    get up() {
      return started(up);
    },
    get edge() {
      return started(edge);
    },
  };
}

/** A copy of `fd` (F_DUPFD_CLOEXEC), as a forked worker's inherited one. */
function dupFd(fd: number): number {
  const F_DUPFD_CLOEXEC = 1030;
  const copy = libc.fcntl(fd, F_DUPFD_CLOEXEC, 'int', 0) as number;
  if (copy < 0) throw new Error(`fcntl(F_DUPFD_CLOEXEC) on fd ${fd} failed`);
  return copy;
}

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a client program to its end (never rejects: the exit code is part of the result). */
export function run(cmd: string, args: readonly string[], opts: { input?: Buffer; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { encoding: 'latin1', maxBuffer: 64 * 1024 * 1024, timeout: opts.timeoutMs ?? 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout, stderr });
    });
    if (opts.input) child.stdin!.end(opts.input);
  });
}
