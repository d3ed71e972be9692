/**
 * The control protocol and socket without a master: requests and replies decoded (and refused with
 * a path to what is wrong), the wire format an older master speaks, and the errors a client tells
 * apart (only "nobody listening" means no master).
 */
import { existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, expectTypeOf, it } from 'vitest';
import { ControlError, ControlServer, controlRequest } from '../../src/proxy/process/control.js';
import { formatStatus } from '../../src/proxy/process/control-client.js';
import { decodeReply, decodeRequest, type ControlHandlers, type ControlReply, type StatusReply } from '../../src/proxy/process/control-protocol.js';
import { DecodeError } from '../../src/proxy/process/json-decode.js';
import { AF_UNIX, libc } from '../../src/sys/libc.js';

const SOCK_STREAM = 1;

/** A unix socket file nobody listens on, as a master killed with SIGKILL leaves it. */
function staleSocket(at: string): void {
  const fd = libc.socket(AF_UNIX, SOCK_STREAM, 0) as number;
  const addr = Buffer.alloc(110);
  addr.writeUInt16LE(AF_UNIX, 0);
  addr.write(at, 2, 'utf8');
  expect(libc.bind(fd, addr, 2 + Buffer.byteLength(at) + 1)).toBe(0);
  libc.close(fd);
}

const dir = mkdtempSync(path.join(tmpdir(), 'control-protocol-test-'));
let n = 0;
const socketPath = (): string => path.join(dir, `c${++n}.sock`);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const STATUS: StatusReply = {
  ok: true,
  pid: 42,
  config: '/etc/proxy.yaml',
  counters: { reloadsOk: 1, reloadsFailed: 0, workerRestarts: 2 },
  generations: [
    {
      id: 3,
      state: 'working',
      ageMs: 1500,
      slots: [1],
      workers: [
        { index: 0, pid: 100, connections: 2, activeRequests: 1 },
        {
          index: 1,
          connections: 0,
          activeRequests: 0,
          quic: { datagramsIn: 5, datagramsOut: 6, connectionsAccepted: 1, statelessResets: 0, internalErrors: 0, dropped: { short_header_unknown_cid: 2 } },
        },
      ],
    },
  ],
};

describe('requests', () => {
  it('decodes each command with its fields', () => {
    expect(decodeRequest({ cmd: 'reload' })).toEqual({ cmd: 'reload' });
    expect(decodeRequest({ cmd: 'status' })).toEqual({ cmd: 'status' });
    expect(decodeRequest({ cmd: 'stop', graceful: false })).toEqual({ cmd: 'stop', graceful: false });
    expect(decodeRequest({ cmd: 'upgrade' })).toEqual({ cmd: 'upgrade' });
    expect(decodeRequest({ cmd: 'handover', pid: 123 })).toEqual({ cmd: 'handover', pid: 123 });
  });

  it('drops fields it does not know (a newer peer may send more)', () => {
    expect(decodeRequest({ cmd: 'handover', pid: 7, since: 'v2' })).toEqual({ cmd: 'handover', pid: 7 });
  });

  it('refuses what is not a request, naming what is wrong', () => {
    expect(() => decodeRequest(null)).toThrow(new DecodeError('control request needs a "cmd" string'));
    expect(() => decodeRequest({ cmd: 5 })).toThrow(new DecodeError('control request needs a "cmd" string'));
    expect(() => decodeRequest({ cmd: 'toString' })).toThrow(new DecodeError('unknown control command "toString"'));
    expect(() => decodeRequest({ cmd: 'stop' })).toThrow(new DecodeError('request.graceful: expected a boolean, got undefined'));
    expect(() => decodeRequest({ cmd: 'handover', pid: '1' })).toThrow(new DecodeError('request.pid: expected a number, got string'));
  });
});

