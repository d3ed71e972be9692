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

/**
 * The field names a `connection` header lists (RFC 9110 §7.6.1): each of these is hop-by-hop for
 * this one message. Names are lowercased; empty list elements are skipped.
 */
export function connectionListedNames(fields: readonly Field[]): Set<string> {
  const names = new Set<string>();
  for (const [name, value] of fields) {
    if (name.toLowerCase() !== 'connection') continue;
    for (const token of value.split(',')) {
      const trimmed = token.trim().toLowerCase();
      if (trimmed !== '') names.add(trimmed);
    }
  }
  return names;
}

// tchar per RFC 9110 §5.6.2, restricted to lowercase letters (HTTP/3 names must be lowercase).
const LOWERCASE_TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;
// tchar of any case, for names coming from HTTP/1.1 upstreams (lowercased afterwards).
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// field-value octets: HTAB, SP, VCHAR, obs-text. Excludes NUL, CR, LF and other controls.
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** A legal HTTP/3 field name: a non-empty token with no uppercase letters. */
export function isLowercaseToken(name: string): boolean {
  return LOWERCASE_TOKEN.test(name);
}

/** A legal field name of any case (HTTP/1.1). */
export function isToken(name: string): boolean {
  return TOKEN.test(name);
}

/**
 * A legal field value: only HTAB, SP, VCHAR, obs-text, and no leading or trailing whitespace
 * (RFC 9110 §5.5; HTTP/2 and HTTP/3 treat such values as malformed).
 */
export function isFieldValue(value: string): boolean {
  if (!FIELD_VALUE.test(value)) return false;
  if (value.length === 0) return true;
  const first = value.charCodeAt(0);
  const last = value.charCodeAt(value.length - 1);
  return first !== 0x20 && first !== 0x09 && last !== 0x20 && last !== 0x09;
}
