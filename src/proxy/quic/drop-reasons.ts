/**
 * Why the endpoint dropped something on the packet path: one closed set, so a typo is a compile
 * error instead of a new counter. The values are the labels `udpgrm-proxy list --config` prints
 * (`dropped unparseable=3,...`); changing one changes what operators see. /metrics labels them by
 * DROP_METRIC_LABEL instead.
 */
import type { Series } from '../metrics/snapshot.js';

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

/**
 * The `reason` label of each drop in udpgrm_proxy_quic_dropped_total: identifiers for alert rules,
 * apart from the prose `list` prints (which may be reworded), spelled like the other label values.
 * Written out rather than derived from the keys or the prose so a rename cannot change them.
 */
export const DROP_METRIC_LABEL: { readonly [R in DropReason]: string } = {
  [DROP.unparseable]: 'unparseable',
  [DROP.serverOnlyPacketType]: 'server_only_packet_type',
  [DROP.shortUnknownVersion]: 'short_unknown_version',
  [DROP.unknownConnection]: 'unknown_connection',
  [DROP.shortInitial]: 'short_initial',
  [DROP.clientHelloTooLong]: 'client_hello_too_long',
  [DROP.undecodableInitial]: 'undecodable_initial',
  [DROP.rejectedByQuic]: 'rejected_by_quic',
  [DROP.internalError]: 'internal_error',
  [DROP.replyNotSent]: 'reply_not_sent',
  [DROP.cidNotOffered]: 'cid_not_offered',
  [DROP.retrySent]: 'retry_sent',
  [DROP.sentToSite]: 'retry_to_site',
  [DROP.invalidRetryToken]: 'invalid_retry_token',
  [DROP.refusedMaxConnections]: 'refused_max_connections',
  [DROP.refusedMaxHandshakes]: 'refused_max_handshakes',
  [DROP.refusedMaxConnectionsPerIp]: 'refused_max_connections_per_ip',
  [DROP.handshakeTimeout]: 'handshake_timeout',
  [DROP.amplificationLimit]: 'amplification_limit',
  [DROP.pendingClientHelloEvicted]: 'pending_client_hello_evicted',
  [DROP.pendingClientHelloExpired]: 'pending_client_hello_expired',
};

/**
 * [reason label] → count for the metrics snapshot, every reason, zeros too: a series that exists
 * before its first drop lets rate() and increase() see that first one.
 */
export function dropSeries(counts: Readonly<DropCounts>): Series[] {
  return (Object.values(DROP) as DropReason[]).map((r) => ({ labels: [DROP_METRIC_LABEL[r]], value: counts[r] ?? 0 }));
}

const METRIC_LABEL_OF_LIST_NAME: ReadonlyMap<string, string> = new Map(Object.entries(DROP_METRIC_LABEL));

/**
 * The metric label for a reason as a worker of an earlier version labelled it (`list`'s wording),
 * so its drops add up with newer workers' under one label; any other label is returned as is.
 */
export function dropMetricLabel(label: string): string {
  return METRIC_LABEL_OF_LIST_NAME.get(label) ?? label;
}
