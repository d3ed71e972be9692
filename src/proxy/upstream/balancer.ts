/**
 * Target choice for a pool: round robin, or least requests (fewest exchanges in flight, ties taken
 * in rotation so idle targets share the load).
 */

export interface BalancedTarget {
  /** Exchanges dispatched to this target and not yet settled (body fully read or failed). */
  inFlight: number;
}

export type BalanceStrategy = 'round_robin' | 'least_requests';

export class Balancer<T extends BalancedTarget> {
  #next = 0;

  constructor(
    private readonly targets: readonly T[],
    private readonly strategy: BalanceStrategy,
  ) {
    if (targets.length === 0) throw new Error('an upstream pool needs at least one target');
  }

  pick(): T {
    const count = this.targets.length;
    const start = this.#next;
    this.#next = (this.#next + 1) % count;
    if (this.strategy === 'round_robin') return this.targets[start] as T;

    let best = this.targets[start] as T;
    for (let step = 1; step < count; step++) {
      const candidate = this.targets[(start + step) % count] as T;
      if (candidate.inFlight < best.inFlight) best = candidate;
    }
    return best;
  }
}
