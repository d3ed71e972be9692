/**
 * The metrics pieces without processes: bounded worker counts, the snapshot decoder, the master's
 * store folding exited workers (counters never go backwards), and prom-client rendering of the
 * derived families, read back with the official parser.
 */
import { EventEmitter } from 'node:events';
import type { ChildProcess } from 'node:child_process';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { LabelledCounts, LabelledHistogram, bucketIndex } from '../../src/proxy/metrics/labelled-counts.js';
import { RequestMetrics, statusClass, tryOutcome } from '../../src/proxy/metrics/request-metrics.js';
import { DURATION_BUCKETS_S, MAX_SERIES_PER_FAMILY, type WorkerMetricsSnapshot } from '../../src/proxy/metrics/snapshot.js';
import { REFUSAL, REFUSAL_METRIC_LABEL, RefusalCounter } from '../../src/proxy/http/refusals.js';
import { DROP, DROP_METRIC_LABEL, dropSeries, type DropCounts } from '../../src/proxy/quic/drop-reasons.js';
import { DerivedHistogram, derivedCounter } from '../../src/proxy/process/derived-metrics.js';
import { decodeSnapshot } from '../../src/proxy/process/metrics-decode.js';
import { HistogramSums } from '../../src/proxy/process/metric-totals.js';
import { ProxyMetrics } from '../../src/proxy/process/metrics.js';
import { WorkerMetricsStore } from '../../src/proxy/process/worker-metrics.js';
import { parsePrometheus, samples, sum } from '../helpers/prometheus.js';

function snapshotOf(m: RequestMetrics, connections = 0, refusals = new RefusalCounter(), dropped: DropCounts = {}): WorkerMetricsSnapshot {
  return {
    counters: { requests: m.requests.series(), upstreamRequests: m.upstreamRequests.series(), handshakes: [], quicDropped: dropSeries(dropped), misdirected: m.misdirected.series(), httpRefused: refusals.series() },
    gauges: { connections: [{ labels: ['h3'], value: connections }], upstreamHealth: [] },
    histograms: { requestDuration: { bounds: DURATION_BUCKETS_S, series: m.duration.series() } },
  };
}

/** A worker process as the store sees it: messages in, a send() that answers, 'close' at the end. */
class FakeWorker extends EventEmitter {
  connected = true;
  answer = true;
  constructor(
    readonly metrics: RequestMetrics,
    readonly refusals = new RefusalCounter(),
    readonly dropped: DropCounts = {},
  ) {
    super();
  }
  send(msg: { type: string; id: number }): boolean {
    if (this.answer) setImmediate(() => this.emit('message', { type: 'metrics', id: msg.id, snapshot: JSON.parse(JSON.stringify(snapshotOf(this.metrics, 1, this.refusals, this.dropped))) }));
    return true;
  }
  exit(): void {
    this.connected = false;
    this.emit('message', { type: 'metrics', id: 0, snapshot: snapshotOf(this.metrics, 0, this.refusals, this.dropped) });
    this.emit('close', 0, null);
  }
  get proc(): ChildProcess {
    return this as unknown as ChildProcess;
  }
}

const exchange = (route: string, status: number, tries?: Array<{ target: string; outcome: string }>): Parameters<RequestMetrics['record']>[0] => ({
  protocol: 'h3',
  route,
  status,
  durationMs: 12,
  pool: tries ? 'app' : undefined,
  tries,
});

