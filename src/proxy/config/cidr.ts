/**
 * CIDR ranges as written in proxy.yaml ("10.0.0.0/8", "2001:db8::/32", or a bare address for one
 * host), parsed into canonical network address and prefix length. The address must be the
 * network's first address: "10.0.0.1/8" is almost always a typo for a narrower range, so it is
 * refused with the network it would mean instead of being silently widened.
 */
import { canonicalIp } from './names.js';
import type { CidrConfig } from './types.js';
import type { Parsed } from './units.js';

const EXPECTED = 'a CIDR range like "10.0.0.0/8" or "2001:db8::/32", or a single IP address';

export function parseCidr(text: string): Parsed<CidrConfig> {
  const slash = text.indexOf('/');
  const ip = canonicalIp(slash < 0 ? text : text.slice(0, slash));
  if (ip === undefined) return { ok: false, expected: EXPECTED };
  const bits = ip.family === 4 ? 32 : 128;
  let prefixLength = bits;
  if (slash >= 0) {
    const digits = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(digits) || Number(digits) > bits) {
      return { ok: false, expected: `${EXPECTED}, with a prefix length from 0 to ${bits}` };
    }
    prefixLength = Number(digits);
  }
  const bytes = addressBytes(ip.address, ip.family);
  const network = maskBytes(bytes, prefixLength);
  if (!network.every((b, i) => b === bytes[i])) {
    const address = formatBytes(network, ip.family);
    return { ok: false, expected: `${EXPECTED}; the address must be the network's first one: write "${address}/${prefixLength}"` };
  }
  return { ok: true, value: { address: ip.address, prefixLength, family: ip.family } };
}

/** The 4 or 16 bytes of a canonical IPv4 or IPv6 address. */
function addressBytes(address: string, family: 4 | 6): number[] {
  if (family === 4) return address.split('.').map(Number);
  let text = address;
  // An embedded IPv4 tail (::ffff:192.0.2.1) becomes two hex groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4 !== null) {
    const [a, b, c, d] = v4[1]!.split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const left = head === '' ? [] : head!.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return groups.flatMap((g) => {
    const n = parseInt(g, 16);
    return [n >> 8, n & 0xff];
  });
}

function maskBytes(bytes: readonly number[], prefixLength: number): number[] {
  return bytes.map((b, i) => {
    const keep = Math.max(0, Math.min(8, prefixLength - i * 8));
    return b & ((0xff << (8 - keep)) & 0xff);
  });
}

function formatBytes(bytes: readonly number[], family: 4 | 6): string {
  if (family === 4) return bytes.join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return canonicalIp(groups.join(':'))!.address;
}
