export { Balancer, type BalanceStrategy, type BalancedTarget } from './balancer.js';
export { classifyUpstreamError, ExchangeAbortedError, UpstreamError, type UpstreamErrorKind } from './errors.js';
export { DEFAULT_RESPONSE_HIGH_WATER_MARK, type UpstreamResponse } from './upstream-exchange.js';
export { type ForwardOptions, type UpstreamRequest, UpstreamPool, type UpstreamTargetStats } from './pool.js';
export { UpstreamRegistry } from './registry.js';