describe('worker counts', () => {
  it('labels status classes and try outcomes', () => {
    expect([statusClass(200), statusClass(499), statusClass(0), statusClass(999)]).toEqual(['2xx', '4xx', '0xx', '0xx']);
    expect([tryOutcome('503'), tryOutcome('connect_refused')]).toEqual(['5xx', 'connect_refused']);
  });

  it('reads a try outcome as a status exactly when /^[1-5]\\d\\d$/ does', () => {
    const chars = ['0', '1', '5', '6', '9', 'x', '/', ':', ' ', '\u0660'];
    const outcomes = ['', 'reset', 'connect_refused', '1000', '99'];
    for (const a of chars) for (const b of chars) for (const c of chars) outcomes.push(a + b + c);
    for (const o of outcomes) expect(tryOutcome(o), JSON.stringify(o)).toBe(/^[1-5]\d\d$/.test(o) ? `${o[0]}xx` : o);
    for (let status = 0; status < 1000; status++) expect(statusClass(status)).toBe(status >= 100 && status <= 599 ? `${Math.floor(status / 100)}xx` : '0xx');
  });

  it('buckets durations at their upper bound, +Inf last', () => {
    expect(bucketIndex([1, 2], 0.5)).toBe(0);
    expect(bucketIndex([1, 2], 1)).toBe(0);
    expect(bucketIndex([1, 2], 1.5)).toBe(1);
    expect(bucketIndex([1, 2], 9)).toBe(2);
  });

  it('stops adding label sets at the bound and counts the rest as "other"', () => {
    const c = new LabelledCounts(2, 3);
    for (let i = 0; i < 10; i++) c.add(['a', String(i)]);
    c.add(['a', '0'], 5);
    const series = c.series();
    expect(series).toHaveLength(4);
    expect(series.find((s) => s.labels[1] === '0')?.value).toBe(6);
    expect(series.find((s) => s.labels[0] === 'other')).toEqual({ labels: ['other', 'other'], value: 7 });
    const h = new LabelledHistogram([1], 1, 1);
    h.observe(['x'], 0.5);
    h.observe(['y'], 5);
    expect(h.series()).toEqual([
      { labels: ['x'], counts: [1, 0], sum: 0.5 },
      { labels: ['other'], counts: [0, 1], sum: 5 },
    ]);
    expect(MAX_SERIES_PER_FAMILY).toBeGreaterThan(100);
  });

  it('reports every refusal reason under its own snake_case label, zeros included', () => {
    const r = new RefusalCounter();
    r.add(REFUSAL.headerTooLarge);
    r.add(REFUSAL.headerTooLarge);
    r.add(REFUSAL.tcpConnectionLimit);
    const series = r.series();
    const labels = series.map((s) => s.labels[0]!);
    expect(series).toHaveLength(Object.keys(REFUSAL).length);
    expect(new Set(labels).size).toBe(labels.length);
    for (const l of labels) expect(l).toMatch(/^[a-z][a-z0-9_]*$/);
    expect(Object.fromEntries(series.map((s) => [s.labels[0], s.value]))).toMatchObject({ header_too_large: 2, tcp_connection_limit: 1, header_timeout: 0, misdirected: 0 });
    expect(REFUSAL_METRIC_LABEL[REFUSAL.rapidReset]).toBe('rapid_reset');
  });

  it('reports every QUIC drop reason under its own snake_case label, zeros included', () => {
    const series = dropSeries({ [DROP.sentToSite]: 2, [DROP.unparseable]: 1 });
    const labels = series.map((s) => s.labels[0]!);
    expect(series).toHaveLength(Object.keys(DROP).length);
    expect(new Set(labels).size).toBe(labels.length);
    for (const l of labels) expect(l).toMatch(/^[a-z][a-z0-9_]*$/);
    expect(Object.fromEntries(series.map((s) => [s.labels[0], s.value]))).toMatchObject({ retry_to_site: 2, unparseable: 1, handshake_timeout: 0, refused_max_connections_per_ip: 0 });
    // `list` keeps its wording.
    expect([DROP.sentToSite, DROP_METRIC_LABEL[DROP.sentToSite]]).toEqual(['retry to its site', 'retry_to_site']);
  });

  it('counts each upstream try of a proxied request', () => {
    const m = new RequestMetrics();
    m.record(exchange('api', 200, [{ target: 'a', outcome: 'connect_refused' }, { target: 'b', outcome: '200' }]));
    m.record(exchange('root', 404));
    expect(m.requests.series().map((s) => [...s.labels, s.value])).toEqual([
      ['h3', 'api', '2xx', 1],
      ['h3', 'root', '4xx', 1],
    ]);
    expect(m.upstreamRequests.series().map((s) => [...s.labels, s.value])).toEqual([
      ['app', 'a', 'connect_refused', 1],
      ['app', 'b', '2xx', 1],
    ]);
  });
});

