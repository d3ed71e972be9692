// HTTP/3 framing (RFC 9114 §7): constants, frame/settings encoders and parsers. The incremental
// reader lives in frame-reader.ts. Transport-independent: Buffers in, Buffers out.

import { H3Error, H3_ERROR } from './errors.js';
import { decodeVarint, decodeVarintBigInt, varintLength, writeVarint } from '../quic/varint.js';

export { H3Error, QpackError, H3_ERROR, h3ErrorName } from './errors.js';
export type { H3ErrorCode, H3ErrorName } from './errors.js';

export const FRAME_TYPE = {
  DATA: 0x00,
  HEADERS: 0x01,
  CANCEL_PUSH: 0x03,
  SETTINGS: 0x04,
  PUSH_PROMISE: 0x05,
  GOAWAY: 0x07,
  MAX_PUSH_ID: 0x0d,
} as const;

/** HTTP/2 frame types with no HTTP/3 meaning; receiving one is H3_FRAME_UNEXPECTED (§7.2.8). */
export const RESERVED_HTTP2_FRAME_TYPES: ReadonlySet<number> = new Set([0x02, 0x06, 0x08, 0x09]);

export const STREAM_TYPE = {
  CONTROL: 0x00,
  PUSH: 0x01,
  QPACK_ENCODER: 0x02,
  QPACK_DECODER: 0x03,
} as const;

export const SETTINGS_ID = {
  QPACK_MAX_TABLE_CAPACITY: 0x01,
  MAX_FIELD_SECTION_SIZE: 0x06,
  QPACK_BLOCKED_STREAMS: 0x07,
  /** RFC 9220 (extended CONNECT). */
  ENABLE_CONNECT_PROTOCOL: 0x08,
  /** RFC 9297 (HTTP datagrams). */
  H3_DATAGRAM: 0x33,
} as const;

/**
 * Setting identifiers reserved because they were HTTP/2 settings without an HTTP/3 meaning:
 * receipt is H3_SETTINGS_ERROR (RFC 9114 §7.2.4.1). 0x00 is listed "Reserved" in the IANA HTTP/3
 * settings registry too, so we reject it along with 0x02-0x05.
 */
export const RESERVED_HTTP2_SETTINGS: ReadonlySet<number> = new Set([0x00, 0x02, 0x03, 0x04, 0x05]);

/** Settings whose only legal values are 0 and 1. */
const BOOLEAN_SETTINGS: ReadonlySet<number> = new Set([SETTINGS_ID.ENABLE_CONNECT_PROTOCOL, SETTINGS_ID.H3_DATAGRAM]);

/** True for the reserved "grease" codepoints 0x1f*N+0x21 (frame types, settings, stream types, errors). */
export function isGreaseCodepoint(value: number | bigint): boolean {
  const v = BigInt(value);
  return v >= 0x21n && (v - 0x21n) % 0x1fn === 0n;
}

/** Frame header (type + length), e.g. to precede a DATA payload sent separately. */
export function encodeFrameHeader(type: number | bigint, payloadLength: number): Buffer {
  const out = Buffer.allocUnsafe(varintLength(type) + varintLength(payloadLength));
  writeVarint(out, writeVarint(out, 0, type), payloadLength);
  return out;
}

/** Header of a DATA frame carrying `payloadLength` bytes; send the payload after it. */
export function encodeDataFrameHeader(payloadLength: number): Buffer {
  return encodeFrameHeader(FRAME_TYPE.DATA, payloadLength);
}

/** A whole frame: header + payload in one Buffer. */
export function encodeFrame(type: number | bigint, payload: Uint8Array): Buffer {
  const headerLen = varintLength(type) + varintLength(payload.length);
  const out = Buffer.allocUnsafe(headerLen + payload.length);
  writeVarint(out, writeVarint(out, 0, type), payload.length);
  out.set(payload, headerLen);
  return out;
}

/** A HEADERS frame around an encoded field section (see qpack.ts encodeFieldSection). */
export function encodeHeadersFrame(fieldSection: Uint8Array): Buffer {
  return encodeFrame(FRAME_TYPE.HEADERS, fieldSection);
}

export type H3Settings = Map<number, number>;

/**
 * A SETTINGS frame. Identifiers and values may be bigint (for grease identifiers above 2^53).
 * Reserved HTTP/2 identifiers are refused (RangeError): sending them is a protocol violation.
 */
