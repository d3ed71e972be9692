// `udpgrm-proxy grm` as udpgrm's command line, run as real processes: --daemon --install=CGROUP
// (READY=1 to NOTIFY_SOCKET once serving, programs pinned by hook name), a daemon restart (SIGKILL
// mid-stream, then a stopped daemon) while sockets register loses no registration (requests wait
// in the pinned ring), list, flows, metrics, delete, -h and the exit codes; --install alone, -iCG,
// --self, --without-sendmsg, the EUSERS warning, -p DIR, --force.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { cgroup2Mount } from '../../src/grm/compat/install.js';
import { compileToTempDir } from '../helpers/compiled.js';
import { enterPrivateNetns } from '../helpers/netns.js';
import { NotifySocket } from '../helpers/notify-socket.js';
import { JsonChild, removeCompatPinDir, TestCgroup, uniqueCompatPinDir } from './harness.js';

enterPrivateNetns();
const pinDir = uniqueCompatPinDir('daemon');
let buildDir = '';
let cg: TestCgroup;
let cg2: TestCgroup; // for --install alone
let notifyDir = '';
let notify: NotifySocket;
const daemons: ChildProcess[] = [];

let entry = '';

beforeAll(() => {
  buildDir = compileToTempDir('grm-compat-');
  // `udpgrm-proxy grm ARGS` minus src/cli.ts, which reads package.json from the install layout.
  entry = join(buildDir, 'grm-entry.mjs');
  symlinkSync(resolve(import.meta.dirname, '../../bpf'), join(buildDir, 'bpf')); // the built objects
  writeFileSync(entry, "const { runCompatCli } = await import('./src/grm/compat/cli.js');\nprocess.exitCode = await runCompatCli(process.argv.slice(2));\n");
  cg = new TestCgroup('daemon');
  cg2 = new TestCgroup('daemon-install');
  notifyDir = mkdtempSync(join(tmpdir(), 'grm-notify-'));
  notify = new NotifySocket(join(notifyDir, 'notify'));
}, 120_000);

afterAll(async () => {
  for (const d of daemons) if (d.exitCode === null && d.signalCode === null) d.kill('SIGKILL');
  removeCompatPinDir(pinDir);
  await cg?.remove();
  await cg2?.remove();
  notify?.close();
  if (notifyDir) rmSync(notifyDir, { recursive: true, force: true });
  if (buildDir) rmSync(buildDir, { recursive: true, force: true });
});

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [entry, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A daemon (outside the test cgroup: it serves it), ready once it tails the ring. */
async function daemon(extra: string[] = []): Promise<JsonChild> {
  const p = spawn(process.execPath, [entry, '--daemon', `--pin-dir=${pinDir}`, ...extra], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NOTIFY_SOCKET: notify.path } });
  daemons.push(p);
  const d = new JsonChild(p);
  await d.line((l) => typeof l.text === 'string' && l.text.startsWith('[*] Tailing message ring buffer'));
  return d;
}

const registered = (l: Record<string, unknown>): boolean => l.step === 'registered';

/** The links of a cgroup in the pin dir: `<inode>_<hook>` names, hooks sorted. */
function links(cgroupPath: string): string[] {
  const prefix = `${statSync(cgroupPath).ino}_`;
  return readdirSync(pinDir).filter((f) => f.startsWith(prefix)).map((f) => f.slice(prefix.length)).sort();
}
const HOOKS = ['getsockopt', 'inet4_bind', 'inet6_bind', 'setsockopt', 'udp4_sendmsg', 'udp6_sendmsg'];

test('daemon restarts while sockets register: every registration completes', async () => {
  expect(notify.drain()).toEqual([]);
  let d = await daemon([`--install=${cg.path}`]);
  // sd_notify READY=1 once maps, hooks and the agent are up (before the line waited on above);
  // the programs are pinned under their hook names, as udpgrm's daemon does.
  expect(notify.drain()).toEqual(['READY=1']);
  expect(readdirSync(pinDir).filter((f) => HOOKS.includes(f)).sort()).toEqual(HOOKS);
  expect(links(cg.path)).toEqual(HOOKS);
  const first = Array.from({ length: 4 }, (_, i) => cg.python(['register', '127.0.0.1', String(46201 + i)]));
  await first[0]!.line(registered);
  d.proc.kill('SIGKILL'); // possibly in the middle of a request: it is served again, idempotently
  await d.exited;
  const second = Array.from({ length: 4 }, (_, i) => cg.python(['register', '127.0.0.1', String(46211 + i)]));
  d = await daemon();
  for (const p of [...first, ...second]) {
    await p.line(registered);
    expect(await p.exited).toBe(0);
  }
  // A cleanly stopped daemon leaves hooks and queue: requests made meanwhile wait for the next one.
  d.proc.kill('SIGTERM');
  expect(await d.exited).toBe(0);
  const waiting = cg.python(['register', '127.0.0.1', '46221']);
  await waiting.line((l) => l.step === 'probe');
  d = await daemon();
  await waiting.line(registered);
  expect(await waiting.exited).toBe(0);
  expect(d.lines.some((l) => String(l.text).includes('127.0.0.1:46221') && String(l.text).includes('registered: gen 1 slot 1 idx 0'))).toBe(true);
});

