/** `quic:` transport limits and `logging:`. */
import { EARLY_DATA_MODES, type LoggingConfig, type QuicLimits } from './types.js';
import type { Cursor } from './yaml-cursor.js';

export const QUIC_DEFAULTS: QuicLimits = {
  idleTimeoutMs: 30_000,
  maxConcurrentBidiStreams: 100,
  initialMaxData: 10 * 1024 * 1024,
  initialMaxStreamData: 1024 * 1024,
  // Fits the common 1500-byte MTU with IPv6 + tunnelling headroom (what quiche's examples use).
  maxUdpPayload: 1350,
  cidLength: 16,
  earlyData: 'safe',
};

const QUIC_KEYS = ['idle_timeout', 'max_concurrent_streams', 'initial_max_data', 'initial_max_stream_data', 'max_udp_payload', 'cid_length', 'early_data'] as const;
const GIB = 1024 ** 3;

export function readQuic(section: Cursor | undefined): QuicLimits {
  const f = section?.fields(QUIC_KEYS, 'QUIC limits') ?? {};
  const d = QUIC_DEFAULTS;
  return {
    idleTimeoutMs: f.idle_timeout?.duration(100, 3_600_000) ?? d.idleTimeoutMs,
    maxConcurrentBidiStreams: f.max_concurrent_streams?.integer(1, 100_000, 'max_concurrent_streams') ?? d.maxConcurrentBidiStreams,
    initialMaxData: f.initial_max_data?.size(1024, GIB) ?? d.initialMaxData,
    initialMaxStreamData: f.initial_max_stream_data?.size(1024, GIB) ?? d.initialMaxStreamData,
    // RFC 9000 §18.2: max_udp_payload_size is at least 1200 and at most 65527.
    maxUdpPayload: f.max_udp_payload?.size(1200, 65527) ?? d.maxUdpPayload,
    // RFC 9000 allows up to 20 bytes; below 8 there is no room for routing bits plus entropy.
    cidLength: f.cid_length?.integer(8, 20, 'cid_length') ?? d.cidLength,
    earlyData: f.early_data?.oneOf(EARLY_DATA_MODES) ?? d.earlyData,
  };
}

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

export function readLogging(section: Cursor | undefined): LoggingConfig {
  const f = section?.fields(['level', 'access_log'] as const, 'logging settings') ?? {};
  return {
    level: f.level?.oneOf(LOG_LEVELS) ?? 'info',
    accessLog: f.access_log?.boolean() ?? true,
  };
}
