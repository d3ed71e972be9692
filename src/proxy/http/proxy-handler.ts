/**
 * What happens to a request once its protocol decoded it: route → built-in response or upstream
 * pool → response streamed back. The request body streams to the upstream as it arrives, the
 * response body streams back as the client's flow control allows, and every exchange ends in
 * exactly one access-log line.
 */
import type { RouteAction, RouteConfig } from '../config/types.js';
import {
  normaliseTarget,
  responseHasNoContent,
  statusHasNoContent,
  toClientResponseHeaders,
  toClientTrailers,
  toUpstreamRequestHeaders,
  type FieldList,
} from '../http-semantics/index.js';
import { UpstreamError, classifyUpstreamError, clientMessage, type TryRecord } from '../upstream/errors.js';
import type { UpstreamPool } from '../upstream/pool.js';
import type { UpstreamRegistry } from '../upstream/registry.js';
import type { RequestMetrics } from '../metrics/request-metrics.js';
import type { AccessLog } from './access-log.js';
import { earlyDataHandling, type EarlyDataHandling } from './early-data.js';
import { RequestRefusedError, respondText, type HttpExchange, type RequestHandler } from './exchange.js';
import { ABORT, ExchangeAborted } from './exchange-abort.js';
import { misdirectedTo, type ServedSite } from './misdirected.js';
import { REFUSAL, type RefusalCounter } from './refusals.js';
import type { RequestBody } from './request-body.js';
import { relayBody } from './relay-body.js';
import type { TrustedProxies } from './trusted-proxies.js';

export interface HandlerOptions {
  readonly route: (host: string, path: string) => RouteConfig | undefined;
  readonly upstreams: UpstreamRegistry;
  readonly accessLog: AccessLog;
  /** Clients whose forwarding fields are kept (config trusted_proxies); default: nobody's. */
  readonly trustedProxies?: TrustedProxies;
  /** Counts requests turned away by a limit (for `list`). */
  readonly refusals?: RefusalCounter;
  /** Counts every exchange the access log records (for /metrics). */
  readonly metrics?: RequestMetrics;
  /**
   * The site this worker serves: a request for another site's host is answered 421 (RFC 9110
   * §15.5.20) before routing. Absent (as with one site): every host is served here.
   */
  readonly site?: ServedSite;
  /** http.max_request_body: the largest request body (bytes) of routes without their own; null or absent: no limit. */
  readonly maxRequestBody?: number | null;
}

export class ProxyHandler implements RequestHandler {
  constructor(private readonly opts: HandlerOptions) {}

