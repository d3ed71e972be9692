/**
 * Validation of the small grammars inside config strings: IP addresses, listen addresses, DNS names,
 * wildcard patterns, upstream targets, HTTP header names and values. Pure functions returning either a
 * normalised value or a description of what was expected.
 */
import { isIP } from 'node:net';
import type { HostPattern, ListenAddressConfig, UpstreamTarget } from './types.js';
import type { Parsed } from './units.js';

/** Canonical text of an IP literal ('::0001' → '::1'), or undefined when `text` is not one. */
export function canonicalIp(text: string): { readonly address: string; readonly family: 4 | 6 } | undefined {
  const family = isIP(text);
  if (family === 4) return { address: text, family: 4 };
  if (family === 6) {
    if (text.includes('%')) return undefined; // zone ids (fe80::1%eth0) cannot be expressed portably here
    return { address: new URL(`http://[${text}]/`).hostname.slice(1, -1), family: 6 };
  }
  return undefined;
}

function parsePort(text: string): number | undefined {
  if (!/^\d{1,5}$/.test(text)) return undefined;
  const port = Number(text);
  return port >= 1 && port <= 65535 ? port : undefined;
}

const LISTEN_EXAMPLE = '"IPv4:PORT" or "[IPv6]:PORT", e.g. "127.0.0.1:4433" or "[::1]:4433"';

/** "127.0.0.1:4433" / "[::1]:4433" → a listener. Host names are refused: we bind, we do not resolve. */
export function parseListenAddress(text: string): Parsed<ListenAddressConfig> {
  const bracketed = /^\[([^\]]*)\]:([^:]*)$/.exec(text);
  const plain = /^([^:[\]]*):([^:]*)$/.exec(text);
  const match = bracketed ?? plain;
  if (match === null) {
    const hint = isIP(text.replace(/:\d+$/, '')) === 6 || isIP(text) === 6 ? ' (IPv6 addresses go in brackets)' : '';
    return { ok: false, expected: `${LISTEN_EXAMPLE}${hint}` };
  }
  const ip = canonicalIp(match[1]!);
  if (ip === undefined || (bracketed !== null) !== (ip.family === 6)) {
    return { ok: false, expected: `a literal IP address and port: ${LISTEN_EXAMPLE} (host names are not resolved)` };
  }
  const port = parsePort(match[2]!);
  if (port === undefined) return { ok: false, expected: `a port number between 1 and 65535 in ${LISTEN_EXAMPLE}` };
  return { ok: true, value: { host: ip.address, port, family: ip.family } };
}

const LABEL = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/;

/** A DNS host name, lowercased, without trailing dot; undefined when not well formed. */
export function normaliseDnsName(text: string): string | undefined {
  const name = text.toLowerCase().replace(/\.$/, '');
  if (name.length === 0 || name.length > 253) return undefined;
  const labels = name.split('.');
  // An all-numeric last label is never a DNS name (RFC 3696 §2): "999.1.1.1" is a broken IPv4 address.
  if (/^\d+$/.test(labels.at(-1)!)) return undefined;
  return labels.every((label) => LABEL.test(label)) ? name : undefined;
}

/** `example.com` → exact, `*.example.com` → wildcard (one label), `*` → any (when allowed). */
export function parseHostPattern(text: string, options: { readonly allowAny: boolean; readonly allowIp: boolean }): Parsed<HostPattern> {
  const expected = `a host name like "example.com" or a wildcard like "*.example.com"${options.allowAny ? ' (or "*" for any host)' : ''}`;
  if (text === '*') return options.allowAny ? { ok: true, value: { kind: 'any' } } : { ok: false, expected };
  if (text.includes('*')) {
    const suffix = text.startsWith('*.') ? normaliseDnsName(text.slice(2)) : undefined;
    if (suffix === undefined || canonicalIp(text.slice(2)) !== undefined) {
      return { ok: false, expected: `a wildcard of the form "*.example.com" ('*' stands for exactly one whole leftmost label)` };
    }
    return { ok: true, value: { kind: 'wildcard', suffix: `.${suffix}` } };
  }
  const unbracketed = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  const ip = canonicalIp(unbracketed);
  if (ip !== undefined) {
    if (!options.allowIp) {
      return { ok: false, expected: `${expected}; an IP address is never sent as TLS SNI: mark a certificate "default: true" to serve clients that connect by IP` };
    }
    return { ok: true, value: { kind: 'exact', name: ip.address } };
  }
  if (/:\d+$/.test(text)) return { ok: false, expected: `${expected} without a port (hosts match whatever port the client used)` };
  const name = normaliseDnsName(text);
  return name === undefined ? { ok: false, expected } : { ok: true, value: { kind: 'exact', name } };
}

