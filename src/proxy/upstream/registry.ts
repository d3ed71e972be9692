/**
 * The set of upstream pools one config generation uses. A reload builds a new registry; the old
 * one is closed once its in-flight exchanges finish (or destroyed when the drain time runs out).
 */

import type { UpstreamPoolConfig } from '../config/types.js';
import { UpstreamPool, type PoolOptions } from './pool.js';

export class UpstreamRegistry {
  readonly #pools: ReadonlyMap<string, UpstreamPool>;

  constructor(configs: ReadonlyMap<string, UpstreamPoolConfig>, options: PoolOptions = {}) {
    const pools = new Map<string, UpstreamPool>();
    for (const [name, config] of configs) pools.set(name, new UpstreamPool(config, options));
    this.#pools = pools;
  }

  /** The pool a route names; undefined for an unknown name (the config loader prevents that). */
  get(name: string): UpstreamPool | undefined {
    return this.#pools.get(name);
  }

  get names(): string[] {
    return [...this.#pools.keys()];
  }

  /** Graceful: waits for every in-flight exchange of every pool. */
  async close(): Promise<void> {
    await Promise.all([...this.#pools.values()].map((pool) => pool.close()));
  }

  /** Immediate: in-flight exchanges fail. */
  async destroy(): Promise<void> {
    await Promise.all([...this.#pools.values()].map((pool) => pool.destroy()));
  }
}
