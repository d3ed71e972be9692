/**
 * What a worker's data plane reports about itself (live counts, QUIC and TCP counters). The process
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
    /** Datagrams sent in UDP GSO sends, and GSO sends the kernel refused (resent one by one). Absent from workers before GSO. */
    readonly gsoDatagrams?: number;
    readonly gsoFallbacks?: number;
    /** Datagrams read in recvmmsg batches (the rest of datagramsIn came through dgram one by one). */
    readonly batchedDatagramsIn?: number;
  };
  /** The worker's TCP edge (HTTP/1.1 and HTTP/2 over TLS, and http_redirect listeners). */
  readonly tcp?: TcpStats;
  /** Requests the HTTP limits and timeouts turned away or cut short, by reason. */
  readonly refused?: Readonly<RefusalCounts>;
}

export interface TcpStats {
  /** TCP connections taken on (all TCP listeners, redirects included). */
  readonly accepted: number;
  /** Open connections whose TLS handshake chose HTTP/1.1 (or no ALPN), and HTTP/2. */
  readonly h1Connections: number;
  readonly h2Connections: number;
  /** Connections closed at once because the worker held max_tcp_connections. */
  readonly refusedConnections: number;
  /** HTTP/2 connections cut off for resetting more than h2_max_client_resets streams in 10 s. */
  readonly rapidResetCutoffs: number;
  /** TLS handshakes that failed (no common version or ALPN, bad ClientHello, aborted). */
  readonly tlsErrors: number;
  /** Requests refused as malformed: HTTP/1.1 parse errors and requests that failed validation. */
  readonly malformed: number;
  /**
   * With several sites (each connection's ClientHello is read to find its site): connections
   * closed before TLS for want of a ClientHello within the byte and time bounds (not TLS,
   * malformed, too big, too slow). This and the three below are absent from workers before sites
   * (a `list` of the new binary may ask an older master during an upgrade).
   */
  readonly clientHellosRefused?: number;
  /** Connections whose ClientHello named another site, handed to the master for one of its workers. */
  readonly handedOff?: number;
  /** Connections another site's worker handed over to this one (through the master). */
  readonly adopted?: number;
  /** Handoffs from this worker that reached no worker of their site, sent or not (the connection was closed). */
  readonly handoffsFailed?: number;
}
