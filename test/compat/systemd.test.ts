// systemd helpers as real processes, against a NOTIFY_SOCKET stand-in that receives the fds:
// `grm activate` stores its sockets under NAME (FDSTOREREMOVE, then FDSTORE=1 with SCM_RIGHTS),
// registered as the next generation (and flipped with --advance-working-gen), or execs a command
// with them at fds 3..; `grm decoy` passes signals on, exits with its child's status, and exits 0
// at once when the child sends SIGURG (the child keeps running).
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { GRM } from '../../src/grm/abi.generated.js';
import { Agent } from '../../src/grm/compat/agent.js';
import { install } from '../../src/grm/compat/install.js';
import { parseAddress } from '../../src/grm/compat/list.js';
import { decodeGroup } from '../../src/grm/compat/records.js';
import { CompatState } from '../../src/grm/compat/state.js';
import { parseActivateArgs, parseBpfAsm } from '../../src/grm/compat/activate.js';
import { socketApp, socketGen, workingGen } from '../../src/grm/compat/udpgrm-socket.js';
import { boundAddress, createReuseportSocket, formatAddress, toSocketAddress } from '../../src/grm/sockets.js';
import { IPPROTO_IPV6, IPV6_V6ONLY, libc, SO_RCVBUF, SOL_SOCKET } from '../../src/sys/libc.js';
import { waitForExit, waitForPidGone } from '../helpers/deadline.js';
import { enterPrivateNetns } from '../helpers/netns.js';
import { NotifySocket } from '../helpers/notify-socket.js';
import { JsonChild, PYTHON, removeCompatPinDir, TestCgroup, uniqueCompatPinDir } from './harness.js';

enterPrivateNetns();
const pinDir = uniqueCompatPinDir('systemd');
const PORT = 46601;
let cg: TestCgroup;
let state: CompatState;
let agent: Agent;
let dir = '';
let notify: NotifySocket;
let entry = '';
const fds: number[] = [];
const strays: number[] = [];

beforeAll(() => {
  cg = new TestCgroup('systemd');
  state = CompatState.open(pinDir);
  install(state, cg.path);
  agent = new Agent(state, () => {});
  agent.start();
  dir = mkdtempSync(join(tmpdir(), 'grm-systemd-'));
  notify = new NotifySocket(join(dir, 'notify'));
  // `udpgrm-proxy grm ARGS` from the sources (tsx), without src/cli.ts's install layout.
  entry = join(dir, 'grm.mts');
  writeFileSync(entry, `const { runCompatCli } = await import(${JSON.stringify(resolve(import.meta.dirname, '../../src/grm/compat/cli.ts'))});\nprocess.exitCode = await runCompatCli(process.argv.slice(2));\n`);
});

