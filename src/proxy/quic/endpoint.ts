/**
 * The QUIC endpoint: one UDP socket, the connections on it, and the packet loop.
 *
 *   datagram → header → (known CID? that connection : new attempt → SNI → accept) → quiche.recv
 *   → application callbacks → flush (quiche.send until done) → socket
 *
 * Sends are flushed once per event-loop turn for every connection that was touched, so a burst of
 * received datagrams produces one drain of `send()` per connection, not one per datagram.
 */
import type dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { CidIssuer } from '../../grm/interface.js';
import type { CertificateConfig, QuicLimits } from '../config/types.js';
import { BatchSender } from '../net/batch-sender.js';
import { QuicConnection, type ConnectionHost, type QuicApplication } from './connection.js';
import { DROP, type DropCounts, type DropReason } from './drop-reasons.js';
import { ClientHelloAssembler } from './initial/index.js';
import { PacketType, quiche, type HostPort } from './native.js';
import { ResetTokens } from './reset-tokens.js';
import { TimerQueue } from './timer-queue.js';
import type { TlsContexts } from './tls-contexts.js';

export interface EndpointOptions {
  readonly socket: dgram.Socket;
  /** The socket's fd, for batched sends (sendmmsg) next to dgram's receive loop. */
  readonly fd: number;
  readonly local: HostPort;
  readonly tls: TlsContexts;
  readonly selectCertificate: (sni: string | undefined) => CertificateConfig;
  readonly issuer: CidIssuer;
  readonly limits: QuicLimits;
  /** Key for stateless reset tokens, the same in every worker and generation; tokens derive from it per listener. */
  readonly resetKey: Buffer;
  readonly createApplication: (conn: QuicConnection) => QuicApplication;
  readonly log: Logger;
}

export interface EndpointCounters {
  datagramsIn: number;
  datagramsOut: number;
  bytesIn: number;
  bytesOut: number;
  connectionsAccepted: number;
  connectionsClosed: number;
  versionNegotiations: number;
  statelessResets: number;
  /** Exceptions caught on the packet path (each one a bug to fix; the datagram or connection is dropped). */
  internalErrors: number;
  dropped: DropCounts;
}

/** Pending connection attempts whose ClientHello is not complete yet (Chrome splits it). */
interface Attempt {
  readonly assembler: ClientHelloAssembler;
  readonly datagrams: Buffer[];
  readonly expiresAt: number;
}

/**
 * Largest Version Negotiation reply: RFC 8999 lets a long header of an unknown version carry CIDs
 * of up to 255 bytes each, and the reply echoes both: 1 + 4 + (1 + 255) * 2 bytes of header, then
 * 4 bytes per version quiche lists (a handful). It never exceeds the ≥1200-byte datagram it answers.
 */
const VERSION_NEGOTIATION_MAX = 1200;
/** At most one log line per this interval for failures on the packet path. */
const PACKET_PATH_LOG_INTERVAL_MS = 1000;
const MAX_ATTEMPTS = 4096;
const MAX_DATAGRAMS_PER_ATTEMPT = 8;
const ATTEMPT_LIFETIME_MS = 5000;
/** Extra CIDs offered to each peer (it may use them after migration or NAT rebinding). */
const EXTRA_CIDS = 2;

/** Hex of a datagram's Destination CID, or undefined when too short to hold one. */
function dcidOf(msg: Buffer, shortHeaderCidLength: number): string | undefined {
  if (msg.length === 0) return undefined;
  if ((msg[0]! & 0x80) === 0) {
    // Short header: the DCID is one of ours, so its length is ours.
    return msg.length > shortHeaderCidLength ? msg.toString('hex', 1, 1 + shortHeaderCidLength) : undefined;
  }
  // Long header: flags(1) version(4) dcid_len(1) dcid. Up to 255 bytes under RFC 8999's invariants
  // (QUIC v1 allows 20: quiche refuses longer ones of a version it speaks).
  const len = msg[5];
  if (len === undefined || msg.length < 6 + len) return undefined;
  return msg.toString('hex', 6, 6 + len);
}

export class QuicEndpoint implements ConnectionHost {
  readonly counters: EndpointCounters = {
    datagramsIn: 0,
    datagramsOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    connectionsAccepted: 0,
    connectionsClosed: 0,
    versionNegotiations: 0,
    statelessResets: 0,
    internalErrors: 0,
    dropped: {},
  };
  private readonly byCid = new Map<string, QuicConnection>();
  private readonly connections = new Set<QuicConnection>();
  private readonly attempts = new Map<string, Attempt>();
  private readonly dirty = new Set<QuicConnection>();
  private readonly timers = new TimerQueue<QuicConnection>((conn, err) => this.failed(conn, err));
  private flushScheduled = false;
  private closed = false;
  private closedResolvers: Array<() => void> = [];
  private readonly sender: BatchSender;
  private readonly resetTokens: ResetTokens;
  private loggedAt = -Infinity;
  /** Packet-path log lines suppressed since the last one written. */
  private unlogged = 0;

