/**
 * Which route serves a request. Routes are tried in FILE ORDER and the first match wins (put
 * specific routes before general ones; there is no longest-prefix reordering, so what you read is
 * what runs).
 *
 * Host: the request's authority, lowercased, port and trailing dot removed, IPv6 brackets removed.
 * Path: the request path without its query. A prefix matches on SEGMENT BOUNDARIES: "/api" matches
 * "/api", "/api/" and "/api/v1" but not "/apix"; a prefix ending in "/" ("/api/") matches everything
 * that starts with it. The handler passes the NORMALISED path (http-semantics/request-target.ts:
 * dot segments removed, slashes merged, unreserved characters decoded); matching is case-sensitive.
 */
import type { HostPattern, RouteConfig } from '../config/types.js';

/** "Example.COM:443" → "example.com", "[::1]:4433" → "::1". */
export function normaliseAuthorityHost(authority: string): string {
  let host = authority.trim().toLowerCase();
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end > 0 ? host.slice(1, end) : host;
  }
  const colon = host.lastIndexOf(':');
  if (colon >= 0 && host.indexOf(':') === colon) host = host.slice(0, colon);
  return host.endsWith('.') ? host.slice(0, -1) : host;
}

export function hostMatches(pattern: HostPattern, host: string): boolean {
  switch (pattern.kind) {
    case 'any':
      return true;
    case 'exact':
      return host === pattern.name;
    case 'wildcard':
      // Exactly one label in front of the suffix.
      return host.endsWith(pattern.suffix) && host.length > pattern.suffix.length && !host.slice(0, -pattern.suffix.length).includes('.');
  }
}

export function pathMatches(prefix: string, path: string): boolean {
  if (!path.startsWith(prefix)) return false;
  if (prefix.endsWith('/') || path.length === prefix.length) return true;
  return path[prefix.length] === '/';
}

export function matchRoute(routes: readonly RouteConfig[], host: string, path: string): RouteConfig | undefined {
  const h = normaliseAuthorityHost(host);
  const q = path.search(/[?#]/);
  const p = q === -1 ? path : path.slice(0, q);
  return routes.find((r) => pathMatches(r.pathPrefix, p) && r.hosts.some((pattern) => hostMatches(pattern, h)));
}
