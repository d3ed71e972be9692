/**
 * The master's /metrics: one prom-client registry holding the master's own metrics (reloads,
 * phases, drains, restarts, the master process itself) and families computed at scrape time from
 * every live worker of every generation (worker-metrics.ts: asked over IPC on scrape, exited ones
 * folded in) and from the kernel's BPF counters (bpf-counters.ts). Every name starts with
 * udpgrm_proxy_.
 */
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Group } from '../../grm/index.js';
import { DURATION_BUCKETS_S, WORKER_COUNTERS, WORKER_HISTOGRAMS, type Series } from '../metrics/snapshot.js';
import { BpfPacketCounters, sniSeries, type GenerationSlots } from './bpf-counters.js';
import { DerivedHistogram, derivedCounter, derivedGauge } from './derived-metrics.js';
import type { MasterHooks } from './master-hooks.js';
import { WorkerMetricsStore, type WorkerMetricsView } from './worker-metrics.js';

export const PREFIX = 'udpgrm_proxy_';

/** What the metrics read from the running master at scrape time. */
export interface MasterView {
  readonly groups: readonly Group[];
  readonly generations: readonly GenerationSlots[];
  /** The sites served and their kernel apps. */
  readonly sites: ReadonlyArray<{ readonly site: string; readonly app: number }>;
  readonly counters: { readonly reloadsOk: number; readonly reloadsFailed: number; readonly workerRestarts: number };
}

/** Phases and drains take from milliseconds (validate) to drain_timeout (up to an hour). */
const PHASE_BUCKETS_S = [0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const DRAIN_BUCKETS_S = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];

export class ProxyMetrics {
  readonly registry = new Registry();
  readonly #workers: WorkerMetricsStore;
  readonly #bpf = new BpfPacketCounters();
  /** What the current scrape shows; replaced at the start of each (explicit, so collect() is synchronous). */
  #view: { workers: WorkerMetricsView; bpf: readonly Series[]; sni: readonly Series[]; master: MasterView['counters'] } | undefined;
  /** Concurrent scrapes share one round of IPC and one rendering. */
  #scraping: Promise<string> | undefined;
  readonly #phases: Histogram<'phase'>;
  readonly #drains: Histogram<'result'>;

