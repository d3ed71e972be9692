/**
 * Header translation between the client side (HTTP/3, HTTP/2, HTTP/1.1) and upstreams (HTTP/1.1, HTTP/2).
 * Pure functions over field lists; the protocol layer adds `:status` (or the status line) itself.
 */

import { connectionListedNames, type Field, type FieldList, isFieldValue, isHopByHop, isToken } from './fields.js';
import type { ValidatedRequest } from './request-validation.js';
import { statusForbidsContentLength } from './status.js';

/** The pseudonym this proxy uses in Via (RFC 9110 §7.6.3). */
export const VIA_PSEUDONYM = 'udpgrm-proxy';

/**
 * Via's received-protocol (RFC 9110 §7.6.3): the version of the message as we received it, the
 * protocol name omitted since it is HTTP. "1.0", "1.1", "2" or "3".
 */
export type ViaProtocolVersion = '1.0' | '1.1' | '2' | '3';

export interface UpstreamRequestContext {
  /** The client's IP address (no port, no brackets), appended to X-Forwarded-For. */
  readonly clientIp: string;
  /**
   * The client is a proxy we trust (config trusted_proxies): its X-Forwarded-For and Forwarded are
   * kept and appended to, its X-Forwarded-Proto and -Host kept. Otherwise all four are replaced.
   */
  readonly trustForwarded?: boolean;
  /** Pseudonym for Via; defaults to VIA_PSEUDONYM. */
  readonly via?: string;
  /** The version of HTTP the client's request arrived in, for Via; default "3". */
  readonly receivedProtocol?: ViaProtocolVersion;
  /** The request arrived in TLS early data: say so upstream with `Early-Data: 1` (RFC 8470 §5.1). */
  readonly earlyData?: boolean;
}

export interface ClientResponseContext {
  /** The route's configured response headers; they replace upstream fields of the same name. */
  readonly routeHeaders?: readonly Field[];
  /** The response status: a 1xx or 204 loses any Content-Length (RFC 9110 §8.6). */
  readonly status?: number;
  readonly via?: string;
  /** The version of HTTP the upstream's response arrived in, for Via; default "1.1". */
  readonly receivedProtocol?: ViaProtocolVersion;
}

/**
 * Fields never forwarded on a request besides the hop-by-hop ones: `host` (rebuilt from the
 * authority), `expect` (undici cannot run 100-continue; the body is streamed regardless),
 * `x-real-ip` (a claim about the client only we can make) and `early-data` (RFC 8470 §5.1: ours
 * to set, for requests we received in 0-RTT).
 */
const REQUEST_FIELDS_REBUILT: ReadonlySet<string> = new Set(['host', 'expect', 'x-real-ip', 'early-data']);

/** Forwarding fields a client may only state when it is a trusted proxy. */
const FORWARDING_FIELDS = ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded'] as const;

/**
 * Fields a recipient must not take from a trailer section (RFC 9110 §6.5.1: framing, routing,
 * and content-processing fields). Dropped when passing trailers on.
 */
const TRAILER_PROHIBITED: ReadonlySet<string> = new Set([
  'content-length',
  'content-encoding',
  'content-type',
  'content-range',
  'host',
  'trailer',
  'transfer-encoding',
  'te',
  'authorization',
  'set-cookie',
  'cache-control',
  'expect',
  'max-forwards',
  'pragma',
  'range',
]);

/**
 * Build the HTTP/1.1 request header list for the upstream: Host from the authority, hop-by-hop
 * fields removed (te survives only as "trailers"), cookie crumbs rejoined (RFC 9114 §4.2.1),
 * forwarding fields stated by us (X-Forwarded-For/-Proto/-Host and Forwarded, RFC 7239; from a
 * trusted proxy its own are kept and the lists appended to), Via appended.
 */
