/**
 * Which requests this worker must not serve because their host belongs to another site: they are
 * answered 421 Misdirected Request (RFC 9110 §15.5.20), which tells a client to retry on a new
 * connection. They arrive when the kernel could not steer by SNI (a ClientHello whose server_name
 * is only in the second datagram lands on the default site), when a client reuses a connection
 * for another host its certificate covers (HTTP/2 and HTTP/3 connection coalescing), or when the
 * authority simply differs from the SNI.
 */
import type { SiteNames } from '../config/site-names.js';
import { normaliseAuthorityHost } from './route.js';

/** The site a worker serves, and every site's names (the master may replace `names` on reload). */
export interface ServedSite {
  readonly name: string;
  readonly names: SiteNames;
}

/**
 * The site `authority` belongs to when it is not `site`, else undefined (serve it here). A host
 * no site names belongs to the default site, as the kernel steers it: the default site's workers
 * serve it, another site's workers send it away.
 */
export function misdirectedTo(site: ServedSite, authority: string): string | undefined {
  // One site: every host is its own; nothing to look up.
  if (site.names.single) return undefined;
  const owner = site.names.siteFor(normaliseAuthorityHost(authority));
  return owner === site.name ? undefined : owner;
}