  constructor(
    private readonly master: () => MasterView | undefined,
    onRejected: (err: string) => void,
  ) {
    this.#workers = new WorkerMetricsStore(onRejected);
    const registry = this.registry;
    const spec = (name: string, help: string, labelNames: readonly string[]): { name: string; help: string; labelNames: readonly string[]; registry: Registry } => ({ name: PREFIX + name, help, labelNames, registry });
    const w = (): WorkerMetricsView | undefined => this.#view?.workers;

    derivedCounter(spec('requests_total', 'Requests answered (one per access-log line), all generations.', WORKER_COUNTERS.requests), () => w()?.counters.requests.series() ?? []);
    registry.registerMetric(
      new DerivedHistogram({ ...spec('request_duration_seconds', 'Time from request to the end of its response, by route.', WORKER_HISTOGRAMS.requestDuration), bounds: DURATION_BUCKETS_S }, () => w()?.requestDuration.series() ?? []),
    );
    derivedCounter(
      spec('upstream_requests_total', 'Upstream tries by target and outcome (status class, or the error kind of a failed try).', WORKER_COUNTERS.upstreamRequests),
      () => w()?.counters.upstreamRequests.series() ?? [],
    );
    derivedGauge(spec('upstream_health', '1: the target takes requests; 0: ejected or unhealthy (newest generation, any worker).', ['upstream', 'target']), () => w()?.upstreamHealth ?? []);
    derivedGauge(spec('connections', 'Open client connections by generation and protocol.', ['generation', 'protocol']), () => w()?.connections ?? []);
    derivedCounter(spec('handshakes_total', 'TLS handshakes: QUIC (completed, timed_out) and TCP (completed, failed).', WORKER_COUNTERS.handshakes), () => w()?.counters.handshakes.series() ?? []);
    derivedCounter(spec('quic_dropped_total', 'Datagrams and connection attempts the QUIC endpoints dropped, by reason.', WORKER_COUNTERS.quicDropped), () => w()?.counters.quicDropped.series() ?? []);
    derivedCounter(
      spec('misdirected_total', 'Requests answered 421 Misdirected Request: their host belongs to another site than the answering worker\'s.', WORKER_COUNTERS.misdirected),
      () => w()?.counters.misdirected.series() ?? [],
    );
    derivedCounter(
      spec(
        'http_refused_total',
        "Requests and connections the HTTP layer refused or cut short by its limits and timeouts, by reason (as `list`'s refused, in snake_case); reason misdirected also counts misdirected_total, kept for its site and protocol labels.",
        WORKER_COUNTERS.httpRefused,
      ),
      () => w()?.counters.httpRefused.series() ?? [],
    );
    derivedCounter(
      spec('bpf_packets_total', 'Packets the BPF steering program handled, by generation and outcome (kernel counters).', ['generation', 'outcome']),
      () => this.#view?.bpf ?? [],
    );
    derivedCounter(
      spec('bpf_sni_total', "New QUIC connections by the site the kernel chose from their SNI: matched (a site's name), unmatched and none (to the default site).", ['site', 'outcome']),
      () => this.#view?.sni ?? [],
    );
    derivedCounter(spec('metrics_rejected_total', 'Worker metrics snapshots refused as malformed.', []), () => [{ labels: [], value: w()?.rejected ?? 0 }]);

    const masterCounter = (name: string, help: string, labelNames: string[], read: (c: MasterView['counters']) => Series[]): Counter<string> =>
      derivedCounter(spec(name, help, labelNames), () => (this.#view ? read(this.#view.master) : []));
    masterCounter('reloads_total', 'Reloads by result.', ['result'], (c) => [
      { labels: ['ok'], value: c.reloadsOk },
      { labels: ['failed'], value: c.reloadsFailed },
    ]);
    masterCounter('worker_restarts_total', 'Workers of a working generation restarted after they died.', [], (c) => [{ labels: [], value: c.workerRestarts }]);
    this.#phases = new Histogram({ name: `${PREFIX}reload_phase_seconds`, help: 'Duration of each phase of a successful reload.', labelNames: ['phase'], buckets: PHASE_BUCKETS_S, registers: [registry] });
    this.#drains = new Histogram({ name: `${PREFIX}drain_seconds`, help: 'How long replaced generations took to drain.', labelNames: ['result'], buckets: DRAIN_BUCKETS_S, registers: [registry] });
    collectDefaultMetrics({ register: registry, prefix: `${PREFIX}master_` });
  }

  /** The hooks the master and its generations call. */
  get hooks(): MasterHooks {
    return {
      workerSpawned: (generation, proc) => this.#workers.attach(generation, proc),
      releasing: (generation, slots) => this.#bpf.retire(generation, slots),
      reloaded: (phases) => {
        for (const [name, ms] of Object.entries(phases)) this.#phases.observe({ phase: phaseLabel(name) }, ms / 1000);
      },
      drained: (durationMs, timedOut) => this.#drains.observe({ result: timedOut ? 'timed_out' : 'drained' }, durationMs / 1000),
    };
  }

  /** Prometheus text of everything, asking the workers for their counts first (bounded by timeoutMs). */
  scrape(timeoutMs: number): Promise<string> {
    this.#scraping ??= this.#render(timeoutMs).finally(() => (this.#scraping = undefined));
    return this.#scraping;
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  async #render(timeoutMs: number): Promise<string> {
    await this.#workers.refresh(timeoutMs);
    const m = this.master();
    this.#view = {
      workers: this.#workers.view(),
      bpf: m ? this.#bpf.read(m.groups, m.generations) : [],
      sni: m ? sniSeries(m.groups, m.sites) : [],
      master: m?.counters ?? { reloadsOk: 0, reloadsFailed: 0, workerRestarts: 0 },
    };
    return this.registry.metrics();
  }
}

/** validateMs → validate, startAndFlipMs → start_and_flip. */
function phaseLabel(name: string): string {
  return name.replace(/Ms$/, '').replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}
