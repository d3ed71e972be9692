/**
 * The request target (`:path`) as routing sees it and as it is forwarded. Routes must match what
 * the upstream will take the path to mean, else `/x/../healthz`, `/%68ealthz` or `//healthz` walk
 * past a route meant to block `/healthz`. The routing path is normalised:
 *
 *  1. percent-encodings of unreserved characters decoded, all others uppercased (RFC 3986 §6.2.2.1,
 *     §6.2.2.2), and octets above 0x7E percent-encoded (they are not allowed raw in a URI);
 *  2. runs of "/" merged into one (as nginx and most servers do);
 *  3. dot segments removed (RFC 3986 §5.2.4, §6.2.2.3), "%2E" included since step 1 decoded it.
 *
 * Targets that cannot be normalised safely are refused (the caller answers 400): a fragment ("#"
 * is never part of a request target, RFC 9112 §3.2), an invalid percent-encoding, "\" raw or as
 * %5C (some servers take it for "/"), %2F (an upstream that decodes it would see different
 * segments than we routed on) and %00. The query is not routed on; it only gets octets above 0x7E
 * percent-encoded.
 *
 * What is forwarded is the target as received (with octets above 0x7E percent-encoded), or the
 * normalised one when a route asks for it.
 */

export interface NormalisedTarget {
  /** What routes match: the normalised path, without the query ('*' for OPTIONS *). */
  readonly path: string;
  /** The normalised path with the query: forwarded by routes with `forward_path: normalised`. */
  readonly normalised: string;
  /** The target as received with octets above 0x7E percent-encoded: forwarded by default. */
  readonly received: string;
}

export type TargetNormalisation = { readonly ok: true; readonly target: NormalisedTarget } | { readonly ok: false; readonly reason: string };

// RFC 3986 §2.3: ALPHA / DIGIT / "-" / "." / "_" / "~".
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;
/** Encoded octets that would change the path's segments, or end it, if an upstream decoded them. */
const REFUSED_ENCODINGS: Readonly<Record<string, string>> = {
  '2F': 'encoded "/" (%2F) in the path would change its segments',
  '5C': 'encoded "\\" (%5C) in the path would change its segments',
  '00': 'encoded NUL (%00) in the path',
};

function refused(reason: string): TargetNormalisation {
  return { ok: false, reason };
}

/** Normalise a request target for routing (see the module comment). Pure; never throws. */
export function normaliseTarget(target: string): TargetNormalisation {
  // Most targets are already in normal form; one scan says so without building anything.
  if (isAlreadyNormal(target)) return { ok: true, target: { path: pathOf(target), normalised: target, received: target } };
  return normaliseTargetInFull(target);
}

const SLASH = 0x2f;
const DOT = 0x2e;
const QUESTION = 0x3f;
/** Before the first character: a "." there starts a dot segment as after a "/". */
const START = -1;

/**
 * True when `normaliseTargetInFull` would return the target unchanged: printable ASCII only, no
 * "#"; in the path no "%" or "\\", no run of "/" and no dot segment (conservatively: no "/." and
 * no leading "."). Anything else takes the full normalisation.
 */
export function isAlreadyNormal(target: string): boolean {
  let inPath = true;
  let previous = START;
  for (let i = 0; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f || c === 0x23 /* # */) return false;
    if (!inPath) continue;
    if (c === QUESTION) {
      inPath = false;
      continue;
    }
    if (c === 0x25 /* % */ || c === 0x5c /* \\ */) return false;
    if (c === DOT ? previous === SLASH || previous === START : c === SLASH && previous === SLASH) return false;
    previous = c;
  }
  return true;
}

/** The target's path (before any "?"). */
function pathOf(target: string): string {
  const q = target.indexOf('?');
  return q < 0 ? target : target.slice(0, q);
}

/** The full normalisation (see the module comment); normaliseTarget skips it for targets already normal. */
export function normaliseTargetInFull(target: string): TargetNormalisation {
  if (target === '*') return { ok: true, target: { path: '*', normalised: '*', received: '*' } };
  if (/[\x00-\x20\x7f]/.test(target)) return refused('control character or space in the request target');
  if (/[^\x00-\xff]/.test(target)) return refused('character outside octets in the request target');
  if (target.includes('#')) return refused('fragment ("#") in the request target');
  const q = target.indexOf('?');
  const rawPath = q < 0 ? target : target.slice(0, q);
  const query = q < 0 ? '' : encodeHighOctets(target.slice(q));
  if (rawPath.includes('\\')) return refused('"\\" in the path (some servers take it for "/")');

  let decoded = '';
  for (let i = 0; i < rawPath.length; i++) {
    const c = rawPath[i]!;
    if (c !== '%') {
      decoded += c.charCodeAt(0) > 0x7e ? percent(c.charCodeAt(0)) : c;
      continue;
    }
    const hex = rawPath.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return refused('invalid percent-encoding in the path');
    const upper = hex.toUpperCase();
    const problem = REFUSED_ENCODINGS[upper];
    if (problem !== undefined) return refused(problem);
    const char = String.fromCharCode(parseInt(hex, 16));
    decoded += UNRESERVED.test(char) ? char : `%${upper}`;
    i += 2;
  }

  const path = removeDotSegments(mergeSlashes(decoded));
  return { ok: true, target: { path, normalised: path + query, received: encodeHighOctets(rawPath) + query } };
}

/** Runs of "/" become one. */
export function mergeSlashes(path: string): string {
  return path.replace(/\/{2,}/g, '/');
}

/** RFC 3986 §5.2.4 remove_dot_segments, step for step. */
export function removeDotSegments(path: string): string {
  let input = path;
  let output = '';
  while (input.length > 0) {
    if (input.startsWith('../')) input = input.slice(3);
    else if (input.startsWith('./')) input = input.slice(2);
    else if (input.startsWith('/./')) input = input.slice(2);
    else if (input === '/.') input = '/';
    else if (input.startsWith('/../') || input === '/..') {
      input = input === '/..' ? '/' : input.slice(3);
      const last = output.lastIndexOf('/');
      output = last < 0 ? '' : output.slice(0, last);
    } else if (input === '.' || input === '..') input = '';
    else {
      const next = input.indexOf('/', input.startsWith('/') ? 1 : 0);
      const segment = next < 0 ? input : input.slice(0, next);
      output += segment;
      input = input.slice(segment.length);
    }
  }
  return output;
}

function percent(octet: number): string {
  return `%${octet.toString(16).toUpperCase().padStart(2, '0')}`;
}

/** Octets above 0x7E (latin1 chars) percent-encoded: a request line carries ASCII only. */
function encodeHighOctets(text: string): string {
  return text.replace(/[\x80-\xff]/g, (c) => percent(c.charCodeAt(0)));
}
