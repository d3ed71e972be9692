/**
 * The ClientHello at the start of a TLS-over-TCP stream, read from the TLS records (RFC 8446 §5.1)
 * as the bytes arrive. A ClientHello may be fragmented over several handshake records, and a
 * record split over several TCP segments, so the reader is a byte-level state machine: each byte
 * pushed is looked at once, whatever the segmentation, and nothing is concatenated but the
 * ClientHello itself (one buffer of its announced size, bounded by `maxBytes`).
 */
import { ClientHelloError, parseClientHello, TLS_HANDSHAKE_CLIENT_HELLO, type ClientHelloInfo } from './client-hello.js';

export type ClientHelloRead =
  | { readonly kind: 'need-more' }
  | { readonly kind: 'hello'; readonly info: ClientHelloInfo }
  /** Not a TLS ClientHello (plaintext on the TLS port, another record type), malformed, or too big. */
  | { readonly kind: 'refused'; readonly reason: string };

/** Real ClientHellos take 0.5–2 KB (post-quantum key shares included); more is padding or abuse. */
export const MAX_CLIENT_HELLO_STREAM_BYTES = 16 * 1024;

const RECORD_HEADER_LENGTH = 5;
const HANDSHAKE_HEADER_LENGTH = 4;
const CONTENT_TYPE_HANDSHAKE = 22;
/** TLSPlaintext.length may not exceed 2^14 (RFC 8446 §5.1). */
const MAX_RECORD_LENGTH = 16384;

type State =
  /** Reading a record header (5 bytes: type, legacy version, length). */
  | { readonly at: 'record-header' }
  /** Reading `left` more bytes of a handshake record's body. */
  | { readonly at: 'record-body'; left: number }
  | { readonly at: 'done'; readonly result: Exclude<ClientHelloRead, { kind: 'need-more' }> };

export class ClientHelloRecordReader {
  #state: State = { at: 'record-header' };
  readonly #recordHeader = Buffer.alloc(RECORD_HEADER_LENGTH);
  #recordHeaderFill = 0;
  /** Stream bytes looked at so far. */
  #consumed = 0;
  /** The handshake message: its 4-byte header first, then the buffer of its whole announced size. */
  #message = Buffer.alloc(HANDSHAKE_HEADER_LENGTH);
  #messageFill = 0;
  #messageSized = false;

  /** `maxBytes`: the stream bytes the ClientHello may take, record headers included. */
  constructor(private readonly maxBytes = MAX_CLIENT_HELLO_STREAM_BYTES) {}

  /** Reads the next bytes of the stream; once the ClientHello is whole or refused, the answer stays. */
  push(chunk: Buffer): ClientHelloRead {
    let pos = 0;
    while (this.#state.at !== 'done' && pos < chunk.length) {
      if (this.#consumed >= this.maxBytes) return this.#finish({ kind: 'refused', reason: `no whole ClientHello within ${this.maxBytes} bytes` });
      const room = Math.min(chunk.length - pos, this.maxBytes - this.#consumed);
      const used = this.#state.at === 'record-header' ? this.#readRecordHeader(chunk, pos, room) : this.#readRecordBody(this.#state, chunk, pos, room);
      pos += used;
      this.#consumed += used;
    }
    return this.#state.at === 'done' ? this.#state.result : { kind: 'need-more' };
  }

  #readRecordHeader(chunk: Buffer, pos: number, room: number): number {
    const n = Math.min(room, RECORD_HEADER_LENGTH - this.#recordHeaderFill);
    chunk.copy(this.#recordHeader, this.#recordHeaderFill, pos, pos + n);
    this.#recordHeaderFill += n;
    // The first byte alone tells plaintext HTTP (or anything else) from TLS: say so at once.
    if (this.#recordHeader[0] !== CONTENT_TYPE_HANDSHAKE) {
      const what = this.#consumed === 0 ? 'not a TLS handshake' : 'a non-handshake record inside the ClientHello';
      this.#finish({ kind: 'refused', reason: `${what} (record type ${this.#recordHeader[0]})` });
      return n;
    }
    if (this.#recordHeaderFill < RECORD_HEADER_LENGTH) return n;
    this.#recordHeaderFill = 0;
    const version = this.#recordHeader.readUInt16BE(1);
    const length = this.#recordHeader.readUInt16BE(3);
    if (version >> 8 !== 3) this.#finish({ kind: 'refused', reason: `record version 0x${version.toString(16)}` });
    // Zero-length handshake fragments are forbidden (RFC 8446 §5.1).
    else if (length === 0 || length > MAX_RECORD_LENGTH) this.#finish({ kind: 'refused', reason: `handshake record of ${length} bytes` });
    else this.#state = { at: 'record-body', left: length };
    return n;
  }

  #readRecordBody(state: { left: number }, chunk: Buffer, pos: number, room: number): number {
    const n = Math.min(room, state.left);
    state.left -= n;
    this.#takeHandshakeBytes(chunk.subarray(pos, pos + n));
    if (this.#state.at === 'record-body' && state.left === 0) this.#state = { at: 'record-header' };
    return n;
  }

  /** Handshake bytes from a record body: the message header, then the body up to its length. */
  #takeHandshakeBytes(bytes: Buffer): void {
    let pos = 0;
    while (this.#state.at !== 'done' && pos < bytes.length) {
      const n = Math.min(bytes.length - pos, this.#message.length - this.#messageFill);
      bytes.copy(this.#message, this.#messageFill, pos, pos + n);
      this.#messageFill += n;
      pos += n;
      if (this.#messageFill < this.#message.length) return;
      if (this.#messageSized) return void this.#finish(this.#parse());
      this.#sizeMessage();
    }
  }

  /** The 4-byte handshake header is in: check it and make room for the whole message. */
  #sizeMessage(): void {
    const type = this.#message[0]!;
    if (type !== TLS_HANDSHAKE_CLIENT_HELLO) return void this.#finish({ kind: 'refused', reason: `handshake type ${type}, not a ClientHello` });
    const length = HANDSHAKE_HEADER_LENGTH + this.#message.readUIntBE(1, 3);
    if (length > this.maxBytes) return void this.#finish({ kind: 'refused', reason: `ClientHello of ${length} bytes (at most ${this.maxBytes})` });
    const message = Buffer.alloc(length);
    this.#message.copy(message);
    this.#message = message;
    this.#messageSized = true;
    // A ClientHello with an empty body is still a message; parse says what is wrong with it.
    if (this.#messageFill === length) this.#finish(this.#parse());
  }

  #parse(): Exclude<ClientHelloRead, { kind: 'need-more' }> {
    try {
      return { kind: 'hello', info: parseClientHello(this.#message) };
    } catch (err) {
      if (err instanceof ClientHelloError) return { kind: 'refused', reason: err.message };
      throw err;
    }
  }

  #finish(result: Exclude<ClientHelloRead, { kind: 'need-more' }>): Exclude<ClientHelloRead, { kind: 'need-more' }> {
    this.#state = { at: 'done', result };
    this.#message = Buffer.alloc(0);
    return result;
  }
}
