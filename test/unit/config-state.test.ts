import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfigWithState, readTicketKey, TICKET_KEY_BYTES, checkConfigFile } from '../../src/proxy/config/index.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'config-state-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function writeConfig(work: string, listeners: string[], extraTls = ''): string {
  const file = join(work, 'proxy.yaml');
  writeFileSync(file, `listeners: ${JSON.stringify(listeners)}\ntls:\n  state_dir: state\n${extraTls}routes: [{respond: {body: hi}}]\n`);
  return file;
}

describe('generated TLS state', () => {
  it('generates the self-signed pair and ticket key once, then reuses them', () => {
    const work = mkdtempSync(join(dir, 'gen-'));
    const file = writeConfig(work, ['127.0.0.1:4433', '[::1]:4433', '0.0.0.0:4434']);
    const stateDir = join(work, 'state');

    // check never writes.
    expect(checkConfigFile(file)).toMatchObject({ ok: true, summary: expect.stringContaining('will be generated at start') });
    expect(existsSync(stateDir)).toBe(false);

    const first = loadConfigWithState(file);
    expect(first.selfSigned).toBe('generated');
    expect(first.ticketKey).toBe('generated');
    const cert = first.config.tls.certificates[0]!;
    expect(cert).toMatchObject({ names: ['localhost'], selfSigned: true, isDefault: true, certFile: join(stateDir, 'self-signed.crt'), keyFile: join(stateDir, 'self-signed.key') });

    const x509 = new X509Certificate(readFileSync(cert.certFile));
    const key = createPrivateKey(readFileSync(cert.keyFile));
    expect(x509.checkPrivateKey(key)).toBe(true);
    expect(key.asymmetricKeyDetails).toEqual({ namedCurve: 'prime256v1' });
    expect(x509.checkHost('localhost')).toBe('localhost');
    expect(x509.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(x509.checkIP('::1')).toBe('::1');
    expect(x509.ca).toBe(false);
    expect(statSync(cert.keyFile).mode & 0o777).toBe(0o600);
    expect(statSync(stateDir).mode & 0o777).toBe(0o700);

    const ticket = first.config.tls.ticketKeyFile;
    expect(ticket).toBe(join(stateDir, 'ticket.key'));
    expect(statSync(ticket).mode & 0o777).toBe(0o600);
    const ticketBytes = readTicketKey(ticket);
    expect(ticketBytes.length).toBe(TICKET_KEY_BYTES);
    expect(TICKET_KEY_BYTES).toBe(48);

    const certBefore = readFileSync(cert.certFile);
    const certInode = statSync(cert.certFile).ino;
    const second = loadConfigWithState(file);
    expect(second.selfSigned).toBe('reused');
    expect(second.ticketKey).toBe('reused');
    expect(readFileSync(cert.certFile).equals(certBefore)).toBe(true);
    expect(statSync(cert.certFile).ino).toBe(certInode);
    expect(readTicketKey(ticket).equals(ticketBytes)).toBe(true);
    expect(checkConfigFile(file)).toMatchObject({ ok: true, summary: expect.stringContaining('(self-signed, present)') });
  });

  it('regenerates the pair when it no longer covers the listener addresses, keeps the ticket key', () => {
    const work = mkdtempSync(join(dir, 'regen-'));
    const first = loadConfigWithState(writeConfig(work, ['127.0.0.1:4433']));
    const ticket = readTicketKey(first.config.tls.ticketKeyFile);
    const second = loadConfigWithState(writeConfig(work, ['127.0.0.1:4433', '127.0.0.2:4433']));
    expect(second.selfSigned).toBe('generated');
    expect(second.ticketKey).toBe('reused');
    const x509 = new X509Certificate(readFileSync(second.config.tls.certificates[0]!.certFile));
    expect(x509.checkIP('127.0.0.2')).toBe('127.0.0.2');
    expect(readTicketKey(second.config.tls.ticketKeyFile).equals(ticket)).toBe(true);
  });

  it('regenerates a pair whose key does not match', () => {
    const work = mkdtempSync(join(dir, 'mismatch-'));
    const file = writeConfig(work, ['127.0.0.1:4433']);
    const first = loadConfigWithState(file).config.tls.certificates[0]!;
    const other = mkdtempSync(join(dir, 'other-'));
    const otherKey = loadConfigWithState(writeConfig(other, ['127.0.0.1:4433'])).config.tls.certificates[0]!.keyFile;
    writeFileSync(first.keyFile, readFileSync(otherKey));
    expect(loadConfigWithState(file).selfSigned).toBe('generated');
  });

  it('refuses a ticket key file of the wrong size, at its position', () => {
    const work = mkdtempSync(join(dir, 'ticket-'));
    // Private (0600), so the size is what is wrong with it.
    writeFileSync(join(work, 'short.key'), Buffer.alloc(32), { mode: 0o600 });
    const file = writeConfig(work, ['127.0.0.1:4433'], '  ticket_key_file: short.key\n');
    try {
      loadConfigWithState(file);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      const issue = (err as ConfigError).issues[0]!;
      expect([issue.line, issue.col, issue.path]).toEqual([4, 20, 'tls.ticket_key_file']);
      expect(issue.message).toMatch(/holds 32 bytes; a ticket key is exactly 48 bytes/);
    }
  });

  it('reports an unwritable state directory instead of crashing', () => {
    const work = mkdtempSync(join(dir, 'ro-'));
    writeFileSync(join(work, 'state'), 'a file where the directory should be');
    try {
      loadConfigWithState(writeConfig(work, ['127.0.0.1:4433']));
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      const issue = (err as ConfigError).issues[0]!;
      expect([issue.line, issue.path]).toEqual([3, 'tls.state_dir']);
      expect(issue.message).toBe(`state directory ${join(work, 'state')} is not a directory`);
    }
  });
});