export function toUpstreamRequestHeaders(request: ValidatedRequest, context: UpstreamRequestContext): FieldList {
  const listed = connectionListedNames(request.headers);
  const out: FieldList = [['host', request.authority]];
  const cookies: string[] = [];
  const via: string[] = [];
  // What a trusted proxy said, by field name (repeated fields combine as a list, RFC 9110 §5.3).
  const claims = new Map<string, string[]>(FORWARDING_FIELDS.map((name) => [name, []]));
  let sentLength = false;

  for (const [name, value] of request.headers) {
    if (listed.has(name) || REQUEST_FIELDS_REBUILT.has(name)) continue;
    if (name === 'te') {
      if (value.trim().toLowerCase() === 'trailers') out.push(['te', 'trailers']);
      continue;
    }
    if (isHopByHop(name)) continue;
    if (name === 'cookie') {
      cookies.push(value);
      continue;
    }
    const claim = claims.get(name);
    if (claim !== undefined) {
      if (context.trustForwarded === true) claim.push(value);
      continue;
    }
    if (name === 'via') {
      via.push(value);
      continue;
    }
    if (name === 'content-length') {
      // Validation made every value equal: one field, however often the client repeated it (RFC 9110 §8.6).
      if (!sentLength) out.push([name, value]);
      sentLength = true;
      continue;
    }
    out.push([name, value]);
  }

  if (cookies.length > 0) out.push(['cookie', cookies.join('; ')]);
  const list = (name: string, ours: string): string => [...claims.get(name)!, ours].join(', ');
  // Proto and host describe the request the first proxy received: a trusted proxy's stay.
  const first = (name: string, ours: string): string => (claims.get(name)!.length > 0 ? claims.get(name)!.join(', ') : ours);
  out.push(['x-forwarded-for', list('x-forwarded-for', context.clientIp)]);
  out.push(['x-forwarded-proto', first('x-forwarded-proto', 'https')]);
  out.push(['x-forwarded-host', first('x-forwarded-host', request.authority)]);
  out.push(['forwarded', list('forwarded', forwardedElement(context.clientIp, request.authority))]);
  via.push(`${context.receivedProtocol ?? '3'} ${context.via ?? VIA_PSEUDONYM}`);
  out.push(['via', via.join(', ')]);
  if (context.earlyData) out.push(['early-data', '1']);
  return out;
}

/** Our Forwarded element (RFC 7239 §4): IPv6 nodes bracketed and quoted (§6), values quoted unless tokens. */
function forwardedElement(clientIp: string, authority: string): string {
  const node = clientIp.includes(':') ? `[${clientIp}]` : clientIp;
  return `for=${forwardedValue(node)};host=${forwardedValue(authority)};proto=https`;
}

function forwardedValue(value: string): string {
  // Validated authorities and IP addresses hold no '"' or '\\': quoting needs no escapes.
  return isToken(value) ? value : `"${value}"`;
}

/**
 * Build the client's response header list from an upstream's fields: names lowercased,
 * hop-by-hop and connection-listed fields removed (they are connection-specific and would make
 * the HTTP/3 response malformed), fields with illegal names or values dropped, Content-Length
 * dropped where the status forbids it, Via appended, route headers applied last.
 */
export function toClientResponseHeaders(upstreamHeaders: readonly Field[], context: ClientResponseContext = {}): FieldList {
  const listed = connectionListedNames(upstreamHeaders);
  const routeHeaders = context.routeHeaders ?? NO_FIELDS;
  const replaced = routeHeaders.length === 0 ? NO_NAMES : new Set(routeHeaders.map(([name]) => name.toLowerCase()));
  const dropLength = context.status !== undefined && statusForbidsContentLength(context.status);
  const out: FieldList = [];
  let via: string[] | undefined;

  for (const [rawName, value] of upstreamHeaders) {
    const name = rawName.toLowerCase();
    if (!isToken(name) || !isFieldValue(value)) continue;
    if (listed.has(name) || isHopByHop(name) || replaced.has(name)) continue;
    if (dropLength && name === 'content-length') continue;
    if (name === 'via') {
      (via ??= []).push(value);
      continue;
    }
    out.push([name, value]);
  }

  // The usual Via is one constant string (no upstream Via, default names): not built per response.
  const ours = context.via === undefined ? responseVia(context.receivedProtocol ?? '1.1') : `${context.receivedProtocol ?? '1.1'} ${context.via}`;
  if (!replaced.has('via')) out.push(['via', via === undefined ? ours : [...via, ours].join(', ')]);
  for (const [name, value] of routeHeaders) out.push([name.toLowerCase(), value]);
  return out;
}

const NO_FIELDS: readonly Field[] = [];
const NO_NAMES: ReadonlySet<string> = new Set();
/** Our Via element on a response received in `version`, with the default pseudonym. */
function responseVia(version: ViaProtocolVersion): string {
  return version === '1.1' ? RESPONSE_VIA_1_1 : version === '2' ? RESPONSE_VIA_2 : `${version} ${VIA_PSEUDONYM}`;
}
const RESPONSE_VIA_1_1 = `1.1 ${VIA_PSEUDONYM}`;
const RESPONSE_VIA_2 = `2 ${VIA_PSEUDONYM}`;

/**
 * Pass an upstream trailer section on to the HTTP/3 client: lowercase names, drop hop-by-hop,
 * illegal, and RFC 9110 §6.5.1 prohibited fields.
 */
export function toClientTrailers(upstreamTrailers: readonly Field[]): FieldList {
  const out: FieldList = [];
  for (const [rawName, value] of upstreamTrailers) {
    const name = rawName.toLowerCase();
    if (!isToken(name) || !isFieldValue(value)) continue;
    if (isHopByHop(name) || TRAILER_PROHIBITED.has(name)) continue;
    out.push([name, value]);
  }
  return out;
}
