/** `upstreams:` — named pools of HTTP/1.1 or HTTP/2 targets that routes proxy to. */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { inspectCertificatePair } from './certificate-files.js';
import { canonicalIp, normaliseDnsName, parseUpstreamTarget } from './names.js';
import {
  UPSTREAM_PROTOCOLS,
  type HealthCheckConfig,
  type PassiveEjectionConfig,
  type UpstreamPoolConfig,
  type UpstreamTarget,
  type UpstreamTlsConfig,
} from './types.js';
import type { Cursor } from './yaml-cursor.js';

export const UPSTREAM_DEFAULTS = {
  balance: 'round_robin',
  protocol: 'h1',
  resolveIntervalMs: 30_000,
  connectTimeoutMs: 5_000,
  responseTimeoutMs: 60_000,
  bodyTimeoutMs: 60_000,
  // Shorter than the 5 s idle timeout of Node/undici-style origins, so we close first and never
  // reuse a socket the origin is closing.
  keepAliveTimeoutMs: 4_000,
  maxConnectionsPerTarget: 256,
  // Well under a browser's patience: a full pool answers 503 rather than hanging the request.
  queueTimeoutMs: 5_000,
  // Each waiting request holds its headers and a bounded body buffer: this caps that memory.
  maxPending: 1024,
  retries: 1,
} as const;

export const HEALTH_DEFAULTS = {
  intervalMs: 5_000,
  timeoutMs: 2_000,
  healthyAfter: 2,
  unhealthyAfter: 3,
} as const;
/** 2xx and 3xx: a redirect still shows a live application. */
const DEFAULT_EXPECT_STATUS: ReadonlyArray<readonly [number, number]> = [[200, 399]];

const POOL_KEYS = [
  'targets',
  'balance',
  'protocol',
  'tls',
  'resolve_interval',
  'connect_timeout',
  'response_timeout',
  'body_timeout',
  'keepalive_timeout',
  'max_connections',
  'queue_timeout',
  'max_pending',
  'retries',
  'try_timeout',
  'health',
  'passive',
] as const;
const TLS_KEYS = ['ca', 'cert', 'key', 'server_name'] as const;
const HEALTH_KEYS = ['path', 'interval', 'timeout', 'healthy_after', 'unhealthy_after', 'expect_status'] as const;
const PASSIVE_KEYS = ['failures', 'ejection'] as const;
const POOL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const HOUR = 3_600_000;

export interface UpstreamsRead {
  readonly pools: Map<string, UpstreamPoolConfig>;
  /** Every pool name written in the file, valid or not, so routes to a broken pool are not reported twice. */
  readonly declared: Set<string>;
}

export function readUpstreams(section: Cursor | undefined, configFile: string): UpstreamsRead {
  const pools = new Map<string, UpstreamPoolConfig>();
  const declared = new Set<string>();
  const entries = section?.entries('a mapping of pool name → { targets: [...] }') ?? [];
  for (const [name, pool, keyOffset] of entries) {
    declared.add(name);
    if (!POOL_NAME.test(name)) {
      pool.log.add(keyOffset, pool.path, `invalid pool name "${name}": expected letters, digits, '_', '.', '-' (up to 64)`);
    }
    const read = readPool(name, pool, configFile);
    if (read !== undefined && POOL_NAME.test(name)) pools.set(name, read);
  }
  return { pools, declared };
}

/** Collects whether every reader succeeded; a failed one has already recorded its issue. */
class Reads {
  ok = true;

  /** `read(c)` when the key is present, else `fallback`. */
  pick<T>(c: Cursor | undefined, read: (c: Cursor) => T | undefined, fallback: T): T {
    if (c === undefined) return fallback;
    const v = read(c);
    if (v === undefined) this.ok = false;
    return v ?? fallback;
  }

  fail(c: Cursor | undefined, message: string): void {
    c?.error(message);
    this.ok = false;
  }
}

