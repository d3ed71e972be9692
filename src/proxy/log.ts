/** Loggers: pino JSON to stdout (the access log, http/access-log.ts, writes through a child). */
import pino, { type Logger } from 'pino';
import type { LoggingConfig } from './config/types.js';

export function createLogger(cfg: Pick<LoggingConfig, 'level'>, bindings: Record<string, unknown> = {}): Logger {
  return pino({ level: cfg.level, base: { pid: process.pid, ...bindings } });
}
