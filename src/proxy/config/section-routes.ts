/**
 * `routes:` — evaluated in file order, first match wins (see http/route.ts). Each route matches on
 * host and path prefix and either proxies to an upstream pool or answers itself (`respond`).
 */
import { normaliseTarget } from '../http-semantics/request-target.js';
import { readMaxRequestBody } from './section-http.js';
import { parseHeaderName, parseHeaderValue, parseHostPattern } from './names.js';
import { didYouMean } from './suggest.js';
import type { HostPattern, RouteAction, RouteConfig } from './types.js';
import type { Cursor } from './yaml-cursor.js';

const ROUTE_KEYS = ['host', 'path', 'upstream', 'respond', 'headers', 'forward_path', 'max_request_body'] as const;
const FORWARD_PATHS = ['as_received', 'normalised'] as const;
const RESPOND_KEYS = ['status', 'headers', 'body'] as const;
type Header = readonly [string, string];

/**
 * `parent` is where a missing `routes` is reported (the document, or a site). Route names are the
 * path in the file (`routes[2]`, `sites.a.routes[2]`): they label logs and metrics.
 */
export function readRoutes(section: Cursor | undefined, parent: Cursor, upstreams: ReadonlySet<string>): RouteConfig[] {
  if (section === undefined || !section.present) {
    parent.missing(['routes'], 'missing "routes": expected a list of routes, e.g. [{ path: /, upstream: app }]');
    return [];
  }
  const items = section.items('a list of routes') ?? [];
  if (section.isSequence && items.length === 0) section.error('expected at least one route');
  const out: RouteConfig[] = [];
  items.forEach((item, i) => {
    const route = readRoute(item, item.path, upstreams);
    if (route !== undefined) out.push(route);
  });
  return out;
}

function readRoute(item: Cursor, name: string, upstreams: ReadonlySet<string>): RouteConfig | undefined {
  const f = item.fields(ROUTE_KEYS, 'a route');
  if (f === undefined) return undefined;
  let ok = true;
  const hosts = f.host === undefined ? [{ kind: 'any' } as const] : readHosts(f.host);
  const pathPrefix = f.path === undefined ? '/' : readPathPrefix(f.path);
  if (hosts === undefined || pathPrefix === undefined) ok = false;

  let action: RouteAction | undefined;
  if (f.upstream !== undefined && f.respond !== undefined) {
    f.respond.error('a route has either "upstream" or "respond", not both');
  } else if (f.upstream !== undefined) {
    const pool = f.upstream.string('the name of a pool under "upstreams"');
    if (pool !== undefined && !upstreams.has(pool)) {
      const known = upstreams.size === 0 ? 'no pools are defined under "upstreams"' : `defined pools: ${[...upstreams].join(', ')}`;
      f.upstream.error(`unknown upstream pool "${pool}"${didYouMean(pool, upstreams)} (${known})`);
    } else if (pool !== undefined) {
      action = { kind: 'proxy', upstream: pool };
    }
  } else if (f.respond !== undefined) {
    action = readRespond(f.respond);
  } else {
    item.missing(['upstream', 'respond'], 'a route needs an action: "upstream: POOL" or "respond: { status, headers, body }"');
  }
  const responseHeaders = f.headers === undefined ? [] : readHeaders(f.headers);
  const forwardPath = f.forward_path?.oneOf(FORWARD_PATHS);
  if (f.forward_path !== undefined && f.upstream === undefined) f.forward_path.error('forward_path applies to routes with "upstream" only');
  const maxRequestBody = readMaxRequestBody(f.max_request_body);
  if (f.max_request_body !== undefined && maxRequestBody === undefined) ok = false;
  if (action === undefined || responseHeaders === undefined || !ok) return undefined;
  const route: RouteConfig = { name, hosts: hosts!, pathPrefix: pathPrefix!, action, responseHeaders };
  return { ...route, ...(forwardPath === undefined ? {} : { forwardPath }), ...(maxRequestBody === undefined ? {} : { maxRequestBody }) };
}

