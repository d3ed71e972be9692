/**
 * Reassembles one connection attempt's ClientHello from the CRYPTO frames of its client Initials
 * (it may span datagrams: Chrome's post-quantum key share).
 */
import { CLIENT_RANDOM_LENGTH, CLIENT_RANDOM_OFFSET, ClientHelloError, parseClientHello, TLS_HANDSHAKE_CLIENT_HELLO, type ClientHelloInfo } from '../../tls/client-hello.js';
import { InitialParseError } from './errors.js';
import { parseInitialFrames, type CryptoFragment } from './frames.js';
import type { SupportedQuicVersion } from './keys.js';
import { decryptClientInitials, InitialKeyCache } from './packet.js';

export interface ClientHelloAssemblerOptions {
  /** Largest CRYPTO stream offset accepted and largest ClientHello; default 64 KiB. */
  readonly maxCryptoBytes?: number;
  /** Most distinct fragments kept while waiting for a gap to fill; default 64. */
  readonly maxFragments?: number;
  /** Datagrams carrying client Initials shorter than this are refused (RFC 9000 §14.1); default 1200. */
  readonly minDatagramSize?: number;
}

/** Identity of the connection attempt, from its first Initial packet. */
export interface InitialAttempt {
  readonly version: SupportedQuicVersion;
  /** The client's original Destination CID (keys the attempt; passed as odcid to accept). */
  readonly dcid: Buffer;
  readonly scid: Buffer;
  readonly token: Buffer;
}

const HANDSHAKE_HEADER_LENGTH = 4;

/**
 * Collects one connection attempt's client Initials until the CRYPTO stream holds the whole
 * ClientHello. The caller keys one assembler per client DCID and feeds it every Initial datagram
 * of that DCID. Fragments may arrive out of order, overlapping or duplicated. A datagram that
 * fails to parse or decrypt throws and leaves the state untouched (it is simply dropped); a
 * ClientHello that turns out malformed throws and the assembler stays failed.
 */
export class ClientHelloAssembler {
  private readonly maxCryptoBytes: number;
  private readonly maxFragments: number;
  private readonly minDatagramSize: number;
  private readonly keyCache = new InitialKeyCache();
  /** Stored fragments, sorted by offset, none fully covered by another. */
  private fragments: CryptoFragment[] = [];
  private storedBytes = 0;
  private attempt: InitialAttempt | undefined;
  private result: ClientHelloInfo | undefined;
  private random: Buffer | undefined;
  private failure: InitialParseError | undefined;

  constructor(options: ClientHelloAssemblerOptions = {}) {
    this.maxCryptoBytes = options.maxCryptoBytes ?? 64 * 1024;
    this.maxFragments = options.maxFragments ?? 64;
    this.minDatagramSize = options.minDatagramSize ?? 1200;
  }

  /** Version, DCID, SCID and token of the first accepted Initial; undefined before that. */
  get initial(): InitialAttempt | undefined {
    return this.attempt;
  }

  /**
   * The ClientHello's random once its first bytes arrived (usually in the first Initial, even
   * when the ClientHello spans several): what the 0-RTT replay guard keys on.
   */
  get clientRandom(): Buffer | undefined {
    return this.random;
  }

  /** The parsed ClientHello once complete. */
  get clientHello(): ClientHelloInfo | undefined {
    return this.result;
  }

  push(datagram: Buffer): 'need-more' | ClientHelloInfo {
    if (this.failure !== undefined) throw this.failure;
    if (this.result !== undefined) return this.result; // a retransmission after completion
    if (datagram.length < this.minDatagramSize) {
      throw new InitialParseError('datagram-too-short', `${datagram.length} < ${this.minDatagramSize} bytes`);
    }
    const packets = decryptClientInitials(datagram, this.keyCache);
    const head = packets[0]!;
    if (this.attempt !== undefined && (head.version !== this.attempt.version || !head.dcid.equals(this.attempt.dcid))) {
      throw new InitialParseError('dcid-mismatch', 'Initial of another connection attempt');
    }

    // Stage all changes first so a rejected datagram leaves nothing behind.
    const staged = this.fragments.slice();
    let storedBytes = this.storedBytes;
    for (const packet of packets) {
      const frames = parseInitialFrames(packet.payload);
      if (frames.connectionClose) throw new InitialParseError('peer-closed', 'client sent CONNECTION_CLOSE');
      for (const fragment of frames.crypto) {
        const end = fragment.offset + fragment.data.length;
        if (end > this.maxCryptoBytes) throw new InitialParseError('crypto-too-large', `CRYPTO data up to offset ${end}`);
        storedBytes += insertFragment(staged, fragment);
        if (staged.length > this.maxFragments) throw new InitialParseError('too-many-fragments', `${staged.length} fragments`);
        if (storedBytes > this.maxCryptoBytes) throw new InitialParseError('crypto-too-large', `${storedBytes} bytes buffered`);
      }
    }
    this.fragments = staged;
    this.storedBytes = storedBytes;
    this.attempt ??= { version: head.version, dcid: head.dcid, scid: head.scid, token: head.token };

    try {
      return this.tryComplete();
    } catch (err) {
      this.failure = err as InitialParseError;
      this.fragments = [];
      throw err;
    }
  }

