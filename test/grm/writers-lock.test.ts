// Two managers on the same pins (the old and the new master during a binary upgrade) update the
// group record concurrently: every read-modify-write holds the pin dir's lock, so none is lost.
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { GRM } from '../../src/grm/abi.generated.js';
import { defaultObjectPath, GenerationManager } from '../../src/grm/manager.js';
import { compileToTempDir } from '../helpers/compiled.js';
import { enterPrivateNetns, removePinDir, uniquePinDir } from '../helpers/netns.js';

enterPrivateNetns();
let buildDir = '';
const pinDir = uniquePinDir('writers');

beforeAll(() => {
  // The child managers run as plain JS: compile the sources once.
  buildDir = compileToTempDir('grm-writers-');
}, 120_000);

afterAll(() => {
  try {
    GenerationManager.open({ pinDir }).cleanup();
  } catch {
    removePinDir(pinDir);
  }
  if (buildDir) rmSync(buildDir, { recursive: true, force: true });
});

/**
 * A master's generation life in a loop, as fast as it goes: add a slot, register a socket, make it
 * working, retire the previous one. Every failure is recorded (a lost update shows up as a
 * generation that vanished, or one that reappeared), and the last generation is kept alive.
 */
const CHILD = `
import { GenerationManager } from './src/grm/manager.js';
import { closeFd } from './src/grm/sockets.js';
const [pinDir, objectPath, port, rounds] = process.argv.slice(2);
const mgr = GenerationManager.open({ pinDir, objectPath });
const g = mgr.openGroup({ host: '127.0.0.1', port: Number(port) });
process.stdout.write('ready\\n');
await new Promise((r) => process.stdin.once('data', r));
const errors = [];
const added = [];
let prev;
for (let i = 0; i < Number(rounds); i++) {
  try {
    const gen = g.addGeneration(0);
    added.push(gen);
    const fd = g.createSocket();
    g.register(gen, 0, fd);
    g.setWorking(0, gen);
    if (prev) {
      g.retire(prev.gen);
      closeFd(prev.fd);
    }
    prev = { gen, fd };
  } catch (err) {
    errors.push(err.message);
  }
}
process.stdout.write(JSON.stringify({ errors: errors.slice(0, 5), errorCount: errors.length, added, alive: prev?.gen }) + '\\n');
await new Promise((r) => process.stdin.once('end', r));
`;

interface ChildResult {
  errors: string[];
  errorCount: number;
  added: number[];
  alive: number | undefined;
}

function lines(child: ChildProcess): () => Promise<string> {
  const queue: string[] = [];
  const waiting: Array<(l: string) => void> = [];
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const l = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      const w = waiting.shift();
      if (w) w(l);
      else queue.push(l);
    }
  });
  return () => {
    const l = queue.shift();
    if (l !== undefined) return Promise.resolve(l);
    return new Promise((resolveLine, reject) => {
      waiting.push(resolveLine);
      child.once('exit', (code) => reject(new Error(`child exited (${code}) before its report`)));
    });
  };
}

test('two managers racing add/setWorking/retire on the same group lose no update', async () => {
  const port = 48101;
  const rounds = 1500;
  // Pins and group exist before the race (as with an old master already serving).
  const mgr = GenerationManager.open({ pinDir });
  const group = mgr.openGroup({ host: '127.0.0.1', port });
  const script = join(buildDir, 'child-writer.mjs');
  writeFileSync(script, CHILD);
  const children = [0, 1].map(() =>
    spawn(process.execPath, [script, pinDir, defaultObjectPath(), String(port), String(rounds)], { stdio: ['pipe', 'pipe', 'inherit'] }),
  );
  try {
    const next = children.map(lines);
    for (const n of next) expect(await n()).toBe('ready');
    for (const c of children) c.stdin!.write('go\n');
    const results = (await Promise.all(next.map(async (n) => JSON.parse(await n()) as ChildResult))) as ChildResult[];

    for (const r of results) {
      expect(r.errors).toEqual([]);
      expect(r.errorCount).toBe(0);
      expect(r.added).toHaveLength(rounds);
    }
    // Every addGeneration got its own number: no increment of last_gen was lost.
    const all = results.flatMap((r) => r.added);
    expect(new Set(all).size).toBe(2 * rounds);
    const s = group.state();
    expect(s.lastGen).toBe(2 * rounds);
    // Exactly the two generations still alive hold slots: none leaked, none vanished.
    const inUse = s.slotState.flatMap((st, slot) => (st === GRM.SLOT_IN_USE ? [s.slotGen[slot]!] : [])).sort((a, b) => a - b);
    expect(inUse).toEqual(results.map((r) => r.alive!).sort((a, b) => a - b));
    // The working slot is one of them: never a retired (free) slot.
    const working = s.workingSlot[0]!;
    expect(s.slotState[working]).toBe(GRM.SLOT_IN_USE);
    expect(results.map((r) => r.alive)).toContain(s.slotGen[working]);
  } finally {
    for (const c of children) c.stdin!.end();
    await Promise.all(children.map((c) => (c.exitCode !== null ? undefined : new Promise((r) => c.once('exit', r)))));
    mgr.close();
  }
}, 120_000);
