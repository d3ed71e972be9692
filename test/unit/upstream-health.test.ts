/**
 * Target health: the state machine on its own, then active health checks and passive ejection
 * through ProxyHandler against real node:http targets. Waits are on the pool's events ('check',
 * 'health'), never on sleeps; the health-check timings are measured and printed.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { describe, expect, it } from 'vitest';
import type { HealthCheckConfig } from '../../src/proxy/config/types.js';
import { nextHealthState, type HealthState, type PoolEventMap, type UpstreamPool } from '../../src/proxy/upstream/index.js';
import { waitUntil } from '../helpers/deadline.js';
import { installHandlerHarness, lineOf, makeProxy, poolConfig, proxyRoute, refusedOrigin, startUpstream, textResponse, type TestProxy } from '../helpers/handler-harness.js';

installHandlerHarness();

describe('health state machine', () => {
  const policy = { healthyAfter: 2, unhealthyAfter: 3, passive: { failures: 2, ejectionMs: 1000 } };
  const run = (events: Parameters<typeof nextHealthState>[1][], now = 0, from: HealthState = { kind: 'healthy', failures: 0, checkFailures: 0 }): HealthState =>
    events.reduce((state, event) => nextHealthState(state, event, policy, now), from);

  it('goes unhealthy after unhealthy_after failed checks in a row, and back after healthy_after passes in a row', () => {
    expect(run(['check_fail', 'check_fail']).kind).toBe('healthy');
    expect(run(['check_fail', 'check_fail', 'check_pass', 'check_fail', 'check_fail']).kind).toBe('healthy');
    const down = run(['check_fail', 'check_fail', 'check_fail']);
    expect(down).toEqual({ kind: 'unhealthy', checkPasses: 0 });
    expect(run(['check_pass'], 0, down)).toEqual({ kind: 'unhealthy', checkPasses: 1 });
    expect(run(['check_pass', 'check_fail', 'check_pass'], 0, down)).toEqual({ kind: 'unhealthy', checkPasses: 1 });
    expect(run(['check_pass', 'check_pass'], 0, down).kind).toBe('healthy');
    // Requests that finish while it is down change nothing.
    expect(run(['request_ok', 'request_fail'], 0, down)).toBe(down);
  });

  it('is ejected after passive.failures failed requests in a row, until the period ends', () => {
    expect(run(['request_fail', 'request_ok', 'request_fail']).kind).toBe('healthy');
    const ejected = run(['request_fail', 'request_fail'], 5000);
    expect(ejected).toEqual({ kind: 'ejected', until: 6000, checkFailures: 0 });
    expect(nextHealthState(ejected, 'check_pass', policy, 5999).kind).toBe('ejected');
    expect(nextHealthState(ejected, 'request_ok', policy, 6000)).toEqual({ kind: 'healthy', failures: 0, checkFailures: 0 });
    // Failing checks during an ejection make it unhealthy: then only passing checks bring it back.
    expect(run(['check_fail', 'check_fail', 'check_fail'], 5500, ejected)).toEqual({ kind: 'unhealthy', checkPasses: 0 });
  });

  it('without passive ejection, failed requests never take a target out', () => {
    const state = [1, 2, 3, 4, 5].reduce<HealthState>(
      (s) => nextHealthState(s, 'request_fail', { ...policy, passive: undefined }, 0),
      { kind: 'healthy', failures: 0, checkFailures: 0 },
    );
    expect(state.kind).toBe('healthy');
  });
});

/** A target whose answers the test switches: 'up' serves, 'hang' never answers, 'error' answers 503. */
async function switchableTarget(name: string) {
  const state = { mode: 'up' as 'up' | 'hang' | 'error', requests: 0, checks: 0 };
  const upstream = await startUpstream((req: IncomingMessage, res: ServerResponse) => {
    if (req.url === '/healthz') state.checks++;
    else state.requests++;
    if (state.mode === 'hang') return;
    if (state.mode === 'error') return void res.writeHead(503).end('down');
    res.end(name);
  });
  return { ...upstream, state };
}