export function encodeSettings(
  settings: Iterable<readonly [number | bigint, number | bigint]>,
): Buffer {
  const entries = [...settings];
  let len = 0;
  for (const [id, value] of entries) {
    if (typeof id === 'number' && RESERVED_HTTP2_SETTINGS.has(id)) {
      throw new RangeError(`setting 0x${id.toString(16)} is reserved (HTTP/2) and must not be sent`);
    }
    len += varintLength(id) + varintLength(value);
  }
  const headerLen = varintLength(FRAME_TYPE.SETTINGS) + varintLength(len);
  const out = Buffer.allocUnsafe(headerLen + len);
  let o = writeVarint(out, writeVarint(out, 0, FRAME_TYPE.SETTINGS), len);
  for (const [id, value] of entries) o = writeVarint(out, writeVarint(out, o, id), value);
  return out;
}

/**
 * Parses a SETTINGS payload. Duplicate identifiers and reserved HTTP/2 identifiers are
 * H3_SETTINGS_ERROR; a truncated pair is H3_FRAME_ERROR. Unknown identifiers are kept (the caller
 * ignores what it does not know), except identifiers above 2^53 (grease), which are dropped
 * after duplicate checking. Values above 2^53 are reported as Infinity.
 */
export function parseSettings(payload: Uint8Array): H3Settings {
  const settings: H3Settings = new Map();
  let hugeIds: Set<bigint> | undefined;
  let o = 0;
  while (o < payload.length) {
    const id = decodeVarintBigInt(payload, o);
    if (!id) throw new H3Error(H3_ERROR.H3_FRAME_ERROR, 'SETTINGS frame ends inside an identifier');
    o += id.length;
    const value = decodeVarint(payload, o);
    if (!value) throw new H3Error(H3_ERROR.H3_FRAME_ERROR, 'SETTINGS frame ends inside a value');
    o += value.length;
    if (id.value > BigInt(Number.MAX_SAFE_INTEGER)) {
      hugeIds ??= new Set();
      if (hugeIds.has(id.value)) {
        throw new H3Error(H3_ERROR.H3_SETTINGS_ERROR, `duplicate setting 0x${id.value.toString(16)}`);
      }
      hugeIds.add(id.value);
      continue;
    }
    const key = Number(id.value);
    if (RESERVED_HTTP2_SETTINGS.has(key)) {
      throw new H3Error(H3_ERROR.H3_SETTINGS_ERROR, `reserved HTTP/2 setting 0x${key.toString(16)}`);
    }
    if (settings.has(key)) {
      throw new H3Error(H3_ERROR.H3_SETTINGS_ERROR, `duplicate setting 0x${key.toString(16)}`);
    }
    if (BOOLEAN_SETTINGS.has(key) && value.value > 1) {
      // RFC 9297 §2.1.1, RFC 9220 §3: these take only 0 or 1.
      throw new H3Error(H3_ERROR.H3_SETTINGS_ERROR, `setting 0x${key.toString(16)} must be 0 or 1, not ${value.value}`);
    }
    settings.set(key, value.value);
  }
  return settings;
}

/** A GOAWAY frame carrying a stream ID (server) or push ID (client). */
export function encodeGoaway(id: number): Buffer {
  const payload = Buffer.allocUnsafe(varintLength(id));
  writeVarint(payload, 0, id);
  return encodeFrame(FRAME_TYPE.GOAWAY, payload);
}

/**
 * Reads a payload that must be exactly one varint (GOAWAY, MAX_PUSH_ID, CANCEL_PUSH), else
 * H3_FRAME_ERROR. IDs above 2^53 come back as Infinity ("beyond any ID we will use").
 */
export function parseSingleVarintPayload(payload: Uint8Array, frameName: string): number {
  const v = decodeVarint(payload, 0);
  if (!v || v.length !== payload.length) {
    throw new H3Error(H3_ERROR.H3_FRAME_ERROR, `${frameName} payload must be exactly one varint`);
  }
  return v.value;
}

export function parseGoaway(payload: Uint8Array): number {
  return parseSingleVarintPayload(payload, 'GOAWAY');
}

