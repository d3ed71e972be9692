/**
 * Requests the HTTP layer turned away or cut short by its limits and timeouts, counted by reason
 * for `udpgrm-proxy list` (the QUIC layer counts its own in quic/drop-reasons.ts). A closed set:
 * a typo cannot make a new counter.
 */
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
} as const;

export type Refusal = (typeof REFUSAL)[keyof typeof REFUSAL];
export type RefusalCounts = Partial<Record<Refusal, number>>;

/** One per worker, shared by its sessions and its handler. */
export class RefusalCounter {
  readonly counts: RefusalCounts = {};

  add(reason: Refusal): void {
    this.counts[reason] = (this.counts[reason] ?? 0) + 1;
  }
}
