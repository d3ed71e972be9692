/**
 * Isolation for udpgrm-compat tests: a private netns (helpers/netns.ts), a dedicated child cgroup
 * of the cgroup2 mount holding only the test's child processes, a unique pin dir, and Python
 * clients (udpgrm_client.py) started inside the cgroup. Everything is removed by cleanup(), also
 * after a failure; never the root cgroup.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll } from 'vitest';
import { Agent } from '../../src/grm/compat/agent.js';
import { uninstallCompat } from '../../src/grm/compat/cli.js';
import { cgroup2Mount, install } from '../../src/grm/compat/install.js';
import { CompatState } from '../../src/grm/compat/state.js';
import { waitUntil } from '../helpers/deadline.js';

export const CLIENT = resolve(import.meta.dirname, 'udpgrm_client.py');
/** The interpreter itself: a version manager's `python3` shim can cost a second per start. */
export const PYTHON = execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();

/** A child process whose stdout lines are JSON objects. */
export class JsonChild {
  readonly lines: Array<Record<string, unknown>> = [];
  readonly exited: Promise<number>;
  stderr = '';
  private waiters: Array<() => void> = [];

  constructor(readonly proc: ChildProcess) {
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      try {
        this.lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        this.lines.push({ text: line });
      }
      for (const w of this.waiters.splice(0)) w();
    });
    proc.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((res) => proc.on('exit', (code, sig) => res(code ?? (sig ? 128 : 1))));
    void this.exited.then(() => {
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** Resolves at the next line or at exit (never rejects): for waiting on several children. */
  changed(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return Promise.resolve();
    return new Promise((res) => this.waiters.push(res));
  }

  /** The first line matching `pred`, waiting for it (rejects when the process exits first or at the deadline). */
  async line(pred: (l: Record<string, unknown>) => boolean, timeoutMs = 20_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    let done = false;
    void this.exited.then(() => (done = true));
    for (;;) {
      const hit = this.lines.find(pred);
      if (hit) return hit;
      if (done) throw new Error(`process exited without the expected line; stdout ${JSON.stringify(this.lines)} stderr ${this.stderr}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out; stdout ${JSON.stringify(this.lines)} stderr ${this.stderr}`);
      await new Promise<void>((res) => {
        const t = setTimeout(res, left);
        this.waiters.push(() => {
          clearTimeout(t);
          res();
        });
      });
    }
  }
}

export class TestCgroup {
  readonly path: string;
  private readonly children: ChildProcess[] = [];

  constructor(tag: string) {
    const mount = cgroup2Mount();
    this.path = join(mount, `udpgrm-proxy-test-${tag}-${process.pid}-${randomBytes(3).toString('hex')}`);
    if (this.path === mount) throw new Error('refusing to use the root cgroup');
    mkdirSync(this.path);
  }

  /** Starts a command as a member of this cgroup: it joins before exec, so its sockets get the hooks. */
  spawn(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
    const p = spawn('sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', this.path, cmd, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env });
    this.children.push(p);
    return p;
  }

  python(args: readonly string[]): JsonChild {
    return new JsonChild(this.spawn(PYTHON, [CLIENT, ...args]));
  }

  /** Kills whatever still runs in the cgroup and removes it. */
  async remove(): Promise<void> {
    if (!existsSync(this.path)) return;
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    const kill = join(this.path, 'cgroup.kill');
    if (existsSync(kill)) writeFileSync(kill, '1');
    await waitUntil('the test cgroup to empty', () => readFileSync(join(this.path, 'cgroup.procs'), 'utf8').trim() === '', { timeoutMs: 10_000 });
    rmdirSync(this.path);
  }
}

