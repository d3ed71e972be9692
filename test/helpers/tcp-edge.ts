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
import { loadConfig } from '../../src/proxy/config/index.js';
import { boundPort, openTcpListenSocket } from '../../src/proxy/net/tcp-listen.js';
import { ProxyServer, type TcpServerSocket } from '../../src/proxy/server.js';
import { makeCert } from './certs.js';

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
  close(): Promise<void>;
}

export interface TcpEdgeOptions {
  /** Origin of the upstream the /up/ route forwards to. */
  readonly upstream: string;
  /** Extra lines for the `http:` section, e.g. "max_tcp_connections: 4". */
  readonly http?: readonly string[];
  readonly protocols?: readonly string[];
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
routes:
  - path: /up/
    upstream: app
  - path: /
    respond: { status: 200, headers: { alt-svc: 'h2=":1"' }, body: "hello\\n" }
upstreams:
  app: { targets: ["${opts.upstream}"] }
http:
  request_header_timeout: 1s
${(opts.http ?? []).map((l) => `  ${l}`).join('\n')}
logging: { level: info, access_log: true }
`,
  );
  const config = loadConfig(path.join(dir, 'proxy.yaml'));
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const log = pino({ level: 'info' }, sink);
  const listener = config.listeners[0]!;
  const tcpSockets: TcpServerSocket[] = [
    { fd: tlsFd, listener, role: 'tls' },
    { fd: redirectFd, listener, role: 'redirect' },
  ];
  const server = await ProxyServer.start(config, [], tcpSockets, log);
  return {
    server,
    port,
    redirectPort,
    dir,
    certA: a.cert,
    certB: b.cert,
    logs,
    close: async () => {
      await server.drain(2000);
      rmSync(dir, { recursive: true, force: true });
    },
  };
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
