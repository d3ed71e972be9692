/**
 * An upstream pool from config: its targets (targets.ts: fixed ones, and every address of each DNS
 * name), one undici Pool per target (dispatcher.ts), a health state per target (health.ts) fed by
 * active checks (health-check.ts) and by request outcomes, a balancer choosing among the healthy
 * targets, and retries of failed tries that cannot have taken effect (retry.ts, body-gate.ts).
 *
 * A target takes at most `maxConnectionsPerTarget` exchanges at once. Beyond that we queue requests
 * ourselves instead of letting undici's Pool queue them (where nothing bounds the wait, and
 * response_timeout only starts once the request is on a socket): at most `maxPending` wait (more:
 * 503 queue_full at once), the oldest for the first target that frees a connection, each for at
 * most `queueTimeoutMs` (then 503 queue_timeout). With no healthy target a request fails at once
 * (503 no_healthy_target): waiting would only hold it.
 */

import { EventEmitter } from 'node:events';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Dispatcher, Pool } from 'undici';
import type { AbortLike } from '../abort.js';
import type { HealthCheckConfig, UpstreamPoolConfig } from '../config/types.js';
import { formatDuration } from '../config/units.js';
import type { Field } from '../http-semantics/fields.js';
import { Balancer } from './balancer.js';
import { BodyGate } from './body-gate.js';
import { createDispatcher, hostOf, loadTlsMaterial, type TlsMaterial, type VersionedDispatchOptions } from './dispatcher.js';
import { classifyUpstreamError, ExchangeAbortedError, UpstreamError, type UpstreamErrorKind } from './errors.js';
import { ExchangeDeadlines } from './exchange-deadlines.js';
import { ActiveHealthCheck } from './health-check.js';
import { TargetHealth, type HealthStateKind } from './health.js';
import { Tries } from './retry.js';
import { TargetResolver, type Endpoint, type LookupFn } from './targets.js';
import { UpstreamExchange, type UpstreamResponse } from './upstream-exchange.js';
import { WaitQueue } from './wait-queue.js';

export interface UpstreamRequest {
  readonly method: string;
  /** Origin-form request target ('/a?b'), or '*' for OPTIONS. */
  readonly path: string;
  /** Already translated for the upstream (see toUpstreamRequestHeaders); includes host. */
  readonly headers: readonly Field[];
  /** The request body as it arrives (destroyed once the exchange is over), or null/undefined when the request has none. */
  readonly body?: Readable | null;
}

export interface ForwardOptions {
  /** Aborting it cancels the exchange (before or after the response headers). */
  readonly signal?: AbortLike;
  /** Bytes of response body buffered before the upstream socket is paused (default 64 KiB). */
  readonly responseHighWaterMark?: number;
}

export interface UpstreamTargetStats {
  /** The target URL, with the address when resolved from a name. */
  readonly target: string;
  readonly inFlight: number;
  readonly health: HealthStateKind;
}

export interface PoolOptions {
  /** Where target state changes and DNS trouble are reported. */
  readonly log?: Logger;
  /** Name resolution (default: getaddrinfo). */
  readonly lookup?: LookupFn;
  /** Source of the first health check's random delay (default Math.random). */
  readonly random?: () => number;
}

/** What a pool reports as it runs (tests wait on these; metrics can count them). */
export interface PoolEventMap {
  /** A target's health state changed kind. */
  health: [{ readonly target: string; readonly from: HealthStateKind; readonly to: HealthStateKind; readonly reason: string }];
  /** An active health check finished. */
  check: [{ readonly target: string; readonly pass: boolean; readonly detail: string }];
  /** The target list changed (DNS): the labels now in the pool. */
  targets: [readonly string[]];
}

interface Target {
  readonly label: string;
  readonly endpoint: Endpoint;
  readonly dispatcher: Pool;
  readonly health: TargetHealth;
  check: ActiveHealthCheck | undefined;
  inFlight: number;
}

/** A request waiting for a free connection. */
interface Waiter {
  /** A target has room: send the request there. */
  start(target: Target): void;
  /** Waited too long, or the pool went away: the request fails with `err`. */
  fail(err: UpstreamError): void;
}

/** Failures that say something about the target (passive health); not ours or the client's. */
const TARGET_FAULTS: ReadonlySet<UpstreamErrorKind> = new Set(['connect_refused', 'connect_timeout', 'connect_failed', 'tls', 'response_timeout', 'reset', 'invalid_response']);
/** Health check responses are read this far, then dropped. */
const CHECK_BODY_LIMIT = 64 * 1024;

