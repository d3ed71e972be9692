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
  /** A client Initial without a valid token answered with a stateless Retry (not a connection yet). */
  retrySent: 'answered with retry',
  /**
   * A ClientHello for another site's name reached this (default) site: the kernel could not read
   * its SNI (only in a later datagram). Answered with a Retry whose CID routes to that site.
   */
  sentToSite: 'retry to its site',
  /** An Initial's token did not open (forged, altered, for another address or CID) or was stale. */
  invalidRetryToken: 'invalid retry token',
  /** Refused with CONNECTION_REFUSED: quic.max_connections per worker reached. */
  refusedMaxConnections: 'refused max_connections',
  /** Refused with CONNECTION_REFUSED: quic.max_handshakes per worker reached. */
  refusedMaxHandshakes: 'refused max_handshakes',
  /** Refused with CONNECTION_REFUSED: quic.max_connections_per_ip reached. */
  refusedMaxConnectionsPerIp: 'refused max_connections_per_ip',
  /** A connection not established within quic.handshake_timeout, discarded without a reply. */
  handshakeTimeout: 'handshake timeout',
  /** Packets held back: the unvalidated peer's 3x anti-amplification allowance was used up. */
  amplificationLimit: 'held by amplification limit',
  /** A pending split ClientHello evicted to stay within quic.pending_client_hellos / _bytes. */
  pendingClientHelloEvicted: 'pending client hello evicted',
  /** A pending split ClientHello older than quic.pending_client_hello_timeout. */
  pendingClientHelloExpired: 'pending client hello expired',
} as const;

export type DropReason = (typeof DROP)[keyof typeof DROP];

/** Drops by reason; a reason that never happened is absent (so `list` shows only real ones). */
export type DropCounts = { [R in DropReason]?: number };