/** First bytes of our control stream: the stream type and our SETTINGS frame. */
export function encodeControlStreamPreface(
  settings: Iterable<readonly [number | bigint, number | bigint]>,
): Buffer {
  const frame = encodeSettings(settings);
  const out = Buffer.allocUnsafe(1 + frame.length);
  out[0] = STREAM_TYPE.CONTROL;
  frame.copy(out, 1);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Incremental frame reader

/**
 * What FrameReader.push yields:
 * - `frame`: a whole HEADERS, SETTINGS, GOAWAY, MAX_PUSH_ID, CANCEL_PUSH or PUSH_PROMISE frame.
 *   `payload` is a copy (safe to keep).
 * - `data`: the next piece of a DATA frame's payload, delivered as it arrives so bodies are never
 *   buffered whole. `frameEnd` marks the last piece of that frame (an empty DATA frame yields one
 *   empty piece with frameEnd true). `data` is a view into the pushed chunk (zero copy): do not
 *   reuse a chunk's memory while its pieces are still in use.
 * Unknown and grease frame types are skipped without buffering and yield nothing.
 */
export type H3FrameEvent =
  | { kind: 'frame'; type: number; payload: Buffer }
  | { kind: 'data'; data: Buffer; frameEnd: boolean };

export interface FrameReaderOptions {
  /** Max HEADERS / PUSH_PROMISE payload; larger is H3_EXCESSIVE_LOAD. Default 64 KiB. */
  maxFieldSectionFrameSize?: number;
  /** Max payload of other whole frames (SETTINGS...); larger is H3_FRAME_ERROR. Default 16 KiB. */
  maxControlFrameSize?: number;
}

const WHOLE_FRAME_TYPES: ReadonlySet<number> = new Set([
  FRAME_TYPE.HEADERS,
  FRAME_TYPE.SETTINGS,
  FRAME_TYPE.GOAWAY,
  FRAME_TYPE.MAX_PUSH_ID,
  FRAME_TYPE.CANCEL_PUSH,
  FRAME_TYPE.PUSH_PROMISE,
]);

/** Frames whose payload is exactly one varint (1..8 bytes). */
const SINGLE_VARINT_FRAME_TYPES: ReadonlySet<number> = new Set([
  FRAME_TYPE.GOAWAY,
  FRAME_TYPE.MAX_PUSH_ID,
  FRAME_TYPE.CANCEL_PUSH,
]);

const enum ReaderState {
  Header,
  Whole,
  Data,
  Skip,
}

/** Longest possible frame header: two 8-byte varints. */
const MAX_FRAME_HEADER = 16;

/**
 * A HEADERS or PUSH_PROMISE frame announcing a payload above the reader's limit (H3_EXCESSIVE_LOAD),
 * detected at its frame header, before any of the payload is buffered. A request stream may answer
 * 431 instead (RFC 9114 §4.2.2).
 */
export class FrameTooLargeError extends H3Error {
  constructor(
    readonly frameType: number,
    readonly length: number,
    readonly limit: number,
  ) {
    super(H3_ERROR.H3_EXCESSIVE_LOAD, `frame 0x${frameType.toString(16)} of ${length} bytes exceeds limit ${limit}`);
    this.name = 'FrameTooLargeError';
  }
}

/**
 * Splits one stream's bytes into HTTP/3 frames, across arbitrary chunk boundaries. It knows
 * nothing about which frames are allowed on which stream: that is the connection layer's job
 * (e.g. DATA on the control stream is H3_FRAME_UNEXPECTED). After it throws, it stays failed.
 */
export class FrameReader {
  private readonly maxFieldSectionFrameSize: number;
  private readonly maxControlFrameSize: number;
  private state = ReaderState.Header;
  private readonly header = Buffer.alloc(MAX_FRAME_HEADER);
  private headerLen = 0;
  private type = 0;
  private remaining = 0;
  private pieces: Buffer[] = [];
  private failure: H3Error | undefined;

  constructor(options: FrameReaderOptions = {}) {
    this.maxFieldSectionFrameSize = options.maxFieldSectionFrameSize ?? 64 * 1024;
    this.maxControlFrameSize = options.maxControlFrameSize ?? 16 * 1024;
  }

  /** True when no frame is partially received (a FIN here is clean). */
  get atFrameBoundary(): boolean {
    return this.state === ReaderState.Header && this.headerLen === 0;
  }

  /** Feeds the next bytes of the stream; returns the events they complete. */
  push(chunk: Uint8Array): H3FrameEvent[] {
    if (this.failure) throw this.failure;
    try {
      return this.consume(chunk);
    } catch (err) {
      if (err instanceof H3Error) this.failure = err;
      throw err;
    }
  }

  /** Call at the stream's FIN: a frame cut short by the end of the stream is H3_FRAME_ERROR. */
  end(): void {
    if (this.failure) throw this.failure;
    if (!this.atFrameBoundary) {
      this.failure = new H3Error(H3_ERROR.H3_FRAME_ERROR, 'stream ended inside a frame');
      throw this.failure;
    }
  }

  private consume(chunk: Uint8Array): H3FrameEvent[] {
    const events: H3FrameEvent[] = [];
    const n = chunk.length;
    let o = 0;
    while (o < n) {
      switch (this.state) {
        case ReaderState.Header:
          o = this.readHeader(chunk, o, events);
          break;
        case ReaderState.Data: {
          const take = Math.min(this.remaining, n - o);
          this.remaining -= take;
          const data = Buffer.from(chunk.buffer, chunk.byteOffset + o, take);
          o += take;
          const frameEnd = this.remaining === 0;
          if (frameEnd) this.state = ReaderState.Header;
          events.push({ kind: 'data', data, frameEnd });
          break;
        }
        case ReaderState.Skip: {
          const take = Math.min(this.remaining, n - o);
          this.remaining -= take;
          o += take;
          if (this.remaining === 0) this.state = ReaderState.Header;
          break;
        }
        case ReaderState.Whole: {
          const take = Math.min(this.remaining, n - o);
          this.pieces.push(Buffer.from(chunk.subarray(o, o + take)));
          this.remaining -= take;
          o += take;
          if (this.remaining === 0) {
            const payload = this.pieces.length === 1 ? this.pieces[0] : Buffer.concat(this.pieces);
            this.pieces = [];
            this.state = ReaderState.Header;
            events.push({ kind: 'frame', type: this.type, payload });
          }
          break;
        }
      }
    }
    return events;
  }

  /** Reads a frame header starting at chunk[o]; returns the new offset. */
  private readHeader(chunk: Uint8Array, o: number, events: H3FrameEvent[]): number {
    if (this.headerLen === 0) {
      const t = decodeVarint(chunk, o);
      const l = t && decodeVarint(chunk, o + t.length);
      if (!l) {
        // Fewer than 16 bytes remain: keep them until the header completes.
        this.header.set(chunk.subarray(o), 0);
        this.headerLen = chunk.length - o;
        return chunk.length;
      }
      this.startFrame(t.value, l.value, events);
      return o + t.length + l.length;
    }
    const take = Math.min(MAX_FRAME_HEADER - this.headerLen, chunk.length - o);
    this.header.set(chunk.subarray(o, o + take), this.headerLen);
    const avail = this.headerLen + take;
    const t = decodeVarint(this.header.subarray(0, avail), 0);
    const l = t && decodeVarint(this.header.subarray(0, avail), t.length);
    if (!l) {
      this.headerLen = avail;
      return o + take;
    }
    const used = t.length + l.length - this.headerLen;
    this.headerLen = 0;
    this.startFrame(t.value, l.value, events);
    return o + used;
  }

  private startFrame(type: number, length: number, events: H3FrameEvent[]): void {
    this.type = type;
    this.remaining = length;
    if (type === FRAME_TYPE.DATA) {
      if (length === 0) events.push({ kind: 'data', data: Buffer.alloc(0), frameEnd: true });
      else this.state = ReaderState.Data;
      return;
    }
    if (WHOLE_FRAME_TYPES.has(type)) {
      if (type === FRAME_TYPE.HEADERS || type === FRAME_TYPE.PUSH_PROMISE) {
        if (length > this.maxFieldSectionFrameSize) throw new FrameTooLargeError(type, length, this.maxFieldSectionFrameSize);
      } else if (SINGLE_VARINT_FRAME_TYPES.has(type)) {
        if (length < 1 || length > 8) {
          throw new H3Error(H3_ERROR.H3_FRAME_ERROR, `frame 0x${type.toString(16)} has bad length ${length}`);
        }
      } else if (length > this.maxControlFrameSize) {
        throw new H3Error(
          H3_ERROR.H3_FRAME_ERROR,
          `frame 0x${type.toString(16)} of ${length} bytes exceeds limit ${this.maxControlFrameSize}`,
        );
      }
      if (length === 0) events.push({ kind: 'frame', type, payload: Buffer.alloc(0) });
      else this.state = ReaderState.Whole;
      return;
    }
    if (RESERVED_HTTP2_FRAME_TYPES.has(type)) {
      throw new H3Error(H3_ERROR.H3_FRAME_UNEXPECTED, `reserved HTTP/2 frame type 0x${type.toString(16)}`);
    }
    // Unknown or grease frame type: skip its payload (RFC 9114 §9).
    if (length > 0) this.state = ReaderState.Skip;
  }
}
