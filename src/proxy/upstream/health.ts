/**
 * The health of one target as an explicit state machine, fed by active checks and by the outcome
 * of real requests (passive):
 *
 *   healthy ──unhealthy_after failed checks──────────────▶ unhealthy ──healthy_after passed checks──▶ healthy
 *   healthy ──passive.failures failed requests in a row──▶ ejected(until) ──time passes──▶ healthy
 *   ejected ──unhealthy_after failed checks──────────────▶ unhealthy
 *
 * Only a healthy target takes requests. Every target starts healthy: a new generation serves at
 * once, and a dead target is found by its first checks or requests (retries cover the gap).
 * An ejection ends by time alone; the state is read through `current(now)`, which applies that.
 */

export type HealthState =
  | {
      readonly kind: 'healthy';
      /** Consecutive failed requests (passive). */
      readonly failures: number;
      /** Consecutive failed checks (active). */
      readonly checkFailures: number;
    }
  | { readonly kind: 'unhealthy'; readonly checkPasses: number }
  | { readonly kind: 'ejected'; readonly until: number; readonly checkFailures: number };

export type HealthStateKind = HealthState['kind'];

export type HealthEvent =
  | 'check_pass'
  | 'check_fail'
  /** A response below 500 from the target. */
  | 'request_ok'
  /** A connect failure, a reset or timeout before the response, or a 5xx response. */
  | 'request_fail';

export interface HealthPolicy {
  readonly healthyAfter: number;
  readonly unhealthyAfter: number;
  /** Passive ejection; undefined: request outcomes never take a target out. */
  readonly passive: { readonly failures: number; readonly ejectionMs: number } | undefined;
}

const HEALTHY: HealthState = { kind: 'healthy', failures: 0, checkFailures: 0 };

/** Back from an ejection: healthy, passive count reset, the run of failed checks kept. */
function afterEjection(checkFailures: number): HealthState {
  return { kind: 'healthy', failures: 0, checkFailures };
}

/** The transition function: pure, so every edge above can be tested on its own. */
export function nextHealthState(state: HealthState, event: HealthEvent, policy: HealthPolicy, now: number): HealthState {
  switch (state.kind) {
    case 'healthy':
      switch (event) {
        case 'check_pass':
          return state.checkFailures === 0 ? state : { ...state, checkFailures: 0 };
        case 'check_fail': {
          const checkFailures = state.checkFailures + 1;
          return checkFailures >= policy.unhealthyAfter ? { kind: 'unhealthy', checkPasses: 0 } : { ...state, checkFailures };
        }
        case 'request_ok':
          return state.failures === 0 ? state : { ...state, failures: 0 };
        case 'request_fail': {
          if (policy.passive === undefined) return state;
          const failures = state.failures + 1;
          if (failures < policy.passive.failures) return { ...state, failures };
          return { kind: 'ejected', until: now + policy.passive.ejectionMs, checkFailures: state.checkFailures };
        }
      }
    case 'unhealthy':
      switch (event) {
        case 'check_pass': {
          const checkPasses = state.checkPasses + 1;
          return checkPasses >= policy.healthyAfter ? HEALTHY : { kind: 'unhealthy', checkPasses };
        }
        case 'check_fail':
          return state.checkPasses === 0 ? state : { kind: 'unhealthy', checkPasses: 0 };
        default:
          // Requests that were in flight when it went down tell nothing new.
          return state;
      }
    case 'ejected':
      if (now >= state.until) return nextHealthState(afterEjection(state.checkFailures), event, policy, now);
      switch (event) {
        case 'check_fail': {
          const checkFailures = state.checkFailures + 1;
          return checkFailures >= policy.unhealthyAfter ? { kind: 'unhealthy', checkPasses: 0 } : { ...state, checkFailures };
        }
        case 'check_pass':
          return state.checkFailures === 0 ? state : { ...state, checkFailures: 0 };
        default:
          return state;
      }
  }
}

export type HealthChange = (from: HealthStateKind, to: HealthStateKind, why: string) => void;

/** One target's state, with a callback on every change of kind (for logs, the pool and events). */
export class TargetHealth {
  #state: HealthState = HEALTHY;

  constructor(
    private readonly policy: HealthPolicy,
    private readonly onChange: HealthChange,
  ) {}

  /** The state now: an ejection that ran out has become healthy. */
  current(now: number): HealthState {
    const s = this.#state;
    if (s.kind === 'ejected' && now >= s.until) this.#set(afterEjection(s.checkFailures), 'ejection period over');
    return this.#state;
  }

  /** Takes requests. */
  usable(now: number): boolean {
    return this.current(now).kind === 'healthy';
  }

  record(event: HealthEvent, now: number, why: string): void {
    this.#set(nextHealthState(this.current(now), event, this.policy, now), why);
  }

  #set(next: HealthState, why: string): void {
    const from = this.#state.kind;
    this.#state = next;
    if (next.kind !== from) this.onChange(from, next.kind, why);
  }
}
