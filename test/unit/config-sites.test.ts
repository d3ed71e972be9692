import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkConfigFile, ConfigError, loadConfig, type ProxyConfig } from '../../src/proxy/config/index.js';

let dir: string;
let n = 0;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'config-sites-'));
  for (const [base, cn] of [['a', 'a.test'], ['b', 'b.test']] as const) {
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${cn}`, '-days', '2', '-keyout', join(dir, `${base}.key`), '-out', join(dir, `${base}.crt`)],
      { stdio: 'ignore' },
    );
  }
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function write(yaml: string): string {
  const file = join(dir, `c${n++}.yaml`);
  writeFileSync(file, `listeners: ["127.0.0.1:4433"]\n${yaml}`);
  return file;
}

const load = (yaml: string): ProxyConfig => loadConfig(write(yaml), { createState: false });

/** Issues as "line:col path: message" (line 1 is the listeners line `write` adds). */
function issuesOf(yaml: string): string[] {
  try {
    load(yaml);
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map((i) => `${i.line}:${i.col} ${i.path}: ${i.message}`);
    throw err;
  }
  throw new Error('loaded without errors');
}

const TWO_SITES = `upstreams:
  shared: { targets: ["http://127.0.0.1:8080"] }
workers: 3
quic: { idle_timeout: 20s }
sites:
  a:
    names: [a.test]
    routes: [{ upstream: shared }]
  b:
    names: ["*.b.test", b.test]
    default: true
    workers: 1
    quic: { idle_timeout: 5s }
    upstreams:
      own: { targets: ["http://127.0.0.1:9090"] }
    certificates: [{ names: [b.test, "*.b.test"], cert: b.crt, key: b.key }]
    routes: [{ path: /api, upstream: own }, { upstream: shared }]
`;

describe('sites: valid configs', () => {
  it('a config without sites has one implicit default site holding the top-level routes', () => {
    const config = load('upstreams: { app: { targets: ["http://127.0.0.1:8080"] } }\nroutes: [{ upstream: app }]\nworkers: 2\n');
    expect(config.sites).toHaveLength(1);
    const [site] = config.sites;
    expect(site).toMatchObject({ name: 'default', names: [], isDefault: true, implicit: true, workers: 2 });
    expect(site!.routes).toBe(config.routes);
    expect(config.routes[0]!.name).toBe('routes[0]');
    expect([...config.sharedUpstreams.keys()]).toEqual(['app']);
    expect([...config.upstreams.keys()]).toEqual(['app']);
  });

  it('reads each site; the default site comes first and fills the top-level view', () => {
    const config = load(TWO_SITES);
    expect(config.sites.map((s) => [s.name, s.isDefault, s.names])).toEqual([
      ['b', true, ['*.b.test', 'b.test']],
      ['a', false, ['a.test']],
    ]);
    const [b, a] = config.sites;
    expect(a!.workers).toBe(3);
    expect(b!.workers).toBe(1);
    expect(a!.quic.idleTimeoutMs).toBe(20_000);
    expect(b!.quic.idleTimeoutMs).toBe(5_000);
    expect(b!.routes.map((r) => r.name)).toEqual(['sites.b.routes[0]', 'sites.b.routes[1]']);
    expect([...b!.upstreams.keys()]).toEqual(['own']);
    expect([...a!.upstreams.keys()]).toEqual([]);
    // Workers run the default site until the master runs a generation per site.
    expect(config.routes).toBe(b!.routes);
    expect([...config.upstreams.keys()]).toEqual(['shared', 'own']);
    expect(config.workers).toBe(1);
    // Every site's certificates are in tls.certificates, the default site's first one the default.
    expect(config.tls.certificates.map((c) => [c.names, c.isDefault])).toEqual([[['b.test', '*.b.test'], true]]);
  });

  it('without `default: true` the first site is the default', () => {
    const config = load('sites:\n  x: { routes: [{ respond: { status: 200 } }] }\n  y: { names: [y.test], routes: [{ respond: { status: 204 } }] }\n');
    expect(config.sites.map((s) => [s.name, s.isDefault])).toEqual([
      ['x', true],
      ['y', false],
    ]);
  });

  it('check prints every site with its app, names, workers, routes and own pools', () => {
    const result = checkConfigFile(write(TWO_SITES));
    expect(result.ok).toBe(true);
    const summary = result.ok ? result.summary : '';
    expect(summary).toContain('  site b (app 0, default: no SNI, unmatched SNI, unreadable Initials): names *.b.test, b.test; workers 1\n');
    expect(summary).toContain('    sites.b.routes[0]: host * path /api → proxy to own\n');
    expect(summary).toMatch(/\n {4}upstream own: http:\/\/127\.0\.0\.1:9090 /);
    expect(summary).toContain('  site a (app 1): names a.test; workers 3\n');
    expect(summary).toMatch(/\n {2}upstream shared: http:\/\/127\.0\.0\.1:8080 /);
  });
});

describe('sites: errors with file:line:col', () => {
  const route = 'routes: [{ respond: { status: 200 } }]';

  it('refuses a name in two sites, and a duplicate name in one', () => {
    expect(issuesOf(`sites:\n  a: { names: [x.test, x.test], ${route} }\n  b: { names: [X.test.], ${route} }\n`)).toEqual([
      '3:24 sites.a.names[1]: duplicate name "x.test"',
      '4:16 sites.b.names[0]: "x.test" already belongs to sites.a: each name steers to one site',
    ]);
  });

  it('refuses more sites than the kernel has apps', () => {
    const sites = Array.from({ length: 9 }, (_, i) => `  s${i}: { names: [s${i}.test], ${route} }\n`).join('');
    expect(issuesOf(`sites:\n${sites}`)).toEqual([
      '11:3 sites.s8: too many sites: at most 8 (each site is one app of the kernel\'s steering program, GRM_MAX_APPS)',
    ]);
  });

  it('applies the wildcard and kernel name rules', () => {
    const long = `${'x'.repeat(60)}.test`;
    expect(issuesOf(`sites:\n  a: { names: ["*", "a.*.test", "*.*.test", 10.0.0.1, "${long}"], ${route} }\n`)).toEqual([
      '3:16 sites.a.names[0]: expected a host name like "example.com" or a wildcard like "*.example.com", got "*"',
      '3:21 sites.a.names[1]: expected a wildcard of the form "*.example.com" (\'*\' stands for exactly one whole leftmost label), got "a.*.test"',
      '3:33 sites.a.names[2]: expected a wildcard of the form "*.example.com" (\'*\' stands for exactly one whole leftmost label), got "*.*.test"',
      expect.stringMatching(/^3:45 sites\.a\.names\[3\]: expected .*an IP address is never sent as TLS SNI/),
      `3:55 sites.a.names[4]: "${long}" is 65 bytes: the kernel matches SNI names of at most 63`,
    ]);
  });

  it('refuses two defaults, a missing default, and a site other than the default without names', () => {
    expect(issuesOf(`sites:\n  a: { default: true, ${route} }\n  b: { default: true, names: [b.test], ${route} }\n`)).toEqual([
      '4:17 sites.b.default: only one site can be the default (sites.a already is)',
    ]);
    expect(issuesOf(`sites:\n  a: { default: false, names: [a.test], ${route} }\n  b: { names: [b.test], ${route} }\n`)).toEqual([
      expect.stringMatching(/^3:17 sites\.a\.default: no default site: this site says "default: false" and no other says "default: true"/),
    ]);
    expect(issuesOf(`sites:\n  a: { names: [a.test], ${route} }\n  b: { ${route} }\n`)).toEqual([
      '4:6 sites.b: site "b" has no names: only the default site (a) can do without, taking connections whose SNI no site names',
    ]);
  });

  it('refuses top-level routes beside sites, a site pool shadowing a shared one, cid_length per site, unknown pools', () => {
    const yaml = [
      'upstreams: { app: { targets: ["http://127.0.0.1:8080"] } }',
      route,
      'sites:',
      '  a:',
      '    upstreams: { app: { targets: ["http://127.0.0.1:9"] } }',
      '    quic: { cid_length: 8 }',
      '    routes: [{ upstream: nope }]',
      '',
    ].join('\n');
    expect(issuesOf(yaml)).toEqual([
      '3:9 routes: with "sites", routes belong to each site ("sites.NAME.routes"): move these under the site that serves them',
      '6:18 sites.a.upstreams.app: pool "app" is already defined under the top-level "upstreams" (shared by every site): rename one of them',
      '7:25 sites.a.quic.cid_length: cid_length is shared by every site (one reuseport group, one CID format): set it under the top-level "quic"',
      '8:26 sites.a.routes[0].upstream: unknown upstream pool "nope" (defined pools: app)',
    ]);
  });

  it('refuses an empty sites mapping, bad site names and unknown site keys', () => {
    expect(issuesOf('sites: {}\n')).toEqual(['2:8 sites: expected at least one site, e.g. sites: { main: { default: true, routes: [...] } }']);
    expect(issuesOf(`sites:\n  "a b": { ${route}, nmes: [a.test] }\n`)).toEqual([
      '3:3 sites["a b"]: invalid site name "a b": expected letters, digits, \'_\', \'-\' (up to 32, starting with a letter or digit)',
      expect.stringMatching(/^3:52 sites\["a b"\]\.nmes: unknown key "nmes"; did you mean "names"\?/),
    ]);
  });

  it('refuses a certificate name or default claimed twice across tls and sites', () => {
    const yaml = [
      `tls: { certificates: [{ names: [a.test], cert: a.crt, key: a.key, default: true }] }`,
      'sites:',
      `  a: { names: [a.test], certificates: [{ names: [a.test], cert: b.crt, key: b.key, default: true }], ${route} }`,
      '',
    ].join('\n');
    expect(issuesOf(yaml)).toEqual([
      expect.stringMatching(/^4:50 sites\.a\.certificates\[0\]\.names\[0\]: "a\.test" is already served by tls\.certificates\[0\]/),
      expect.stringMatching(/^4:93 sites\.a\.certificates\[0\]\.default: only one certificate can be the default \(tls\.certificates\[0\] already is\)/),
    ]);
  });
});
