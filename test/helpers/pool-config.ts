/** An upstream pool config for tests: generous timeouts (10 s, well inside any test's own), 8 connections. */
import { parseUpstreamTarget } from '../../src/proxy/config/names.js';
import type { UpstreamPoolConfig, UpstreamTarget } from '../../src/proxy/config/types.js';

/** A target from its config text ("http://127.0.0.1:8080", "unix:/tmp/x.sock"); throws when invalid. */
export function target(text: string): UpstreamTarget {
  const parsed = parseUpstreamTarget(text);
  if (!parsed.ok) throw new Error(`bad test target ${text}: expected ${parsed.expected}`);
  return parsed.value;
}

export function testPoolConfig(name: string, targets: string[], overrides: Partial<UpstreamPoolConfig> = {}): UpstreamPoolConfig {
  return {
    name,
    targets: targets.map(target),
    balance: 'round_robin',
    protocol: 'h1',
    tls: {},
    resolveIntervalMs: 30_000,
    connectTimeoutMs: 5_000,
    responseTimeoutMs: 10_000,
    bodyTimeoutMs: 10_000,
    keepAliveTimeoutMs: 30_000,
    maxConnectionsPerTarget: 8,
    queueTimeoutMs: 5_000,
    maxPending: 1024,
    retries: 1,
    tryTimeoutMs: 10_000,
    health: undefined,
    passive: undefined,
    ...overrides,
  };
}
