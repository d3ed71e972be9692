// `list` and `grm cleanup` on a live pinned state.
import { existsSync } from 'node:fs';
import { afterAll, expect, test, vi } from 'vitest';
import { runGrmCommand } from '../../src/grm/cli.js';
import { GenerationManager } from '../../src/grm/manager.js';
import { closeFd, createReuseportSocket, detachReuseportProgram, socketCookie } from '../../src/grm/sockets.js';
import { enterPrivateNetns, removePinDir, uniquePinDir } from '../helpers/netns.js';
import { Receivers } from './udp.js';

enterPrivateNetns();
const pinDir = uniquePinDir('cli');
const rx = new Receivers();
afterAll(() => {
  rx.closeAll();
  removePinDir(pinDir);
});

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((out += String(s)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((s) => ((err += String(s)), true));
  try {
    const code = await runGrmCommand(argv);
    return { code, out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

test('list shows groups, apps, generations, sockets and counters; cleanup detaches and unpins', async () => {
  const mgr = GenerationManager.open({ pinDir, cidLength: 9 });
  const g = mgr.openGroup({ host: '127.0.0.1', port: 49001 }, { dropUnparseable: true });
  const g1 = g.addGeneration();
  const fds = [g.createSocket(), g.createSocket()];
  fds.forEach((fd, w) => g.register(g1, w, fd));
  g.setWorking(0, g1);
  const g2 = g.addGeneration();
  const fd3 = g.createSocket();
  g.register(g2, 0, fd3);
  g.setWorking(0, g2);
  const g3 = g.addGeneration(1);
  g.setServerNames(1, ['api.example.com', '*.example.net']);
  const cookie0 = socketCookie(fds[0]!);
  [...fds, fd3].forEach((fd) => rx.add(fd));
  mgr.close();

  const list = await run(['list', '--pin-dir', pinDir]);
  expect(list.code).toBe(0);
  const lines = list.out.split('\n');
  expect(lines[0]).toBe('127.0.0.1:49001');
  expect(list.out).toContain('\tgroup 1  attempt_ttl_ms 10000  cid_configs 0:9B issuing 0  drop_unparseable');
  expect(list.out).toContain('\t\tapp 0  working gen 2');
  expect(list.out).toContain('\t\tapp 1  working gen -  names *.example.net api.example.com');
  expect(list.out).toContain(`\t\tgen  1  slot  0  0:0x${cookie0.toString(16)} 1:0x`);
  expect(list.out).toMatch(/\t\tgen  1 .* <=  app 0  draining/);
  expect(list.out).toMatch(/\t\tgen  2 .* <=  app 0  working/);
  expect(list.out).toContain(`\t\tgen  ${g3}  slot  2  (no sockets)  <=  app 1  draining`);
  expect((await run(['list', '--pin-dir', pinDir, '127.0.0.1:1'])).code).toBe(1);
  expect((await run(['frobnicate'])).code).toBe(2);

  const clean = await run(['cleanup', '--pin-dir', pinDir]);
  expect(clean.code).toBe(0);
  expect(existsSync(pinDir)).toBe(false);
  // The group runs no program any more.
  const probe = createReuseportSocket({ family: 2, port: 49001, addr: Buffer.from([127, 0, 0, 1]) }, 4096);
  try {
    expect(() => detachReuseportProgram(probe)).toThrow(expect.objectContaining({ errno: 2 }));
  } finally {
    closeFd(probe);
  }
  expect((await run(['list', '--pin-dir', pinDir])).code).toBe(1);
});
