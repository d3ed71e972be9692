/**
 * Field-level rules shared by request validation and header translation: which names are legal,
 * which values are legal, and which fields belong to a single connection rather than the message.
 */

/** A decoded header or trailer field: [name, value]. Values are latin1 strings (one char per octet). */
export type Field = readonly [string, string];
/** A mutable field list in wire order; duplicates allowed. */
export type FieldList = Array<[string, string]>;

/**
 * RFC 9114 §4.2: a message containing any of these is malformed (they describe an HTTP/1.1
 * connection; HTTP/3 has its own framing). `te` is the exception handled separately: it may carry
 * exactly "trailers".
 */
export const CONNECTION_SPECIFIC_FIELDS: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
]);

/**
 * Hop-by-hop fields a proxy removes in both directions (RFC 9110 §7.6.1 plus the classic
 * RFC 2616 §13.5.1 list). Names starting with `proxy-` are hop-by-hop too (see isHopByHop).
 */
const HOP_BY_HOP_FIELDS: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** True for a hop-by-hop field name (lowercase), not counting names listed in `connection`. */
export function isHopByHop(name: string): boolean {
  return HOP_BY_HOP_FIELDS.has(name) || name.startsWith('proxy-');
}

const CONNECTION = 'connection';

/**
 * The field names a `connection` header lists (RFC 9110 §7.6.1): each of these is hop-by-hop for
 * this one message. Names are lowercased; empty list elements are skipped.
 */
export function connectionListedNames(fields: readonly Field[]): Set<string> {
  const names = new Set<string>();
  for (const [name, value] of fields) {
    // The length first: most fields are not this one, and most names are not lowercased here.
    if (name.length !== CONNECTION.length || name.toLowerCase() !== CONNECTION) continue;
    for (const token of value.split(',')) {
      const trimmed = token.trim().toLowerCase();
      if (trimmed !== '') names.add(trimmed);
    }
  }
  return names;
}

/**
 * The grammar below as regular expressions; the functions check the same by character code (they
 * run for every field of every message), and test/unit/headers-validation holds them to these.
 */
export const FIELD_GRAMMAR = {
  // tchar per RFC 9110 §5.6.2, restricted to lowercase letters (HTTP/3 names must be lowercase).
  lowercaseToken: /^[!#$%&'*+\-.^_`|~0-9a-z]+$/,
  // tchar of any case, for names coming from HTTP/1.1 upstreams (lowercased afterwards).
  token: /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/,
  // field-value octets: HTAB, SP, VCHAR, obs-text. Excludes NUL, CR, LF and other controls.
  fieldValue: /^[\t\x20-\x7e\x80-\xff]*$/,
} as const;

/** Per character code below 128: 1 for a tchar that is not an uppercase letter, 2 for an uppercase letter. */
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz") TCHAR[c.charCodeAt(0)] = 1;
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZ') TCHAR[c.charCodeAt(0)] = 2;

/** A legal HTTP/3 field name: a non-empty token with no uppercase letters. */
export function isLowercaseToken(name: string): boolean {
  if (name.length === 0) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 128 || TCHAR[c] !== 1) return false;
  }
  return true;
}

/** A legal field name of any case (HTTP/1.1). */
export function isToken(name: string): boolean {
  if (name.length === 0) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 128 || TCHAR[c] === 0) return false;
  }
  return true;
}

/**
 * A legal field value: only HTAB, SP, VCHAR, obs-text, and no leading or trailing whitespace
 * (RFC 9110 §5.5; HTTP/2 and HTTP/3 treat such values as malformed).
 */
export function isFieldValue(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f || c > 0xff) return false;
  }
  if (value.length === 0) return true;
  const first = value.charCodeAt(0);
  const last = value.charCodeAt(value.length - 1);
  return first !== 0x20 && first !== 0x09 && last !== 0x20 && last !== 0x09;
}
