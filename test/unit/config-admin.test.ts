/** `admin:` in proxy.yaml: off when absent, the address checked, errors at file:line:col. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, type ProxyConfig } from '../../src/proxy/config/index.js';

let dir: string;
let n = 0;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'config-admin-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const BASE = 'listeners: ["127.0.0.1:4433", { address: "127.0.0.1:8443", protocols: [h2], http_redirect: "127.0.0.1:8080" }]\nroutes: [{respond: {status: 200}}]\n';

function load(yaml: string): ProxyConfig {
  const file = join(dir, `c${n++}.yaml`);
  writeFileSync(file, BASE + yaml);
  return loadConfig(file, { createState: false });
}

function issuesOf(yaml: string): string[] {
  try {
    load(yaml);
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map((i) => `${i.line}:${i.col} ${i.path}: ${i.message}`);
    throw err;
  }
  throw new Error('loaded without errors');
}

describe('admin section', () => {
  it('is off when absent and reads listen and scrape_timeout', () => {
    expect(load('').admin).toBeUndefined();
    expect(load('admin: { listen: "127.0.0.1:9901" }').admin).toEqual({ listen: { host: '127.0.0.1', port: 9901, family: 4 }, scrapeTimeoutMs: 1000 });
    expect(load('admin: { listen: "[::1]:9901", scrape_timeout: 250ms }').admin).toEqual({ listen: { host: '::1', port: 9901, family: 6 }, scrapeTimeoutMs: 250 });
  });

  it('reports each mistake at its position', () => {
    expect(issuesOf('admin: { port: 9901 }')).toEqual([
      '3:8 admin: missing "listen": expected an address such as "127.0.0.1:9901"',
      '3:10 admin.port: unknown key "port" (expected one of listen, scrape_timeout)',
    ]);
    expect(issuesOf('admin: { listen: "localhost:9901" }')).toEqual([
      '3:18 admin.listen: expected a literal IP address and port: "IPv4:PORT" or "[IPv6]:PORT", e.g. "127.0.0.1:4433" or "[::1]:4433" (host names are not resolved), got "localhost:9901"',
    ]);
    expect(issuesOf('admin: { listen: "127.0.0.1:9901", scrape_timeout: 1h }')).toEqual([
      '3:52 admin.scrape_timeout: must be between 10ms and 10s, got "1h"',
    ]);
    expect(issuesOf('admin: "127.0.0.1:9901"')).toEqual(['3:8 admin: expected admin settings with keys listen, scrape_timeout, got "127.0.0.1:9901"']);
  });

  it('refuses a TCP address a listener or a redirect already uses', () => {
    expect(issuesOf('admin: { listen: "127.0.0.1:8443" }')).toEqual(['3:18 admin.listen: TCP address 127.0.0.1:8443 is already used by a listener']);
    expect(issuesOf('admin: { listen: "127.0.0.1:8080" }')).toEqual(['3:18 admin.listen: TCP address 127.0.0.1:8080 is already used by a listener']);
  });
});
