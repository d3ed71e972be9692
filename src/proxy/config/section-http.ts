/** `http:` per-request and per-connection HTTP limits: request timeouts and header sizes. */
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
};

/**
 * Bytes a HEADERS frame may take beyond its field section: its frame header (type and length
 * varints, at most 16 bytes). The per-connection budget counts every byte read before HEADERS are
 * complete, so it must hold one largest frame.
 */
export const HEADERS_FRAME_OVERHEAD = 16;

const HTTP_KEYS = ['request_header_timeout', 'request_body_timeout', 'max_requests_per_connection', 'max_header_bytes', 'max_connection_header_bytes'] as const;
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
  };
  const needed = limits.maxHeaderBytes + HEADERS_FRAME_OVERHEAD;
  if (limits.maxConnectionHeaderBytes < needed) {
    // Point at whichever of the two the file sets (the connection bound if both).
    const at = f.max_connection_header_bytes ?? f.max_header_bytes;
    at?.error(`max_connection_header_bytes (${formatSize(limits.maxConnectionHeaderBytes)}) must hold one largest HEADERS frame: at least max_header_bytes + ${HEADERS_FRAME_OVERHEAD} = ${needed}`);
  }
  return limits;
}
