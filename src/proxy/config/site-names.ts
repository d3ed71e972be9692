/**
 * Which site a host name belongs to, by the kernel's rule (bpf/grm.bpf.c): the name exactly, then
 * "*" + the name from its first dot (one-label wildcards). The kernel applies it to a new QUIC
 * connection's SNI; workers apply the same rule to TLS SNI on TCP and to a request's authority
 * (a request for another site's name is answered 421).
 */
import type { ProxyConfig } from './types.js';

/** JSON-safe, for the master → worker IPC: each site's names, the default site first. */
export interface SiteNamesSpec {
  readonly sites: ReadonlyArray<{ readonly name: string; readonly names: readonly string[] }>;
  /** The site that takes what no site names. */
  readonly defaultSite: string;
}

export function siteNamesSpec(config: ProxyConfig): SiteNamesSpec {
  const def = config.sites.find((s) => s.isDefault) ?? config.sites[0]!;
  return { sites: config.sites.map((s) => ({ name: s.name, names: [...s.names] })), defaultSite: def.name };
}

export class SiteNames {
  private readonly owner = new Map<string, string>();

  constructor(readonly spec: SiteNamesSpec) {
    for (const site of spec.sites) for (const name of site.names) this.owner.set(name, site.name);
  }

  /** True when every host is the default site's (one site: nothing to steer). */
  get single(): boolean {
    return this.spec.sites.length <= 1;
  }

  /** The site that names `host` (an SNI or an authority's host, any case, maybe with a trailing dot), or undefined. */
  named(host: string): string | undefined {
    const name = host.toLowerCase().replace(/\.$/, '');
    const exact = this.owner.get(name);
    if (exact !== undefined) return exact;
    const dot = name.indexOf('.');
    return dot < 0 ? undefined : this.owner.get(`*${name.slice(dot)}`);
  }

  /** The site serving `host`: the one that names it, else the default site (as the kernel steers). */
  siteFor(host: string | undefined): string {
    return (host === undefined ? undefined : this.named(host)) ?? this.spec.defaultSite;
  }
}
