/**
 * `sites:` — sets of routes behind the same listeners, chosen by TLS SNI. Each site becomes one app
 * of the kernel's steering program (bpf/quic_sni.h reads the SNI of a new QUIC connection), so it
 * runs, reloads and restarts its own worker generations. The limits checked here are the kernel's:
 * at most GRM.MAX_APPS sites, names shorter than GRM.NAME_MAX, wildcards of one leftmost label.
 */
import { GRM } from '../../grm/abi.generated.js';
import { describeHostPattern, parseHostPattern } from './names.js';
import { readWorkers } from './section-process.js';
import { readQuic } from './section-quic.js';
import { readRoutes } from './section-routes.js';
import { readCertificates, type CertificateClaims } from './section-tls.js';
import { readUpstreams } from './section-upstreams.js';
import type { CertificateConfig, QuicLimits, SiteConfig, UpstreamPoolConfig } from './types.js';
import type { Cursor } from './yaml-cursor.js';

const SITE_KEYS = ['names', 'default', 'routes', 'upstreams', 'certificates', 'workers', 'quic'] as const;
/** Site names appear in `reload --site NAME`, logs and metric labels: keep them plain. */
const SITE_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/;
/** One kernel app per site; app 0 is the default site. */
export const MAX_SITES = GRM.MAX_APPS;
/** The name of the one site of a config without `sites:`. */
export const IMPLICIT_SITE = 'default';

/** What sites inherit from the top level, and the claims shared with `tls.certificates`. */
export interface SiteDefaults {
  readonly configFile: string;
  readonly sharedPools: ReadonlyMap<string, UpstreamPoolConfig>;
  /** Every top-level pool name written in the file, valid or not (see UpstreamsRead.declared). */
  readonly sharedDeclared: ReadonlySet<string>;
  readonly workers: number;
  readonly quic: QuicLimits;
  readonly certificates: CertificateClaims;
}

/** A site as read, its certificate list still open to `markDefaultCertificate`. */
export interface SiteRead extends Omit<SiteConfig, 'certificates'> {
  readonly certificates: CertificateConfig[];
}

/** The sites in app order (the default first), or [] after recording why there are none. */
export function readSites(section: Cursor, defaults: SiteDefaults): SiteRead[] {
  const entries = section.entries('a mapping of site name → { names, routes, ... }');
  if (entries === undefined) return [];
  if (entries.length === 0) {
    section.error('expected at least one site, e.g. sites: { main: { default: true, routes: [...] } }');
    return [];
  }
  const names = new NameClaims();
  const sites: SiteRead[] = [];
  const explicitDefaults: string[] = [];
  /** Sites that wrote `names` (even if every name was refused: that was reported already). */
  const named = new Set<string>();
  let firstSaysNotDefault: Cursor | undefined;
  entries.forEach(([name, c, keyOffset], i) => {
    if (i === MAX_SITES) {
      c.log.add(keyOffset, c.path, `too many sites: at most ${MAX_SITES} (each site is one app of the kernel's steering program, GRM_MAX_APPS)`);
    }
    if (!SITE_NAME.test(name)) {
      c.log.add(keyOffset, c.path, `invalid site name "${name}": expected letters, digits, '_', '-' (up to 32, starting with a letter or digit)`);
    }
    const f = c.fields(SITE_KEYS, 'a site { names, default, routes, upstreams, certificates, workers, quic }');
    if (f === undefined) return;
    const isDefault = f.default?.boolean() ?? false;
    if (isDefault) {
      if (explicitDefaults.length > 0) f.default!.error(`only one site can be the default (${explicitDefaults[0]} already is)`);
      explicitDefaults.push(c.path);
    }
    if (i === 0 && f.default?.scalar === false) firstSaysNotDefault = f.default;
    if (f.names !== undefined) named.add(name);
    const siteNames = f.names === undefined ? [] : names.read(f.names, c.path);
    const upstreams = readSitePools(f.upstreams, defaults);
    const declared = new Set([...defaults.sharedDeclared, ...(f.upstreams?.isMapping ? upstreamKeys(f.upstreams) : [])]);
    sites.push({
      name,
      names: siteNames,
      isDefault,
      implicit: false,
      routes: readRoutes(f.routes, c, declared),
      upstreams,
      certificates: f.certificates === undefined ? [] : readCertificates(f.certificates, defaults.configFile, defaults.certificates),
      workers: readWorkers(f.workers, defaults.workers),
      quic: readQuic(f.quic, defaults.quic, 'site'),
    });
  });
  return chooseDefault(section, sites, firstSaysNotDefault, entries, named);
}

