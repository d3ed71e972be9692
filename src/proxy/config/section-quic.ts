/** `quic:` transport limits and `logging:`. */
import { EARLY_DATA_MODES, GSO_MODES, type LoggingConfig, type QuicLimits } from './types.js';
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
  gso: 'auto',
  // Off: quiche 0.18 can leave a path a client moved to unvalidated for good (Chromium's port
  // migration on a degrading path), and then sends at most 3x what it receives there (REFERENCE.md).
  activeMigration: false,
  retry: 'auto',
  // Far below max_handshakes: a flood of unvalidated Initials turns into stateless Retries long
  // before validated clients are refused.
  retryThreshold: 100,
  maxConnections: 10_000,
  maxHandshakes: 1_000,
  maxConnectionsPerIp: 1_000,
  handshakeTimeoutMs: 10_000,
  pendingClientHellos: 1_024,
  pendingClientHelloBytes: 4 * 1024 * 1024,
  // A split ClientHello's second datagram follows the first at once; a lost one is resent
  // after the client's first PTO (about 1 s).
  pendingClientHelloTimeoutMs: 3_000,
};

export const RETRY_MODES = ['auto', 'always', 'never'] as const;

const QUIC_KEYS = [
  'idle_timeout',
  'max_concurrent_streams',
  'initial_max_data',
  'initial_max_stream_data',
  'max_udp_payload',
  'cid_length',
  'retry',
  'retry_threshold',
  'max_connections',
  'max_handshakes',
  'max_connections_per_ip',
  'handshake_timeout',
  'pending_client_hellos',
  'pending_client_hello_bytes',
  'pending_client_hello_timeout',
  'early_data',
  'gso',
  'active_migration',
] as const;
const MILLION = 1_000_000;
const GIB = 1024 ** 3;

/**
 * `quic:` at the top level (over QUIC_DEFAULTS), or a site's overrides over the top level's. A site
 * cannot set `cid_length`: every site's generations share one reuseport group and its CID format.
 */
export function readQuic(section: Cursor | undefined, base: QuicLimits = QUIC_DEFAULTS, scope: 'top' | 'site' = 'top'): QuicLimits {
  const f = section?.fields(QUIC_KEYS, 'QUIC limits') ?? {};
  const d = base;
  if (scope === 'site' && f.cid_length !== undefined) {
    f.cid_length.error('cid_length is shared by every site (one reuseport group, one CID format): set it under the top-level "quic"');
  }
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
    gso: f.gso?.oneOf(GSO_MODES) ?? d.gso,
    activeMigration: f.active_migration?.boolean() ?? d.activeMigration,
    retry: f.retry?.oneOf(RETRY_MODES) ?? d.retry,
    retryThreshold: f.retry_threshold?.integer(0, MILLION, 'retry_threshold') ?? d.retryThreshold,
    maxConnections: f.max_connections?.integer(1, MILLION, 'max_connections') ?? d.maxConnections,
    maxHandshakes: f.max_handshakes?.integer(1, MILLION, 'max_handshakes') ?? d.maxHandshakes,
    maxConnectionsPerIp: f.max_connections_per_ip?.integer(1, MILLION, 'max_connections_per_ip') ?? d.maxConnectionsPerIp,
    handshakeTimeoutMs: f.handshake_timeout?.duration(100, 600_000) ?? d.handshakeTimeoutMs,
    pendingClientHellos: f.pending_client_hellos?.integer(1, MILLION, 'pending_client_hellos') ?? d.pendingClientHellos,
    pendingClientHelloBytes: f.pending_client_hello_bytes?.size(64 * 1024, GIB) ?? d.pendingClientHelloBytes,
    pendingClientHelloTimeoutMs: f.pending_client_hello_timeout?.duration(100, 60_000) ?? d.pendingClientHelloTimeoutMs,
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
