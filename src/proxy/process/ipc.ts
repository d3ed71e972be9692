/**
 * Messages between the master and its workers (Node IPC channel, JSON). The master never parses
 * QUIC; a worker never touches BPF state. Sockets travel as inherited fds (stdio slots 4, 5, …):
 * first the generation's UDP sockets, then the master's TCP listening sockets.
 */
import type { CidIssuerParams } from '../../grm/index.js';
import type { SiteNamesSpec } from '../config/site-names.js';
import type { WorkerStats } from '../worker-stats.js';
import type { WorkerMetricsSnapshot } from '../metrics/snapshot.js';

/** First stdio slot holding a listener socket in a worker. */
export const FIRST_SOCKET_FD = 4;

export interface WorkerSocketSpec {
  /** Index into the worker's inherited fds: fd = FIRST_SOCKET_FD + index. */
  readonly index: number;
  /** The config listener it serves (config.listeners[listenerIndex]). */
  readonly listenerIndex: number;
  readonly host: string;
  readonly port: number;
  readonly family: 4 | 6;
  /** Routing parameters: CIDs issued with them route back to this socket. */
  readonly cid: CidIssuerParams;
}

/** A TCP listening socket the worker accepts on (shared with every worker of every generation). */
export interface WorkerTcpSocketSpec {
  /** Index into the worker's inherited fds: fd = FIRST_SOCKET_FD + index. */
  readonly index: number;
  readonly listenerIndex: number;
  /** h1/h2 over TLS for the listener, or its plain-HTTP http_redirect address. */
  readonly role: 'tls' | 'redirect';
  readonly host: string;
  readonly port: number;
}

/**
 * Per site, per reuseport group (the worker's UDP socket index), the CID issuers of the site's
 * working generation's workers: where the default site sends, with a Retry, an attempt whose SNI
 * the kernel could not read (endpoint.ts `siteOf`). A new generation of a site replaces its entry.
 */
export type SiteSteering = Readonly<Record<string, ReadonlyArray<readonly CidIssuerParams[]>>>;

/** What every worker knows of the sites: their names, and where each one's new connections go. */
export interface SitesView {
  readonly spec: SiteNamesSpec;
  readonly steering: SiteSteering;
}

export type MasterToWorker =
  | {
      readonly type: 'init';
      readonly configFile: string;
      readonly generation: number;
      /** The site whose routes, pools and limits the worker runs (siteConfig). */
      readonly site: string;
      /** Every site's names, as the master runs them now. */
      readonly siteNames: SiteNamesSpec;
      readonly steering: SiteSteering;
      readonly workerIndex: number;
      readonly sockets: readonly WorkerSocketSpec[];
      readonly tcpSockets: readonly WorkerTcpSocketSpec[];
    }
  | { readonly type: 'drain'; readonly timeoutMs: number }
  /** A reload changed some site's names: the worker's view of which name is whose. */
  | ({ readonly type: 'site-names' } & SitesView)
  | { readonly type: 'stats'; readonly id: number }
  /** A scrape of /metrics: answer with a `metrics` message carrying the same id. */
  | { readonly type: 'metrics'; readonly id: number };

export type WorkerToMaster =
  | { readonly type: 'ready' }
  | { readonly type: 'failed'; readonly error: string }
  | ({ readonly type: 'stats'; readonly id: number } & WorkerStats)
  /** Counters since the worker started; id 0: unasked, the final counts sent before `drained`. */
  | { readonly type: 'metrics'; readonly id: number; readonly snapshot: WorkerMetricsSnapshot }
  | { readonly type: 'drained'; readonly timedOut: boolean };
