/**
 * Requests the HTTP layer turned away or cut short by its limits and timeouts, counted by reason
 * for `udpgrm-proxy list` and udpgrm_proxy_http_refused_total (the QUIC layer counts its own in
 * quic/drop-reasons.ts). A closed set: a typo cannot make a new counter.
 */
import type { Series } from '../metrics/snapshot.js';

export const REFUSAL = {
  headerTimeout: 'request header timeout',
  bodyTimeout: 'request body timeout',
  headerTooLarge: 'header section too large',
  connectionHeaderBudget: 'connection header budget',
  requestLimit: 'requests per connection',
  upstreamQueueTimeout: 'upstream queue timeout',
  /** An HTTP/2 client reset more than h2_max_client_resets streams in 10 s: its connection was cut. */
  rapidReset: 'HTTP/2 rapid reset',
  /** A TCP connection beyond max_tcp_connections, closed at once. */
  tcpConnectionLimit: 'TCP connections',
  /** The pool's wait queue held max_pending requests: 503 at once. */
  upstreamQueueFull: 'upstream queue full',
  /** A request for a host of another site than this worker's: 421 (http/misdirected.ts). */
  misdirected: 'misdirected request',
  /** A request body above max_request_body (declared or as it arrived): 413, or a reset once the response started. */
  bodyTooLarge: 'request body too large',
} as const;

export type Refusal = (typeof REFUSAL)[keyof typeof REFUSAL];
export type RefusalCounts = Partial<Record<Refusal, number>>;

/**
 * The `reason` label of each refusal in /metrics: identifiers for alert rules, apart from the
 * prose `list` prints (which may be reworded), spelled like the other label values (timed_out,
 * connect_refused). Written out rather than derived from the keys so a rename cannot change them.
 */
export const REFUSAL_METRIC_LABEL: { readonly [R in Refusal]: string } = {
  [REFUSAL.headerTimeout]: 'header_timeout',
  [REFUSAL.bodyTimeout]: 'body_timeout',
  [REFUSAL.headerTooLarge]: 'header_too_large',
  [REFUSAL.connectionHeaderBudget]: 'connection_header_budget',
  [REFUSAL.requestLimit]: 'request_limit',
  [REFUSAL.upstreamQueueTimeout]: 'upstream_queue_timeout',
  [REFUSAL.rapidReset]: 'rapid_reset',
  [REFUSAL.tcpConnectionLimit]: 'tcp_connection_limit',
  [REFUSAL.upstreamQueueFull]: 'upstream_queue_full',
  [REFUSAL.misdirected]: 'misdirected',
  [REFUSAL.bodyTooLarge]: 'request_body_too_large',
};

/** One per worker, shared by its sessions and its handler. */
export class RefusalCounter {
  readonly counts: RefusalCounts = {};

  add(reason: Refusal): void {
    this.counts[reason] = (this.counts[reason] ?? 0) + 1;
  }

  /**
   * [reason label] → count for the metrics snapshot, every reason, zeros too: a series that exists
   * before its first refusal lets rate() and increase() see that first one.
   */
  series(): Series[] {
    return (Object.values(REFUSAL) as Refusal[]).map((r) => ({ labels: [REFUSAL_METRIC_LABEL[r]], value: this.counts[r] ?? 0 }));
  }
}
