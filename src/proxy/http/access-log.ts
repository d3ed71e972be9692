/** One line per finished exchange, whatever protocol carried it: `log: "access"` on every line. */
import type { Logger } from 'pino';
import type { HttpProtocol } from './exchange.js';

export interface AccessLogEntry {
  /** What carried the request: h1, h2 or h3. */
  protocol: HttpProtocol;
  method: string;
  authority: string;
  path: string;
  status: number;
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
  route: string | undefined;
  upstream: string | undefined;
  connection: string;
  stream: number;
  client: string;
  /** Why the exchange ended abnormally (upstream refused, client reset, …). */
  reason?: string;
  /** Every upstream try, when there was more than one (a retry): target, outcome, milliseconds. */
  tries?: ReadonlyArray<{ readonly target: string; readonly outcome: string; readonly ms: number }>;
  /** Present when the request arrived in 0-RTT: how it was treated (RFC 8470). */
  earlyData?: 'served-early' | 'held-for-handshake';
}

export class AccessLog {
  /** Without a logger (access log off in config) entries are dropped. */
  constructor(private readonly log: Logger | undefined) {}

  /** False when entries are dropped: the caller need not build them. */
  get enabled(): boolean {
    return this.log !== undefined;
  }

  /** Never throws: a failed log write (e.g. a closed stdout) must not touch the exchange it records. */
  write(entry: AccessLogEntry): void {
    try {
      this.log?.info({ log: 'access', ...entry });
    } catch {
      // Nothing else depends on the access log.
    }
  }
}
