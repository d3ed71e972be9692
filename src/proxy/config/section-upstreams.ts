/** `upstreams:` — named pools of HTTP/1.1 origins that routes proxy to. */
import { parseUpstreamTarget } from './names.js';
import type { UpstreamPoolConfig } from './types.js';
import type { Cursor } from './yaml-cursor.js';

export const UPSTREAM_DEFAULTS = {
  balance: 'round_robin',
  connectTimeoutMs: 5_000,
  responseTimeoutMs: 60_000,
  bodyTimeoutMs: 60_000,
  // Shorter than the 5 s idle timeout of Node/undici-style origins, so we close first and never
  // reuse a socket the origin is closing.
  keepAliveTimeoutMs: 4_000,
  maxConnectionsPerTarget: 256,
  // Well under a browser's patience: a full pool answers 503 rather than hanging the request.
  queueTimeoutMs: 5_000,
} as const;

const POOL_KEYS = ['targets', 'balance', 'connect_timeout', 'response_timeout', 'body_timeout', 'keepalive_timeout', 'max_connections', 'queue_timeout'] as const;
const POOL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const HOUR = 3_600_000;

export interface UpstreamsRead {
  readonly pools: Map<string, UpstreamPoolConfig>;
  /** Every pool name written in the file, valid or not, so routes to a broken pool are not reported twice. */
  readonly declared: Set<string>;
}

export function readUpstreams(section: Cursor | undefined): UpstreamsRead {
  const pools = new Map<string, UpstreamPoolConfig>();
  const declared = new Set<string>();
  const entries = section?.entries('a mapping of pool name → { targets: [...] }') ?? [];
  for (const [name, pool, keyOffset] of entries) {
    declared.add(name);
    if (!POOL_NAME.test(name)) {
      pool.log.add(keyOffset, pool.path, `invalid pool name "${name}": expected letters, digits, '_', '.', '-' (up to 64)`);
    }
    const read = readPool(name, pool);
    if (read !== undefined && POOL_NAME.test(name)) pools.set(name, read);
  }
  return { pools, declared };
}

function readPool(name: string, pool: Cursor): UpstreamPoolConfig | undefined {
  const f = pool.fields(POOL_KEYS, 'an upstream pool');
  if (f === undefined) return undefined;
  let ok = true;
  const targets: string[] = [];
  if (f.targets === undefined || !f.targets.present) {
    pool.missing(['targets'], 'missing "targets": expected a list of origins like "http://127.0.0.1:8080"');
    ok = false;
  } else {
    const items = f.targets.oneOrMany() ?? [];
    if (items.length === 0) f.targets.error('expected at least one target');
    for (const item of items) {
      const target = item.parsed(parseUpstreamTarget, 'an origin "http://HOST:PORT"');
      if (target === undefined) {
        ok = false;
      } else if (targets.includes(target)) {
        item.error(`duplicate target ${target}`);
        ok = false;
      } else {
        targets.push(target);
      }
    }
    if (items.length === 0) ok = false;
  }
  const pick = <T>(c: Cursor | undefined, read: (c: Cursor) => T | undefined, fallback: T): T => {
    if (c === undefined) return fallback;
    const v = read(c);
    if (v === undefined) ok = false;
    return v ?? fallback;
  };
  const d = UPSTREAM_DEFAULTS;
  const config: UpstreamPoolConfig = {
    name,
    targets,
    balance: pick(f.balance, (c) => c.oneOf(['round_robin', 'least_requests'] as const), d.balance),
    connectTimeoutMs: pick(f.connect_timeout, (c) => c.duration(1, 5 * 60_000), d.connectTimeoutMs),
    responseTimeoutMs: pick(f.response_timeout, (c) => c.duration(1, HOUR), d.responseTimeoutMs),
    bodyTimeoutMs: pick(f.body_timeout, (c) => c.duration(1, HOUR), d.bodyTimeoutMs),
    keepAliveTimeoutMs: pick(f.keepalive_timeout, (c) => c.duration(1, HOUR), d.keepAliveTimeoutMs),
    maxConnectionsPerTarget: pick(f.max_connections, (c) => c.integer(1, 100_000, 'max_connections'), d.maxConnectionsPerTarget),
    queueTimeoutMs: pick(f.queue_timeout, (c) => c.duration(0, 10 * 60_000), d.queueTimeoutMs),
  };
  return ok ? config : undefined;
}
