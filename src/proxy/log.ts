/** Loggers: pino JSON to stdout; the access log is a child with `log: "access"` on every line. */
import pino, { type Logger } from 'pino';
import type { LoggingConfig } from './config/types.js';

export function createLogger(cfg: Pick<LoggingConfig, 'level'>, bindings: Record<string, unknown> = {}): Logger {
  return pino({ level: cfg.level, base: { pid: process.pid, ...bindings } });
}

export interface AccessLogEntry {
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
}

export class AccessLog {
  constructor(private readonly log: Logger | undefined) {}

  write(entry: AccessLogEntry): void {
    this.log?.info({ log: 'access', ...entry });
  }
}