  constructor(private readonly opts: EndpointOptions) {
    this.resetTokens = new ResetTokens(opts.resetKey, opts.local);
    this.sender = new BatchSender(opts.fd, Math.max(opts.limits.maxUdpPayload, 1350));
    opts.socket.on('message', (msg, rinfo) => this.receive(msg, { host: rinfo.address, port: rinfo.port }));
    // A stateless reply to a forged source (broadcast, unreachable) fails asynchronously; without a
    // listener that failure would end the worker.
    opts.socket.on('error', (err) => {
      this.drop(DROP.replyNotSent);
      this.logLimited({ err: err.message }, 'stateless reply not sent');
    });
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Every live connection (for GOAWAY on drain and for stats). */
  liveConnections(): Iterable<QuicConnection> {
    return this.connections;
  }

  /** Resolves when the last connection has closed. */
  whenEmpty(): Promise<void> {
    if (this.connections.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.closedResolvers.push(resolve));
  }

  /**
   * Closes every connection still open (CONNECTION_CLOSE with `code`, so clients do not wait for
   * their idle timeout), sends those packets, and closes the socket.
   */
  close(code: number): void {
    if (this.closed) return;
    for (const conn of this.connections) conn.closeWithAppError(code, 'server shutting down');
    this.flush();
    this.closed = true;
    this.timers.close();
    this.opts.socket.close();
  }

  // ------------------------------------------------------------------ receive

  /**
   * No datagram may end the worker: whatever the packet path fails to handle is counted, logged
   * and dropped, and a connection whose state may be broken by the failure is closed.
   */
  private receive(msg: Buffer, peer: HostPort): void {
    try {
      this.onDatagram(msg, peer);
    } catch (err) {
      this.drop(DROP.internalError);
      this.internalError(err, { peer, bytes: msg.length });
    }
  }

  private onDatagram(msg: Buffer, peer: HostPort): void {
    this.counters.datagramsIn++;
    this.counters.bytesIn += msg.length;
    // Known connections are found from the DCID read here: quiche's Header.fromSlice costs ~9 µs
    // per packet in this binding, against ~0.2 µs for these few bytes (RFC 9000 §17).
    const dcidHex = dcidOf(msg, this.opts.issuer.cidLength);
    if (dcidHex === undefined) {
      this.drop(DROP.unparseable);
      return;
    }
    const conn = this.byCid.get(dcidHex);
    if (conn) {
      this.feed(conn, msg, peer);
      return;
    }
    const cidLength = this.opts.issuer.cidLength;
    if ((msg[0]! & 0x80) === 0) {
      this.sendStatelessReset(msg.subarray(1, 1 + cidLength), msg.length, peer);
      return;
    }
    // A long header. Past the CIDs its layout depends on the version (RFC 8999 §5.1), so only the
    // invariant fields are read until we know it is a version we speak.
    const version = msg.readUInt32BE(1);
    if (version === 0) {
      this.drop(DROP.serverOnlyPacketType);
      return;
    }
    if (!quiche.versionIsSupported(version)) {
      // RFC 9000 §5.2.2: only a datagram that could open a connection earns a reply (no amplification).
      if (msg.length < quiche.MIN_CLIENT_INITIAL_LEN) this.drop(DROP.shortUnknownVersion);
      else this.negotiateVersion(msg, peer);
      return;
    }
    let ty: number;
    try {
      ty = quiche.Header.fromSlice(msg, cidLength).ty;
    } catch {
      this.drop(DROP.unparseable);
      return;
    }
    if (ty === PacketType.Retry) {
      this.drop(DROP.serverOnlyPacketType);
      return;
    }
    if (ty !== PacketType.Initial) {
      // 0-RTT or Handshake for a connection we do not know (yet, or any more).
      this.drop(DROP.unknownConnection);
      return;
    }
    if (msg.length < quiche.MIN_CLIENT_INITIAL_LEN) {
      this.drop(DROP.shortInitial);
      return;
    }
    this.onClientInitial(msg, dcidHex, peer);
  }

  private onClientInitial(msg: Buffer, dcidHex: string, peer: HostPort): void {
    const { tls } = this.opts;
    if (tls.single) {
      this.accept(dcidHex, peer, this.opts.selectCertificate(undefined), [msg]);
      return;
    }
    let attempt = this.attempts.get(dcidHex);
    if (!attempt) {
      this.expireAttempts();
      if (this.attempts.size >= MAX_ATTEMPTS) {
        this.drop(DROP.tooManyPendingHandshakes);
        return;
      }
      attempt = { assembler: new ClientHelloAssembler(), datagrams: [], expiresAt: performance.now() + ATTEMPT_LIFETIME_MS };
      this.attempts.set(dcidHex, attempt);
    }
    if (attempt.datagrams.length >= MAX_DATAGRAMS_PER_ATTEMPT) {
      this.drop(DROP.clientHelloTooLong);
      return;
    }
    attempt.datagrams.push(msg);
    let result;
    try {
      result = attempt.assembler.push(msg);
    } catch (err) {
      // This datagram is dropped; the attempt lives on (a retransmission may still complete it).
      attempt.datagrams.pop();
      this.drop(DROP.undecodableInitial);
      this.opts.log.debug({ err: (err as Error).message, peer }, 'dropping client initial');
      return;
    }
    if (result === 'need-more') return;
    this.attempts.delete(dcidHex);
    // A ClientHello without a protocol we speak still goes to quiche: it answers with the TLS
    // no_application_protocol alert, which tells the client why, instead of silence.
    this.accept(dcidHex, peer, this.opts.selectCertificate(result.serverName), attempt.datagrams);
  }

  private accept(dcidHex: string, peer: HostPort, cert: CertificateConfig, datagrams: Buffer[]): void {
    const scid = this.opts.issuer.issue();
    const quic = quiche.Connection.accept(scid, null, this.opts.local, peer, this.opts.tls.configFor(cert));
    const conn = new QuicConnection(quic, scid.toString('hex'), dcidHex, this.opts.local, peer, this);
    conn.cids.add(conn.id);
    conn.cids.add(dcidHex);
    this.byCid.set(conn.id, conn);
    this.byCid.set(dcidHex, conn);
    this.connections.add(conn);
    this.counters.connectionsAccepted++;
    conn.app = this.opts.createApplication(conn);
    for (const d of datagrams) this.feed(conn, d, peer);
  }

  private feed(conn: QuicConnection, msg: Buffer, peer: HostPort): void {
    try {
      conn.quic.recv(msg, { from: peer, to: this.opts.local });
      // recv succeeds for packets quiche could not decrypt, so the datagram's source proves
      // nothing: the address we report upstream (X-Forwarded-For) moves only when quiche itself
      // migrated the connection to it, which it does for authenticated packets only.
      this.followPeer(conn);
    } catch {
      // quiche already accounted for the bad packet (or closed the connection); nothing to add.
      this.drop(DROP.rejectedByQuic);
    }
    this.guard(conn, () => conn.afterReceive());
    this.wake(conn);
  }

  /** Drains quiche's path events (they queue up otherwise) and follows the peer it migrated to. */
  private followPeer(conn: QuicConnection): void {
    for (let ev = conn.quic.pathEventNext(); ev; ev = conn.quic.pathEventNext()) {
      if (ev.type === 'PeerMigrated') conn.peer = ev.new;
    }
  }

  /** Runs connection work; a failure closes that connection (INTERNAL_ERROR) and spares the rest. */
  private guard(conn: QuicConnection, work: () => void): void {
    try {
      work();
    } catch (err) {
      this.failed(conn, err);
    }
  }

  private failed(conn: QuicConnection, err: unknown): void {
    this.internalError(err, { conn: conn.id });
    conn.closeOnInternalError();
  }

  private internalError(err: unknown, context: Record<string, unknown>): void {
    this.counters.internalErrors++;
    this.logLimited({ ...context, err }, 'packet path failure (dropped, worker keeps serving)');
  }

  /** Logs at most one line per interval: whatever a flood of packets provokes must not flood the log. */
  private logLimited(context: Record<string, unknown>, msg: string): void {
    const now = performance.now();
    if (now - this.loggedAt < PACKET_PATH_LOG_INTERVAL_MS) {
      this.unlogged++;
      return;
    }
    this.opts.log.error({ ...context, unlogged: this.unlogged }, msg);
    this.loggedAt = now;
    this.unlogged = 0;
  }

  // ------------------------------------------------------------------ send

  wake(conn: QuicConnection): void {
    if (this.closed) return;
    this.dirty.add(conn);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.closed) return;
    for (const conn of this.dirty) {
      this.dirty.delete(conn);
      this.guard(conn, () => this.flushConnection(conn));
    }
    this.sender.flush();
  }

