/**
 * `trusted_proxies:` the CIDR ranges of proxies in front of us (load balancers, CDNs). Only a
 * client connecting from one of them may tell the upstream where a request came from
 * (X-Forwarded-For/-Proto/-Host, Forwarded); everyone else's claims are replaced (see
 * http-semantics/translate.ts). Default: none.
 */
import { parseCidr } from './cidr.js';
import type { CidrConfig } from './types.js';
import type { Cursor } from './yaml-cursor.js';

export function readTrustedProxies(section: Cursor | undefined): CidrConfig[] {
  if (section === undefined || !section.present) return [];
  const items = section.oneOrMany() ?? [];
  const out: CidrConfig[] = [];
  for (const item of items) {
    const cidr = item.parsed(parseCidr, 'a CIDR range');
    if (cidr !== undefined) out.push(cidr);
  }
  return out;
}
