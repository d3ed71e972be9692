/**
 * Target choice for a pool: round robin, or least requests (fewest exchanges in flight, ties taken
 * in rotation so idle targets share the load), among the targets a request may use (healthy, with
 * a free connection, not tried yet). The target list may change between picks (DNS, reloads).
 */

export interface BalancedTarget {
  /** Exchanges dispatched to this target and not yet settled (body fully read or failed). */
  inFlight: number;
}

export type BalanceStrategy = 'round_robin' | 'least_requests';

export class Balancer<T extends BalancedTarget> {
  #next = 0;

  constructor(private readonly strategy: BalanceStrategy) {}

  /** The next target `accept` takes, or undefined when it takes none. */
  pick(targets: readonly T[], accept: (target: T) => boolean): T | undefined {
    const count = targets.length;
    if (count === 0) return undefined;
    const start = this.#next % count;
    let best: T | undefined;
    for (let step = 0; step < count; step++) {
      const index = (start + step) % count;
      const candidate = targets[index]!;
      if (!accept(candidate)) continue;
      if (this.strategy === 'round_robin') {
        // Continue after the chosen one, so a skipped target does not hand its turn to its neighbour twice.
        this.#next = (index + 1) % count;
        return candidate;
      }
      if (best === undefined || candidate.inFlight < best.inFlight) best = candidate;
    }
    if (this.strategy === 'round_robin') return undefined;
    // Ties rotate: the scan starts one further on next time.
    this.#next = (start + 1) % count;
    return best;
  }
}