describe('snapshot decoding', () => {
  it('accepts what a worker sends and refuses wrong shapes', () => {
    const m = new RequestMetrics();
    m.record(exchange('api', 200));
    const good = JSON.parse(JSON.stringify(snapshotOf(m))) as WorkerMetricsSnapshot;
    expect(decodeSnapshot(good, 'm')).toEqual(good);
    const wrongLabels = { ...good, counters: { ...good.counters, requests: [{ labels: ['h3'], value: 1 }] } };
    expect(() => decodeSnapshot(wrongLabels, 'm')).toThrow(/m\.counters\.requests\[0\]\.labels: expected 3 labels/);
    const negative = { ...good, counters: { ...good.counters, requests: [{ labels: ['h3', 'a', '2xx'], value: -1 }] } };
    expect(() => decodeSnapshot(negative, 'm')).toThrow(/expected a count/);
    expect(() => decodeSnapshot({ counters: {} }, 'm')).toThrow(/m\.counters\.requests/);
  });

  it('decodes HTTP refusals, takes a worker from before them as refusing nothing, and refuses a wrong shape', () => {
    const refusals = new RefusalCounter();
    refusals.add(REFUSAL.headerTimeout);
    const m = new RequestMetrics();
    m.record(exchange('api', 200));
    const good = JSON.parse(JSON.stringify(snapshotOf(m, 0, refusals))) as WorkerMetricsSnapshot;
    expect(decodeSnapshot(good, 'm').counters.httpRefused).toContainEqual({ labels: ['header_timeout'], value: 1 });
    // What an older worker sends: no httpRefused at all. Its other counts still decode.
    const { httpRefused: _, ...olderCounters } = good.counters;
    const older = decodeSnapshot({ ...good, counters: olderCounters }, 'm');
    expect(older.counters.httpRefused).toEqual([]);
    expect(older.counters.requests).toEqual(good.counters.requests);
    const twoLabels = { ...good, counters: { ...good.counters, httpRefused: [{ labels: ['header_timeout', 'x'], value: 1 }] } };
    expect(() => decodeSnapshot(twoLabels, 'm')).toThrow(/m\.counters\.httpRefused\[0\]\.labels: expected 1 labels/);
    expect(() => decodeSnapshot({ ...good, counters: { ...good.counters, httpRefused: null } }, 'm')).toThrow(/m\.counters\.httpRefused: expected an array/);
    // Only a family added later may be absent.
    const { quicDropped: __, ...noQuic } = good.counters;
    expect(() => decodeSnapshot({ ...good, counters: noQuic }, 'm')).toThrow(/m\.counters\.quicDropped/);
  });

  it('decodes misdirected requests, takes a worker from before them (or before HTTP refusals too) as misdirecting nothing, and refuses a wrong shape', () => {
    const m = new RequestMetrics();
    m.record(exchange('api', 200));
    m.misdirected.add(['a', 'h3']);
    const refusals = new RefusalCounter();
    refusals.add(REFUSAL.misdirected);
    const good = JSON.parse(JSON.stringify(snapshotOf(m, 2, refusals, { [DROP.sentToSite]: 1 }))) as WorkerMetricsSnapshot;
    expect(decodeSnapshot(good, 'm').counters.misdirected).toEqual([{ labels: ['a', 'h3'], value: 1 }]);
    // What an older worker sends: no misdirected at all. Every other family still decodes.
    const { misdirected: _, ...olderCounters } = good.counters;
    const older = decodeSnapshot({ ...good, counters: olderCounters }, 'm');
    expect(older).toEqual({ ...good, counters: { ...good.counters, misdirected: [] } });
    // One older still: neither misdirected nor httpRefused.
    const { httpRefused: __, ...oldestCounters } = olderCounters;
    const oldest = decodeSnapshot({ ...good, counters: oldestCounters }, 'm');
    expect(oldest.counters).toEqual({ ...good.counters, misdirected: [], httpRefused: [] });
    expect(oldest.gauges).toEqual(good.gauges);
    const oneLabel = { ...good, counters: { ...good.counters, misdirected: [{ labels: ['a'], value: 1 }] } };
    expect(() => decodeSnapshot(oneLabel, 'm')).toThrow(/m\.counters\.misdirected\[0\]\.labels: expected 2 labels/);
  });

  it('relabels QUIC drops of a worker from before their metric labels (list\'s wording) and keeps unknown labels', () => {
    const good = JSON.parse(JSON.stringify(snapshotOf(new RequestMetrics()))) as WorkerMetricsSnapshot;
    const older = { ...good, counters: { ...good.counters, quicDropped: [{ labels: ['retry to its site'], value: 2 }, { labels: ['unparseable'], value: 1 }, { labels: ['from a newer worker'], value: 3 }] } };
    expect(decodeSnapshot(older, 'm').counters.quicDropped).toEqual([
      { labels: ['retry_to_site'], value: 2 },
      { labels: ['unparseable'], value: 1 },
      { labels: ['from a newer worker'], value: 3 },
    ]);
  });

  it('does not merge histograms bucketed differently', () => {
    const sums = new HistogramSums([1, 2]);
    expect(sums.add({ labels: ['a'], counts: [1, 1, 1], sum: 3 })).toBe(true);
    expect(sums.add({ labels: ['a'], counts: [1, 1], sum: 3 }, [5])).toBe(false);
    expect(sums.series()).toEqual([{ labels: ['a'], counts: [1, 1, 1], sum: 3 }]);
  });
});