/** The next event `name` of `pool` that `match` accepts. */
function nextEvent<K extends keyof PoolEventMap>(pool: UpstreamPool, name: K, match: (...args: PoolEventMap[K]) => boolean): Promise<PoolEventMap[K][0]> {
  return new Promise((resolve) => {
    const on = (...args: PoolEventMap[K]): void => {
      if (!match(...args)) return;
      (pool.events.off as (n: K, f: typeof on) => void)(name, on);
      resolve(args[0]);
    };
    (pool.events.on as (n: K, f: typeof on) => void)(name, on);
  });
}

async function get(proxy: TestProxy, path = '/'): Promise<string> {
  const ex = proxy.send({ path });
  expect(await ex.finished).toBe('ended');
  return ex.status === 200 ? ex.responseBody.toString() : `status ${ex.status}`;
}

const HEALTH: HealthCheckConfig = { path: '/healthz', intervalMs: 100, timeoutMs: 50, healthyAfter: 2, unhealthyAfter: 3, expectStatus: [[200, 399]] };

describe('active health checks', { timeout: 20_000 }, () => {
  it('takes a target that stops answering out within interval × unhealthy_after, sends it nothing while out, and brings it back', async () => {
    const a = await switchableTarget('a');
    const b = await switchableTarget('b');
    // random() = 0: the first checks go out at once (the jitter has its own test).
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [a.origin, b.origin], { health: HEALTH })], { upstreams: { random: () => 0 } });
    const pool = proxy.registry.get('app')!;
    await nextEvent(pool, 'check', (e) => e.target === a.origin && e.pass);

    const stopped = performance.now();
    a.state.mode = 'hang';
    const down = await nextEvent(pool, 'health', (e) => e.target === a.origin);
    const ejectedAfter = performance.now() - stopped;
    expect(down).toMatchObject({ from: 'healthy', to: 'unhealthy', reason: 'health check: no answer within 50ms' });
    // Three failed checks: the first starts within an interval of the stop, the third two
    // intervals later, and it fails after its timeout: interval × unhealthy_after + timeout at
    // worst (plus 100 ms for a loaded machine's timers).
    expect(ejectedAfter).toBeLessThanOrEqual(HEALTH.intervalMs * HEALTH.unhealthyAfter + HEALTH.timeoutMs + 100);

    const before = a.state.requests;
    const served = [];
    for (let i = 0; i < 6; i++) served.push(await get(proxy));
    expect(served).toEqual(['b', 'b', 'b', 'b', 'b', 'b']);
    expect(a.state.requests).toBe(before);
    expect(pool.stats().map((s) => s.health)).toEqual(['unhealthy', 'healthy']);

    const restarted = performance.now();
    a.state.mode = 'up';
    const up = await nextEvent(pool, 'health', (e) => e.target === a.origin);
    const backAfter = performance.now() - restarted;
    expect(up).toMatchObject({ from: 'unhealthy', to: 'healthy' });
    // Two passing checks: the first within an interval, the second one interval later.
    expect(backAfter).toBeLessThanOrEqual(HEALTH.intervalMs * HEALTH.healthyAfter + 100);
    const after = new Set<string>();
    for (let i = 0; i < 4; i++) after.add(await get(proxy));
    expect([...after].sort()).toEqual(['a', 'b']);
    console.log(
      `health checks (interval ${HEALTH.intervalMs}ms, timeout ${HEALTH.timeoutMs}ms, unhealthy_after ${HEALTH.unhealthyAfter}, healthy_after ${HEALTH.healthyAfter}): ` +
        `out after ${ejectedAfter.toFixed(0)}ms (bound ${HEALTH.intervalMs * HEALTH.unhealthyAfter + HEALTH.timeoutMs}ms), back after ${backAfter.toFixed(0)}ms (bound ${HEALTH.intervalMs * HEALTH.healthyAfter}ms)`,
    );
  });

  it('all targets down → 503 "no healthy target" at once, with a clear body', async () => {
    const a = await switchableTarget('a');
    const b = await switchableTarget('b');
    a.state.mode = 'error';
    b.state.mode = 'error';
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [a.origin, b.origin], { health: HEALTH })], { upstreams: { random: () => 0 } });
    const pool = proxy.registry.get('app')!;
    const downs = [a.origin, b.origin].map((t) => nextEvent(pool, 'health', (e) => e.target === t && e.to === 'unhealthy'));
    expect((await downs[0])!.reason).toBe('health check status 503');
    await downs[1];
    const ex = proxy.send({ path: '/' });
    expect(await ex.finished).toBe('ended');
    expect(ex.events).toEqual(textResponse(503, 'no healthy upstream target\n'));
    expect(await lineOf(ex)).toMatchObject({ status: 503, upstream: 'app', reason: 'no healthy target (0 ejected, 2 unhealthy)' });
    expect(a.state.requests + b.state.requests).toBe(0);
  });

  it('accepts the statuses of expect_status only', async () => {
    const a = await switchableTarget('a');
    a.state.mode = 'error';
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [a.origin], { health: { ...HEALTH, expectStatus: [[200, 200], [503, 503]] } })], {
      upstreams: { random: () => 0 },
    });
    const pool = proxy.registry.get('app')!;
    expect(await nextEvent(pool, 'check', () => true)).toMatchObject({ pass: true, detail: 'health check status 503' });
  });

  it('checks even while every request connection of the target is busy (a connection is kept for them)', async () => {
    const held: ServerResponse[] = [];
    const upstream = await startUpstream((req, res) => {
      if (req.url === '/healthz') res.end('ok');
      else held.push(res);
    });
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [upstream.origin], { maxConnectionsPerTarget: 1, health: HEALTH })], {
      upstreams: { random: () => 0 },
    });
    const pool = proxy.registry.get('app')!;
    const busy = proxy.send({ path: '/hold' });
    await waitUntil('the request to be held', () => held.length === 1, { timeoutMs: 5_000, intervalMs: 5 });
    // Three passing checks in a row while the only request connection stays busy.
    for (let i = 0; i < 3; i++) expect(await nextEvent(pool, 'check', () => true)).toMatchObject({ pass: true });
    held[0]!.end('released');
    expect(await busy.finished).toBe('ended');
  });

  it('delays the first check by a random part of the interval', async () => {
    const a = await switchableTarget('a');
    const created = performance.now();
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [a.origin], { health: { ...HEALTH, intervalMs: 400, timeoutMs: 100 } })], {
      upstreams: { random: () => 0.5 },
    });
    await nextEvent(proxy.registry.get('app')!, 'check', () => true);
    expect(performance.now() - created).toBeGreaterThanOrEqual(195);
  });
});