export function describeHostPattern(pattern: HostPattern): string {
  switch (pattern.kind) {
    case 'any':
      return '*';
    case 'exact':
      return pattern.name;
    case 'wildcard':
      return `*${pattern.suffix}`;
  }
}

const TARGET_EXAMPLE = 'a target "http://HOST:PORT", "https://HOST:PORT" or "unix:/PATH", e.g. "http://127.0.0.1:8080", "https://[::1]:8443" or "unix:/run/app.sock"';
/** sun_path holds 108 bytes on Linux, the last one a NUL. */
const MAX_UNIX_PATH = 107;

/**
 * Upstream target: http or https with an explicit port and no path, or a unix socket path.
 * Normalised: lowercase scheme and name, canonical IP, `url` as `scheme://host:port` / `unix:/path`.
 */
export function parseUpstreamTarget(text: string): Parsed<UpstreamTarget> {
  if (/^unix:/i.test(text)) {
    const path = text.slice('unix:'.length);
    if (!path.startsWith('/')) return { ok: false, expected: `${TARGET_EXAMPLE} (a unix socket path is absolute: "unix:/run/app.sock")` };
    if (path.includes('\0')) return { ok: false, expected: `${TARGET_EXAMPLE} (a unix socket path without NUL)` };
    if (Buffer.byteLength(path) > MAX_UNIX_PATH) return { ok: false, expected: `${TARGET_EXAMPLE} (a unix socket path of at most ${MAX_UNIX_PATH} bytes)` };
    return { ok: true, value: { kind: 'unix', url: `unix:${path}`, path } };
  }
  const match = /^([a-z][a-z0-9+.-]*):\/\/(\[[^\]]*\]|[^/:?#@[\]]*)(?::([^/?#]*))?(\/?)(.*)$/i.exec(text);
  if (match === null) return { ok: false, expected: TARGET_EXAMPLE };
  const [, rawScheme, rawHost, rawPort, , rest] = match;
  const scheme = rawScheme!.toLowerCase();
  if (scheme !== 'http' && scheme !== 'https') {
    return { ok: false, expected: `${TARGET_EXAMPLE} ("${rawScheme}" is not supported)` };
  }
  if (rest !== '') return { ok: false, expected: `${TARGET_EXAMPLE} with no path, query or user info` };
  let host: string | undefined;
  let isIp = true;
  if (rawHost!.startsWith('[')) {
    const ip = canonicalIp(rawHost!.slice(1, -1));
    host = ip?.family === 6 ? ip.address : undefined;
  } else if (canonicalIp(rawHost!)?.family === 4) {
    host = rawHost;
  } else {
    host = normaliseDnsName(rawHost!);
    isIp = false;
  }
  if (host === undefined) return { ok: false, expected: `${TARGET_EXAMPLE} (bad host "${rawHost}")` };
  if (rawPort === undefined) return { ok: false, expected: `${TARGET_EXAMPLE} with an explicit port` };
  const port = parsePort(rawPort);
  if (port === undefined) return { ok: false, expected: `${TARGET_EXAMPLE} with a port between 1 and 65535` };
  const hostText = host.includes(':') ? `[${host}]` : host;
  return { ok: true, value: { kind: 'tcp', url: `${scheme}://${hostText}:${port}`, tls: scheme === 'https', host, isIp, port } };
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;
/** Fields the proxy manages itself or that HTTP/3 forbids (RFC 9114 §4.2). */
const RESERVED_HEADERS = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'content-length']);

/** HTTP field name, lowercased (HTTP/3 requires lowercase). */
export function parseHeaderName(text: string): Parsed<string> {
  const name = text.toLowerCase();
  if (!TOKEN.test(name)) return { ok: false, expected: 'an HTTP header name (letters, digits and !#$%&\'*+.^_`|~-)' };
  if (RESERVED_HEADERS.has(name)) return { ok: false, expected: `a header other than "${name}", which the proxy sets itself or HTTP/3 forbids` };
  return { ok: true, value: name };
}

export function parseHeaderValue(text: string): Parsed<string> {
  // Field values: visible ASCII, obs-text, spaces and tabs inside; no CR, LF or NUL (RFC 9110 §5.5).
  if (/[\0\r\n]/.test(text) || /[\x01-\x08\x0a-\x1f\x7f]/.test(text)) return { ok: false, expected: 'a header value without control characters' };
  return { ok: true, value: text.trim() };
}
