/**
 * What one site's workers run, and what changed for a site between two configs. A worker of site S
 * runs `siteConfig(config, S)`: S's routes, the pools they use, S's workers and QUIC limits, and
 * every certificate of the file (a connection the kernel could not steer by SNI lands on the
 * default site, which must still complete its handshake). A reload compares `siteFingerprint`s
 * to start new generations only for the sites whose workers would run something different.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ProxyConfig, QuicLimits, RouteConfig, SiteConfig, UpstreamPoolConfig } from './types.js';

/** The parts of ProxyConfig that differ per site. */
export interface SiteParts {
  readonly routes: readonly RouteConfig[];
  readonly upstreams: ReadonlyMap<string, UpstreamPoolConfig>;
  readonly workers: number;
  readonly quic: QuicLimits;
}

/**
 * A site's routes with the pools they use: its own, and the shared ones a route names. The
 * implicit site keeps every shared pool, used or not, exactly as a config without sites always did.
 */
export function siteParts(site: Omit<SiteConfig, 'certificates'>, shared: ReadonlyMap<string, UpstreamPoolConfig>): SiteParts {
  const upstreams = new Map<string, UpstreamPoolConfig>();
  for (const [name, pool] of shared) if (site.implicit || usesPool(site.routes, name)) upstreams.set(name, pool);
  for (const [name, pool] of site.upstreams) upstreams.set(name, pool);
  return { routes: site.routes, upstreams, workers: site.workers, quic: site.quic };
}

/** The config a worker of `siteName` runs. Throws for a site the config does not have. */
export function siteConfig(config: ProxyConfig, siteName: string): ProxyConfig {
  return { ...config, ...siteParts(findSite(config, siteName), config.sharedUpstreams) };
}

export function findSite(config: ProxyConfig, siteName: string): SiteConfig {
  const site = config.sites.find((s) => s.name === siteName);
  if (site === undefined) throw new Error(`no site "${siteName}" in ${config.file} (sites: ${config.sites.map((s) => s.name).join(', ')})`);
  return site;
}

function usesPool(routes: readonly RouteConfig[], pool: string): boolean {
  return routes.some((r) => r.action.kind === 'proxy' && r.action.upstream === pool);
}

/** Digest of a file's content: a renewed certificate at the same path is a change. */
export type FileDigest = (path: string) => string;

export const sha256OfFile: FileDigest = (path) => {
  try {
    return createHash('sha256').update(readFileSync(path)).digest('hex');
  } catch (err) {
    // An unreadable file is a state of its own: it changes the fingerprint, it does not throw.
    return `unreadable: ${(err as NodeJS.ErrnoException).code ?? 'error'}`;
  }
};

/**
 * A site's fingerprint, part by part. `names` only change what the master registers in the kernel;
 * every other part changes what the site's workers run. Left out on purpose: the master's own
 * settings (`process`, `admin`, `drain_timeout`), which no worker reads.
 */
export interface SiteFingerprint {
  /** Digest of all parts: equal fingerprints, nothing to do for the site. */
  readonly value: string;
  /** Part name ('names', 'routes', 'pool NAME', 'certificates', 'quic', …) → digest. */
  readonly parts: ReadonlyMap<string, string>;
  /** The site's names, sorted, so a diff can say which were added or removed. */
  readonly names: readonly string[];
}

export function siteFingerprint(config: ProxyConfig, siteName: string, digest: FileDigest = sha256OfFile): SiteFingerprint {
  const site = findSite(config, siteName);
  const view = siteConfig(config, siteName);
  const parts = new Map<string, string>();
  const put = (part: string, value: unknown): void => {
    parts.set(part, hash(value));
  };
  const names = [...site.names].sort();
  put('names', names);
  put('default', site.isDefault);
  put('routes', view.routes);
  for (const [name, pool] of [...view.upstreams].sort(([a], [b]) => a.localeCompare(b))) {
    put(`pool ${name}`, { pool, files: [pool.tls.caFile, pool.tls.certFile, pool.tls.keyFile].map((f) => (f === undefined ? null : digest(f))) });
  }
  put('certificates', view.tls.certificates.map((c) => ({ ...c, files: [digest(c.certFile), digest(c.keyFile)] })));
  put('tls', { alpn: view.tls.alpn, ticketKey: digest(view.tls.ticketKeyFile) });
  put('listeners', view.listeners);
  put('workers', view.workers);
  put('quic', view.quic);
  put('http', view.http);
  put('logging', view.logging);
  put('trusted_proxies', view.trustedProxies);
  return { value: hash([...parts]), parts, names };
}

/** Canonical JSON: Maps as entry lists, Buffers as base64; key order is the loader's, fixed per shape. */
function hash(value: unknown): string {
  const json = JSON.stringify(value, (_key, v: unknown) => {
    if (v instanceof Map) return [...(v as Map<unknown, unknown>).entries()];
    if (v !== null && typeof v === 'object' && (v as { type?: unknown }).type === 'Buffer') {
      return { buffer: Buffer.from((v as { data: number[] }).data).toString('base64') };
    }
    return v;
  });
  return createHash('sha256').update(json ?? 'undefined').digest('hex').slice(0, 16);
}