function readPool(name: string, pool: Cursor, configFile: string): UpstreamPoolConfig | undefined {
  const f = pool.fields(POOL_KEYS, 'an upstream pool');
  if (f === undefined) return undefined;
  const r = new Reads();
  const targets = readTargets(pool, f.targets, r);
  const d = UPSTREAM_DEFAULTS;
  const protocol = r.pick(f.protocol, (c) => c.oneOf(UPSTREAM_PROTOCOLS), d.protocol);
  const plain = targets.filter((t) => t.kind === 'unix' || !t.tls);
  if (protocol === 'h2' && plain.length > 0) {
    r.fail(f.protocol, `protocol h2 needs https targets: HTTP/2 is negotiated with TLS (ALPN), and ${plain[0]!.url} is not https`);
  }
  const tls = f.tls === undefined ? {} : readTls(f.tls, configFile, r);
  if (f.tls !== undefined && targets.length > 0 && !targets.some((t) => t.kind === 'tcp' && t.tls)) {
    r.fail(f.tls, 'tls applies to https targets, and this pool has none');
  }
  const responseTimeoutMs = r.pick(f.response_timeout, (c) => c.duration(1, HOUR), d.responseTimeoutMs);
  const config: UpstreamPoolConfig = {
    name,
    targets,
    balance: r.pick(f.balance, (c) => c.oneOf(['round_robin', 'least_requests'] as const), d.balance),
    protocol,
    tls,
    resolveIntervalMs: r.pick(f.resolve_interval, (c) => c.duration(1_000, 24 * HOUR), d.resolveIntervalMs),
    connectTimeoutMs: r.pick(f.connect_timeout, (c) => c.duration(1, 5 * 60_000), d.connectTimeoutMs),
    responseTimeoutMs,
    bodyTimeoutMs: r.pick(f.body_timeout, (c) => c.duration(1, HOUR), d.bodyTimeoutMs),
    keepAliveTimeoutMs: r.pick(f.keepalive_timeout, (c) => c.duration(1, HOUR), d.keepAliveTimeoutMs),
    maxConnectionsPerTarget: r.pick(f.max_connections, (c) => c.integer(1, 100_000, 'max_connections'), d.maxConnectionsPerTarget),
    queueTimeoutMs: r.pick(f.queue_timeout, (c) => c.duration(0, 10 * 60_000), d.queueTimeoutMs),
    maxPending: r.pick(f.max_pending, (c) => c.integer(0, 1_000_000, 'max_pending'), d.maxPending),
    retries: r.pick(f.retries, (c) => c.integer(0, 10, 'retries'), d.retries),
    tryTimeoutMs: r.pick(f.try_timeout, (c) => c.duration(1, HOUR), responseTimeoutMs),
    health: f.health === undefined ? undefined : readHealth(f.health, r),
    passive: f.passive === undefined ? undefined : readPassive(f.passive, r),
  };
  return r.ok ? config : undefined;
}

function readTargets(pool: Cursor, c: Cursor | undefined, r: Reads): UpstreamTarget[] {
  const targets: UpstreamTarget[] = [];
  if (c === undefined || !c.present) {
    pool.missing(['targets'], 'missing "targets": expected a list like ["http://127.0.0.1:8080", "https://app.internal:8443", "unix:/run/app.sock"]');
    r.ok = false;
    return targets;
  }
  const items = c.oneOrMany() ?? [];
  if (items.length === 0) r.fail(c, 'expected at least one target');
  for (const item of items) {
    const target = item.parsed(parseUpstreamTarget, 'a target "http://HOST:PORT", "https://HOST:PORT" or "unix:/PATH"');
    if (target === undefined) {
      r.ok = false;
    } else if (targets.some((t) => t.url === target.url)) {
      r.fail(item, `duplicate target ${target.url}`);
    } else {
      targets.push(target);
    }
  }
  return targets;
}

function readTls(c: Cursor, configFile: string, r: Reads): UpstreamTlsConfig {
  const f = c.fields(TLS_KEYS, 'upstream TLS settings { ca, cert, key, server_name }');
  if (f === undefined) {
    r.ok = false;
    return {};
  }
  const path = (k: Cursor | undefined): string | undefined => {
    if (k === undefined) return undefined;
    const text = k.string('a file path');
    if (text === undefined) r.ok = false;
    // Relative paths are relative to the config file, as everywhere in the config.
    return text === undefined ? undefined : resolve(dirname(configFile), text);
  };
  const caFile = path(f.ca);
  if (caFile !== undefined) {
    const problem = caProblem(caFile);
    if (problem !== undefined) r.fail(f.ca, problem);
  }
  const certFile = path(f.cert);
  const keyFile = path(f.key);
  if ((f.cert === undefined) !== (f.key === undefined)) {
    r.fail(f.cert ?? f.key, 'a client certificate needs both "cert" and "key"');
  } else if (certFile !== undefined && keyFile !== undefined) {
    const problems = inspectCertificatePair(certFile, keyFile);
    if (problems.cert !== undefined) r.fail(f.cert, problems.cert);
    if (problems.key !== undefined) r.fail(f.key, problems.key);
  }
  const serverName = f.server_name === undefined ? undefined : readServerName(f.server_name, r);
  return {
    ...(caFile !== undefined && { caFile }),
    ...(certFile !== undefined && { certFile }),
    ...(keyFile !== undefined && { keyFile }),
    ...(serverName !== undefined && { serverName }),
  };
}

