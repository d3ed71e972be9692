/**
 * An HTTP/1.1 request line and header fields (as Node's parser delivered them) turned into the
 * request the rest of the proxy sees, through the same `validateRequest` as HTTP/2 and HTTP/3:
 * the request target becomes `:path` (origin-form, asterisk-form) or `:authority` + `:path`
 * (absolute-form), Host becomes the authority, and the fields that only describe this HTTP/1.1
 * connection are removed first (they are legal here, but not in the protocol-neutral request).
 * Pure; never throws.
 *
 * Node's parser (llhttp, strict) has already refused what would let a request be framed two ways
 * (Content-Length with Transfer-Encoding, repeated Content-Length, a Transfer-Encoding not ending
 * in chunked, obs-fold, bad characters, bad chunk sizes); what is left to refuse here is what it
 * lets through.
 */
import type { IncomingMessage } from 'node:http';
import { authorityProblem, connectionListedNames, validateRequest, type FieldList, type ValidatedRequest } from '../http-semantics/index.js';

export type H1RequestResult =
  | { readonly ok: true; readonly request: ValidatedRequest }
  /** 400: malformed; 501: well-formed but not served (CONNECT, a transfer coding we do not decode). */
  | { readonly ok: false; readonly status: 400 | 501; readonly reason: string };

/** Fields describing one HTTP/1.1 connection or message framing: never part of the neutral request. */
const HTTP1_ONLY_FIELDS: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'upgrade', 'transfer-encoding', 'http2-settings']);

// absolute-form (RFC 9112 §3.2.2): scheme "://" authority, then path-abempty and query.
const ABSOLUTE_FORM = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([/?].*)?$/;

function bad(reason: string): H1RequestResult {
  return { ok: false, status: 400, reason };
}

/**
 * @param rawHeaders Node's `rawHeaders`: names as sent, values as latin1 strings.
 * @param scheme What the connection is: "https" for TLS listeners, "http" for the redirect listener.
 * @param http10Authority Given for an HTTP/1.0 request: its authority should it have no Host
 *   (`http10Authority`). RFC 9112 §3.2 requires Host of HTTP/1.1 requests only, and §3.3 lets
 *   the server put a default consistent with the connection in place of the missing authority.
 */
export function buildH1Request(method: string, target: string, rawHeaders: readonly string[], scheme: 'http' | 'https', http10Authority?: string): H1RequestResult {
  const received: FieldList = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) received.push([rawHeaders[i]!.toLowerCase(), rawHeaders[i + 1]!]);

  // RFC 9112 §3.2: exactly one Host, with a valid value, whatever the request-target's form.
  const hosts = received.filter(([name]) => name === 'host');
  if (hosts.length === 0 && http10Authority !== undefined) received.push(['host', http10Authority]);
  else if (hosts.length === 0) return bad('missing Host');
  if (hosts.length > 1) return bad('more than one Host');
  const hostProblem = hosts.length === 0 ? null : authorityProblem(hosts[0]![1]);
  if (hostProblem !== null) return bad(`invalid Host: ${hostProblem}`);

  // The parser decoded chunked framing; any other coding would reach the upstream still encoded
  // with nothing saying so (Transfer-Encoding is hop-by-hop). RFC 9112 §6.1: 501.
  const codings = received.filter(([name]) => name === 'transfer-encoding').flatMap(([, v]) => v.split(','));
  if (codings.length > 0 && !(codings.length === 1 && codings[0]!.trim().toLowerCase() === 'chunked')) {
    return { ok: false, status: 501, reason: 'transfer codings other than chunked are not supported' };
  }

  const listed = connectionListedNames(received);
  listed.delete('host'); // needed for the authority; a Connection field cannot take it away
  const headers: FieldList = [];
  for (const [name, value] of received) {
    if (HTTP1_ONLY_FIELDS.has(name) || listed.has(name)) continue;
    if (name === 'te') {
      // HTTP/1.1 allows a list of codings; the neutral request carries only "trailers" (RFC 9110 §10.1.4).
      if (value.split(',').some((t) => t.split(';')[0]!.trim().toLowerCase() === 'trailers')) headers.push(['te', 'trailers']);
      continue;
    }
    headers.push([name, value]);
  }

  const pseudo = pseudoHeaders(method, target, scheme);
  if ('reason' in pseudo) return bad(pseudo.reason);
  if (pseudo.authority !== undefined) {
    // RFC 9112 §3.2.2: the absolute-form's authority replaces Host.
    const i = headers.findIndex(([name]) => name === 'host');
    headers[i] = ['host', pseudo.authority];
  }
  const v = validateRequest([...pseudo.fields, ...headers]);
  if (v.ok) return v;
  return { ok: false, status: v.kind === 'malformed' ? 400 : 501, reason: v.reason };
}

/**
 * For an HTTP/1.0 request, the authority it is taken to be for should it have no Host: the
 * address and port its connection arrived on ("127.0.0.1:443", "[::1]:443"). Undefined for
 * HTTP/1.1, which must send Host.
 */
export function http10Authority(req: Pick<IncomingMessage, 'httpVersionMinor' | 'socket'>): string | undefined {
  if (req.httpVersionMinor !== 0) return undefined;
  const host = req.socket.localAddress ?? '';
  return `${host.includes(':') ? `[${host}]` : host}:${req.socket.localPort ?? 0}`;
}

/** The request-target as HTTP/2-style pseudo-header fields. */
function pseudoHeaders(method: string, target: string, scheme: string): { fields: FieldList; authority: string | undefined } | { reason: string } {
  const fields: FieldList = [[':method', method]];
  if (method === 'CONNECT') {
    // authority-form (RFC 9112 §3.2.3): validateRequest refuses CONNECT (501) as in HTTP/3.
    fields.push([':authority', target]);
    return { fields, authority: undefined };
  }
  fields.push([':scheme', scheme]);
  if (target === '*' || target.startsWith('/')) {
    fields.push([':path', target]);
    return { fields, authority: undefined };
  }
  const abs = ABSOLUTE_FORM.exec(target);
  if (abs === null) return { reason: 'invalid request target' };
  const [, targetScheme, authority, rest] = abs;
  if (!/^https?$/i.test(targetScheme!)) return { reason: `absolute-form target with scheme ${JSON.stringify(targetScheme)}` };
  // `http://a?q` has an empty path: "/" stands for it (RFC 9112 §3.2.1).
  const path = rest === undefined ? '/' : rest.startsWith('?') ? `/${rest}` : rest;
  fields.push([':authority', authority!], [':path', path]);
  return { fields, authority };
}
