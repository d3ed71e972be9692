// `udpgrm-proxy grm` as udpgrm's command line, run as real processes: --daemon --install=CGROUP,
// a daemon restart (SIGKILL mid-stream, then a stopped daemon) while sockets register loses no
// registration (requests wait in the pinned ring), list, delete, -h and the exit codes.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { compileToTempDir } from '../helpers/compiled.js';
import { enterPrivateNetns } from '../helpers/netns.js';
import { JsonChild, removeCompatPinDir, TestCgroup, uniqueCompatPinDir } from './harness.js';

enterPrivateNetns();
const pinDir = uniqueCompatPinDir('daemon');
let buildDir = '';
let cg: TestCgroup;
const daemons: ChildProcess[] = [];

let entry = '';

beforeAll(() => {
  buildDir = compileToTempDir('grm-compat-');
  // `udpgrm-proxy grm ARGS` minus src/cli.ts, which reads package.json from the install layout.
  entry = join(buildDir, 'grm-entry.mjs');
  symlinkSync(resolve(import.meta.dirname, '../../bpf'), join(buildDir, 'bpf')); // the built objects
  writeFileSync(entry, "const { runCompatCli } = await import('./src/grm/compat/cli.js');\nprocess.exitCode = await runCompatCli(process.argv.slice(2));\n");
  cg = new TestCgroup('daemon');
}, 120_000);

afterAll(async () => {
  for (const d of daemons) if (d.exitCode === null && d.signalCode === null) d.kill('SIGKILL');
  removeCompatPinDir(pinDir);
  await cg?.remove();
  if (buildDir) rmSync(buildDir, { recursive: true, force: true });
});

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [entry, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A daemon (outside the test cgroup: it serves it), ready once it tails the ring. */
async function daemon(extra: string[] = []): Promise<JsonChild> {
  const p = spawn(process.execPath, [entry, '--daemon', `--pin-dir=${pinDir}`, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  daemons.push(p);
  const d = new JsonChild(p);
  await d.line((l) => typeof l.text === 'string' && l.text.startsWith('[*] Tailing message ring buffer'));
  return d;
}

const registered = (l: Record<string, unknown>): boolean => l.step === 'registered';

test('daemon restarts while sockets register: every registration completes', async () => {
  let d = await daemon([`--install=${cg.path}`]);
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