  handle(ex: HttpExchange): void {
    const started = performance.now();
    // A host of another site is answered 421 before anything else: routing it, even judging its
    // target, is that site's business.
    const site = this.opts.site;
    const misdirected = site === undefined ? undefined : misdirectedTo(site, ex.request.authority);
    // Routes match the normalised path, so no spelling of a path walks past the route meant for it.
    const target = normaliseTarget(ex.request.path);
    const route = target.ok && misdirected === undefined ? this.opts.route(ex.request.authority, target.target.path) : undefined;
    // Built-in answers (404, respond routes) have no effect a replay could repeat: served at once.
    const early: { handling: EarlyDataHandling } = { handling: ex.earlyData ? 'served-early' : 'not-early' };
    const done = (status: number, upstream?: string, reason?: string, tries?: readonly TryRecord[]): void => {
      const durationMs = Math.round((performance.now() - started) * 1000) / 1000;
      this.opts.metrics?.record({ protocol: ex.protocol, route: route?.name, status, durationMs, pool: route?.action.kind === 'proxy' ? route.action.upstream : undefined, tries });
      // Most deployments that measure CPU run without an access log: no entry is built then.
      if (!this.opts.accessLog.enabled) return;
      this.opts.accessLog.write({
        protocol: ex.protocol,
        method: ex.request.method,
        authority: ex.request.authority,
        path: ex.request.path,
        status,
        bytesIn: ex.bytesReceived,
        bytesOut: ex.bytesSent,
        durationMs,
        route: route?.name,
        upstream,
        connection: ex.connectionId,
        stream: ex.streamId,
        client: ex.client.host,
        ...(reason ? { reason } : {}),
        ...(tries !== undefined && tries.length > 1 ? { tries } : {}),
        ...(early.handling !== 'not-early' ? { earlyData: early.handling } : {}),
      });
    };

    if (misdirected !== undefined) {
      drain(ex.body);
      this.opts.refusals?.add(REFUSAL.misdirected);
      this.opts.metrics?.misdirected.add([site!.name, ex.protocol]);
      // Clients may keep using this connection for the host (browsers do: a 421 is about one
      // request), and every request would be answered 421 again: tell them, ahead of the 421, to
      // open a new one, which the kernel can steer by its SNI.
      ex.goAway();
      respondText(ex, 421, 'misdirected request: this connection does not serve this host\n');
      done(421, undefined, `misdirected: the host is site ${misdirected}'s`);
      return;
    }
    if (!target.ok) {
      drain(ex.body);
      respondText(ex, 400, 'bad request target\n');
      done(400, undefined, `bad request target: ${target.reason}`);
      return;
    }
    if (!route) {
      drain(ex.body);
      respondText(ex, 404, 'no route for this host and path\n');
      done(404, undefined, 'no route');
      return;
    }
    // Before anything reads the body: a declared length above the limit is refused at once.
    const bodyLimit = route.maxRequestBody !== undefined ? route.maxRequestBody : (this.opts.maxRequestBody ?? null);
    if (bodyLimit !== null) {
      ex.limitBody(bodyLimit);
      const why: unknown = ex.signal.reason;
      if (why instanceof RequestRefusedError) {
        done(why.status, undefined, why.message);
        return;
      }
    }
    const action = route.action;
    if (action.kind === 'respond') {
      drain(ex.body);
      respondBuiltIn(ex, action, route.responseHeaders);
      done(action.status);
      return;
    }
    const pool = this.opts.upstreams.get(action.upstream);
    if (!pool) {
      drain(ex.body);
      respondText(ex, 502, 'upstream pool missing\n');
      done(502, action.upstream, 'pool missing');
      return;
    }
    const forwardPath = route.forwardPath === 'normalised' ? target.target.normalised : target.target.received;
    void this.proxy(ex, route, pool, forwardPath, early).then(
      (r) => done(r.status, r.upstream, r.reason, r.tries),
      (err: unknown) => done(0, action.upstream, `internal: ${(err as Error).message}`),
    );
  }