describe('the master store', () => {
  it('sums live workers, folds exited ones, and never goes backwards', async () => {
    const store = new WorkerMetricsStore();
    const a = new FakeWorker(new RequestMetrics());
    const b = new FakeWorker(new RequestMetrics());
    store.attach(1, a.proc);
    store.attach(2, b.proc);
    a.metrics.record(exchange('r', 200));
    a.metrics.record(exchange('r', 200));
    b.metrics.record(exchange('r', 500));
    await store.refresh(1000);
    const total = (): number => store.view().counters.requests.series().reduce((n, s) => n + s.value, 0);
    expect(total()).toBe(3);
    expect(store.view().connections.map((s) => s.labels[0]).sort()).toEqual(['1', '2']);
    // A's last request comes after the scrape: its final snapshot carries it into the totals.
    a.metrics.record(exchange('r', 200));
    a.exit();
    expect(total()).toBe(4);
    expect(store.view().connections.map((s) => s.labels[0])).toEqual(['2']);
    expect(store.view().requestDuration.series()[0]!.counts.reduce((n, c) => n + c, 0)).toBe(4);
  });

  it('sums HTTP refusals of live workers and keeps those of exited ones', async () => {
    const store = new WorkerMetricsStore();
    const a = new FakeWorker(new RequestMetrics());
    const b = new FakeWorker(new RequestMetrics());
    store.attach(1, a.proc);
    store.attach(2, b.proc);
    a.refusals.add(REFUSAL.headerTooLarge);
    b.refusals.add(REFUSAL.headerTooLarge);
    b.refusals.add(REFUSAL.rapidReset);
    await store.refresh(1000);
    const refused = (reason: string): number | undefined => store.view().counters.httpRefused.series().find((s) => s.labels[0] === reason)?.value;
    expect([refused('header_too_large'), refused('rapid_reset'), refused('body_timeout')]).toEqual([2, 1, 0]);
    // A's refusal after the scrape arrives with its final snapshot; B exits without a new one.
    a.refusals.add(REFUSAL.headerTooLarge);
    a.exit();
    b.answer = false;
    b.emit('close', 0, null);
    expect([refused('header_too_large'), refused('rapid_reset')]).toEqual([3, 1]);
  });

  it('shows a silent worker with its last answer after the timeout, and skips a refused snapshot', async () => {
    const rejected: string[] = [];
    const store = new WorkerMetricsStore((e) => rejected.push(e));
    const w = new FakeWorker(new RequestMetrics());
    store.attach(1, w.proc);
    w.metrics.record(exchange('r', 200));
    await store.refresh(1000);
    w.answer = false;
    w.metrics.record(exchange('r', 200));
    const t0 = Date.now();
    await store.refresh(100);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(90);
    expect(store.view().counters.requests.series()[0]!.value).toBe(1);
    w.emit('message', { type: 'metrics', id: 0, snapshot: { bogus: true } });
    expect(rejected).toHaveLength(1);
    expect(store.view().rejected).toBe(1);
    expect(store.view().counters.requests.series()[0]!.value).toBe(1);
  });
});