describe('passive ejection', { timeout: 20_000 }, () => {
  it('ejects a target after N consecutive 5xx, sends it nothing for the ejection period, then takes it back', async () => {
    const a = await switchableTarget('a');
    const b = await switchableTarget('b');
    a.state.mode = 'error';
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [a.origin, b.origin], { passive: { failures: 3, ejectionMs: 300 } })]);
    const pool = proxy.registry.get('app')!;
    const ejected = nextEvent(pool, 'health', (e) => e.target === a.origin);
    const answers: string[] = [];
    // Round robin: a, b, a, b, a — the third 503 from a ejects it.
    for (let i = 0; i < 5; i++) answers.push(await get(proxy));
    expect(answers).toEqual(['status 503', 'b', 'status 503', 'b', 'status 503']);
    expect(await ejected).toMatchObject({ from: 'healthy', to: 'ejected', reason: 'response status 503' });
    for (let i = 0; i < 4; i++) expect(await get(proxy)).toBe('b');
    expect(a.state.requests).toBe(3);

    a.state.mode = 'up';
    // Nothing announces the end of an ejection (it is read lazily): poll the state.
    await waitUntil('the ejection to end', () => pool.stats()[0]!.health === 'healthy', { timeoutMs: 5_000, intervalMs: 20 });
    const after = new Set<string>();
    for (let i = 0; i < 4; i++) after.add(await get(proxy));
    expect([...after].sort()).toEqual(['a', 'b']);
  });

  it('ejects a target that refuses connections; with every target ejected the answer is 503 "no healthy target"', async () => {
    const refused = await refusedOrigin();
    const proxy = makeProxy([proxyRoute('routes[0]', 'app')], [poolConfig('app', [refused], { passive: { failures: 2, ejectionMs: 60_000 } })]);
    expect(await get(proxy)).toBe('status 502');
    expect(await get(proxy)).toBe('status 502');
    const ex = proxy.send({ path: '/' });
    expect(await ex.finished).toBe('ended');
    expect(ex.events).toEqual(textResponse(503, 'no healthy upstream target\n'));
    expect(await lineOf(ex)).toMatchObject({ status: 503, reason: 'no healthy target (1 ejected, 0 unhealthy)' });
  });
});
