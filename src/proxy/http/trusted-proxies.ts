/**
 * Which client addresses belong to `trusted_proxies`: an IPv4 range also covers the IPv4-mapped
 * IPv6 form of its addresses (a dual-stack listener reports ::ffff:192.0.2.1), as node's
 * BlockList matches them.
 */
import { BlockList } from 'node:net';
import type { CidrConfig } from '../config/types.js';

export class TrustedProxies {
  readonly #ranges = new BlockList();
  readonly #empty: boolean;

  constructor(cidrs: readonly CidrConfig[]) {
    for (const c of cidrs) this.#ranges.addSubnet(c.address, c.prefixLength, c.family === 4 ? 'ipv4' : 'ipv6');
    this.#empty = cidrs.length === 0;
  }

  /** True when `ip` (a client address, no brackets or port) is inside a trusted range. */
  trusts(ip: string): boolean {
    if (this.#empty) return false;
    try {
      return this.#ranges.check(ip, ip.includes(':') ? 'ipv6' : 'ipv4');
    } catch {
      return false; // not an IP address: not one of ours to trust
    }
  }
}
