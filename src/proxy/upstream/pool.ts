/**
 * An upstream pool from config: one undici Pool (keep-alive HTTP/1.1 connections) per target, a
 * balancer choosing the target per request, and in-flight counts for least_requests.
 */

import type { Readable } from 'node:stream';
import { Pool } from 'undici';
import type { UpstreamPoolConfig } from '../config/types.js';
import type { Field } from '../http-semantics/fields.js';
import { Balancer } from './balancer.js';
import { filteringConnector } from './connector.js';
import { ExchangeAbortedError, UpstreamError } from './errors.js';
import { UpstreamExchange, type UpstreamResponse } from './upstream-exchange.js';

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

export class UpstreamPool {
  readonly name: string;
  readonly #targets: readonly Target[];
  readonly #balancer: Balancer<Target>;
  #closed = false;

  constructor(config: UpstreamPoolConfig) {
    this.name = config.name;
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
  }

  /**
   * Send a request to one target and resolve with the response once its headers arrived. Rejects
   * with an UpstreamError (connect_refused/connect_timeout/response_timeout/reset/aborted/other)
   * when no response headers came; later failures surface from `response.body`.
   */
  forward(request: UpstreamRequest, options: ForwardOptions = {}): Promise<UpstreamResponse> {
    if (this.#closed) return Promise.reject(new UpstreamError('other', 'upstream pool closed', undefined));
    const target = this.#balancer.pick();
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

  /** Per-target in-flight counts (for tests and stats). */
  stats(): UpstreamTargetStats[] {
    return this.#targets.map(({ origin, inFlight }) => ({ origin, inFlight }));
  }

  /** Stop taking requests; resolves once every in-flight exchange finished and sockets closed. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#targets.map((target) => target.pool.close()));
  }

  /** Stop now: in-flight exchanges fail (kind 'other', "upstream pool closed"). */
  async destroy(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#targets.map((target) => target.pool.destroy()));
  }
}