describe('replies', () => {
  it('decodes the reply of each command, typed by the command', () => {
    const reload = decodeReply('reload', { ok: true, generation: 4, phases: { validateMs: 1.5, startAndFlipMs: 300 } });
    expectTypeOf(reload).toEqualTypeOf<ControlReply<'reload'>>();
    expect(reload).toEqual({ ok: true, generation: 4, phases: { validateMs: 1.5, startAndFlipMs: 300 } });
    expect(decodeReply('status', STATUS)).toEqual(STATUS);
    expect(decodeReply('upgrade', { ok: true, pid: 9 })).toEqual({ ok: true, pid: 9 });
    expect(decodeReply('stop', { ok: true })).toEqual({ ok: true });
    expect(decodeReply('handover', { ok: true })).toEqual({ ok: true });
  });

  it('decodes and lists the workers of a master from before sites (TCP counters without the site handoffs)', () => {
    const tcp = { accepted: 3, h1Connections: 1, h2Connections: 1, refusedConnections: 0, rapidResetCutoffs: 0, tlsErrors: 0, malformed: 0 };
    const older = { ...STATUS, generations: [{ ...STATUS.generations[0]!, workers: [{ index: 0, pid: 100, connections: 2, activeRequests: 0, tcp }] }] };
    const reply = decodeReply('status', older);
    expect(reply).toEqual(older);
    const lines = formatStatus(reply as StatusReply);
    expect(lines.find((l) => l.includes('worker 0'))).toMatch(/tcp h1 1 h2 1 accepted 3 over-limit 0 rapid-reset 0 tls-errors 0 malformed 0$/);
    // A worker of this release lists its handoffs; a missing required counter still fails, by path.
    const withHandoffs = { ...tcp, clientHellosRefused: 0, handedOff: 4, adopted: 1, handoffsFailed: 0 };
    const current = { ...STATUS, generations: [{ ...STATUS.generations[0]!, workers: [{ index: 0, connections: 0, activeRequests: 0, tcp: withHandoffs }] }] };
    expect(formatStatus(decodeReply('status', current) as StatusReply).join('\n')).toMatch(/sni handed-off 4 adopted 1 handoff-failed 0 hello-refused 0/);
    const { accepted: _accepted, ...noAccepted } = tcp;
    const broken = { ...STATUS, generations: [{ ...STATUS.generations[0]!, workers: [{ index: 0, connections: 0, activeRequests: 0, tcp: noAccepted }] }] };
    expect(() => decodeReply('status', broken)).toThrow(new DecodeError('reply.generations[0].workers[0].tcp.accepted: expected a number, got undefined'));
  });

  it('accepts a failure as the reply to any command', () => {
    for (const cmd of ['reload', 'status', 'stop', 'upgrade', 'handover'] as const) {
      expect(decodeReply(cmd, { ok: false, error: 'no' })).toEqual({ ok: false, error: 'no' });
    }
  });

  it('refuses a reply of the wrong shape, naming the path to the first fault', () => {
    expect(() => decodeReply('reload', { ok: true, phases: {} })).toThrow(new DecodeError('reply.generation: expected a number, got undefined'));
    expect(() => decodeReply('upgrade', { ok: false })).toThrow(new DecodeError('reply.error: expected a string, got undefined'));
    expect(() => decodeReply('upgrade', 'yes')).toThrow(new DecodeError('reply: expected an object, got string'));
    const bad = structuredClone(STATUS) as unknown as { generations: Array<{ workers: Array<Record<string, unknown>> }> };
    bad.generations[0]!.workers[1]!.connections = null;
    expect(() => decodeReply('status', bad)).toThrow(new DecodeError('reply.generations[0].workers[1].connections: expected a number, got null'));
  });
});

