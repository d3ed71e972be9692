/**
 * HTTP/3 request validation (RFC 9114 §4.1–4.3) over the field list QPACK decoded. Pure functions:
 * the HTTP/3 layer turns a `malformed` result into a stream error H3_MESSAGE_ERROR, and may answer an
 * `unsupported` one (a well-formed request we do not serve, such as CONNECT) with a 501 response.
 */

import { isIPv6 } from 'node:net';
import {
  CONNECTION_SPECIFIC_FIELDS,
  type Field,
  type FieldList,
  isFieldValue,
  isLowercaseToken,
  isToken,
} from './fields.js';

export interface ValidatedRequest {
  readonly method: string;
  readonly scheme: string;
  /** From :authority, or from Host when :authority is absent. */
  readonly authority: string;
  readonly path: string;
  /** Regular (non-pseudo) fields in received order, names lowercase. Includes `host` if sent. */
  readonly headers: FieldList;
  /** Parsed content-length, when the request carried one. */
  readonly contentLength?: number;
}

export type ValidationFailureKind = 'malformed' | 'unsupported';

export type RequestValidation =
  | { readonly ok: true; readonly request: ValidatedRequest }
  | { readonly ok: false; readonly kind: ValidationFailureKind; readonly reason: string };

export type TrailerValidation =
  | { readonly ok: true; readonly trailers: FieldList }
  | { readonly ok: false; readonly kind: 'malformed'; readonly reason: string };

