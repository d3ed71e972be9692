// Clear, typed errors: no privileges, missing object, bad arguments.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { GrmError } from '../../src/grm/errors.js';
import { GenerationManager } from '../../src/grm/manager.js';
import { enterPrivateNetns, removePinDir, uniquePinDir } from '../helpers/netns.js';
import { issueCid } from './udp.js';

enterPrivateNetns();
const pinDir = uniquePinDir('errors');
let buildDir = '';

beforeAll(() => {
  const root = resolve(__dirname, '../..');
  buildDir = mkdtempSync(join(tmpdir(), 'grm-errors-'));
  execFileSync('npx', ['tsc', '-p', 'tsconfig.json', '--outDir', buildDir], { cwd: root, stdio: 'ignore' });
  symlinkSync(join(root, 'node_modules'), join(buildDir, 'node_modules'));
  writeFileSync(join(buildDir, 'package.json'), '{"type":"module"}\n');
  chmodSync(buildDir, 0o755);
}, 120_000);

afterAll(() => {
  removePinDir(pinDir);
  if (buildDir) rmSync(buildDir, { recursive: true, force: true });
});

test('an unprivileged user gets PERMISSION naming the capabilities', () => {
  const script = join(buildDir, 'unpriv.mjs');
  writeFileSync(
    script,
    `import { GenerationManager } from './src/grm/manager.js';
try { GenerationManager.open({ pinDir: process.argv[2], objectPath: process.argv[3] }); console.log('opened'); }
catch (e) { console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message })); }`,
  );
  const objectPath = resolve(__dirname, '../../bpf/grm.bpf.o');
  // Root without capabilities: bpf() is refused exactly as for a plain user, while files stay
  // readable even when the checkout sits in a 0700 directory (a CI clone in mktemp -d).
  const r = spawnSync('setpriv', ['--bounding-set=-all', '--inh-caps=-all', '--ambient-caps=-all', process.execPath, script, pinDir, objectPath], {
    encoding: 'utf8',
  });
  const out = JSON.parse(r.stdout.trim()) as { name: string; code: string; message: string };
  expect(out.name).toBe('GrmError');
  expect(out.code).toBe('PERMISSION');
  expect(out.message).toContain('needs root or CAP_BPF+CAP_NET_ADMIN');
});

test('a missing object file says how to build it', () => {
  expect(() => GenerationManager.open({ pinDir, objectPath: '/nonexistent/grm.bpf.o' })).toThrow(/npm run build/);
});

test('bad arguments are GrmErrors, not crashes', () => {
  const mgr = GenerationManager.open({ pinDir });
  try {
    expect(() => GenerationManager.open({ pinDir, cidLength: 21 })).toThrow(GrmError);
    expect(() => mgr.openGroup({ host: 'localhost', port: 1 })).toThrow(expect.objectContaining({ code: 'BAD_ARGUMENT' }));
    expect(() => mgr.openGroup({ host: '127.0.0.1', port: 0 })).toThrow(expect.objectContaining({ code: 'BAD_ARGUMENT' }));
    const g = mgr.openGroup({ host: '127.0.0.1', port: 49901 });
    expect(() => g.addGeneration(8)).toThrow(expect.objectContaining({ code: 'BAD_ARGUMENT' }));
    expect(() => g.register(99, 0, 0)).toThrow(GrmError);
    const gen = g.addGeneration();
    expect(() => g.register(gen, 256, 0)).toThrow(expect.objectContaining({ code: 'BAD_ARGUMENT' }));
    expect(() => g.register(gen, 0, 9999)).toThrow(expect.objectContaining({ code: 'SYSCALL' })); // not an open fd
    const other = mgr.openGroup({ host: '127.0.0.1', port: 49902 }).createSocket();
    expect(() => g.register(gen, 0, other)).toThrow(/is bound to 127.0.0.1:49902, not 127.0.0.1:49901/);
    expect(() => g.setServerNames(0, ['bad name!'])).toThrow(expect.objectContaining({ code: 'BAD_ARGUMENT' }));
    expect(() => issueCid(g, gen + 5, 0)).toThrow(expect.objectContaining({ code: 'NO_SUCH_GENERATION' }));
  } finally {
    mgr.cleanup();
  }
});