/**
 * The default site: the one marked `default: true`, else the first. A site other than the default
 * must have names, or no connection could ever reach it.
 */
function chooseDefault(
  section: Cursor,
  sites: SiteRead[],
  firstSaysNotDefault: Cursor | undefined,
  entries: Array<[string, Cursor, number]>,
  named: ReadonlySet<string>,
): SiteRead[] {
  if (sites.length === 0) return [];
  let index = sites.findIndex((s) => s.isDefault);
  if (index < 0) {
    if (firstSaysNotDefault !== undefined) {
      firstSaysNotDefault.error(
        'no default site: this site says "default: false" and no other says "default: true"; mark the site that takes connections without a matching SNI',
      );
      return [];
    }
    index = 0;
  }
  const chosen = { ...sites[index]!, isDefault: true };
  const others = sites.filter((_, i) => i !== index);
  for (const site of others) {
    if (named.has(site.name)) continue;
    const c = entries.find(([name]) => name === site.name)?.[1];
    (c ?? section).error(`site "${site.name}" has no names: only the default site (${chosen.name}) can do without, taking connections whose SNI no site names`);
  }
  return [chosen, ...others];
}

/** A site's own pools; a name already used by a top-level pool is refused (a route's `upstream` would be ambiguous). */
function readSitePools(c: Cursor | undefined, defaults: SiteDefaults): Map<string, UpstreamPoolConfig> {
  if (c === undefined) return new Map();
  if (c.isMapping) {
    for (const [name, pool, keyOffset] of c.entries('') ?? []) {
      if (defaults.sharedDeclared.has(name)) {
        pool.log.add(keyOffset, pool.path, `pool "${name}" is already defined under the top-level "upstreams" (shared by every site): rename one of them`);
      }
    }
  }
  return readUpstreams(c, defaults.configFile).pools;
}

function upstreamKeys(c: Cursor): string[] {
  return (c.entries('') ?? []).map(([name]) => name);
}

/** The SNI names of every site: each name in one site only, each one the kernel can store. */
class NameClaims {
  private readonly owner = new Map<string, string>();

  read(c: Cursor, sitePath: string): string[] {
    const out: string[] = [];
    const items = c.oneOrMany() ?? [];
    if (c.isSequence && items.length === 0) c.error('expected at least one name (omit "names" on the default site to give it none)');
    for (const item of items) {
      const pattern = item.parsed((t) => parseHostPattern(t, { allowAny: false, allowIp: false }), 'a host name or "*.example.com"');
      if (pattern === undefined) continue;
      const name = describeHostPattern(pattern);
      // grm_names keys hold the name NUL-terminated in GRM.NAME_MAX bytes.
      if (name.length >= GRM.NAME_MAX) {
        item.error(`"${name}" is ${name.length} bytes: the kernel matches SNI names of at most ${GRM.NAME_MAX - 1}`);
        continue;
      }
      const owner = this.owner.get(name);
      if (owner !== undefined) {
        item.error(owner === sitePath ? `duplicate name "${name}"` : `"${name}" already belongs to ${owner}: each name steers to one site`);
        continue;
      }
      this.owner.set(name, sitePath);
      out.push(name);
    }
    return out;
  }
}