  private flushConnection(conn: QuicConnection): void {
    if (conn.closed) return;
    const q = conn.quic;
    const sender = this.sender;
    for (;;) {
      let slot = sender.slot();
      if (!slot) {
        sender.flush();
        slot = sender.slot()!;
      }
      let res;
      try {
        res = q.send(slot);
      } catch (err) {
        this.opts.log.warn({ conn: conn.id, err: (err as Error).message }, 'quic send failed');
        break;
      }
      if (res === null) break;
      sender.commit(res[0], res[1].to);
      this.counters.datagramsOut++;
      this.counters.bytesOut += res[0];
    }
    if (q.isEstablished()) this.offerCids(conn);
    this.collectRetiredCids(conn);
    if (q.isClosed()) {
      this.onClosed(conn);
      return;
    }
    this.timers.schedule(conn, q.timeout());
  }

  private offerCids(conn: QuicConnection): void {
    const q = conn.quic;
    while (conn.cids.size < 2 + EXTRA_CIDS && q.sourceCidsLeft() > 0) {
      const cid = this.opts.issuer.issue();
      const token = this.resetTokens.tokenBigInt(cid);
      try {
        q.newSourceCid(cid, token, false);
      } catch {
        // Not expected while sourceCidsLeft() > 0; the peer just has fewer spare CIDs.
        this.drop(DROP.cidNotOffered);
        return;
      }
      const hex = cid.toString('hex');
      conn.cids.add(hex);
      this.byCid.set(hex, conn);
    }
  }

