/**
 * Why the endpoint dropped something on the packet path: one closed set, so a typo is a compile
 * error instead of a new counter. The values are the labels `udpgrm-proxy list --config` prints
 * (`dropped unparseable=3,...`); changing one changes what operators see.
 */
export const DROP = {
  /** Too short for its header, or quiche could not parse it. */
  unparseable: 'unparseable',
  /** Version Negotiation or Retry: only servers send them. */
  serverOnlyPacketType: 'server-only packet type',
  /** A long header of a version we do not speak, too short to deserve a Version Negotiation. */
  shortUnknownVersion: 'short packet of unknown version',
  /** No connection has this CID, and no stateless reset is due (or possible). */
  unknownConnection: 'unknown connection',
  /** A client Initial in a datagram below 1200 bytes (RFC 9000 §14.1). */
  shortInitial: 'short initial',
  tooManyPendingHandshakes: 'too many pending handshakes',
  clientHelloTooLong: 'client hello too long',
  /** The Initial could not be decrypted or its ClientHello was malformed. */
  undecodableInitial: 'undecodable initial',
  /** quiche refused the packet of a known connection (it has counted or closed it already). */
  rejectedByQuic: 'rejected by quic',
  /** Our own code failed on the datagram (also counted in internalErrors). */
  internalError: 'internal error',
  /** The socket refused a stateless reply (e.g. to a forged broadcast source). */
  replyNotSent: 'reply not sent',
  /** quiche refused a CID we offered the peer (it has fewer spare CIDs for migration). */
  cidNotOffered: 'cid not offered',
} as const;

export type DropReason = (typeof DROP)[keyof typeof DROP];

/** Drops by reason; a reason that never happened is absent (so `list` shows only real ones). */
export type DropCounts = { [R in DropReason]?: number };