export class UpstreamPool {
  readonly name: string;
  readonly events = new EventEmitter<PoolEventMap>();
  readonly #config: UpstreamPoolConfig;
  readonly #log: Logger | undefined;
  readonly #random: () => number;
  readonly #tls: TlsMaterial;
  /** Targets in rotation (healthy or not); changed in place when DNS answers change. */
  readonly #targets: Target[] = [];
  /** Targets DNS no longer names, whose connections finish what they carry. */
  readonly #retired = new Set<Target>();
  readonly #balancer: Balancer<Target>;
  readonly #queue: WaitQueue<Waiter>;
  readonly #resolver: TargetResolver;
  /** response_timeout / body_timeout of the exchanges without a request body (see #dispatch). */
  readonly #deadlines: ExchangeDeadlines;
  #pumpScheduled = false;
  #closed = false;
  #queueEmptied: (() => void) | undefined;

  constructor(config: UpstreamPoolConfig, options: PoolOptions = {}) {
    this.name = config.name;
    this.#config = config;
    this.#log = options.log;
    this.#random = options.random ?? Math.random;
    this.#tls = loadTlsMaterial(config.tls);
    this.#balancer = new Balancer(config.balance);
    this.#deadlines = new ExchangeDeadlines(config.responseTimeoutMs, config.bodyTimeoutMs);
    const reason = `no free connection within ${formatDuration(config.queueTimeoutMs)} (all ${config.maxConnectionsPerTarget} per target busy)`;
    this.#queue = new WaitQueue<Waiter>(config.queueTimeoutMs, (waiter) => {
      waiter.fail(new UpstreamError('queue_timeout', reason, undefined));
      this.#checkQueueEmpty();
    });
    this.#resolver = new TargetResolver(config.targets, {
      pool: config.name,
      intervalMs: config.resolveIntervalMs,
      ...(options.lookup && { lookup: options.lookup }),
      ...(options.log && { log: options.log }),
      onChange: (added, removed) => this.#targetsChanged(added, removed),
      onSettled: () => this.#availabilityChanged(),
    });
    this.#resolver.start();
  }

  /**
   * Send a request and resolve with the response once its headers arrived, retrying on another
   * target where retry.ts allows. Rejects with an UpstreamError (its `tries` list every try) when
   * no response headers came; later failures surface from `response.body`.
   */
  forward(request: UpstreamRequest, options: ForwardOptions = {}): Promise<UpstreamResponse> {
    if (this.#closed) return this.#refuse(request, new UpstreamError('other', 'upstream pool closed', undefined));
    const { signal } = options;
    if (signal?.aborted) return this.#refuse(request, new UpstreamError('aborted', 'request aborted by signal', undefined));
    const gate = request.body ? new BodyGate(request.body) : undefined;
    const tries = new Tries<Target>(request.method, gate, this.#config);
    // Nobody overtakes a queued request.
    const target = this.#queue.size === 0 ? this.#freeTarget() : undefined;
    if (target !== undefined) return this.#run(target, request, options, gate, tries);
    if (this.#resolver.settled && this.#usableCount() === 0) return this.#refuse(request, this.#noHealthyTarget());
    if (this.#queue.timeoutMs === 0) return this.#refuse(request, new UpstreamError('queue_timeout', 'no free connection (queue_timeout 0)', undefined));
    if (this.#queue.size >= this.#config.maxPending) {
      return this.#refuse(request, new UpstreamError('queue_full', `queue full (${this.#config.maxPending} requests already wait for a connection)`, undefined));
    }

    return new Promise<UpstreamResponse>((resolve, reject) => {
      const onAbort = (): void => {
        leave();
        this.#checkQueueEmpty();
        reject(this.#release(request, new UpstreamError('aborted', 'request aborted by signal', undefined)));
      };
      const leave = this.#queue.push({
        start: (t) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(this.#run(t, request, options, gate, tries));
        },
        fail: (err) => {
          signal?.removeEventListener('abort', onAbort);
          reject(this.#release(request, err));
        },
      });
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Requests waiting for a free connection. */
  get queued(): number {
    return this.#queue.size;
  }

  /** Per-target in-flight counts and health (for tests and stats). */
  stats(): UpstreamTargetStats[] {
    const now = performance.now();
    return this.#targets.map((t) => ({ target: t.label, inFlight: t.inFlight, health: t.health.current(now).kind }));
  }

  /** Stop taking requests; resolves once every queued and in-flight exchange finished and sockets closed. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#stopBackground();
    if (this.#queue.size > 0) await new Promise<void>((resolve) => (this.#queueEmptied = resolve));
    await Promise.all([...this.#targets, ...this.#retired].map((target) => target.dispatcher.close()));
    // Not before: what is in flight keeps its timeouts while it finishes.
    this.#deadlines.stop();
  }

  /** Stop now: queued and in-flight exchanges fail (kind 'other', "upstream pool closed"). */
  async destroy(): Promise<void> {
    this.#closed = true;
    this.#stopBackground();
    for (const waiter of this.#queue.drain()) waiter.fail(new UpstreamError('other', 'upstream pool closed', undefined));
    this.#checkQueueEmpty();
    await Promise.all([...this.#targets, ...this.#retired].map((target) => target.dispatcher.destroy()));
    this.#deadlines.stop();
  }

  /** Tries `target`, then others while retry.ts allows; the first try is dispatched synchronously. */
  async #run(first: Target, request: UpstreamRequest, options: ForwardOptions, gate: BodyGate | undefined, tries: Tries<Target>): Promise<UpstreamResponse> {
    let target = first;
    for (;;) {
      const finish = tries.begin(target, target.label);
      try {
        const response = await this.#dispatch(target, request, gate, options);
        finish(String(response.status));
        target.health.record(response.status >= 500 ? 'request_fail' : 'request_ok', performance.now(), `response status ${response.status}`);
        response.tries = tries.records;
        return response;
      } catch (err) {
        const e = classifyUpstreamError(err, target.label);
        finish(e.kind);
        if (TARGET_FAULTS.has(e.kind)) target.health.record('request_fail', performance.now(), e.reason);
        const next = !this.#closed && options.signal?.aborted !== true && tries.allowRetry(e) ? this.#freeTarget(tries.tried) : undefined;
        if (next === undefined) {
          gate?.release();
          e.tries = tries.records;
          throw e;
        }
        target = next;
      }
    }
  }

  #dispatch(target: Target, request: UpstreamRequest, gate: BodyGate | undefined, options: ForwardOptions): Promise<UpstreamResponse> {
    target.inFlight++;
    const { signal } = options;
    const onAbort = (): void => exchange.abort('request aborted by signal');
    const exchange = new UpstreamExchange(
      target.label,
      () => {
        target.inFlight--;
        signal?.removeEventListener('abort', onAbort);
        // Once a response came, the request is done with: release the client's body (if the
        // target answered before reading all of it). A failure before that is #run's to judge.
        if (exchange.responded) gate?.release();
        this.#schedulePump();
      },
      // Without a request body, our deadline table runs response_timeout and body_timeout. With
      // one, undici does (options below): its headersTimeout does not run while the body is being
      // written, which only undici can see (a silent upload is request_body_timeout's to end).
      { method: request.method, responseHighWaterMark: options.responseHighWaterMark, deadlines: gate === undefined ? this.#deadlines : undefined },
    );

    if (signal?.aborted) {
      exchange.fail(new ExchangeAbortedError('request aborted by signal'));
      return exchange.response;
    }
    signal?.addEventListener('abort', onAbort, { once: true });

    const dispatch: VersionedDispatchOptions & { servername: string } = {
      method: request.method,
      path: request.path,
      // undici takes a flat [name, value, name, value, ...] list (keeps order and duplicates).
      headers: request.headers.flat(),
      body: gate?.open() ?? null,
      // One shape for every request (undefined: the dispatcher's 0, off).
      headersTimeout: gate === undefined ? undefined : this.#config.responseTimeoutMs,
      bodyTimeout: gate === undefined ? undefined : this.#config.bodyTimeoutMs,
      // Constant per target: undici reconnects whenever it changes, and would otherwise take it
      // from the Host field (the client's authority). The connector sets the real SNI.
      servername: target.endpoint.key,
      // A `protocol: h2` pool's client tells it which version its connection speaks (for Via).
      exchange,
    };
    try {
      target.dispatcher.dispatch(dispatch, exchange);
    } catch (err) {
      exchange.fail(err);
    }
    return exchange.response;
  }

  /** A healthy target with a free connection that this request has not tried, in the balancer's order. */
  #freeTarget(tried?: ReadonlySet<Target>): Target | undefined {
    const now = performance.now();
    const max = this.#config.maxConnectionsPerTarget;
    return this.#balancer.pick(this.#targets, (t) => t.inFlight < max && tried?.has(t) !== true && t.health.usable(now));
  }

  #usableCount(): number {
    const now = performance.now();
    return this.#targets.reduce((n, t) => n + (t.health.usable(now) ? 1 : 0), 0);
  }

  #noHealthyTarget(): UpstreamError {
    const now = performance.now();
    const count = (kind: HealthStateKind): number => this.#targets.filter((t) => t.health.current(now).kind === kind).length;
    const detail = this.#targets.length === 0 ? 'no target address resolved' : `${count('ejected')} ejected, ${count('unhealthy')} unhealthy`;
    return new UpstreamError('no_healthy_target', `no healthy target (${detail})`, undefined);
  }

  #targetsChanged(added: readonly Endpoint[], removed: readonly Endpoint[]): void {
    for (const endpoint of removed) {
      const index = this.#targets.findIndex((t) => t.endpoint.key === endpoint.key);
      if (index >= 0) this.#retire(this.#targets.splice(index, 1)[0]!);
    }
    for (const endpoint of added) this.#targets.push(this.#makeTarget(endpoint));
    this.events.emit('targets', this.#targets.map((t) => t.label));
    this.#availabilityChanged();
  }

  #makeTarget(endpoint: Endpoint): Target {
    const health = this.#config.health;
    const target: Target = {
      label: endpoint.label,
      endpoint,
      // One connection beyond the request limit, so a check never waits behind busy requests.
      dispatcher: createDispatcher(endpoint, this.#config, this.#tls, health === undefined ? 0 : 1),
      health: new TargetHealth(
        { healthyAfter: health?.healthyAfter ?? 1, unhealthyAfter: health?.unhealthyAfter ?? 1, passive: this.#config.passive },
        (from, to, why) => this.#healthChanged(target, from, to, why),
      ),
      check: undefined,
      inFlight: 0,
    };
    if (health !== undefined) {
      target.check = new ActiveHealthCheck(
        health,
        (signal) => this.#probe(target, health, signal),
        (pass, detail) => {
          this.events.emit('check', { target: target.label, pass, detail });
          target.health.record(pass ? 'check_pass' : 'check_fail', performance.now(), detail);
        },
        this.#random,
      );
      target.check.start();
    }
    return target;
  }

  async #probe(target: Target, health: HealthCheckConfig, signal: AbortSignal): Promise<number> {
    const options: Dispatcher.RequestOptions & { servername: string } = {
      method: 'GET',
      path: health.path,
      headers: { host: hostOf(target.endpoint), 'user-agent': 'udpgrm-proxy health check' },
      servername: target.endpoint.key,
      signal,
      headersTimeout: health.timeoutMs,
      bodyTimeout: health.timeoutMs,
    };
    const response = await target.dispatcher.request(options);
    await response.body.dump({ limit: CHECK_BODY_LIMIT, signal });
    return response.statusCode;
  }

  #healthChanged(target: Target, from: HealthStateKind, to: HealthStateKind, reason: string): void {
    const entry = { upstream: this.name, target: target.label, from, to, reason };
    if (to === 'healthy') this.#log?.info(entry, 'upstream target back in rotation');
    else this.#log?.warn(entry, to === 'ejected' ? 'upstream target ejected' : 'upstream target unhealthy');
    this.events.emit('health', entry);
    this.#availabilityChanged();
  }

  /** Targets came, went or changed health: start what waits, or fail it when nothing is left to wait for. */
  #availabilityChanged(): void {
    if (this.#queue.size === 0) return;
    if (this.#usableCount() > 0) {
      this.#schedulePump();
    } else if (this.#resolver.settled) {
      for (const waiter of this.#queue.drain()) waiter.fail(this.#noHealthyTarget());
      this.#checkQueueEmpty();
    }
  }

  #retire(target: Target): void {
    target.check?.stop();
    this.#retired.add(target);
    // Graceful: what the target is carrying finishes; nothing new goes there.
    target.dispatcher.close().then(
      () => this.#retired.delete(target),
      () => this.#retired.delete(target),
    );
  }

  #stopBackground(): void {
    this.#resolver.stop();
    for (const target of this.#targets) target.check?.stop();
  }

  /**
   * A connection was freed: start queued requests. Deferred to a microtask, so undici finishes the
   * callback that freed it first and a run of failing dispatches cannot recurse.
   */
  #schedulePump(): void {
    if (this.#pumpScheduled || this.#queue.size === 0) return;
    this.#pumpScheduled = true;
    queueMicrotask(() => {
      this.#pumpScheduled = false;
      for (;;) {
        if (this.#queue.size === 0) break;
        const target = this.#freeTarget();
        if (target === undefined) break;
        this.#queue.shift()!.start(target);
      }
      this.#checkQueueEmpty();
    });
  }

  /** The request never reaches an upstream: release its body's feeder; returns `err`. */
  #release(request: UpstreamRequest, err: UpstreamError): UpstreamError {
    if (request.body && !request.body.destroyed) request.body.destroy();
    return err;
  }

  #refuse(request: UpstreamRequest, err: UpstreamError): Promise<UpstreamResponse> {
    return Promise.reject(this.#release(request, err));
  }

  #checkQueueEmpty(): void {
    if (this.#queue.size === 0) this.#queueEmptied?.();
  }
}
