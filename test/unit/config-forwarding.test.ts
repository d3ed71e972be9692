/**
 * Config keys of the forwarding defences: `trusted_proxies` (CIDR ranges, errors at file:line:col),
 * `routes[].forward_path`, and route path prefixes written in normalised form.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, type ProxyConfig } from '../../src/proxy/config/index.js';

let dir: string;
let n = 0;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'config-forwarding-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const BASE = 'listeners: ["127.0.0.1:4433"]\nroutes: [{respond: {status: 200}}]\n';

/** The config, or its issues as "line:col path: message". */
function load(yaml: string): ProxyConfig | string[] {
  const file = join(dir, `c${n++}.yaml`);
  writeFileSync(file, yaml);
  try {
    return loadConfig(file, { createState: false });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.issues.map((i) => `${i.line}:${i.col} ${i.path}: ${i.message}`);
  }
}

function config(yaml: string): ProxyConfig {
  const result = load(yaml);
  if (Array.isArray(result)) throw new Error(result.join('\n'));
  return result;
}

describe('trusted_proxies', () => {
  it('defaults to none', () => {
    expect(config(BASE).trustedProxies).toEqual([]);
  });

  it('takes CIDR ranges and single addresses (IPv4, IPv6 canonicalised), or one string', () => {
    expect(config(`${BASE}trusted_proxies: ["10.0.0.0/8", 192.0.2.7, "2001:DB8:0::/32", "::ffff:192.0.2.0/120", "0.0.0.0/0"]\n`).trustedProxies).toEqual([
      { address: '10.0.0.0', prefixLength: 8, family: 4 },
      { address: '192.0.2.7', prefixLength: 32, family: 4 },
      { address: '2001:db8::', prefixLength: 32, family: 6 },
      { address: '::ffff:c000:200', prefixLength: 120, family: 6 },
      { address: '0.0.0.0', prefixLength: 0, family: 4 },
    ]);
    expect(config(`${BASE}trusted_proxies: "fd00::/8"\n`).trustedProxies).toEqual([{ address: 'fd00::', prefixLength: 8, family: 6 }]);
  });

  it('reports every bad range at its position, with the network a host address would mean', () => {
    const issues = load(`${BASE}trusted_proxies:\n  - 10.0.0.1/8\n  - 300.1.1.1/8\n  - 10.0.0.0/33\n  - "2001:db8::1/32"\n  - example.com\n  - 10.0.0.0/\n`);
    expect(issues).toEqual([
      expect.stringMatching(/^4:5 trusted_proxies\[0\]: expected .*the address must be the network's first one: write "10\.0\.0\.0\/8", got "10\.0\.0\.1\/8"$/),
      expect.stringMatching(/^5:5 trusted_proxies\[1\]: expected a CIDR range like "10\.0\.0\.0\/8"/),
      expect.stringMatching(/^6:5 trusted_proxies\[2\]: expected .*prefix length from 0 to 32/),
      expect.stringMatching(/^7:5 trusted_proxies\[3\]: expected .*write "2001:db8::\/32"/),
      expect.stringMatching(/^8:5 trusted_proxies\[4\]: expected a CIDR range/),
      expect.stringMatching(/^9:5 trusted_proxies\[5\]: expected .*prefix length/),
    ]);
    expect(load(`${BASE}trusted_proxy: []\n`)).toEqual([expect.stringMatching(/^3:1 trusted_proxy: unknown key "trusted_proxy".*trusted_proxies/)]);
  });
});

describe('routes[].forward_path and normalised path prefixes', () => {
  const UPSTREAMS = 'upstreams: { app: { targets: ["http://127.0.0.1:8080"] } }\n';
  const LISTENERS = 'listeners: ["127.0.0.1:4433"]\n';

  it('defaults to forwarding as received (key absent), takes normalised', () => {
    const routes = config(`${LISTENERS}${UPSTREAMS}routes:\n  - { path: /a, upstream: app }\n  - { path: /b, upstream: app, forward_path: normalised }\n  - { path: /c, upstream: app, forward_path: as_received }\n`).routes;
    expect(routes.map((r) => r.forwardPath)).toEqual([undefined, 'normalised', 'as_received']);
  });

  it('reports a bad value, forward_path on a respond route, and prefixes that are not normalised', () => {
    const issues = load(
      `${LISTENERS}${UPSTREAMS}routes:\n  - { path: /a, upstream: app, forward_path: raw }\n  - { path: /b, respond: { status: 200 }, forward_path: normalised }\n  - { path: "/%68ealthz", upstream: app }\n  - { path: /a//b/../c, upstream: app }\n  - { path: /a%2Fb, upstream: app }\n`,
    );
    expect(issues).toEqual([
      expect.stringMatching(/^4:46 routes\[0\]\.forward_path: expected one of "as_received", "normalised", got "raw"/),
      expect.stringMatching(/^5:57 routes\[1\]\.forward_path: forward_path applies to routes with "upstream" only$/),
      expect.stringMatching(/^6:13 routes\[2\]\.path: requests are matched on their normalised path: write "\/healthz" instead of "\/%68ealthz"$/),
      expect.stringMatching(/^7:13 routes\[3\]\.path: .*write "\/a\/c"/),
      expect.stringMatching(/^8:13 routes\[4\]\.path: expected a path prefix that can be normalised: encoded "\/" \(%2F\)/),
    ]);
  });
});