function readHosts(c: Cursor): HostPattern[] | undefined {
  const items = c.oneOrMany();
  if (items === undefined) return undefined;
  if (items.length === 0) {
    c.error('expected at least one host pattern (omit "host" to match any host)');
    return undefined;
  }
  const out: HostPattern[] = [];
  let ok = true;
  for (const item of items) {
    const pattern = item.parsed((t) => parseHostPattern(t, { allowAny: true, allowIp: true }), 'a host pattern');
    if (pattern === undefined) ok = false;
    else out.push(pattern);
  }
  return ok ? out : undefined;
}

function readPathPrefix(c: Cursor): string | undefined {
  const path = c.string('a path prefix starting with "/"');
  if (path === undefined) return undefined;
  if (!path.startsWith('/')) {
    c.error(`expected a path prefix starting with "/", got ${JSON.stringify(path)}`);
    return undefined;
  }
  if (path.includes('*')) {
    c.error(`path is a prefix, not a pattern: write ${JSON.stringify(path.replace(/\*+$/, ''))} to match everything below it`);
    return undefined;
  }
  if (/[?#\s\x00-\x1f\x7f]/.test(path) || /[^\x21-\x7e]/.test(path)) {
    c.error(`expected a path prefix of visible ASCII without "?", "#" or spaces, got ${JSON.stringify(path)}`);
    return undefined;
  }
  // Requests are matched on their normalised path: a prefix in any other spelling would never match.
  const normalised = normaliseTarget(path);
  if (!normalised.ok) {
    c.error(`expected a path prefix that can be normalised: ${normalised.reason}`);
    return undefined;
  }
  if (normalised.target.path !== path) {
    c.error(`requests are matched on their normalised path: write ${JSON.stringify(normalised.target.path)} instead of ${JSON.stringify(path)}`);
    return undefined;
  }
  return path;
}

function readRespond(c: Cursor): RouteAction | undefined {
  if (!c.isMapping) {
    c.expected('a mapping { status, headers, body }');
    return undefined;
  }
  const f = c.fields(RESPOND_KEYS, 'a response');
  if (f === undefined) return undefined;
  // 1xx cannot be a final response (RFC 9110 §15.2), so the range starts at 200.
  const status = f.status === undefined ? 200 : f.status.integer(200, 599, 'a final HTTP status');
  const headers = f.headers === undefined ? [] : readHeaders(f.headers);
  const bodyText = f.body === undefined ? '' : f.body.string('the response body as a string', { numbersToo: true });
  if (status === undefined || headers === undefined || bodyText === undefined) return undefined;
  if ((status === 204 || status === 304) && bodyText !== '') {
    f.body!.error(`a ${status} response has no body: remove "body" or change the status`);
    return undefined;
  }
  const body = Buffer.from(bodyText, 'utf8');
  // Say what the bytes are, unless the author did.
  if (body.length > 0 && !headers.some(([n]) => n === 'content-type')) headers.push(['content-type', 'text/plain; charset=utf-8']);
  return { kind: 'respond', status, headers, body };
}

function readHeaders(c: Cursor): Header[] | undefined {
  const entries = c.entries('a mapping of header name → value');
  if (entries === undefined) return undefined;
  const out: Header[] = [];
  let ok = true;
  for (const [rawName, value, keyOffset] of entries) {
    const name = parseHeaderName(rawName);
    if (!name.ok) {
      c.log.add(keyOffset, value.path, `invalid header name "${rawName}": expected ${name.expected}`);
      ok = false;
      continue;
    }
    const raw = value.string('a header value (string)', { numbersToo: true });
    const parsedValue = raw === undefined ? undefined : parseHeaderValue(raw);
    if (parsedValue === undefined || !parsedValue.ok) {
      if (parsedValue !== undefined) value.error(`expected ${parsedValue.expected}`);
      ok = false;
      continue;
    }
    if (out.some(([n]) => n === name.value)) {
      c.log.add(keyOffset, value.path, `duplicate header "${name.value}"`);
      ok = false;
      continue;
    }
    out.push([name.value, parsedValue.value]);
  }
  return ok ? out : undefined;
}