  private collectRetiredCids(conn: QuicConnection): void {
    for (let cid = conn.quic.retiredScidNext(); cid !== null; cid = conn.quic.retiredScidNext()) {
      const hex = Buffer.from(cid).toString('hex');
      conn.cids.delete(hex);
      this.byCid.delete(hex);
    }
  }

  private onClosed(conn: QuicConnection): void {
    conn.closed = true;
    this.timers.schedule(conn, undefined);
    for (const hex of conn.cids) if (this.byCid.get(hex) === conn) this.byCid.delete(hex);
    this.connections.delete(conn);
    this.counters.connectionsClosed++;
    try {
      conn.app?.onClosed();
    } catch (err) {
      this.internalError(err, { conn: conn.id });
    }
    if (this.connections.size === 0) {
      const resolvers = this.closedResolvers;
      this.closedResolvers = [];
      for (const r of resolvers) r();
    }
  }

  // ------------------------------------------------------------------ stateless replies

  /** Answers a long header of a version we do not speak; `msg` holds at least its invariant fields. */
  private negotiateVersion(msg: Buffer, peer: HostPort): void {
    const dcidEnd = 6 + msg[5]!;
    const scidLength = msg[dcidEnd];
    if (scidLength === undefined || msg.length < dcidEnd + 1 + scidLength) {
      this.drop(DROP.unparseable);
      return;
    }
    const dcid = msg.subarray(6, dcidEnd);
    const scid = msg.subarray(dcidEnd + 1, dcidEnd + 1 + scidLength);
    const out = Buffer.allocUnsafe(VERSION_NEGOTIATION_MAX);
    const len = quiche.negotiateVersion(scid, dcid, out);
    this.counters.versionNegotiations++;
    this.opts.socket.send(out.subarray(0, len), peer.port, peer.host);
  }

  private sendStatelessReset(dcid: Buffer, receivedLength: number, peer: HostPort): void {
    // Must be shorter than what triggered it (no amplification loops) and at least 21 bytes.
    const len = Math.min(receivedLength - 1, 43);
    if (len < 21 || dcid.length !== this.opts.issuer.cidLength) {
      this.drop(DROP.unknownConnection);
      return;
    }
    const pkt = randomBytes(len);
    pkt[0] = (pkt[0]! & 0x3f) | 0x40;
    this.resetTokens.token(dcid).copy(pkt, len - 16);
    this.counters.statelessResets++;
    this.opts.socket.send(pkt, peer.port, peer.host);
  }

  private expireAttempts(): void {
    const now = performance.now();
    for (const [key, a] of this.attempts) {
      if (a.expiresAt > now) break; // insertion order = expiry order
      this.attempts.delete(key);
    }
  }

  private drop(reason: DropReason): void {
    this.counters.dropped[reason] = (this.counters.dropped[reason] ?? 0) + 1;
  }
}