afterAll(async () => {
  for (const fd of fds) libc.close(fd);
  for (const pid of strays) if (existsSync(`/proc/${pid}`)) process.kill(pid, 'SIGKILL');
  notify?.close();
  await agent?.stop();
  state?.close();
  removeCompatPinDir(pinDir);
  await cg?.remove();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const grm = (args: string[]): string[] => ['--import', 'tsx', entry, ...args];
const cwd = resolve(import.meta.dirname, '../..'); // where tsx resolves

test('activate: sockets stored under NAME with SCM_RIGHTS, registered as the next generation, flipped', async () => {
  const p = new JsonChild(cg.spawn(process.execPath, grm(['activate', 'dns', `127.0.0.1:${PORT}`, '-c', '2', '--noop', '--advance-working-gen', '-v']), { ...process.env, NOTIFY_SOCKET: notify.path }));
  expect(await p.exited).toBe(0);
  const msgs = notify.receive();
  fds.push(...msgs.flatMap((m) => m.fds));
  expect(msgs.map((m) => m.text)).toEqual(['FDSTOREREMOVE=1\nFDNAME=dns', 'FDSTORE=1\nFDNAME=dns']);
  expect(msgs[0]!.fds).toEqual([]);
  const stored = msgs[1]!.fds;
  expect(stored).toHaveLength(2);
  for (const fd of stored) {
    expect(formatAddress(boundAddress(fd))).toBe(`127.0.0.1:${PORT}`);
    expect(socketGen(fd).gen).toBe(1); // NOOP created the group (working gen 0): W + 1
  }
  expect(stored.map((fd) => socketGen(fd).idx).sort()).toEqual([0, 1]);
  expect(workingGen(stored[0]!)).toBe(1);
  const g = decodeGroup(state.maps.grmc_groups.lookup(parseAddress(`127.0.0.1:${PORT}`))!);
  expect(g.dissectorType).toBe(GRM.COMPAT_DISSECTOR_NOOP);
  expect(g.verbose).toBe(true);

  // The stored sockets serve: a datagram reaches one of them.
  const servers = stored.map((fd) => dgram.createSocket('udp4').bind({ fd }));
  const got = Promise.race(servers.map((s) => once(s, 'message').then(([m]) => (m as Buffer).toString())));
  const c = dgram.createSocket('udp4');
  c.send('hello', PORT, '127.0.0.1');
  expect(await got).toBe('hello');
  c.close();
  for (const s of servers) s.close(); // closes the fds
  fds.length = 0;
});

test('activate -- CMD: the command runs with the sockets at fds 3.. and LISTEN_* set for sd_listen_fds', async () => {
  const script = [
    'import json, os, socket, struct',
    's = socket.socket(fileno=3)',
    'gen, idx = struct.unpack("II", s.getsockopt(17, 201, 8))',
    'print(json.dumps(dict(fds=os.environ["LISTEN_FDS"], names=os.environ["LISTEN_FDNAMES"], pid_ok=os.environ["LISTEN_PID"] == str(os.getpid()), addr=list(s.getsockname()), gen=gen, idx=idx, reuseport=s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT))), flush=True)',
  ].join('\n');
  const p = new JsonChild(cg.spawn(process.execPath, grm(['activate', 'web', `127.0.0.1:${PORT + 1}`, '--', PYTHON, '-c', script])));
  const r = await p.line((l) => l.fds !== undefined);
  expect(await p.exited).toBe(0);
  expect(r).toEqual({ fds: '1', names: 'web', pid_ok: true, addr: ['127.0.0.1', PORT + 1], gen: 0, idx: 0, reuseport: 1 });
});

test('activate refuses bad input with udpgrm\'s messages and exit 1', async () => {
  const usage: Array<[string[], string]> = [
    [['x'], 'NAME and IP:PORT are required'],
    [['x', 'localhost:1'], 'not an IP address'],
    [['x', '127.0.0.1:1', '--sni', 'a.example:1'], '--sni needs --digest'],
    [['x', '127.0.0.1:1', '--app', '1'], 'You need to select --bpf, --digest or --sni before doing --app'],
    [['x', '127.0.0.1:1', '--tubular', 'l'], '--tubular is not supported'],
  ];
  for (const [args, text] of usage) expect(() => parseActivateArgs(args)).toThrow(text);
  expect(parseBpfAsm('struct sock_filter code[] = {\n{ 0x28, 0, 0, 0x00000001 },\n{ 0x16, 0, 0, 0000000000 },\n};\n')).toEqual([
    [0x28, 0, 0, 1],
    [0x16, 0, 0, 0],
  ]);
  // At run time: the group exists with another dissector.
  const p = new JsonChild(cg.spawn(process.execPath, grm(['activate', 'x', `127.0.0.1:${PORT}`, '--digest', '0xdead'])));
  expect(await p.exited).toBe(1);
  expect(p.lines.map((l) => l.text)).toContain(`[!] setsockopt(UDP_GRM_DISSECTOR) failed. Dissector conflict? Try 'udpgrm-proxy grm delete 127.0.0.1:${PORT}'.`);
});

function intOption(fd: number, level: number, name: number): number {
  const v = Buffer.alloc(4);
  expect(libc.getsockopt(fd, level, name, v, [4])).toBe(0);
  return v.readInt32LE(0);
}

test('activate options: -4, --rcvbuf, --no-register, --bpf, -m and -a (every socket), port 0; --freebind and the EOVERFLOW hint', async () => {
  const prog = join(dir, 'prog.bpf');
  writeFileSync(prog, 'struct sock_filter code[] = {\n{ 0x28, 0, 0, 0x00000001 },\n{ 0x16, 0, 0, 0000000000 },\n};\n');
  const args = ['activate', 'multi', '[::]:0', '-c', '2', '-4', '--rcvbuf', '65536', '--no-register', '--bpf', prog, '-m', '2', '-a', '1'];
  const p = new JsonChild(cg.spawn(process.execPath, grm(args), { ...process.env, NOTIFY_SOCKET: notify.path }));
  expect({ status: await p.exited, stdout: p.lines }).toEqual({ status: 0, stdout: [] });
  const msgs = notify.receive();
  fds.push(...msgs.flatMap((m) => m.fds));
  const stored = msgs[1]!.fds;
  expect(stored).toHaveLength(2);
  const addrs = stored.map((fd) => formatAddress(boundAddress(fd)));
  expect(addrs[0]).toMatch(/^\[::\]:\d+$/);
  expect(addrs[0]).not.toBe('[::]:0');
  expect(addrs[1]).toBe(addrs[0]); // port 0: the second socket takes the first one's port
  for (const fd of stored) {
    expect(intOption(fd, IPPROTO_IPV6, IPV6_V6ONLY)).toBe(0); // -4
    expect(intOption(fd, SOL_SOCKET, SO_RCVBUF)).toBe(131072); // doubled by the kernel
    expect(socketGen(fd)).toEqual({ gen: GRM.COMPAT_NONE, idx: GRM.COMPAT_NONE }); // --no-register
    expect(socketApp(fd)).toBe(1);
  }
  const g = decodeGroup(state.maps.grmc_groups.lookup(parseAddress(addrs[0]!))!);
  expect([g.dissectorType, g.maxApps, g.filterLen]).toEqual([GRM.COMPAT_DISSECTOR_CBPF, 2, 2]);
  for (const fd of stored) libc.close(fd);
  fds.length = 0;

  // 192.0.2.1 is configured nowhere: --freebind binds it; app 1 of 1 app then fails.
  const over = new JsonChild(cg.spawn(process.execPath, grm(['activate', 'x', '192.0.2.1:0', '--freebind', '--digest', '0xdead', '-m', '1', '-a', '1'])));
  expect(await over.exited).toBe(1);
  expect(String(over.lines[0]?.text)).toMatch(/^\[!\] setsockopt\(UDP_GRM_SOCKET_APP\) failed\. Perhaps conflict with --apps-max\?/);
});

/** A decoy whose child reports itself, prints signals it gets, sends SIGURG to its parent on SIGTERM, exits on "exit N". */
function decoy(listenFd: number): JsonChild {
  const script = [
    'import json, os, signal, socket, sys',
    'def out(**kw): print(json.dumps(kw), flush=True)',
    'signal.signal(signal.SIGHUP, lambda *a: out(sig="HUP"))',
    'signal.signal(signal.SIGTERM, lambda *a: (out(sig="TERM"), os.kill(os.getppid(), signal.SIGURG)))',
    'out(pid=os.getpid(), listen_pid=os.environ["LISTEN_PID"], fd3=list(socket.socket(fileno=3).getsockname()))',
    'for line in sys.stdin:',
    '    if line.startswith("exit"): sys.exit(int(line.split()[1]))',
  ].join('\n');
  const p = spawn(process.execPath, grm(['decoy', '--', PYTHON, '-c', script]), {
    cwd,
    stdio: ['pipe', 'pipe', 'pipe', listenFd],
    env: { ...process.env, LISTEN_PID: String(process.pid), LISTEN_FDS: '1' },
  });
  return new JsonChild(p);
}

test('decoy: the child gets LISTEN_PID = its pid and fd 3, signals are passed on, its exit status is the decoy\'s', async () => {
  const fd = createReuseportSocket(toSocketAddress({ host: '127.0.0.1', port: PORT + 2 }));
  fds.push(fd);
  const d = decoy(fd);
  const hello = await d.line((l) => l.pid !== undefined);
  strays.push(hello.pid as number);
  expect(hello.listen_pid).toBe(String(hello.pid));
  expect(hello.fd3).toEqual(['127.0.0.1', PORT + 2]);
  d.proc.kill('SIGHUP');
  await d.line((l) => l.sig === 'HUP');
  d.proc.stdin!.write('exit 3\n');
  expect(await d.exited).toBe(3);
});

test('decoy: SIGTERM reaches the child; its SIGURG ends the decoy with 0 while the child drains on', async () => {
  const d = decoy(fds[fds.length - 1]!);
  const hello = await d.line((l) => l.pid !== undefined);
  const child = hello.pid as number;
  strays.push(child);
  d.proc.kill('SIGTERM');
  await waitForExit(d.proc, 'the decoy', 10_000);
  expect(d.proc.exitCode).toBe(0);
  expect(existsSync(`/proc/${child}`)).toBe(true); // still serving its connections
  d.proc.stdin!.write('exit 0\n');
  await waitForPidGone(child, 'the drained child', 10_000);
});