function readServerName(c: Cursor, r: Reads): string | undefined {
  const text = c.string('a DNS name');
  if (text === undefined) {
    r.ok = false;
    return undefined;
  }
  const name = normaliseDnsName(text);
  if (name === undefined || canonicalIp(text) !== undefined) {
    // RFC 6066 §3: SNI carries host names only, never an IP address.
    r.fail(c, `expected a DNS name (SNI carries no IP addresses), got ${JSON.stringify(text)}`);
    return undefined;
  }
  return name;
}

/** Why `file` is no usable CA bundle, or undefined. */
function caProblem(file: string): string | undefined {
  let pem: string;
  try {
    pem = readFileSync(file, 'latin1');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? `file not found: ${file}` : `cannot read ${file}: ${(err as Error).message}`;
  }
  const first = pem.indexOf('-----BEGIN CERTIFICATE-----');
  if (first < 0) return `${file} holds no PEM certificate ("-----BEGIN CERTIFICATE-----")`;
  try {
    new X509Certificate(pem.slice(first));
  } catch {
    return `${file}: the first certificate does not parse`;
  }
  return undefined;
}

function readHealth(c: Cursor, r: Reads): HealthCheckConfig | undefined {
  const f = c.fields(HEALTH_KEYS, 'health checks { path, interval, timeout, healthy_after, unhealthy_after, expect_status }');
  if (f === undefined) {
    r.ok = false;
    return undefined;
  }
  const d = HEALTH_DEFAULTS;
  let path: string | undefined;
  if (f.path === undefined || !f.path.present) {
    c.missing(['path'], 'missing "path": expected the path health checks GET, e.g. "/healthz"');
    r.ok = false;
  } else {
    path = f.path.string('a request path like "/healthz"');
    // An origin-form target (RFC 9112 §3.2.1): what undici will put on the request line verbatim.
    if (path !== undefined && !/^\/[\x21-\x7e]*$/.test(path)) {
      r.fail(f.path, `expected a request path starting with "/" without spaces or control characters, got ${JSON.stringify(path)}`);
      path = undefined;
    } else if (path === undefined) {
      r.ok = false;
    }
  }
  const intervalMs = r.pick(f.interval, (x) => x.duration(100, HOUR), d.intervalMs);
  const timeoutMs = r.pick(f.timeout, (x) => x.duration(10, HOUR), Math.min(d.timeoutMs, intervalMs));
  // One check at a time per target: a timeout longer than the interval would stack them up.
  if (timeoutMs > intervalMs) r.fail(f.timeout ?? f.interval, `health.timeout (${timeoutMs}ms) must not exceed health.interval (${intervalMs}ms)`);
  const health: HealthCheckConfig = {
    path: path ?? '/',
    intervalMs,
    timeoutMs,
    healthyAfter: r.pick(f.healthy_after, (x) => x.integer(1, 100, 'healthy_after'), d.healthyAfter),
    unhealthyAfter: r.pick(f.unhealthy_after, (x) => x.integer(1, 100, 'unhealthy_after'), d.unhealthyAfter),
    expectStatus: r.pick<ReadonlyArray<readonly [number, number]>>(f.expect_status, readStatusRanges, DEFAULT_EXPECT_STATUS),
  };
  return path === undefined ? undefined : health;
}

const STATUS_RANGE = /^([1-5]\d\d)\s*\.\.\s*([1-5]\d\d)$/;

/** `200`, `"200..399"`, or a list of those. */
function readStatusRanges(c: Cursor): Array<[number, number]> | undefined {
  const items = c.oneOrMany() ?? [];
  if (items.length === 0) {
    c.error('expected a status (200), a range ("200..399") or a list of them');
    return undefined;
  }
  const out: Array<[number, number]> = [];
  for (const item of items) {
    const v = item.scalar;
    if (typeof v === 'number') {
      const status = item.integer(100, 599, 'a status');
      if (status === undefined) return undefined;
      out.push([status, status]);
      continue;
    }
    const match = typeof v === 'string' ? STATUS_RANGE.exec(v.trim()) : null;
    if (match === null || Number(match[1]) > Number(match[2])) {
      item.expected('a status like 200 or a range like "200..399" (low..high, 100..599)');
      return undefined;
    }
    out.push([Number(match[1]), Number(match[2])]);
  }
  return out;
}

function readPassive(c: Cursor, r: Reads): PassiveEjectionConfig | undefined {
  const f = c.fields(PASSIVE_KEYS, 'passive ejection { failures, ejection }');
  if (f === undefined) {
    r.ok = false;
    return undefined;
  }
  if (f.failures === undefined) {
    c.missing(['failures'], 'missing "failures": expected how many consecutive failures eject a target, e.g. 5');
    r.ok = false;
    return undefined;
  }
  return {
    failures: r.pick(f.failures, (x) => x.integer(1, 1000, 'failures'), 5),
    ejectionMs: r.pick(f.ejection, (x) => x.duration(100, HOUR), 30_000),
  };
}
