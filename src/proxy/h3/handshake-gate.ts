/**
 * Where a connection's handshake stands for the requests on it: requests received in 0-RTT that
 * may not be served from early data wait here until the handshake completes (then they go on) or
 * the connection ends first (then they never reach an upstream: a replayed first flight cannot
 * complete the handshake).
 */
type GateState = { readonly kind: 'pending'; readonly waiters: Array<(complete: boolean) => void> } | { readonly kind: 'complete' } | { readonly kind: 'closed' };

export class HandshakeGate {
  private state: GateState;

  constructor(complete: boolean) {
    this.state = complete ? { kind: 'complete' } : { kind: 'pending', waiters: [] };
  }

  /** True once the handshake completed, false if the connection ended before. */
  wait(): Promise<boolean> {
    const s = this.state;
    if (s.kind !== 'pending') return Promise.resolve(s.kind === 'complete');
    return new Promise((resolve) => s.waiters.push(resolve));
  }

  complete(): void {
    this.settle({ kind: 'complete' });
  }

  close(): void {
    this.settle({ kind: 'closed' });
  }

  private settle(next: GateState): void {
    const s = this.state;
    if (s.kind !== 'pending') return;
    this.state = next;
    for (const w of s.waiters) w(next.kind === 'complete');
  }
}
