/** An upstream pool config for tests: generous timeouts (10 s, well inside any test's own), 8 connections. */
import type { UpstreamPoolConfig } from '../../src/proxy/config/types.js';

export function testPoolConfig(name: string, targets: string[], overrides: Partial<UpstreamPoolConfig> = {}): UpstreamPoolConfig {
  return {
    name,
    targets,
    balance: 'round_robin',
    connectTimeoutMs: 5_000,
    responseTimeoutMs: 10_000,
    bodyTimeoutMs: 10_000,
    keepAliveTimeoutMs: 30_000,
    maxConnectionsPerTarget: 8,
    queueTimeoutMs: 5_000,
    ...overrides,
  };
}
