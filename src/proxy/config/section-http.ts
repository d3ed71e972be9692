/** `http:` per-request and per-connection HTTP limits: request timeouts, header sizes, keep-alive, HTTP/2 and TCP limits. */
import type { HttpLimits } from './types.js';
import { formatSize } from './units.js';
import type { Cursor } from './yaml-cursor.js';

export const HTTP_DEFAULTS: HttpLimits = {
  requestHeaderTimeoutMs: 10_000,
  requestBodyTimeoutMs: 30_000,
  maxRequestsPerConnection: 10_000,
  // What SETTINGS_MAX_FIELD_SECTION_SIZE advertised before it was configurable.
  maxHeaderBytes: 64 * 1024,
  // Four largest header sections at once: a connection holds at most this for incomplete HEADERS.
  maxConnectionHeaderBytes: 256 * 1024,
  keepaliveTimeoutMs: 60_000,
  h2MaxConcurrentStreams: 100,
  h2InitialWindow: 1024 * 1024,
  // Far above what a browser cancelling a page's requests reaches, far below an attack's rate
  // (nghttp2's own limit, 1000 at once then 33/s, is the backstop).
  h2MaxClientResets: 200,
  maxTcpConnections: 10_000,
  // As before the limit existed: bodies of any size stream through.
  maxRequestBody: null,
};

/** The window in which h2_max_client_resets counts a client's stream resets. */
export const H2_RESET_WINDOW_MS = 10_000;
/** HTTP/2 window sizes are 31-bit (RFC 9113 §6.9.1). */
export const H2_MAX_WINDOW = 2 ** 31 - 1;

/**
 * Bytes a HEADERS frame may take beyond its field section: its frame header (type and length
 * varints, at most 16 bytes). The per-connection budget counts every byte read before HEADERS are
 * complete, so it must hold one largest frame.
 */
export const HEADERS_FRAME_OVERHEAD = 16;

const HTTP_KEYS = [
  'request_header_timeout',
  'request_body_timeout',
  'max_requests_per_connection',
  'max_header_bytes',
  'max_connection_header_bytes',
  'keepalive_timeout',
  'h2_max_concurrent_streams',
  'h2_initial_window',
  'h2_max_client_resets',
  'max_tcp_connections',
  'max_request_body',
] as const;
const MIB = 1024 * 1024;

export function readHttp(section: Cursor | undefined): HttpLimits {
  const f = section?.fields(HTTP_KEYS, 'HTTP limits') ?? {};
  const d = HTTP_DEFAULTS;
  const limits: HttpLimits = {
    requestHeaderTimeoutMs: f.request_header_timeout?.duration(100, 600_000) ?? d.requestHeaderTimeoutMs,
    requestBodyTimeoutMs: f.request_body_timeout?.duration(100, 3_600_000) ?? d.requestBodyTimeoutMs,
    maxRequestsPerConnection: f.max_requests_per_connection?.integer(1, 1_000_000_000, 'max_requests_per_connection') ?? d.maxRequestsPerConnection,
    maxHeaderBytes: f.max_header_bytes?.size(1024, MIB) ?? d.maxHeaderBytes,
    maxConnectionHeaderBytes: f.max_connection_header_bytes?.size(1024, 64 * MIB) ?? d.maxConnectionHeaderBytes,
    keepaliveTimeoutMs: f.keepalive_timeout?.duration(100, 3_600_000) ?? d.keepaliveTimeoutMs,
    h2MaxConcurrentStreams: f.h2_max_concurrent_streams?.integer(1, 10_000, 'h2_max_concurrent_streams') ?? d.h2MaxConcurrentStreams,
    // At least the protocol's default window (RFC 9113 §6.9.2), at most its 31-bit maximum.
    h2InitialWindow: f.h2_initial_window?.size(65_535, H2_MAX_WINDOW) ?? d.h2InitialWindow,
    h2MaxClientResets: f.h2_max_client_resets?.integer(1, 1_000_000, 'h2_max_client_resets') ?? d.h2MaxClientResets,
    maxTcpConnections: f.max_tcp_connections?.integer(1, 1_000_000, 'max_tcp_connections') ?? d.maxTcpConnections,
    maxRequestBody: readMaxRequestBody(f.max_request_body) ?? d.maxRequestBody,
  };
  const needed = limits.maxHeaderBytes + HEADERS_FRAME_OVERHEAD;
  if (limits.maxConnectionHeaderBytes < needed) {
    // Point at whichever of the two the file sets (the connection bound if both).
    const at = f.max_connection_header_bytes ?? f.max_header_bytes;
    at?.error(`max_connection_header_bytes (${formatSize(limits.maxConnectionHeaderBytes)}) must hold one largest HEADERS frame: at least max_header_bytes + ${HEADERS_FRAME_OVERHEAD} = ${needed}`);
  }
  return limits;
}

/** Largest request body a limit may name: far beyond any upload, and a safe integer. */
export const MAX_REQUEST_BODY_LIMIT = 1024 ** 4;

/** `max_request_body` (top-level and per route): a size, or `none` (null); undefined when absent or invalid. */
export function readMaxRequestBody(c: Cursor | undefined): number | null | undefined {
  return c?.sizeOrNone(0, MAX_REQUEST_BODY_LIMIT);
}
