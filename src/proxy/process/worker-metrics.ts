/**
 * The master's view of its workers' counters. Workers only count (plain numbers, nothing on the
 * request path waits for us); on a scrape the master asks every live worker of every generation
 * for a snapshot over IPC, waiting at most the scrape timeout (a worker that does not answer in
 * time is shown with its last answer). Why pull on scrape rather than a periodic push: nothing at
 * all happens in the workers while nobody scrapes, and a scrape sees counts as of now.
 *
 * Counters never go backwards: a worker's last counts (its final snapshot, sent before it exits
 * after a drain; else the last scrape's) are folded into `retired` once its process closed, in
 * the same turn that removes it from the live set.
 */
import type { ChildProcess } from 'node:child_process';
import { DURATION_BUCKETS_S, WORKER_COUNTERS, type Series, type WorkerCounterName, type WorkerMetricsSnapshot } from '../metrics/snapshot.js';
import { HistogramSums, SeriesSums } from './metric-totals.js';
import { decodeSnapshot } from './metrics-decode.js';
import type { MasterToWorker, WorkerToMaster } from './ipc.js';
import { DecodeError } from './json-decode.js';

interface LiveWorker {
  readonly generation: number;
  readonly proc: ChildProcess;
  snapshot: WorkerMetricsSnapshot | undefined;
  /** Resolves the scrape waiting for the answer with this id. */
  waiting: { readonly id: number; readonly resolve: () => void } | undefined;
}

export type CounterTotals = { readonly [N in WorkerCounterName]: SeriesSums };

/** What a scrape shows: counters (live + retired), gauges by generation, the duration histogram. */
export interface WorkerMetricsView {
  readonly counters: CounterTotals;
  /** [generation, protocol] → open connections. */
  readonly connections: readonly Series[];
  /** [upstream, target] → 1 healthy / 0 not, as the newest generation's workers see it (any 0 wins). */
  readonly upstreamHealth: readonly Series[];
  readonly requestDuration: HistogramSums;
  /** Workers whose snapshot was refused (shape from another version). */
  readonly rejected: number;
}

export class WorkerMetricsStore {
  readonly #live = new Set<LiveWorker>();
  readonly #retired: CounterTotals = emptyCounters();
  readonly #retiredDuration = new HistogramSums(DURATION_BUCKETS_S);
  #nextId = 1;
  #rejected = 0;

  constructor(private readonly onRejected: (err: string) => void = () => {}) {}

  /** A worker process started (or restarted) for `generation`: track its answers until it closed. */
  attach(generation: number, proc: ChildProcess): void {
    const w: LiveWorker = { generation, proc, snapshot: undefined, waiting: undefined };
    this.#live.add(w);
    proc.on('message', (m: WorkerToMaster) => {
      if (m.type !== 'metrics') return;
      try {
        w.snapshot = decodeSnapshot(m.snapshot, 'metrics');
      } catch (err) {
        if (!(err instanceof DecodeError)) throw err;
        this.#rejected++;
        this.onRejected(err.message);
      }
      if (w.waiting?.id === m.id) w.waiting.resolve();
    });
    // 'close' comes after the last message and the exit: the final snapshot is in by then.
    proc.once('close', () => {
      w.waiting?.resolve();
      this.#live.delete(w);
      if (w.snapshot) this.#fold(w.snapshot);
    });
  }

  /** Asks every live worker for its counts; resolves when all answered or `timeoutMs` passed. */
  async refresh(timeoutMs: number): Promise<void> {
    const id = this.#nextId++;
    const asked = [...this.#live].filter((w) => w.proc.connected);
    await Promise.all(
      asked.map(
        (w) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(done, timeoutMs);
            function done(): void {
              clearTimeout(timer);
              if (w.waiting?.id === id) w.waiting = undefined;
              resolve();
            }
            w.waiting = { id, resolve: done };
            const msg: MasterToWorker = { type: 'metrics', id };
            // The channel may close between the check and the send: 'close' then resolves us.
            try {
              w.proc.send(msg);
            } catch {
              done();
            }
          }),
      ),
    );
  }

  view(): WorkerMetricsView {
    const r = this.#retired;
    const counters = countersFrom((name) => r[name].copy());
    const requestDuration = this.#retiredDuration.copy();
    const connections = new SeriesSums();
    const health = new SeriesSums();
    const newest = Math.max(0, ...[...this.#live].filter((w) => w.snapshot).map((w) => w.generation));
    for (const w of this.#live) {
      const s = w.snapshot;
      if (!s) continue;
      for (const name of counterNames()) for (const series of s.counters[name]) counters[name].add(series);
      for (const series of s.histograms.requestDuration.series) requestDuration.add(series, s.histograms.requestDuration.bounds);
      for (const c of s.gauges.connections) connections.add({ labels: [String(w.generation), ...c.labels], value: c.value });
      if (w.generation === newest) for (const h of s.gauges.upstreamHealth) health.min(h);
    }
    return { counters, connections: connections.series(), upstreamHealth: health.series(), requestDuration, rejected: this.#rejected };
  }

  #fold(s: WorkerMetricsSnapshot): void {
    for (const name of counterNames()) for (const series of s.counters[name]) this.#retired[name].add(series);
    for (const series of s.histograms.requestDuration.series) this.#retiredDuration.add(series, s.histograms.requestDuration.bounds);
  }
}

function counterNames(): WorkerCounterName[] {
  return Object.keys(WORKER_COUNTERS) as WorkerCounterName[];
}

function emptyCounters(): CounterTotals {
  return countersFrom(() => new SeriesSums());
}

/** One SeriesSums per worker counter family: a family added to WORKER_COUNTERS is summed too. */
function countersFrom(make: (name: WorkerCounterName) => SeriesSums): CounterTotals {
  return Object.fromEntries(counterNames().map((name) => [name, make(name)])) as Record<WorkerCounterName, SeriesSums>;
}
