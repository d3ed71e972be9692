/**
 * Messages between the master and its workers (Node IPC channel, JSON). The master never parses
 * QUIC; a worker never touches BPF state. Sockets travel as inherited fds (stdio slots 4, 5, …).
 */
import type { CidIssuerParams } from '../../grm/index.js';
import type { WorkerStats } from '../worker-stats.js';

/** First stdio slot holding a listener socket in a worker. */
export const FIRST_SOCKET_FD = 4;

export interface WorkerSocketSpec {
  /** Index into the worker's inherited fds: fd = FIRST_SOCKET_FD + index. */
  readonly index: number;
  readonly host: string;
  readonly port: number;
  readonly family: 4 | 6;
  /** Routing parameters: CIDs issued with them route back to this socket. */
  readonly cid: CidIssuerParams;
}

export type MasterToWorker =
  | {
      readonly type: 'init';
      readonly configFile: string;
      readonly generation: number;
      readonly workerIndex: number;
      readonly sockets: readonly WorkerSocketSpec[];
    }
  | { readonly type: 'drain'; readonly timeoutMs: number }
  | { readonly type: 'stats'; readonly id: number };

export type WorkerToMaster =
  | { readonly type: 'ready' }
  | { readonly type: 'failed'; readonly error: string }
  | ({ readonly type: 'stats'; readonly id: number } & WorkerStats)
  | { readonly type: 'drained'; readonly timedOut: boolean };