const REQUEST_PSEUDO_HEADERS: ReadonlySet<string> = new Set([':method', ':scheme', ':authority', ':path', ':protocol']);
// authority = host [ ":" port ] (RFC 3986 §3.2.2-3.2.3; userinfo is forbidden, RFC 9114 §4.3.1):
// an IPv6 literal in brackets, or dot-separated labels of letters, digits, '-' and '_' (DNS names
// and IPv4 addresses). A reg-name may also hold sub-delims and percent-encoding, but no host we
// route or forward does, and "a,b" or "a;b" would name different hosts to different readers.
const AUTHORITY = /^(?:\[([0-9A-Fa-f:.]+)\]|[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?)(?::([0-9]{0,5}))?$/;
// Octets undici (and an HTTP/1.1 request line) accept in a request target: no space, no controls.
const PATH_OCTETS = /^[\x21-\x7e\x80-\xff]+$/;
const DIGITS = /^[0-9]+$/;

function malformed(reason: string): { ok: false; kind: 'malformed'; reason: string } {
  return { ok: false, kind: 'malformed', reason };
}

/** Validate a decoded request header section. Never throws. */
export function validateRequest(fields: readonly Field[]): RequestValidation {
  const pseudo = new Map<string, string>();
  const headers: FieldList = [];
  let sawRegular = false;

  for (const [name, value] of fields) {
    if (name.startsWith(':')) {
      if (sawRegular) return malformed(`pseudo-header ${name} after a regular field`);
      if (!REQUEST_PSEUDO_HEADERS.has(name)) return malformed(`pseudo-header ${name} not allowed in a request`);
      if (pseudo.has(name)) return malformed(`duplicate pseudo-header ${name}`);
      if (!isFieldValue(value)) return malformed(`invalid characters in ${name}`);
      pseudo.set(name, value);
      continue;
    }
    sawRegular = true;
    const problem = regularFieldProblem(name, value);
    if (problem !== null) return malformed(problem);
    headers.push([name, value]);
  }

  const method = pseudo.get(':method');
  if (method === undefined) return malformed('missing :method');
  if (!isToken(method)) return malformed('invalid :method');

  // Extended CONNECT (RFC 9220) needs SETTINGS_ENABLE_CONNECT_PROTOCOL, which we never send.
  if (pseudo.has(':protocol')) return malformed(':protocol without extended CONNECT enabled');
  if (method === 'CONNECT') {
    // RFC 9114 §4.4: a CONNECT request carries :authority and neither :scheme nor :path.
    if (pseudo.has(':scheme') || pseudo.has(':path')) return malformed('CONNECT with :scheme or :path');
    if (!pseudo.has(':authority')) return malformed('CONNECT without :authority');
    return { ok: false, kind: 'unsupported', reason: 'CONNECT is not supported' };
  }

  const scheme = pseudo.get(':scheme');
  if (scheme === undefined) return malformed('missing :scheme');
  const path = pseudo.get(':path');
  if (path === undefined) return malformed('missing :path');
  if (path === '') return malformed('empty :path');
  if (path === '*') {
    if (method !== 'OPTIONS') return malformed(":path '*' is only allowed with OPTIONS");
  } else if (!path.startsWith('/')) {
    return malformed(':path must start with /');
  }
  if (!PATH_OCTETS.test(path)) return malformed('invalid characters in :path');
  if (scheme !== 'https' && scheme !== 'http') {
    return { ok: false, kind: 'unsupported', reason: `scheme ${JSON.stringify(scheme)} is not supported` };
  }

  const authority = resolveAuthority(pseudo.get(':authority'), headers);
  if (typeof authority !== 'string') return authority;

  const contentLength = parseContentLength(headers);
  if (typeof contentLength === 'object') return contentLength;
  // Identical content-length fields are one value (RFC 9110 §8.6): keep the first field only, so
  // nothing downstream sees (or forwards) two.
  if (contentLength !== undefined) {
    const first = headers.findIndex(([name]) => name === 'content-length');
    for (let i = headers.length - 1; i > first; i--) if (headers[i]![0] === 'content-length') headers.splice(i, 1);
  }

  const request: ValidatedRequest =
    contentLength === undefined
      ? { method, scheme, authority, path, headers }
      : { method, scheme, authority, path, headers, contentLength };
  return { ok: true, request };
}

/** Validate a trailer section (RFC 9114 §4.1.2: no pseudo-headers, same field rules). */
export function validateTrailers(fields: readonly Field[]): TrailerValidation {
  const trailers: FieldList = [];
  for (const [name, value] of fields) {
    if (name.startsWith(':')) return malformed(`pseudo-header ${name} in trailers`);
    const problem = regularFieldProblem(name, value);
    if (problem !== null) return malformed(problem);
    trailers.push([name, value]);
  }
  return { ok: true, trailers };
}

/**
 * Check received DATA bytes against a declared content-length (RFC 9114 §4.1.2). Call after every
 * DATA frame with atEnd=false (catches an excess as soon as it happens) and once with atEnd=true when
 * the stream ends. Returns null when consistent, else the reason the request is malformed.
 */
export function checkBodyLength(contentLength: number | undefined, received: number, atEnd: boolean): string | null {
  if (contentLength === undefined) return null;
  if (received > contentLength) return `body exceeds content-length ${contentLength} (${received} bytes)`;
  if (atEnd && received < contentLength) return `body shorter than content-length ${contentLength} (${received} bytes)`;
  return null;
}

/** Stateful wrapper over checkBodyLength for a stream that counts DATA as it arrives. */
export class BodyLengthCounter {
  #received = 0;
  constructor(readonly contentLength: number | undefined) {}

  get received(): number {
    return this.#received;
  }

  /** Count a DATA payload; returns the malformation reason as soon as the length is exceeded. */
  add(bytes: number): string | null {
    this.#received += bytes;
    return checkBodyLength(this.contentLength, this.#received, false);
  }

  /** The stream ended (FIN): returns the reason when fewer bytes arrived than declared. */
  finish(): string | null {
    return checkBodyLength(this.contentLength, this.#received, true);
  }
}

function regularFieldProblem(name: string, value: string): string | null {
  if (name !== name.toLowerCase()) return `uppercase field name ${JSON.stringify(name)}`;
  if (!isLowercaseToken(name)) return `invalid field name ${JSON.stringify(name)}`;
  if (!isFieldValue(value)) return `invalid characters in field ${name}`;
  if (CONNECTION_SPECIFIC_FIELDS.has(name)) return `connection-specific field ${name}`;
  if (name === 'te' && value.toLowerCase() !== 'trailers') return 'te other than "trailers"';
  return null;
}

/** §4.3.1: :authority or Host must be present, non-empty, and equal when both are. */
function resolveAuthority(
  pseudoAuthority: string | undefined,
  headers: FieldList,
): string | { ok: false; kind: 'malformed'; reason: string } {
  let host: string | undefined;
  for (const [name, value] of headers) {
    if (name !== 'host') continue;
    if (host !== undefined) return malformed('more than one host field');
    host = value;
  }
  if (pseudoAuthority === undefined && host === undefined) return malformed('missing :authority and host');
  if (pseudoAuthority === '' || host === '') return malformed('empty :authority or host');
  if (pseudoAuthority !== undefined && host !== undefined && pseudoAuthority.toLowerCase() !== host.toLowerCase()) {
    return malformed(':authority and host differ');
  }
  const authority = (pseudoAuthority ?? host) as string;
  const problem = authorityProblem(authority);
  return problem === null ? authority : malformed(problem);
}

/**
 * Why `authority` (host [":" port], no userinfo) is not one we accept, or null when it is. Also
 * judges an HTTP/1.1 Host field (RFC 9112 §3.2: an invalid one gets 400).
 */
export function authorityProblem(authority: string): string | null {
  if (authority === '') return 'empty authority';
  if (authority.includes('@')) return 'userinfo in authority';
  const parts = AUTHORITY.exec(authority);
  if (parts === null) return 'invalid authority';
  const [, ipv6, port] = parts;
  if (ipv6 !== undefined && !isIPv6(ipv6)) return 'invalid IPv6 address in authority';
  if (port !== undefined && port !== '' && Number(port) > 65535) return 'invalid port in authority';
  return null;
}

/** Every content-length field must hold the same run of digits (RFC 9110 §8.6); they are then one value. */
function parseContentLength(headers: FieldList): number | undefined | { ok: false; kind: 'malformed'; reason: string } {
  let text: string | undefined;
  for (const [name, value] of headers) {
    if (name !== 'content-length') continue;
    if (!DIGITS.test(value)) return malformed('content-length is not a number');
    if (text !== undefined && text !== value) return malformed('conflicting content-length values');
    text = value;
  }
  if (text === undefined) return undefined;
  const length = Number(text);
  if (!Number.isSafeInteger(length)) return malformed('content-length too large');
  return length;
}