  private async proxy(
    ex: HttpExchange,
    route: RouteConfig,
    pool: UpstreamPool,
    path: string,
    early: { handling: EarlyDataHandling },
  ): Promise<{ status: number; upstream?: string; reason?: string; tries?: readonly TryRecord[] }> {
    // Usually known at once (Content-Length, or the request already ended): no await then.
    const known = requestHasBody(ex);
    const hasBody = typeof known === 'boolean' ? known : await known;
    if (!hasBody || ex.request.method === 'TRACE') drain(ex.body);
    if (hasBody && ex.request.method === 'TRACE') {
      // RFC 9110 §9.3.8: a client must not send content in a TRACE request.
      respondText(ex, 400, 'a TRACE request cannot have content\n');
      return { status: 400, reason: 'TRACE with content' };
    }
    early.handling = earlyDataHandling(ex.request, ex.earlyData, hasBody);
    // A replayed first flight never completes the handshake: what it carried never leaves here.
    if (early.handling === 'held-for-handshake' && !(await ex.handshakeComplete())) {
      return { status: 499, upstream: pool.name, reason: 'connection closed before the handshake completed (request held from early data)' };
    }
    let res;
    try {
      res = await pool.forward(
        {
          method: ex.request.method,
          path,
          headers: toUpstreamRequestHeaders(ex.request, {
            clientIp: ex.client.host,
            earlyData: ex.earlyData,
            receivedProtocol: ex.httpVersion,
            trustForwarded: this.opts.trustedProxies?.trusts(ex.client.host) ?? false,
          }),
          body: hasBody ? ex.body.stream : null,
        },
        { signal: ex.signal },
      );
    } catch (err) {
      const e = classifyUpstreamError(err, undefined);
      if (e.kind === 'aborted' || ex.signal.aborted) return { ...abandoned(ex, undefined), upstream: e.target, tries: e.tries };
      if (e.kind === 'queue_timeout') this.opts.refusals?.add(REFUSAL.upstreamQueueTimeout);
      if (e.kind === 'queue_full') this.opts.refusals?.add(REFUSAL.upstreamQueueFull);
      respondText(ex, e.status, clientMessage(e));
      return { status: e.status, upstream: e.target ?? pool.name, reason: e.reason, tries: e.tries };
    }
    const headers = toClientResponseHeaders(res.headers, { routeHeaders: route.responseHeaders, status: res.status, receivedProtocol: res.httpVersion });
    // HEAD, 204 and 304 end with the headers (the upstream exchange is already complete).
    const tries = res.tries;
    if (responseHasNoContent(ex.request.method, res.status)) {
      ex.respond(res.status, headers, true);
      return { status: res.status, upstream: res.target, tries };
    }
    ex.respond(res.status, headers);
    try {
      // A small response usually arrived whole with its headers: relayed at once, no await then.
      const relayed = relayBody(res.source, ex, () => new UpstreamError('aborted', abortReason(ex), res.target));
      const trailers = relayed instanceof Promise ? await relayed : relayed;
      ex.end(toClientTrailers(trailers));
      return { status: res.status, upstream: res.target, tries };
    } catch (err) {
      const e = classifyUpstreamError(err, res.target);
      if (e.kind === 'aborted' || ex.signal.aborted) return { ...abandoned(ex, res.status), upstream: res.target, tries };
      // Headers are out: the only honest signal left is abandoning the response (RFC 9114 §4.1.1).
      ex.reset();
      return { status: res.status, upstream: res.target, reason: `upstream ${e.kind}: ${e.reason}`, tries };
    }
  }
}

/** A `respond` route's answer: status, its headers, the route's headers, the body unless HEAD. */
function respondBuiltIn(ex: HttpExchange, action: Extract<RouteAction, { kind: 'respond' }>, routeHeaders: RouteConfig['responseHeaders']): void {
  const headers: FieldList = [...action.headers, ...routeHeaders].map(([k, v]) => [k, v] as [string, string]);
  // A 204 must not state a length, and a 304 has no representation of ours to measure (RFC 9110 §8.6).
  if (!statusHasNoContent(action.status)) headers.push(['content-length', String(action.body.length)]);
  const head = ex.request.method === 'HEAD';
  ex.respond(action.status, headers, head || action.body.length === 0);
  if (!head && action.body.length > 0) {
    ex.write(action.body);
    ex.end();
  }
}

/**
 * How an exchange the client side ended is logged: the response status if it had started, else
 * 499 for an abort, or the refusal's status (408 request timeout, 413 body too large); the reason says which, and why (ABORT).
 */
function abandoned(ex: HttpExchange, responseStatus: number | undefined): { status: number; reason: string } {
  const why: unknown = ex.signal.reason;
  if (why instanceof RequestRefusedError) return { status: responseStatus ?? why.status, reason: why.message };
  return { status: responseStatus ?? 499, reason: abortReason(ex) };
}

/** Why the exchange was aborted, as its protocol layer said; a signal without one of ours (none should) counts as the client's reset. */
function abortReason(ex: HttpExchange): string {
  const why: unknown = ex.signal.reason;
  return why instanceof ExchangeAborted ? why.reason : ABORT.clientReset;
}

/**
 * Whether the upstream gets a body: Content-Length says so when present; without it (HTTP/3 DATA
 * needs no announced length) the first body byte or the end of the body decides, whatever the
 * method, so a GET's body is forwarded rather than silently dropped.
 */
function requestHasBody(ex: HttpExchange): boolean | Promise<boolean> {
  const len = ex.request.contentLength;
  if (len !== undefined) return len > 0;
  return ex.body.contentKnown ?? ex.body.hasContent();
}

/** A body we will not use is still read, so the client's flow control does not stall the stream. */
function drain(body: RequestBody): void {
  body.discard();
}
