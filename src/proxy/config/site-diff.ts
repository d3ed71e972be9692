/**
 * What a reload does per site: compare the fingerprint each running site had when its generation
 * started with the new config's. (Not the old config's fingerprint taken again now: that would read
 * today's files, and a certificate renewed in place would look unchanged.) Only `changed` sites with `restart` (and `added` ones) need a new generation; `removed` ones
 * drain; a change of names alone is re-registered in the kernel and leaves the workers alone.
 */
import { siteFingerprint, sha256OfFile, type FileDigest, type SiteFingerprint } from './site-view.js';
import type { ProxyConfig } from './types.js';

export type SiteChange =
  | { readonly kind: 'added' | 'removed' | 'unchanged'; readonly site: string }
  | {
      readonly kind: 'changed';
      readonly site: string;
      /** False when only the site's names changed: the master re-registers them, the workers stay. */
      readonly restart: boolean;
      /** Why, one line per changed part, for the reload log. */
      readonly reasons: readonly string[];
    };

/**
 * One entry per site, running or new: the new config's sites in order, then the removed ones.
 * `running`: each running site's fingerprint, as taken when its working generation started.
 */
export function diffSites(running: ReadonlyMap<string, SiteFingerprint>, after: ProxyConfig, digest: FileDigest = sha256OfFile): SiteChange[] {
  const out: SiteChange[] = [];
  for (const site of after.sites) {
    const was = running.get(site.name);
    if (was === undefined) {
      out.push({ kind: 'added', site: site.name });
      continue;
    }
    const now = siteFingerprint(after, site.name, digest);
    if (was.value === now.value) {
      out.push({ kind: 'unchanged', site: site.name });
      continue;
    }
    const changed = [...new Set([...was.parts.keys(), ...now.parts.keys()])].filter((p) => was.parts.get(p) !== now.parts.get(p));
    const reasons = changed.map((part) => describeChange(part, was, now, after, site.name));
    out.push({ kind: 'changed', site: site.name, restart: changed.some((p) => p !== 'names'), reasons });
  }
  for (const site of running.keys()) if (!after.sites.some((s) => s.name === site)) out.push({ kind: 'removed', site });
  return out;
}

/** Every site's fingerprint now: what the master records when it starts a config's generations. */
export function fingerprintSites(config: ProxyConfig, digest: FileDigest = sha256OfFile): Map<string, SiteFingerprint> {
  return new Map(config.sites.map((s) => [s.name, siteFingerprint(config, s.name, digest)]));
}

/** The reload log's one-line summary: "a: unchanged; b: changed (routes changed); c: added". */
export function formatSiteChanges(changes: readonly SiteChange[]): string {
  return changes.map((c) => (c.kind === 'changed' ? `${c.site}: changed (${c.reasons.join('; ')})` : `${c.site}: ${c.kind}`)).join('; ');
}

function describeChange(part: string, was: SiteFingerprint, now: SiteFingerprint, after: ProxyConfig, site: string): string {
  if (part === 'names') return `names ${namesDelta(was.names, now.names)}`;
  if (part === 'certificates') return 'certificates changed (every site holds every certificate)';
  if (part === 'default') return 'became or stopped being the default site';
  if (!part.startsWith('pool ')) return `${part} changed`;
  const pool = part.slice('pool '.length);
  if (!was.parts.has(part)) return `now uses upstream pool ${pool}`;
  if (!now.parts.has(part)) return `no longer uses upstream pool ${pool}`;
  const sharers = after.sharedUpstreams.has(pool) ? sitesUsing(after, pool).filter((s) => s !== site) : [];
  return `upstream pool ${pool} changed${sharers.length > 0 ? ` (shared with ${sharers.join(', ')})` : ''}`;
}

function namesDelta(was: readonly string[], now: readonly string[]): string {
  const added = now.filter((n) => !was.includes(n)).map((n) => `+${n}`);
  const removed = was.filter((n) => !now.includes(n)).map((n) => `-${n}`);
  return [...added, ...removed].join(' ');
}

/** Sites whose routes proxy to `pool` (a shared pool: a site's own pool of that name would have been refused). */
function sitesUsing(config: ProxyConfig, pool: string): string[] {
  return config.sites.filter((s) => s.routes.some((r) => r.action.kind === 'proxy' && r.action.upstream === pool)).map((s) => s.name);
}
