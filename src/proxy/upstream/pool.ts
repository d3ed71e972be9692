/**
 * An upstream pool from config: one undici Pool (keep-alive HTTP/1.1 connections) per target, a
 * balancer choosing the target per request, and in-flight counts for least_requests.
 *
 * A target takes at most `maxConnectionsPerTarget` exchanges at once (one per connection, no
 * pipelining). Beyond that we queue requests ourselves instead of letting undici's Pool queue them
 * (where nothing bounds the wait, and response_timeout only starts once the request is on a
 * socket): the oldest waits for the first target that frees a connection, for at most
 * `queueTimeoutMs`, then fails with queue_timeout (503).
 */

import type { Readable } from 'node:stream';
import { Pool } from 'undici';
import type { UpstreamPoolConfig } from '../config/types.js';
import { formatDuration } from '../config/units.js';
import type { Field } from '../http-semantics/fields.js';
import { Balancer } from './balancer.js';
import { filteringConnector } from './connector.js';
import { ExchangeAbortedError, UpstreamError } from './errors.js';
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
  readonly signal?: AbortSignal;
  /** Bytes of response body buffered before the upstream socket is paused (default 64 KiB). */
  readonly responseHighWaterMark?: number;
}

export interface UpstreamTargetStats {
  readonly origin: string;
  readonly inFlight: number;
}

interface Target {
  readonly origin: string;
  readonly pool: Pool;
  inFlight: number;
}

/** A request waiting for a free connection. */
interface Waiter {
  /** A target has room: send the request there. */
  start(target: Target): void;
  /** Waited too long, or the pool went away: the request fails with `err`. */
  fail(err: UpstreamError): void;
}

export class UpstreamPool {
  readonly name: string;
  readonly #targets: readonly Target[];
  readonly #balancer: Balancer<Target>;
  readonly #maxPerTarget: number;
  readonly #queue: WaitQueue<Waiter>;
  #pumpScheduled = false;
  #closed = false;
  #queueEmptied: (() => void) | undefined;

  constructor(config: UpstreamPoolConfig) {
    this.name = config.name;
    this.#maxPerTarget = config.maxConnectionsPerTarget;
    this.#targets = config.targets.map((origin) => ({
      origin,
      inFlight: 0,
      pool: new Pool(origin, {
        connections: config.maxConnectionsPerTarget,
        pipelining: 1,
        // undici's connector, plus the removal of unsolicited 100 Continue responses (RFC 9110 §15.2).
        connect: filteringConnector({ timeout: config.connectTimeoutMs }),
        headersTimeout: config.responseTimeoutMs,
        bodyTimeout: config.bodyTimeoutMs,
        keepAliveTimeout: Math.max(1, config.keepAliveTimeoutMs),
        // An upstream's "Keep-Alive: timeout=N" may shorten, never lengthen, our idle time.
        keepAliveMaxTimeout: Math.max(1, config.keepAliveTimeoutMs),
      }),
    }));
    this.#balancer = new Balancer(this.#targets, config.balance);
    const reason = `no free connection within ${formatDuration(config.queueTimeoutMs)} (all ${config.maxConnectionsPerTarget} per target busy)`;
    this.#queue = new WaitQueue<Waiter>(config.queueTimeoutMs, (waiter) => {
      waiter.fail(new UpstreamError('queue_timeout', reason, undefined));
      this.#checkQueueEmpty();
    });
  }

  /**
   * Send a request to one target and resolve with the response once its headers arrived. Rejects
   * with an UpstreamError (connect_refused/connect_timeout/response_timeout/queue_timeout/reset/
   * aborted/other) when no response headers came; later failures surface from `response.body`.
   */
  forward(request: UpstreamRequest, options: ForwardOptions = {}): Promise<UpstreamResponse> {
    if (this.#closed) return this.#refuse(request, new UpstreamError('other', 'upstream pool closed', undefined));
    const { signal } = options;
    if (signal?.aborted) return this.#refuse(request, new UpstreamError('aborted', 'request aborted by signal', undefined));
    // Nobody overtakes a queued request.
    const target = this.#queue.size === 0 ? this.#freeTarget() : undefined;
    if (target !== undefined) return this.#dispatch(target, request, options);
    if (this.#queue.timeoutMs === 0) return this.#refuse(request, new UpstreamError('queue_timeout', 'no free connection (queue_timeout 0)', undefined));

    return new Promise<UpstreamResponse>((resolve, reject) => {
      const onAbort = (): void => {
        leave();
        this.#checkQueueEmpty();
        reject(this.#release(request, new UpstreamError('aborted', 'request aborted by signal', undefined)));
      };
      const leave = this.#queue.push({
        start: (t) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(this.#dispatch(t, request, options));
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

  /** A target with a free connection, in the balancer's order of preference. */
  #freeTarget(): Target | undefined {
    for (let i = 0; i < this.#targets.length; i++) {
      const target = this.#balancer.pick();
      if (target.inFlight < this.#maxPerTarget) return target;
    }
    return undefined;
  }

  #dispatch(target: Target, request: UpstreamRequest, options: ForwardOptions): Promise<UpstreamResponse> {
    target.inFlight++;
    const { signal } = options;
    const onAbort = (): void => exchange.abort('request aborted by signal');
    const exchange = new UpstreamExchange(
      target.origin,
      () => {
        target.inFlight--;
        signal?.removeEventListener('abort', onAbort);
        // If the exchange ended before undici read the whole request body, release the feeder.
        if (request.body && !request.body.destroyed) request.body.destroy();
        this.#schedulePump();
      },
      { method: request.method, responseHighWaterMark: options.responseHighWaterMark },
    );

    if (signal?.aborted) {
      exchange.fail(new ExchangeAbortedError('request aborted by signal'));
      return exchange.response;
    }
    signal?.addEventListener('abort', onAbort, { once: true });

    try {
      target.pool.dispatch(
        {
          origin: target.origin,
          method: request.method,
          path: request.path,
          // undici takes a flat [name, value, name, value, ...] list (keeps order and duplicates).
          headers: request.headers.flat(),
          body: request.body ?? null,
        },
        exchange,
      );
    } catch (err) {
      exchange.fail(err);
    }
    return exchange.response;
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

  /** Per-target in-flight counts (for tests and stats). */
  stats(): UpstreamTargetStats[] {
    return this.#targets.map(({ origin, inFlight }) => ({ origin, inFlight }));
  }

  /** Stop taking requests; resolves once every queued and in-flight exchange finished and sockets closed. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#queue.size > 0) await new Promise<void>((resolve) => (this.#queueEmptied = resolve));
    await Promise.all(this.#targets.map((target) => target.pool.close()));
  }

  /** Stop now: queued and in-flight exchanges fail (kind 'other', "upstream pool closed"). */
  async destroy(): Promise<void> {
    this.#closed = true;
    for (const waiter of this.#queue.drain()) waiter.fail(new UpstreamError('other', 'upstream pool closed', undefined));
    this.#checkQueueEmpty();
    await Promise.all(this.#targets.map((target) => target.pool.destroy()));
  }
}
