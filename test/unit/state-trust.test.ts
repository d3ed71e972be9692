/**
 * Defect 6 (issue 13): existing state is checked before it is trusted. A state dir or ticket key
 * that others can write (or read) is refused, naming the path and what is wrong; a generated
 * certificate key that is not private to us is regenerated.
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfigWithState, TICKET_KEY_BYTES } from '../../src/proxy/config/index.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'state-trust-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function setup(): { file: string; stateDir: string } {
  const work = mkdtempSync(join(dir, 'w-'));
  const file = join(work, 'proxy.yaml');
  writeFileSync(file, 'listeners: ["127.0.0.1:4433"]\ntls:\n  state_dir: state\nroutes: [{respond: {body: hi}}]\n');
  return { file, stateDir: join(work, 'state') };
}

function loadError(file: string): string {
  try {
    loadConfigWithState(file);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).issues.map((i) => `${i.path}: ${i.message}`).join('\n');
  }
  throw new Error('the config loaded');
}

describe('state directory', () => {
  it('refuses a group-writable state dir, naming it', () => {
    const { file, stateDir } = setup();
    mkdirSync(stateDir);
    chmodSync(stateDir, 0o770);
    expect(loadError(file)).toBe(`tls.state_dir: state directory ${stateDir} is writable by group (mode 0770): chmod go-w it`);
  });

  it('refuses a world-writable state dir, even when only checking', () => {
    const { file, stateDir } = setup();
    mkdirSync(stateDir);
    chmodSync(stateDir, 0o757);
    expect(() => loadConfigWithState(file, { createState: false })).toThrow(/state directory .* is writable by other \(mode 0757\)/);
  });

  it('refuses a state dir path that is a regular file', () => {
    const { file, stateDir } = setup();
    writeFileSync(stateDir, '');
    expect(loadError(file)).toBe(`tls.state_dir: state directory ${stateDir} is not a directory`);
  });

  it('creates a missing state dir 0700', () => {
    const { file, stateDir } = setup();
    loadConfigWithState(file);
    expect(statSync(stateDir).mode & 0o777).toBe(0o700);
  });
});

describe('ticket key', () => {
  it('refuses a group-readable ticket key instead of using it', () => {
    const { file, stateDir } = setup();
    mkdirSync(stateDir, { mode: 0o700 });
    const key = join(stateDir, 'ticket.key');
    writeFileSync(key, randomBytes(TICKET_KEY_BYTES), { mode: 0o640 });
    chmodSync(key, 0o640);
    expect(loadError(file)).toBe(`tls.ticket_key_file: ticket key file ${key} is accessible to group (mode 0640): chmod 600 it`);
  });

  it('refuses a group-writable ticket key', () => {
    const { file, stateDir } = setup();
    mkdirSync(stateDir, { mode: 0o700 });
    const key = join(stateDir, 'ticket.key');
    writeFileSync(key, randomBytes(TICKET_KEY_BYTES));
    chmodSync(key, 0o620);
    expect(loadError(file)).toMatch(/ticket key file .*ticket\.key is accessible to group \(mode 0620\)/);
  });

  it('refuses a ticket key that is a symlink (a planted key elsewhere)', () => {
    const { file, stateDir } = setup();
    mkdirSync(stateDir, { mode: 0o700 });
    const planted = join(dir, `planted-${process.pid}-${Math.random()}`);
    writeFileSync(planted, randomBytes(TICKET_KEY_BYTES), { mode: 0o600 });
    symlinkSync(planted, join(stateDir, 'ticket.key'));
    expect(loadError(file)).toMatch(/ticket key file .*ticket\.key is a symlink; a secret must be a regular file/);
  });
});

describe('generated certificate key', () => {
  it('regenerates a self-signed pair whose key others can read', () => {
    const { file } = setup();
    const first = loadConfigWithState(file).config.tls.certificates[0]!;
    const keyBefore = readFileSync(first.keyFile);
    chmodSync(first.keyFile, 0o644);
    const second = loadConfigWithState(file);
    expect(second.selfSigned).toBe('generated');
    expect(statSync(first.keyFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(first.keyFile).equals(keyBefore)).toBe(false);
  });
});