  private tryComplete(): 'need-more' | ClientHelloInfo {
    const available = contiguousLength(this.fragments);
    if (available >= 1 && this.fragments[0]!.data[0] !== TLS_HANDSHAKE_CLIENT_HELLO) {
      throw new InitialParseError('not-client-hello', `handshake type ${this.fragments[0]!.data[0]}`);
    }
    if (this.random === undefined && available >= CLIENT_RANDOM_OFFSET + CLIENT_RANDOM_LENGTH) {
      this.random = copyPrefix(this.fragments, CLIENT_RANDOM_OFFSET + CLIENT_RANDOM_LENGTH).subarray(CLIENT_RANDOM_OFFSET);
    }
    if (available < HANDSHAKE_HEADER_LENGTH) return 'need-more';
    const header = copyPrefix(this.fragments, HANDSHAKE_HEADER_LENGTH);
    const messageLength = HANDSHAKE_HEADER_LENGTH + header.readUIntBE(1, 3);
    if (messageLength > this.maxCryptoBytes) throw new InitialParseError('crypto-too-large', `ClientHello of ${messageLength} bytes`);
    if (available < messageLength) return 'need-more';
    this.result = parseWhole(copyPrefix(this.fragments, messageLength));
    this.fragments = []; // the raw bytes are no longer needed
    this.storedBytes = 0;
    return this.result;
  }
}

/** The shared ClientHello parser, its errors in this module's one error type. */
function parseWhole(msg: Buffer): ClientHelloInfo {
  try {
    return parseClientHello(msg);
  } catch (err) {
    if (err instanceof ClientHelloError) throw new InitialParseError(err.reason, err.detail);
    throw err;
  }
}

/**
 * Inserts `fragment` into the offset-sorted list unless existing fragments already cover it
 * entirely, and drops stored fragments it covers. Returns the change in stored bytes.
 */
function insertFragment(list: CryptoFragment[], fragment: CryptoFragment): number {
  const start = fragment.offset;
  const end = start + fragment.data.length;
  if (end === start) return 0;
  // Covered by the union of stored fragments? Walk the overlapping ones.
  let covered = start;
  for (const f of list) {
    if (f.offset > covered) break;
    covered = Math.max(covered, f.offset + f.data.length);
    if (covered >= end) return 0;
  }
  let delta = fragment.data.length;
  const kept: CryptoFragment[] = [];
  for (const f of list) {
    if (f.offset >= start && f.offset + f.data.length <= end) delta -= f.data.length;
    else kept.push(f);
  }
  let at = kept.findIndex((f) => f.offset > start);
  if (at < 0) at = kept.length;
  // A copy: a view would pin the whole decrypted datagram (up to 64 KiB) for a few bytes.
  kept.splice(at, 0, { offset: start, data: Buffer.from(fragment.data) });
  list.length = 0;
  list.push(...kept);
  return delta;
}

/** Length of the gap-free prefix of the CRYPTO stream. */
function contiguousLength(list: readonly CryptoFragment[]): number {
  let filled = 0;
  for (const f of list) {
    if (f.offset > filled) break;
    filled = Math.max(filled, f.offset + f.data.length);
  }
  return filled;
}

/** Copies the first `length` stream bytes (caller checked they are contiguous). */
function copyPrefix(list: readonly CryptoFragment[], length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let filled = 0;
  for (const f of list) {
    if (filled >= length || f.offset > filled) break;
    const end = Math.min(length, f.offset + f.data.length);
    if (end > filled) {
      f.data.copy(out, filled, filled - f.offset, end - f.offset);
      filled = end;
    }
  }
  return out;
}
