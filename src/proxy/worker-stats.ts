/**
 * What a worker's data plane reports about itself (live counts and QUIC counters). The process
 * layer carries it to the master and on to `udpgrm-proxy list`; it lives here so the server does
 * not import from the process layer above it.
 */
import type { RefusalCounts } from './http/refusals.js';
import type { DropCounts } from './quic/drop-reasons.js';

export interface WorkerStats {
  readonly connections: number;
  readonly activeRequests: number;
  /** The worker's QUIC endpoints added up: datagrams in/out, handshakes, drops by reason. */
  readonly quic?: {
    readonly datagramsIn: number;
    readonly datagramsOut: number;
    readonly connectionsAccepted: number;
    readonly statelessResets: number;
    /** Failures in our own packet path, caught (each closed one connection or dropped one datagram). */
    readonly internalErrors: number;
    readonly dropped: Readonly<DropCounts>;
  };
  /** Requests the HTTP limits and timeouts turned away or cut short, by reason. */
  readonly refused?: Readonly<RefusalCounts>;
}
