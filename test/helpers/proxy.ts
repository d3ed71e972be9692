/**
 * Runs the real proxy binary for integration tests: writes a config into a temp dir, starts
 * `bin/udpgrm-proxy`, waits for its "ready" log line, and stops it (SIGKILL as a last resort).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { removePinDir, uniquePinDir } from './netns.js';

export const REPO = path.resolve(import.meta.dirname, '../..');
export const PROXY_BIN = path.join(REPO, 'bin/udpgrm-proxy');

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `udpgrm-proxy ARGS…` (reload, list, check, …) to completion; never throws for a non-zero exit. */
export function runCli(...args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [PROXY_BIN, ...args], { encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

export interface RunningProxy {
  readonly proc: ChildProcess;
  readonly dir: string;
  readonly configFile: string;
  /** Every JSON log line the proxy printed so far. */
  readonly logs: Array<Record<string, unknown>>;
  /** Resolves with the first log line matching `pred` (including ones already seen). */
  waitForLog(pred: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** The master's child processes (its workers), from /proc, in ascending order. */
export function workerPids(masterPid: number): number[] {
  const out = readFileSync(`/proc/${masterPid}/task/${masterPid}/children`, 'utf8').trim();
  return out ? out.split(/\s+/).map(Number).sort((a, b) => a - b) : [];
}

export function makeTempDir(prefix = 'udpgrm-proxy-test-'): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

/** A port free for both UDP and TCP on the given host (a listener serves h3 on one, h1/h2 on the other). */
export async function freeUdpPort(host = '127.0.0.1'): Promise<number> {
  for (;;) {
    const sock = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    const port = await new Promise<number>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(0, host, () => resolve(sock.address().port));
    });
    await new Promise<void>((r) => sock.close(() => r()));
    // Listeners serve TCP (h1, h2) on the same port by default: it must be free there too.
    if (port > 1024 && (await tcpPortFree(host, port))) return port;
  }
}

function tcpPortFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

export interface StartProxyOptions {
  readonly dir?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Sees every log line as it arrives (e.g. to tally access-log lines without keeping them). */
  readonly onLog?: (line: Record<string, unknown>) => void;
  /** Which lines `logs` keeps (default all); waitForLog only sees kept lines. */
  readonly keepLog?: (line: Record<string, unknown>) => boolean;
}

export async function startProxy(configYaml: string, opts: StartProxyOptions = {}): Promise<RunningProxy> {
  const dir = opts.dir ?? makeTempDir();
  const configFile = path.join(dir, 'proxy.yaml');
  // Every test proxy gets its own BPF pin dir (unless the test chose one), removed at stop.
  const pinDir = /^process:/m.test(configYaml) ? undefined : uniquePinDir('proxy');
  writeFileSync(configFile, pinDir ? `${configYaml}\nprocess: { pin_dir: "${pinDir}" }\n` : configYaml);
  const proc = spawn(process.execPath, [PROXY_BIN, '--config', configFile], {
    cwd: dir,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, unknown>> = [];
  const waiters: Array<{ pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }> = [];
  let stderr = '';
  let buffered = '';
  proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      let obj: Record<string, unknown>;
      try {
        obj = JSON.parse(line) as Record<string, unknown>;
      } catch {
        obj = { msg: line };
      }
      opts.onLog?.(obj);
      if (opts.keepLog && !opts.keepLog(obj)) continue;
      logs.push(obj);
      for (const w of [...waiters]) {
        if (w.pred(obj)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(obj);
        }
      }
    }
  });
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));

  const waitForLog = (pred: (l: Record<string, unknown>) => boolean, timeoutMs = 20_000): Promise<Record<string, unknown>> => {
    const seen = logs.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`proxy log line not seen in ${timeoutMs} ms; stderr: ${stderr}`)), timeoutMs);
      const w = {
        pred,
        resolve: (l: Record<string, unknown>) => {
          clearTimeout(timer);
          resolve(l);
        },
      };
      waiters.push(w);
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`proxy exited (${code}) before the expected log line; stderr: ${stderr}`));
      });
    });
  };

  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> => {
    let code = proc.exitCode;
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill(signal);
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      code = await exited;
      clearTimeout(timer);
    }
    // Also after the master went away by itself (an upgrade hands over to a new master).
    if (pinDir) removePinDir(pinDir);
    if (!opts.dir) rmSync(dir, { recursive: true, force: true });
    return code;
  };

  await waitForLog((l) => l.msg === 'ready');
  return { proc, dir, configFile, logs, waitForLog, stop };
}

/** `udpgrm-proxy list --config FILE --json` of a running proxy, parsed (what `list` shows per generation and worker). */
export async function listJson(proxy: RunningProxy): Promise<ListedProxy> {
  const { stdout } = await promisify(execFile)(process.execPath, [PROXY_BIN, 'list', '--config', proxy.configFile, '--json'], { encoding: 'utf8', timeout: 30_000 });
  return JSON.parse(stdout) as ListedProxy;
}

export interface ListedProxy {
  readonly generations: ReadonlyArray<{ readonly id: number; readonly state: string; readonly workers: ReadonlyArray<{ readonly index: number; readonly quic?: Record<string, unknown> }> }>;
}
