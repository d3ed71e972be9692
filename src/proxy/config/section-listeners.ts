/**
 * `listeners:` — the addresses every worker serves. Each is an IP:PORT served on UDP (HTTP/3) and
 * TCP (HTTP/1.1 and HTTP/2 over TLS), narrowed by `protocols`, with an Alt-Svc advertisement and an
 * optional plain-HTTP redirect listener.
 */
import { parseHeaderValue, parseListenAddress } from './names.js';
import { LISTENER_PROTOCOLS, type ListenAddressConfig, type ListenerConfig, type ListenerProtocol } from './types.js';
import type { Cursor } from './yaml-cursor.js';

/** How long clients may remember an advertised HTTP/3 endpoint (Alt-Svc `ma`, seconds): one day. */
export const ALT_SVC_MAX_AGE = 86400;

const LISTENER_KEYS = ['address', 'protocols', 'alt_svc', 'http_redirect'] as const;

export function formatListener(l: ListenAddressConfig): string {
  return l.family === 6 ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}`;
}

export function servesUdp(l: ListenerConfig): boolean {
  return l.protocols.includes('h3');
}

export function servesTls(l: ListenerConfig): boolean {
  return l.protocols.includes('h1') || l.protocols.includes('h2');
}

/** The Alt-Svc value `auto` stands for: this listener's UDP port, when it serves HTTP/3. */
export function autoAltSvc(l: ListenAddressConfig & { readonly protocols: readonly ListenerProtocol[] }): string | undefined {
  return l.protocols.includes('h3') ? `h3=":${l.port}"; ma=${ALT_SVC_MAX_AGE}` : undefined;
}

export function readListeners(section: Cursor | undefined, root: Cursor): ListenerConfig[] {
  if (section === undefined || !section.present) {
    root.missing(['listeners'], 'missing "listeners": expected a list of addresses such as "127.0.0.1:4433" and "[::1]:4433"');
    return [];
  }
  const items = section.oneOrMany();
  if (items === undefined) return [];
  if (items.length === 0) section.error('expected at least one listener address');
  // Every TCP and UDP address in use, so no two listeners (or redirects) claim the same one.
  const tcpSeen = new Map<string, string>();
  const udpSeen = new Map<string, string>();
  /** Records addr as used by `at`; returns who used it first, if anyone did. */
  const claim = (seen: Map<string, string>, addr: ListenAddressConfig, at: Cursor): string | undefined => {
    const key = formatListener(addr);
    const first = seen.get(key);
    if (first === undefined) seen.set(key, at.path);
    return first;
  };
  const out: ListenerConfig[] = [];
  for (const item of items) {
    const read = readListener(item);
    if (read === undefined) continue;
    const { listener, addressAt, redirectAt } = read;
    // One message per address, even when both its UDP and its TCP side are taken.
    const taken = (servesUdp(listener) ? claim(udpSeen, listener, addressAt) : undefined) ?? (servesTls(listener) ? claim(tcpSeen, listener, addressAt) : undefined);
    if (taken !== undefined) addressAt.error(`duplicate listener ${formatListener(listener)} (already listed at ${taken})`);
    const redirectTaken = listener.httpRedirect !== undefined ? claim(tcpSeen, listener.httpRedirect, redirectAt ?? item) : undefined;
    if (redirectTaken !== undefined) (redirectAt ?? item).error(`TCP address ${formatListener(listener.httpRedirect!)} is already used by ${redirectTaken}`);
    const ok = taken === undefined && redirectTaken === undefined;
    if (ok) out.push(listener);
  }
  return out;
}

/** `"IP:PORT"` (every protocol, Alt-Svc auto) or `{ address, protocols, alt_svc, http_redirect }`. */
interface ReadListener {
  readonly listener: ListenerConfig;
  /** Where to point errors about its address and its redirect address. */
  readonly addressAt: Cursor;
  readonly redirectAt: Cursor | undefined;
}

function readListener(item: Cursor): ReadListener | undefined {
  if (item.isSequence) {
    // `- [::1]:4433` unquoted is YAML flow-list syntax; say what to write instead.
    item.error('expected a quoted address: write IPv6 listeners as "[::1]:4433" (with the quotes)');
    return undefined;
  }
  if (!item.isMapping) {
    const address = item.parsed(parseListenAddress, 'a listen address such as "127.0.0.1:4433"');
    if (address === undefined) return undefined;
    const protocols = [...LISTENER_PROTOCOLS];
    return { listener: { ...address, protocols, altSvc: autoAltSvc({ ...address, protocols }), httpRedirect: undefined }, addressAt: item, redirectAt: undefined };
  }
  const f = item.fields(LISTENER_KEYS, 'a listener');
  if (f === undefined) return undefined;
  if (f.address === undefined) {
    item.error('missing "address": expected an address such as "127.0.0.1:4433"');
    return undefined;
  }
  const address = f.address.parsed(parseListenAddress, 'a listen address such as "127.0.0.1:4433"');
  const protocols = f.protocols === undefined ? [...LISTENER_PROTOCOLS] : readProtocols(f.protocols);
  const httpRedirect = f.http_redirect?.parsed(parseListenAddress, 'a plain-HTTP listen address such as "127.0.0.1:80"');
  if (address === undefined || protocols === undefined) return undefined;
  if (f.http_redirect !== undefined && httpRedirect === undefined) return undefined;
  let altSvc = autoAltSvc({ ...address, protocols });
  if (f.alt_svc !== undefined) {
    const text = f.alt_svc.string('"auto", "off" or an Alt-Svc field value');
    if (text === undefined) return undefined;
    if (text === 'off') altSvc = undefined;
    else if (text !== 'auto') {
      altSvc = f.alt_svc.parsed(parseHeaderValue, 'an Alt-Svc field value such as \'h3=":443"; ma=86400\' (or auto, off)');
      if (altSvc === undefined) return undefined;
    }
  }
  if (httpRedirect !== undefined && !servesTlsProtocols(protocols)) {
    f.http_redirect!.error('http_redirect sends clients to this listener\'s https URL, but it serves no TCP protocol (add h1 or h2 to protocols)');
    return undefined;
  }
  return { listener: { ...address, protocols, altSvc, httpRedirect }, addressAt: f.address, redirectAt: f.http_redirect };
}

function servesTlsProtocols(protocols: readonly ListenerProtocol[]): boolean {
  return protocols.includes('h1') || protocols.includes('h2');
}

function readProtocols(at: Cursor): ListenerProtocol[] | undefined {
  const items = at.oneOrMany();
  if (items === undefined) return undefined;
  const chosen = new Set<ListenerProtocol>();
  for (const p of items) {
    const v = p.oneOf(LISTENER_PROTOCOLS);
    if (v === undefined) return undefined;
    if (chosen.has(v)) {
      p.error(`protocol ${v} is listed twice`);
      return undefined;
    }
    chosen.add(v);
  }
  if (chosen.size === 0) {
    at.error(`expected at least one of ${LISTENER_PROTOCOLS.join(', ')}`);
    return undefined;
  }
  return LISTENER_PROTOCOLS.filter((p) => chosen.has(p));
}
