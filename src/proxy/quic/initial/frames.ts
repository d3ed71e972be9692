import { InitialParseError } from './errors.js';
import { ByteReader } from './byte-reader.js';

/** A piece of the Initial-level CRYPTO stream. `data` is a view into the decrypted payload. */
export interface CryptoFragment {
  readonly offset: number;
  readonly data: Buffer;
}

export interface InitialFrames {
  readonly crypto: CryptoFragment[];
  /** The client sent CONNECTION_CLOSE (0x1c): it abandoned this attempt. */
  readonly connectionClose: boolean;
}

// Frame types allowed in Initial packets (RFC 9000 §12.4, Table 3).
const PADDING = 0x00;
const PING = 0x01;
const ACK = 0x02;
const ACK_ECN = 0x03;
const CRYPTO = 0x06;
const CONNECTION_CLOSE = 0x1c;

/**
 * Walks the frames of a decrypted Initial payload. Any frame type not permitted in an Initial is
 * a PROTOCOL_VIOLATION (RFC 9000 §12.4) and so is an empty payload. Frame types must use the
 * shortest varint encoding (§12.4): every allowed type fits one byte, so one byte is read.
 */
export function parseInitialFrames(payload: Buffer): InitialFrames {
  if (payload.length === 0) throw new InitialParseError('no-frames');
  const r = new ByteReader(payload, 0, payload.length, 'bad-frame');
  const crypto: CryptoFragment[] = [];
  let connectionClose = false;
  while (r.remaining > 0) {
    const type = r.u8();
    switch (type) {
      case PADDING:
        while (r.pos < r.end && payload[r.pos] === PADDING) r.pos++;
        break;
      case PING:
        break;
      case ACK:
      case ACK_ECN: {
        r.varint(); // largest acknowledged
        r.varint(); // ack delay
        const rangeCount = r.varint();
        r.varint(); // first ack range
        // Each further range is two varints (≥ 2 bytes), so a huge count runs out of bytes quickly.
        for (let i = 0; i < rangeCount; i++) {
          r.varint(); // gap
          r.varint(); // ack range length
        }
        if (type === ACK_ECN) {
          r.varint();
          r.varint();
          r.varint();
        }
        break;
      }
      case CRYPTO: {
        const offset = r.varint();
        const length = r.varint();
        // RFC 9000 allows up to 2^62-1; past 2^53 the codec reads Infinity and no ClientHello comes
        // near, so a frame ending beyond 2^53 is refused here rather than mis-added.
        if (offset > Number.MAX_SAFE_INTEGER - length) throw new InitialParseError('bad-frame', 'CRYPTO frame ends beyond 2^53');
        crypto.push({ offset, data: r.bytes(length) });
        break;
      }
      case CONNECTION_CLOSE: {
        r.varint(); // error code
        r.varint(); // offending frame type
        r.skip(r.varint()); // reason phrase
        connectionClose = true;
        break;
      }
      default:
        throw new InitialParseError('frame-not-allowed', `frame type 0x${type.toString(16)} in an Initial packet`);
    }
  }
  return { crypto, connectionClose };
}

/** The CRYPTO fragments of a decrypted Initial payload, in packet order. */
export function extractCryptoFrames(payload: Buffer): CryptoFragment[] {
  return parseInitialFrames(payload).crypto;
}
