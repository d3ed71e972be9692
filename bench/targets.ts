/**
 * The proxies a side-by-side bench compares, started the same way: in front of the same upstream,
 * with the same certificate, on 127.0.0.1, each on its own port (UDP for HTTP/3, TCP beside it).
 * A target can be restarted (a fresh process for the memory row).
 */
import { fork } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeCa } from '../test/helpers/certs.js';
import { freeUdpPort, makeTempDir, startProxy, type RunningProxy } from '../test/helpers/proxy.js';
import { startCaddy } from './caddy.js';
import type { FloorEnv, FloorUpstream } from './stack-floor.js';

export interface Target {
  readonly name: string;
  /** Changes on restart. */
  readonly port: number;
  /** Root of the process tree whose CPU and memory count as this proxy's. */
  readonly pid: number;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export interface Upstream {
  readonly port: number;
  readonly pid: number;
  stop(): void;
}

/** The bench's HTTP/1.1 upstream (bench/upstream-server.ts) in its own process. */
export async function startUpstreamProcess(): Promise<Upstream> {
  const child = fork(new URL('./upstream-server.ts', import.meta.url).pathname, [], { execArgv: ['--import', 'tsx'] });
  const port = await new Promise<number>((resolve) => child.once('message', (m) => resolve((m as { port: number }).port)));
  return { port, pid: child.pid!, stop: () => child.kill() };
}

/** A CA-issued certificate for `localhost` and 127.0.0.1 (Caddy indexes certificates by SAN). */
export function benchCertificate(): { cert: string; key: string } {
  return makeCa(makeTempDir('bench-cert-'), 'bench-ca').issue('localhost', ['localhost', '127.0.0.1']);
}

export interface TargetOptions {
  readonly upstreamPort: number;
  readonly cert: { cert: string; key: string };
  /** Our workers, Caddy's GOMAXPROCS. */
  readonly workers: number;
  /** Extra environment for our master (inherited by its workers). */
  readonly env?: NodeJS.ProcessEnv;
}

/** Our proxy with its defaults except the access log (Caddy logs no requests by default either). */
export function ourProxyConfig(port: number, o: TargetOptions): string {
  return `
listeners: ["127.0.0.1:${port}"]
workers: ${o.workers}
drain_timeout: 5s
tls:
  certificates: [{ names: [localhost], cert: "${o.cert.cert}", key: "${o.cert.key}" }]
routes:
  - path: /
    upstream: app
upstreams:
  app: { targets: ["http://127.0.0.1:${o.upstreamPort}"] }
logging: { level: info, access_log: false }
`;
}

export async function startOurs(o: TargetOptions): Promise<Target> {
  const boot = async (): Promise<{ port: number; proxy: Awaited<ReturnType<typeof startProxy>> }> => {
    const port = await freeUdpPort();
    return { port, proxy: await startProxy(ourProxyConfig(port, o), { ...(o.env && { env: o.env }) }) };
  };
  let current = await boot();
  return {
    name: 'udpgrm-proxy',
    get port() {
      return current.port;
    },
    get pid() {
      return current.proxy.proc.pid!;
    },
    async restart() {
      await current.proxy.stop();
      current = await boot();
    },
    async stop() {
      await current.proxy.stop();
    },
  };
}

export async function startCaddyTarget(o: TargetOptions): Promise<Target> {
  const boot = async (): Promise<{ port: number; caddy: Awaited<ReturnType<typeof startCaddy>> }> => {
    const port = await freeUdpPort();
    return { port, caddy: await startCaddy({ port, upstreamPort: o.upstreamPort, cert: o.cert.cert, key: o.cert.key, procs: o.workers }) };
  };
  let current = await boot();
  return {
    name: 'Caddy',
    get port() {
      return current.port;
    },
    get pid() {
      return current.caddy.pid;
    },
    async restart() {
      await current.caddy.stop();
      current = await boot();
    },
    async stop() {
      await current.caddy.stop();
    },
  };
}

/**
 * The stack's floor (bench/stack-floor.ts): the least relay on our binding, from dist/ (built by
 * `npx tsc -p tsconfig.json`), a master and `workers` workers, with the TLS settings of the config
 * our proxy gets.
 */
export async function startFloor(o: TargetOptions, upstream: FloorUpstream): Promise<Target> {
  const dir = makeTempDir('stack-floor-');
  const boot = async (): Promise<{ port: number; proc: ReturnType<typeof fork> }> => {
    const port = await freeUdpPort();
    const config = path.join(dir, 'proxy.yaml');
    writeFileSync(config, ourProxyConfig(port, o));
    const env: FloorEnv = { FLOOR_CONFIG: config, FLOOR_PORT: String(port), FLOOR_UPSTREAM_PORT: String(o.upstreamPort), FLOOR_UPSTREAM: upstream, FLOOR_WORKERS: String(o.workers) };
    // execArgv: [], not this process's: under tsx that would load its loader (and source maps) into the relay.
    const proc = fork(new URL('../dist/bench/stack-floor.js', import.meta.url).pathname, [], { execArgv: [], env: { ...process.env, ...o.env, ...env, FLOOR_ROLE: 'master' } });
    await new Promise<void>((resolve, reject) => {
      proc.once('message', () => resolve());
      proc.once('exit', (code) => reject(new Error(`stack floor exited (${code}) before it was ready`)));
    });
    return { port, proc };
  };
  const stop = (p: ReturnType<typeof fork>): Promise<void> =>
    new Promise((resolve) => {
      if (p.exitCode !== null || p.signalCode !== null) return resolve();
      p.once('exit', () => resolve());
      p.kill('SIGTERM');
    });
  let current = await boot();
  return {
    name: `floor-${upstream}`,
    get port() {
      return current.port;
    },
    get pid() {
      return current.proc.pid!;
    },
    async restart() {
      await stop(current.proc);
      current = await boot();
    },
    async stop() {
      await stop(current.proc);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** One side of an interleaved A/B: `other` runs another checkout's build, `this` this one's. */
export interface AbSide {
  readonly name: 'other' | 'this';
  readonly port: number;
  readonly proxy: RunningProxy;
}

/**
 * Our proxy from another checkout (started through its own test helper, so from its own dist/,
 * which must be built) and from this one, configured alike: the two sides of an interleaved A/B.
 */
export async function startAbSides(otherCheckout: string, o: TargetOptions): Promise<AbSide[]> {
  const other = (await import(path.resolve(otherCheckout, 'test/helpers/proxy.ts'))) as { startProxy: typeof startProxy };
  const sides: AbSide[] = [];
  try {
    for (const [name, start] of [
      ['other', other.startProxy],
      ['this', startProxy],
    ] as const) {
      const port = await freeUdpPort();
      sides.push({ name, port, proxy: await start(ourProxyConfig(port, o)) });
    }
  } catch (err) {
    for (const side of sides) await side.proxy.stop();
    throw err;
  }
  return sides;
}
