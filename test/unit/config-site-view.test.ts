import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diffSites, fingerprintSites, formatSiteChanges, loadConfig, siteConfig, siteFingerprint, type ProxyConfig } from '../../src/proxy/config/index.js';

let dir: string;
let n = 0;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'config-site-view-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function load(yaml: string): ProxyConfig {
  const file = join(dir, `c${n++}.yaml`);
  writeFileSync(file, `listeners: ["127.0.0.1:4433"]\n${yaml}`);
  return loadConfig(file, { createState: false });
}

/** Two sites sharing pool `app`; `b` also has its own pool; `unused` is used by nobody. */
function twoSites(o: { aStatus?: number; bPath?: string; appTarget?: string; bNames?: string; unusedTarget?: string } = {}): string {
  return `upstreams:
  app: { targets: ["${o.appTarget ?? 'http://127.0.0.1:8080'}"] }
  unused: { targets: ["${o.unusedTarget ?? 'http://127.0.0.1:7070'}"] }
sites:
  a:
    default: true
    names: [a.test]
    routes: [{ path: /app, upstream: app }, { respond: { status: ${o.aStatus ?? 200} } }]
  b:
    names: ${o.bNames ?? '["*.b.test"]'}
    workers: 1
    upstreams: { own: { targets: ["http://127.0.0.1:9090"] } }
    routes: [{ path: ${o.bPath ?? '/api'}, upstream: own }, { upstream: app }]
`;
}

/** What a reload from `before` to `after` does, with file digests from `digest`. */
const reload = (before: ProxyConfig, after: ProxyConfig, digest = digestOf()) => diffSites(fingerprintSites(before, digest), after, digest);

/** File digests keyed by path, so a test can "renew" a file without writing it. */
const digestOf =
  (salt = ''): ((path: string) => string) =>
  (path) =>
    `${path}${salt}`;

describe('siteConfig: what a site\'s workers run', () => {
  it('gives a site its routes, its own pools and the shared pools its routes use, and every certificate', () => {
    const config = load(twoSites());
    const b = siteConfig(config, 'b');
    expect(b.routes.map((r) => r.name)).toEqual(['sites.b.routes[0]', 'sites.b.routes[1]']);
    expect([...b.upstreams.keys()]).toEqual(['app', 'own']);
    expect(b.workers).toBe(1);
    expect(b.tls).toBe(config.tls);
    const a = siteConfig(config, 'a');
    expect([...a.upstreams.keys()]).toEqual(['app']);
    // The top-level view is the default site's.
    expect(a.routes).toBe(config.routes);
    expect([...config.upstreams.keys()]).toEqual(['app']);
  });

  it('keeps every shared pool for the implicit site, as a config without sites always did', () => {
    const config = load('upstreams: { app: { targets: ["http://127.0.0.1:8080"] }, idle: { targets: ["http://127.0.0.1:8081"] } }\nroutes: [{ upstream: app }]\n');
    expect([...siteConfig(config, 'default').upstreams.keys()]).toEqual(['app', 'idle']);
    expect([...config.upstreams.keys()]).toEqual(['app', 'idle']);
  });

  it('refuses a site the config does not have, naming the ones it has', () => {
    expect(() => siteConfig(load(twoSites()), 'c')).toThrow(/no site "c" in .* \(sites: a, b\)/);
  });
});

describe('siteFingerprint and diffSites: what a reload restarts, and why', () => {
  it('is stable across loads of the same text', () => {
    const [x, y] = [load(twoSites()), load(twoSites())];
    for (const site of ['a', 'b']) expect(siteFingerprint(x, site, digestOf()).value).toBe(siteFingerprint(y, site, digestOf()).value);
  });

  it('marks only the site whose own routes changed', () => {
    const changes = reload(load(twoSites()), load(twoSites({ bPath: '/v2' })));
    expect(changes).toEqual([
      { kind: 'unchanged', site: 'a' },
      { kind: 'changed', site: 'b', restart: true, reasons: ['routes changed'] },
    ]);
  });

  it('marks every site using a changed shared pool, naming the others, and none for an unused pool', () => {
    const changes = reload(load(twoSites()), load(twoSites({ appTarget: 'http://127.0.0.1:8181' })));
    expect(formatSiteChanges(changes)).toBe('a: changed (upstream pool app changed (shared with b)); b: changed (upstream pool app changed (shared with a))');
    expect(reload(load(twoSites()), load(twoSites({ unusedTarget: 'http://127.0.0.1:7171' }))).every((c) => c.kind === 'unchanged')).toBe(true);
  });

  it('re-registers names without a restart', () => {
    const changes = reload(load(twoSites()), load(twoSites({ bNames: '["*.b.test", c.test]' })));
    expect(changes[1]).toEqual({ kind: 'changed', site: 'b', restart: false, reasons: ['names +c.test'] });
  });

  it('marks every site when a certificate file is renewed in place (every worker holds every certificate)', () => {
    // The running sites were fingerprinted with the old file; the same path now holds a new one.
    const config = load(twoSites());
    const renewed = (path: string): string => (path.endsWith('.crt') ? digestOf('renewed')(path) : digestOf()(path));
    const changes = diffSites(fingerprintSites(config, digestOf()), config, renewed);
    expect(changes.map((c) => c.kind)).toEqual(['changed', 'changed']);
    expect(changes[0]).toMatchObject({ restart: true, reasons: ['certificates changed (every site holds every certificate)'] });
  });

  it('lists added and removed sites', () => {
    const one = load('sites:\n  a: { routes: [{ respond: { status: 200 } }] }\n');
    const other = load('sites:\n  a: { routes: [{ respond: { status: 200 } }] }\n  c: { names: [c.test], routes: [{ respond: { status: 204 } }] }\n');
    expect(reload(one, other)).toEqual([
      { kind: 'unchanged', site: 'a' },
      { kind: 'added', site: 'c' },
    ]);
    expect(reload(other, one).at(-1)).toEqual({ kind: 'removed', site: 'c' });
  });
});