describe('rendering', () => {
  it('exports the workers\' HTTP refusals as udpgrm_proxy_http_refused_total{reason}, through a worker\'s exit', async () => {
    const metrics = new ProxyMetrics(() => undefined, () => {});
    // Only this family: the master's process metrics may hold a NaN (event loop lag) here, which JSON cannot carry.
    const refused = async (): Promise<ReturnType<typeof parsePrometheus>> =>
      parsePrometheus(
        (await metrics.scrape(1000))
          .split('\n')
          .filter((l) => l.includes('udpgrm_proxy_http_refused_total'))
          .join('\n') + '\n',
      );
    const w = new FakeWorker(new RequestMetrics());
    metrics.hooks.workerSpawned?.(1, w.proc);
    w.refusals.add(REFUSAL.tcpConnectionLimit);
    w.refusals.add(REFUSAL.headerTooLarge);
    w.refusals.add(REFUSAL.headerTooLarge);
    const live = await refused();
    expect(samples(live, 'udpgrm_proxy_http_refused_total')).toHaveLength(Object.keys(REFUSAL).length);
    expect(sum(live, 'udpgrm_proxy_http_refused_total', { reason: 'header_too_large' })).toBe(2);
    expect(sum(live, 'udpgrm_proxy_http_refused_total', { reason: 'tcp_connection_limit' })).toBe(1);
    expect(sum(live, 'udpgrm_proxy_http_refused_total', { reason: 'misdirected' })).toBe(0);
    w.exit();
    const gone = await refused();
    expect(sum(gone, 'udpgrm_proxy_http_refused_total', { reason: 'header_too_large' })).toBe(2);
    expect(sum(gone, 'udpgrm_proxy_http_refused_total')).toBe(3);
  });


  it('exports QUIC drops as udpgrm_proxy_quic_dropped_total{reason} in snake_case, every reason from 0, through a worker\'s exit', async () => {
    const metrics = new ProxyMetrics(() => undefined, () => {});
    const dropped = async (): Promise<ReturnType<typeof parsePrometheus>> =>
      parsePrometheus(
        (await metrics.scrape(1000))
          .split('\n')
          .filter((l) => l.includes('udpgrm_proxy_quic_dropped_total'))
          .join('\n') + '\n',
      );
    const w = new FakeWorker(new RequestMetrics(), new RefusalCounter(), { [DROP.sentToSite]: 2 });
    metrics.hooks.workerSpawned?.(1, w.proc);
    const live = await dropped();
    expect(samples(live, 'udpgrm_proxy_quic_dropped_total')).toHaveLength(Object.keys(DROP).length);
    expect(sum(live, 'udpgrm_proxy_quic_dropped_total', { reason: 'retry_to_site' })).toBe(2);
    expect(samples(live, 'udpgrm_proxy_quic_dropped_total', { reason: 'handshake_timeout' }).map((s) => s.value)).toEqual([0]);
    w.dropped[DROP.sentToSite] = 3;
    w.exit();
    const gone = await dropped();
    expect(sum(gone, 'udpgrm_proxy_quic_dropped_total', { reason: 'retry_to_site' })).toBe(3);
    expect(sum(gone, 'udpgrm_proxy_quic_dropped_total')).toBe(3);
  });

  it('renders derived counters and histograms that the official parser reads back', async () => {
    const registry = new Registry();
    derivedCounter({ name: 'x_requests_total', help: 'h', labelNames: ['route'], registry }, () => [{ labels: ['a"b\\c'], value: 3 }]);
    registry.registerMetric(
      new DerivedHistogram({ name: 'x_duration_seconds', help: 'h', labelNames: ['route'], registry, bounds: [0.1, 1] }, () => [{ labels: ['a'], counts: [1, 2, 3], sum: 9.5 }]),
    );
    const families = parsePrometheus(await registry.metrics());
    expect(samples(families, 'x_requests_total')).toEqual([{ name: 'x_requests_total', labels: { route: 'a"b\\c' }, value: 3 }]);
    expect(samples(families, 'x_duration_seconds_bucket').map((s) => [s.labels.le, s.value])).toEqual([
      ['0.1', 1],
      ['1', 3],
      ['+Inf', 6],
    ]);
    expect(sum(families, 'x_duration_seconds_count', { route: 'a' })).toBe(6);
    expect(sum(families, 'x_duration_seconds_sum', { route: 'a' })).toBe(9.5);
  });
});