test('list, delete, -h and exit codes as udpgrm', () => {
  const list = cli(['list', `--pin-dir=${pinDir}`]);
  expect(list.status).toBe(0);
  expect(list.stdout).toMatch(/^127\.0\.0\.1:46221\n\tnetns 0x[0-9a-f]+  dissector flow  flow_timeout_sec 0\n\tsocket generations:\n\t\tgen  1  dead  <=  app 0  gen 1\n/m);
  const one = cli(['list', '-v', `--pin-dir=${pinDir}`, '127.0.0.1:46201']);
  expect(one.stdout.split('\n')[0]).toBe('127.0.0.1:46201');
  expect(one.stdout).toContain('\t\tgen  1  0:dead  <=  app 0  gen 1\n');
  // A request re-served after the SIGKILL may find its process gone: counted as critical.
  expect(one.stdout).toMatch(/\tmetrics:\n\t\tsocket_critical_gauge [01]\n\t\tsocket_critical \d+\n\t\trx_processed_total 0\n/);

  expect(cli(['delete', '127.0.0.1:46201', `--pin-dir=${pinDir}`]).status).toBe(0);
  expect(cli(['list', `--pin-dir=${pinDir}`]).stdout).not.toContain('127.0.0.1:46201\n');
  expect(cli(['delete', '127.0.0.1:46201', `--pin-dir=${pinDir}`]).status).toBe(255);
  const help = cli(['-h']);
  expect(help.status).toBe(254);
  expect(help.stdout).toContain('--install[=CGROUP]');
  expect(cli(['frobnicate', `--pin-dir=${pinDir}`]).status).toBe(255);
  expect(cli(['--daemon', 'list']).status).toBe(255);
});

test('after delete the address has no group: the probe reads -1 again', async () => {
  const probe = cg.python(['probe', '127.0.0.1', '46201']);
  expect(await probe.exited).toBe(0);
  expect(probe.lines).toEqual([{ working_gen: -1 }]);
});

test('flows and metrics from the command line, -p DIR', () => {
  const metrics = cli(['metrics', '-p', pinDir]);
  expect(metrics.status).toBe(0);
  expect(metrics.stdout).toMatch(/^build_info\{version="[^"]+"\} 1\n/);
  expect(metrics.stdout).toContain('working_gen{socket="127.0.0.1:46221",app_idx="0"} 1\n');
  const flows = cli([`-p${pinDir}`, 'flows', '127.0.0.1:46221']);
  expect(flows.status).toBe(0);
  expect(flows.stdout).toBe('127.0.0.1:46221\n'); // a FLOW group whose socket is gone: no flows
  expect(cli(['metrics', 'extra', `-p${pinDir}`]).status).toBe(255);
});

test('--install alone, -iCGROUP --self --without-sendmsg, and the EUSERS warning on a second install', async () => {
  const first = cli([`--install=${cg2.path}`, `--pin-dir=${pinDir}`]);
  expect(first).toMatchObject({ status: 0, stderr: '' });
  expect(first.stdout).toBe(`[*] Installed hooks on ${cg2.path}\n`);
  expect(links(cg2.path)).toEqual(HOOKS);
  // Run inside cg2: --self appends this process's cgroup to the given mount point.
  const again = new JsonChild(cg2.spawn(process.execPath, [entry, `-i${cgroup2Mount()}`, '-s', '--without-sendmsg', '-p', pinDir]));
  expect(await again.exited).toBe(0);
  expect(again.lines.map((l) => l.text)).toEqual([`[*] Installed hooks on ${cg2.path}`]);
  expect(again.stderr).toContain('Looks like we are already loaded in that cgroup. Double program install?');
  expect(again.stderr).toContain('Too many users'); // EUSERS, as udpgrm's error(0, EUSERS, ...)
  expect(links(cg2.path)).toEqual(['getsockopt', 'inet4_bind', 'inet6_bind', 'setsockopt']);
  expect(links(cg.path)).toEqual(HOOKS); // another cgroup's links are left alone
});

test('--daemon --force starts from scratch: groups forgotten, hooks of every cgroup detached, then installed', async () => {
  const d = await daemon(['--force', `--install=${cg.path}`]);
  expect(cli(['list', `--pin-dir=${pinDir}`, '--proxy-pin-dir=']).stdout).toBe('');
  expect(links(cg2.path)).toEqual([]);
  expect(links(cg.path)).toEqual(HOOKS);
  const p = cg.python(['register', '127.0.0.1', '46221']);
  expect(await p.exited).toBe(0);
  expect(p.lines[0]).toEqual({ step: 'probe', working_gen: -1 }); // the group was forgotten
  d.proc.kill('SIGTERM');
  expect(await d.exited).toBe(0);
});
