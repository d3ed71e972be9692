// HTTP/3 (RFC 9114 §8.1) and QPACK (RFC 9204 §6) application error codes, and the typed errors
// the codecs throw. The connection layer maps an H3Error to CONNECTION_CLOSE / RESET_STREAM with
// `error.code`.

export const H3_ERROR = {
  H3_NO_ERROR: 0x100,
  H3_GENERAL_PROTOCOL_ERROR: 0x101,
  H3_INTERNAL_ERROR: 0x102,
  H3_STREAM_CREATION_ERROR: 0x103,
  H3_CLOSED_CRITICAL_STREAM: 0x104,
  H3_FRAME_UNEXPECTED: 0x105,
  H3_FRAME_ERROR: 0x106,
  H3_EXCESSIVE_LOAD: 0x107,
  H3_ID_ERROR: 0x108,
  H3_SETTINGS_ERROR: 0x109,
  H3_MISSING_SETTINGS: 0x10a,
  H3_REQUEST_REJECTED: 0x10b,
  H3_REQUEST_CANCELLED: 0x10c,
  H3_REQUEST_INCOMPLETE: 0x10d,
  H3_MESSAGE_ERROR: 0x10e,
  H3_CONNECT_ERROR: 0x10f,
  H3_VERSION_FALLBACK: 0x110,
  QPACK_DECOMPRESSION_FAILED: 0x200,
  QPACK_ENCODER_STREAM_ERROR: 0x201,
  QPACK_DECODER_STREAM_ERROR: 0x202,
} as const;

export type H3ErrorName = keyof typeof H3_ERROR;
export type H3ErrorCode = (typeof H3_ERROR)[H3ErrorName];

const NAME_BY_CODE = new Map<number, string>(
  Object.entries(H3_ERROR).map(([name, code]) => [code, name]),
);

/** Name of an HTTP/3 / QPACK error code, or its hex form if unknown (e.g. a grease code). */
export function h3ErrorName(code: number): string {
  return NAME_BY_CODE.get(code) ?? `0x${code.toString(16)}`;
}

/** A protocol violation with the RFC 9114 / RFC 9204 error code the peer must be told. */
export class H3Error extends Error {
  readonly code: number;
  constructor(code: number, message: string) {
    super(`${h3ErrorName(code)}: ${message}`);
    this.name = 'H3Error';
    this.code = code;
  }
}

/**
 * A QPACK failure (code is QPACK_DECOMPRESSION_FAILED, QPACK_ENCODER_STREAM_ERROR or
 * QPACK_DECODER_STREAM_ERROR). All three are connection errors (RFC 9204 §2.2.3).
 */
export class QpackError extends H3Error {
  constructor(code: number, message: string) {
    super(code, message);
    this.name = 'QpackError';
  }
}
