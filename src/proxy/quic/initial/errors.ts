/**
 * The one error type of the Initial/ClientHello readers. Every malformed, truncated, undecryptable
 * or oversized input ends in an InitialParseError whose `reason` says what was wrong, so callers
 * can drop the datagram (and count the reason) without catching anything else.
 */
import type { ClientHelloReason } from '../../tls/client-hello.js';

export type InitialParseReason =
  // Packet layer (RFC 9000 §17.2).
  | 'truncated'
  | 'not-long-header'
  | 'fixed-bit-clear'
  | 'unsupported-version'
  | 'cid-too-long'
  | 'unexpected-packet-type'
  | 'bad-length'
  | 'no-initial-packet'
  | 'datagram-too-short'
  | 'dcid-mismatch'
  | 'decrypt-failed'
  | 'reserved-bits-set'
  // Frame layer (RFC 9000 §12.4, §19).
  | 'no-frames'
  | 'frame-not-allowed'
  | 'bad-frame'
  | 'peer-closed'
  // CRYPTO stream reassembly.
  | 'crypto-too-large'
  | 'too-many-fragments'
  // TLS ClientHello (RFC 8446 §4.1.2, RFC 6066 §3, RFC 7301 §3.1): the shared parser's reasons.
  | ClientHelloReason;

export class InitialParseError extends Error {
  override readonly name = 'InitialParseError';
  constructor(
    readonly reason: InitialParseReason,
    detail?: string,
  ) {
    super(detail === undefined ? reason : `${reason}: ${detail}`);
  }
}
