/**
 * Caddy as the bench's peer proxy: Debian's package (installed with apt when missing; the bench
 * needs it, the tests never do), started from a Caddyfile generated into a temp dir with the
 * bench's certificate, HTTP/1.1, HTTP/2 and HTTP/3 on one port, and reverse_proxy to the bench's
 * upstream. Nothing is written outside that temp dir (HOME and XDG dirs point into it).
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** `caddy version`'s first word, installing Debian's package first if there is no caddy. */
export function ensureCaddy(): string {
  const version = (): string | undefined => {
    const r = spawnSync('caddy', ['version'], { encoding: 'utf8' });
    return r.status === 0 ? r.stdout.trim().split(/\s+/)[0] : undefined;
  };
  const have = version();
  if (have) return have;
  process.stdout.write('caddy not found: apt-get install caddy (Debian package, for the bench only)\n');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = (): boolean => spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'caddy'], { stdio: 'inherit', env }).status === 0;
  if (!install()) {
    execFileSync('apt-get', ['update'], { stdio: 'inherit', env });
    if (!install()) throw new Error('apt-get install caddy failed');
  }
  const installed = version();
  if (!installed) throw new Error('caddy installed but `caddy version` fails');
  return installed;
}

export interface CaddyOptions {
  readonly port: number;
  readonly upstreamPort: number;
  readonly cert: string;
  readonly key: string;
  /** GOMAXPROCS: the Go runtime's worker-thread count, our `workers` counterpart. */
  readonly procs: number;
}

export interface RunningCaddy {
  readonly proc: ChildProcess;
  readonly pid: number;
  stop(): Promise<void>;
}

export async function startCaddy(opts: CaddyOptions): Promise<RunningCaddy> {
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-caddy-'));
  const caddyfile = path.join(dir, 'Caddyfile');
  // auto_https off: no ACME, no internal CA for "localhost", no :80 redirect listener; the site's
  // own `tls` line still serves TLS with our certificate. h3 is on by default in 2.6; listed anyway.
  writeFileSync(
    caddyfile,
    `{
	admin off
	auto_https off
	storage file_system ${dir}/data
	servers {
		protocols h1 h2 h3
	}
}
https://localhost:${opts.port} {
	bind 127.0.0.1
	tls ${opts.cert} ${opts.key}
	reverse_proxy 127.0.0.1:${opts.upstreamPort}
}
`,
  );
  const proc = spawn('caddy', ['run', '--config', caddyfile, '--adapter', 'caddyfile'], {
    cwd: dir,
    env: { ...process.env, HOME: dir, XDG_DATA_HOME: `${dir}/data`, XDG_CONFIG_HOME: `${dir}/config`, GOMAXPROCS: String(opts.procs) },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  let log = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`caddy not ready within 10 s:\n${log}`)), 10_000);
    proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      if (log.length < 64 * 1024) log += chunk;
      if (log.includes('serving initial configuration')) {
        clearTimeout(timer);
        if (log.includes('enabling HTTP/3 listener')) resolve();
        else reject(new Error(`caddy started without an HTTP/3 listener:\n${log}`));
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`caddy exited (${proc.exitCode ?? proc.signalCode}):\n${log}`));
    });
  });
  return {
    proc,
    pid: proc.pid!,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