export function uniqueCompatPinDir(tag: string): string {
  return `/sys/fs/bpf/grmc-test-${tag}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

/**
 * Removes a compat pin dir whatever state it is in (links detached, groups forgotten). Never
 * throws: when the orderly uninstall fails (a test failed half-way, or the pins come from another
 * build), the pins are unlinked outright, which detaches links no process holds.
 */
export function removeCompatPinDir(pinDir: string): void {
  try {
    uninstallCompat(pinDir);
  } catch (err) {
    process.stderr.write(`removeCompatPinDir: orderly uninstall of ${pinDir} failed (${(err as Error).message}); unlinking the pins\n`);
  }
  rmSync(pinDir, { recursive: true, force: true });
}

/** A generation started with `udpgrm_client.py serve` (see there): stdin commands, stdout events. */
export class Served extends JsonChild {
  gen = -1;
  cookie = -1;
  soCookie = 0n;

  /** Writes a command line and returns the first line after it that matches `pred`. */
  async command(text: string, pred: (l: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
    const from = this.lines.length;
    this.proc.stdin!.write(`${text}\n`);
    return this.line((l) => this.lines.indexOf(l) >= from && pred(l));
  }

  flip(): Promise<Record<string, unknown>> {
    return this.command('flip', (l) => l.step === 'flipped');
  }

  /** FLOW_ASSURE of host:port from this socket: "ok" or the errno name. */
  async assure(host: string, port: number): Promise<string> {
    return (await this.command(`assure ${host} ${port}`, (l) => l.assure !== undefined && l.port === port)).assure as string;
  }
}

/** Starts a generation in the cgroup and waits until it is registered. */
export async function serve(cg: TestCgroup, port: number, spec: Record<string, unknown>, host = '127.0.0.1'): Promise<Served> {
  const s = new Served(cg.spawn(PYTHON, [CLIENT, 'serve', host, String(port), JSON.stringify(spec)]));
  const r = await s.line((l) => l.step === 'registered');
  s.gen = r.gen as number;
  s.cookie = r.cookie as number;
  s.soCookie = BigInt(r.so_cookie as number);
  return s;
}

/** Which of `servers` received the datagram whose payload is `payload` (index), waiting on their output. */
export async function receiver(servers: readonly JsonChild[], payload: string, timeoutMs = 5_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const i = servers.findIndex((s) => s.lines.some((l) => l.rx === payload));
    if (i >= 0) return i;
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`no server received '${payload}'`);
    let timer: NodeJS.Timeout | undefined;
    // Only running servers: an exited one's changed() resolves at once, and racing it would spin
    // on microtasks, starving the event loop (the datagram's own send included).
    const running = servers.filter((s) => s.proc.exitCode === null && s.proc.signalCode === null);
    await Promise.race([...running.map((s) => s.changed()), new Promise<void>((res) => (timer = setTimeout(res, left)))]);
    clearTimeout(timer);
  }
}

/** One test file's compat setup (see useCompatAgent). */
export interface CompatFixture {
  readonly pinDir: string;
  readonly cg: TestCgroup;
  readonly state: CompatState;
  readonly agent: Agent;
}

/**
 * For the test file that calls it: a dedicated cgroup with the hooks installed, its own pin dir
 * and a running agent, all removed after the file even when a test failed. The fields exist once
 * the file's beforeAll ran.
 */
export function useCompatAgent(tag: string, onLog: ConstructorParameters<typeof Agent>[1] = () => {}): CompatFixture {
  const pinDir = uniqueCompatPinDir(tag);
  let cg: TestCgroup | undefined;
  let state: CompatState | undefined;
  let agent: Agent | undefined;
  beforeAll(() => {
    cg = new TestCgroup(tag);
    state = CompatState.open(pinDir);
    install(state, cg.path);
    agent = new Agent(state, onLog);
    agent.start();
  });
  afterAll(async () => {
    await agent?.stop();
    state?.close();
    removeCompatPinDir(pinDir);
    await cg?.remove();
  });
  return {
    pinDir,
    get cg() {
      return cg!;
    },
    get state() {
      return state!;
    },
    get agent() {
      return agent!;
    },
  };
}

/** A UDP client socket on 127.0.0.1 for the test file that calls it, closed after the file. */
export function useUdpClient(): { readonly socket: dgram.Socket } {
  let socket: dgram.Socket | undefined;
  beforeAll(async () => {
    socket = dgram.createSocket('udp4');
    socket.bind(0, '127.0.0.1');
    await once(socket, 'listening');
  });
  afterAll(() => {
    socket?.close();
  });
  return {
    get socket() {
      return socket!;
    },
  };
}
