export { Balancer, type BalanceStrategy, type BalancedTarget } from './balancer.js';
export { classifyUpstreamError, clientMessage, ExchangeAbortedError, UpstreamError, type TryRecord, type UpstreamErrorKind } from './errors.js';
export { DEFAULT_RESPONSE_HIGH_WATER_MARK, type UpstreamResponse } from './upstream-exchange.js';
export { type ForwardOptions, type PoolEventMap, type PoolOptions, type UpstreamRequest, UpstreamPool, type UpstreamTargetStats } from './pool.js';
export { type HealthState, type HealthStateKind, nextHealthState } from './health.js';
export { type LookupFn } from './targets.js';
export { UpstreamRegistry } from './registry.js';