describe('control socket', () => {
  const closers: Array<() => void> = [];
  afterEach(() => closers.splice(0).forEach((close) => close()));

  const handlers: ControlHandlers = {
    reload: async () => ({ ok: true, generation: 2, phases: { validateMs: 1 } }),
    status: async () => STATUS,
    stop: async () => ({ ok: true }),
    upgrade: async () => ({ ok: false, error: 'new master exited (1) before taking over' }),
    handover: async () => {
      throw new Error('handler failed');
    },
  };

  async function listen(): Promise<ControlServer> {
    const server = await ControlServer.listen(socketPath(), handlers);
    closers.push(() => server.close());
    return server;
  }

  /** What a client of another version sees: the raw reply line to a raw request line. */
  function rawExchange(at: string, line: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const c = net.createConnection(at, () => c.write(line));
      let buf = '';
      c.setEncoding('utf8').on('data', (chunk: string) => {
        buf += chunk;
        if (buf.includes('\n')) {
          c.destroy();
          resolve(buf);
        }
      });
      c.on('error', reject);
    });
  }

  it('answers each request with the reply its handler gave', async () => {
    const server = await listen();
    expect(await controlRequest(server.path, { cmd: 'reload' })).toEqual({ ok: true, generation: 2, phases: { validateMs: 1 } });
    expect(await controlRequest(server.path, { cmd: 'status' })).toEqual(STATUS);
    expect(await controlRequest(server.path, { cmd: 'upgrade' })).toEqual({ ok: false, error: 'new master exited (1) before taking over' });
    expect(await controlRequest(server.path, { cmd: 'handover', pid: 1 })).toEqual({ ok: false, error: 'handler failed' });
  });

  it('speaks one JSON object per line each way, as earlier releases do', async () => {
    const server = await listen();
    expect(await rawExchange(server.path, '{"cmd":"reload"}\n')).toBe('{"ok":true,"generation":2,"phases":{"validateMs":1}}\n');
    expect(await rawExchange(server.path, '{"cmd":"stop","graceful":true}\n')).toBe('{"ok":true}\n');
    expect(await rawExchange(server.path, 'reload\n')).toBe('{"ok":false,"error":"control request is not JSON"}\n');
    expect(await rawExchange(server.path, '{"cmd":"nope"}\n')).toBe('{"ok":false,"error":"unknown control command \\"nope\\""}\n');
  });

  it('takes over a socket file nobody listens on', async () => {
    const stale = socketPath();
    staleSocket(stale);
    expect(lstatSync(stale).isSocket()).toBe(true);
    const server = await ControlServer.listen(stale, handlers);
    closers.push(() => server.close());
    expect(await controlRequest(stale, { cmd: 'stop', graceful: true })).toEqual({ ok: true });
  });

  it('creates the socket 0600', async () => {
    const at = socketPath();
    const server = await ControlServer.listen(at, handlers);
    closers.push(() => server.close());
    expect(lstatSync(at).mode & 0o777).toBe(0o600);
  });

  it('refuses a regular file at its path, naming it, and leaves it there', async () => {
    const at = socketPath();
    writeFileSync(at, 'not ours');
    await expect(ControlServer.listen(at, handlers)).rejects.toThrow(
      `control socket path ${at} is a regular file, not a socket: not removing it; move it away or set process.control_socket`,
    );
    expect(readFileSync(at, 'utf8')).toBe('not ours');
  });

  it('refuses a symlink at its path, even to a stale socket, and leaves both', async () => {
    const target = socketPath();
    staleSocket(target);
    const at = socketPath();
    symlinkSync(target, at);
    await expect(ControlServer.listen(at, handlers)).rejects.toThrow(`control socket path ${at} is a symlink, not a socket`);
    expect(lstatSync(at).isSymbolicLink()).toBe(true);
    expect(existsSync(target)).toBe(true);
  });

  async function failure(at: string, timeoutMs?: number): Promise<ControlError> {
    const err: unknown = await controlRequest(at, { cmd: 'status' }, timeoutMs).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ControlError);
    return err as ControlError;
  }

  /** A unix socket server that does `onConnection` with each client instead of speaking the protocol. */
  async function impostor(onConnection: (c: net.Socket) => void): Promise<string> {
    const at = socketPath();
    const server = net.createServer(onConnection);
    await new Promise<void>((resolve) => server.listen(at, resolve));
    closers.push(() => server.close());
    return at;
  }

  it('"no master" only when nobody listens: no socket file, or a file nobody listens on', async () => {
    const missing = socketPath();
    expect(await failure(missing)).toMatchObject({ kind: 'no-master', message: `no running udpgrm-proxy master on ${missing}` });
    const stale = socketPath();
    writeFileSync(stale, '');
    expect(await failure(stale)).toMatchObject({ kind: 'no-master', message: `no running udpgrm-proxy master on ${stale}` });
  });

  it('a listener that does not answer in time is a timeout naming the socket', async () => {
    const at = await impostor(() => {});
    expect(await failure(at, 200)).toMatchObject({ kind: 'timeout', message: `no answer from the master on ${at} within 200 ms` });
  });

  it('a reply that is not JSON, not of the protocol, or missing is a bad reply naming the socket', async () => {
    const notJson = await impostor((c) => c.end('hello\n'));
    expect(await failure(notJson)).toMatchObject({ kind: 'bad-reply', message: `bad reply from the master on ${notJson}: not JSON` });
    const wrongShape = await impostor((c) => c.end('{"ok":true}\n'));
    expect(await failure(wrongShape)).toMatchObject({ kind: 'bad-reply', message: `bad reply from the master on ${wrongShape}: reply.pid: expected a number, got undefined` });
    const silent = await impostor((c) => c.end());
    expect(await failure(silent)).toMatchObject({ kind: 'bad-reply', message: `the master on ${silent} closed the connection without a reply` });
  });

  it('a path that is no socket at all is unreachable, not "no master"', async () => {
    // A regular file where a directory should be: connect fails with ENOTDIR, not "nobody listening".
    const notSocket = path.join(dir, 'a-file', 'below-a-file.sock');
    writeFileSync(path.join(dir, 'a-file'), '');
    const err = await failure(notSocket);
    expect(err.kind).toBe('unreachable');
    expect(err.message).toMatch(new RegExp(`^cannot talk to the master on ${notSocket}: .*ENOTDIR`));
  });
});
