// Manager restart: the pinned maps keep groups, generations, sockets, CID keys and counters, and
// the attached program keeps steering while no manager runs (closed, or its process killed).
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type dgram from 'node:dgram';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { createCidIssuer, type CidIssuerParams } from '../../src/grm/cid.js';
import { defaultObjectPath, GenerationManager } from '../../src/grm/manager.js';
import { createReuseportSocket, toSocketAddress } from '../../src/grm/sockets.js';
import { enterPrivateNetns, removePinDir, uniquePinDir } from '../helpers/netns.js';
import { issueCid, longHeader, Receivers, send, shortHeader, tagOf, udpClient } from './udp.js';

enterPrivateNetns();
const pinDirs: string[] = [];
const receivers: Receivers[] = [];
const clients: dgram.Socket[] = [];
let buildDir = '';

beforeAll(() => {
  // The child manager runs as plain JS: compile the sources once.
  buildDir = mkdtempSync(join(tmpdir(), 'grm-restart-'));
  const root = resolve(__dirname, '../..');
  execFileSync('npx', ['tsc', '-p', 'tsconfig.json', '--outDir', buildDir], { cwd: root, stdio: 'ignore' });
  symlinkSync(join(root, 'node_modules'), join(buildDir, 'node_modules'));
  writeFileSync(join(buildDir, 'package.json'), '{"type":"module"}\n');
}, 120_000);

afterAll(() => {
  for (const r of receivers) r.closeAll();
  for (const c of clients) c.close();
  for (const d of pinDirs) {
    try {
      GenerationManager.open({ pinDir: d }).cleanup();
    } catch {
      removePinDir(d);
    }
  }
  if (buildDir) rmSync(buildDir, { recursive: true, force: true });
});

function newPinDir(tag: string): string {
  const d = uniquePinDir(tag);
  pinDirs.push(d);
  return d;
}

async function client(): Promise<dgram.Socket> {
  const c = await udpClient();
  clients.push(c);
  return c;
}

test('a closed manager leaves steering running; a new one adopts everything', async () => {
  const pinDir = newPinDir('reopen');
  const port = 48001;
  const rx = new Receivers();
  receivers.push(rx);
  const a = GenerationManager.open({ pinDir, cidLength: 10 });
  const ga = a.openGroup({ host: '127.0.0.1', port });
  const g1 = ga.addGeneration();
  for (let w = 0; w < 2; w++) {
    const fd = ga.createSocket();
    ga.register(g1, w, fd);
    rx.add(fd);
  }
  ga.setWorking(0, g1);
  const cids = [issueCid(ga, g1, 0), issueCid(ga, g1, 1)];
  a.close();

  const c = await client();
  await send(c, shortHeader(cids[1]!, 1), port); // no manager running
  await rx.waitFor(1);
  expect(rx.arrivals[0]!.receiver).toBe(1);

  const b = GenerationManager.open({ pinDir });
  const [gb] = b.groups();
  expect(gb!.toString()).toBe('127.0.0.1:48001');
  expect(gb!.working(0)).toBe(g1);
  expect(gb!.generations().map((g) => [g.gen, g.sockets.length])).toEqual([[g1, 2]]);
  expect(b.issuingKey().cidLength).toBe(10);
  expect(gb!.decodeCid(cids[0]!)).toEqual({ slot: 0, worker: 0, gen: g1 });
  expect(gb!.stats().group.cid_ok).toBe(1n); // counters survive too

  const g2 = gb!.addGeneration();
  expect(g2).toBe(g1 + 1);
  for (let w = 0; w < 2; w++) {
    const fd = gb!.createSocket();
    gb!.register(g2, w, fd);
    rx.add(fd);
  }
  gb!.setWorking(0, g2);
  await send(c, shortHeader(cids[0]!, 2), port);
  await send(c, longHeader(0, randomBytes(8), 3), port);
  await rx.waitFor(3);
  const byTag = new Map(rx.arrivals.map((x) => [x.msg[0]! & 0x80 ? tagOf(x.msg, 8, true) : tagOf(x.msg, 10, false), x.receiver]));
  expect(byTag.get(2)).toBe(0);
  expect([2, 3]).toContain(byTag.get(3));
  b.close();
});

const CHILD = `
import { GenerationManager } from './src/grm/manager.js';
const [pinDir, objectPath, port] = process.argv.slice(2);
const mgr = GenerationManager.open({ pinDir, objectPath, cidLength: 14 });
const g = mgr.openGroup({ host: '127.0.0.1', port: Number(port) });
const gen = g.addGeneration();
g.register(gen, 0, 3);
g.register(gen, 1, 4);
g.setWorking(0, gen);
process.stdout.write(JSON.stringify({ gen, issuers: [g.cidIssuerParams(gen, 0), g.cidIssuerParams(gen, 1)] }) + '\\n');
setInterval(() => {}, 1000); // stay alive until killed
`;

test('killing the process that owns the manager loses nothing', async () => {
  const pinDir = newPinDir('kill');
  const port = 48002;
  const addr = toSocketAddress({ host: '127.0.0.1', port });
  const fds = [createReuseportSocket(addr), createReuseportSocket(addr)];
  const script = join(buildDir, 'child-manager.mjs');
  writeFileSync(script, CHILD);
  const child = spawn(process.execPath, [script, pinDir, defaultObjectPath(), String(port)], {
    stdio: ['ignore', 'pipe', 'inherit', fds[0]!, fds[1]!],
  });
  const line = await new Promise<string>((resolveLine, reject) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      if (buf.includes('\n')) resolveLine(buf.split('\n')[0]!);
    });
    child.on('exit', (code) => reject(new Error(`child exited early (${code})`)));
  });
  const { gen, issuers } = JSON.parse(line) as { gen: number; issuers: CidIssuerParams[] };
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));

  const rx = new Receivers();
  receivers.push(rx);
  fds.forEach((fd) => rx.add(fd));
  const c = await client();
  const tags = 40;
  for (let i = 0; i < tags; i++) await send(c, shortHeader(createCidIssuer(issuers[i % 2]!).issue(), i), port);
  await rx.waitFor(tags);
  expect(rx.arrivals.every((a) => a.receiver === tagOf(a.msg, 14, false) % 2)).toBe(true);

  const mgr = GenerationManager.open({ pinDir });
  const [g] = mgr.groups();
  expect(g!.working(0)).toBe(gen);
  expect(g!.stats().group.cid_ok).toBe(BigInt(tags));
  expect(g!.generations()[0]!.sockets.map((s) => s.worker)).toEqual([0, 1]);
  mgr.close();
});
