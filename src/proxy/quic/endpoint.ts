/**
 * The QUIC endpoint: one UDP socket, the connections on it, and the packet loop.
 *
 *   datagram → header → (known CID? that connection : new attempt → token? → admission
 *   (accept | Retry | CONNECTION_REFUSED) → SNI → accept) → quiche.recv
 *   → application callbacks → flush (quiche.send until done or the 3x allowance is used) → socket
 *
 * Until its handshake completes a connection is on probation: bytes sent ≤ 3 × bytes received
 * unless a Retry token proved the address, and it is discarded when the handshake timeout passes.
 *
 * Sends are flushed once per event-loop turn for every connection that was touched, so a burst of
 * received datagrams produces one drain of `send()` per connection, not one per datagram. The
 * ACK for a lone datagram that brought stream data (a request) is held back for up to
 * ACK_HOLD_MS, so that the answer carries it instead of a packet of its own (below).
 */
import type dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { errnoText } from '../../sys/libc.js';
import type { CidIssuer } from '../../grm/interface.js';
import type { CertificateConfig, QuicLimits } from '../config/types.js';
import { SweepTimer } from '../timers/sweep-timer.js';
import { BatchReceiver, type BatchReceiverCounters } from '../net/batch-receiver.js';
import { BatchSender, type BatchSenderCounters } from '../net/batch-sender.js';
import { QuicConnection, type ConnectionHost, type EndpointShutdown, type QuicApplication } from './connection.js';
import { DROP, type DropCounts, type DropReason } from './drop-reasons.js';
import { admitEarlyData, readFirstInitial } from './early-data-admission.js';
import { AmplificationBudget, type WorkerAdmission } from './admission.js';
import { PacketType, quiche, type HostPort, type QuicheConnection, type QuicheHeader } from './native.js';
import { PendingClientHellos } from './pending-handshakes.js';
import type { ReplayGuard } from './replay-guard.js';
import { ResetTokens } from './reset-tokens.js';
import type { RetryTokens } from './retry-token.js';
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
  /** Retry tokens; their key is the same in every worker and generation. */
  readonly retryTokens: RetryTokens;
  /** The worker's connection limits, shared by its listeners. */
  readonly admission: WorkerAdmission;
  readonly createApplication: (conn: QuicConnection) => QuicApplication;
  readonly log: Logger;
  /** The worker's 0-RTT replay guard (shared by its endpoints); absent when early data is off. */
  readonly replayGuard?: ReplayGuard;
  /**
   * Set on the default site's workers when there are several sites: for a ClientHello's SNI that
   * belongs to another site, an issuer of CIDs routing to one of that site's workers (else
   * undefined). The kernel steers by the SNI of the first datagram only; a ClientHello whose SNI is
   * in a later one lands here, and a Retry naming such a CID moves the attempt to its site.
   */
  readonly siteOf?: (sni: string | undefined) => CidIssuer | undefined;
}

export interface EndpointCounters {
  datagramsIn: number;
  datagramsOut: number;
  bytesIn: number;
  bytesOut: number;
  connectionsAccepted: number;
  /** Handshakes that completed (connectionsAccepted counts attempts). */
  handshakesCompleted: number;
  connectionsClosed: number;
  versionNegotiations: number;
  statelessResets: number;
  /** Exceptions caught on the packet path (each one a bug to fix; the datagram or connection is dropped). */
  internalErrors: number;
  dropped: DropCounts;
}

/** A connection's standing with the endpoint: on probation until its handshake completes. */
type Phase =
  | { readonly kind: 'handshaking'; readonly startedAt: number; readonly budget: AmplificationBudget }
  | { readonly kind: 'established' };

interface Admitted {
  readonly ip: string;
  phase: Phase;
}

/** Token validation of a client Initial. */
type Validation = { readonly kind: 'none' } | { readonly kind: 'valid'; readonly odcid: Buffer };

/**
 * Largest Version Negotiation reply: RFC 8999 lets a long header of an unknown version carry CIDs
 * of up to 255 bytes each, and the reply echoes both: 1 + 4 + (1 + 255) * 2 bytes of header, then
 * 4 bytes per version quiche lists (a handful). It never exceeds the ≥1200-byte datagram it answers.
 */
const VERSION_NEGOTIATION_MAX = 1200;
/** At most one log line per this interval for failures on the packet path. */
const PACKET_PATH_LOG_INTERVAL_MS = 1000;
/** Smallest datagram we let quiche fill while the allowance is short (a padded Initial's size). */
const MIN_SEND_ALLOWANCE = 1200;
/**
 * How long the ACK of a lone datagram with stream data may wait for our answer to carry it. quiche
 * ACKs whenever it sends, so flushing right after a request costs a packet with only an ACK (a
 * sendmmsg, and a wakeup of the client) just before the response goes out. RFC 9000 §13.2.1 lets
 * the ACK of 1-RTT packets wait up to max_ack_delay (quiche's default, 25 ms, which we advertise),
 * and asks for one at least every second ack-eliciting packet: a second such datagram flushes.
 */
const ACK_HOLD_MS = 5;
/** RFC 9000 §20.1. */
const CONNECTION_REFUSED = 0x2;
/** A Retry packet: header, two CIDs of ≤ 20 bytes, our token (< 100 bytes), integrity tag. */
const RETRY_PACKET_MAX = 512;
/** Extra CIDs offered to each peer (it may use them after migration or NAT rebinding). */
const EXTRA_CIDS = 2;
/**
 * A receive slot holds any UDP datagram (65,527 bytes at most), as dgram does: nothing is cut.
 * The slots are 2 MiB of address space per endpoint, but only the pages datagrams were written to
 * become memory (a 1350-byte datagram touches one page of its slot).
 */
const RECEIVE_SLOT = 65_536;
const RECEIVE_SLOTS = 32;

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
    handshakesCompleted: 0,
    connectionsClosed: 0,
    versionNegotiations: 0,
    statelessResets: 0,
    internalErrors: 0,
    dropped: {},
  };
  private readonly byCid = new Map<string, QuicConnection>();
  private readonly connections = new Set<QuicConnection>();
  private readonly pending: PendingClientHellos;
  private readonly admitted = new Map<QuicConnection, Admitted>();
  /** Connections still handshaking, in the order they started (so the sweep stops early). */
  private readonly handshaking = new Set<QuicConnection>();
  /**
   * Armed for the next handshake timeout or pending ClientHello expiry, not on an interval: a
   * worker's event loop wakes for nothing while no attempt is due (an idle wake-up costs ~0.1 ms
   * of CPU here, and Node never un-schedules a cleared timer's wake-up).
   */
  private readonly expiry = new SweepTimer((now) => this.sweep(now));
  private readonly dirty = new Set<QuicConnection>();
  private readonly timers = new TimerQueue<QuicConnection>((conn, err) => this.failed(conn, err));
  private readonly ackHolds = new TimerQueue((_, err) => this.internalError(err, { in: 'ack hold' }));
  private flushScheduled = false;
  private closed = false;
  private closedResolvers: Array<() => void> = [];
  private readonly sender: BatchSender;
  private readonly receiver: BatchReceiver;
  private readonly deliverBatched = (msg: Buffer, peer: HostPort): void => this.receive(msg, peer);
  private readonly resetTokens: ResetTokens;
  private loggedAt = -Infinity;
  private gsoFailureLogged = false;
  /** Packet-path log lines suppressed since the last one written. */
  private unlogged = 0;

  constructor(private readonly opts: EndpointOptions) {
    this.resetTokens = new ResetTokens(opts.resetKey, opts.local);
    const l = opts.limits;
    this.pending = new PendingClientHellos({ maxEntries: l.pendingClientHellos, maxBytes: l.pendingClientHelloBytes, maxAgeMs: l.pendingClientHelloTimeoutMs }, (why) =>
      this.drop(why === 'evicted' ? DROP.pendingClientHelloEvicted : DROP.pendingClientHelloExpired),
    );
    this.sender = new BatchSender(opts.fd, Math.max(opts.limits.maxUdpPayload, 1350), {
      gso: opts.limits.gso,
      onGsoFailure: (errno, disabled) => this.onGsoFailure(errno, disabled),
    });
    if (opts.limits.gso === 'auto' && !this.sender.gsoEnabled) opts.log.info({ local: opts.local }, 'UDP GSO (UDP_SEGMENT) not supported by this kernel: one datagram per packet');
    this.receiver = new BatchReceiver(opts.fd, RECEIVE_SLOT, RECEIVE_SLOTS);
    opts.socket.on('message', (msg, rinfo) => {
      this.receive(msg, { host: rinfo.address, port: rinfo.port });
      this.drainQueued();
    });
    // A stateless reply to a forged source (broadcast, unreachable) fails asynchronously; without a
    // listener that failure would end the worker.
    opts.socket.on('error', (err) => {
      this.drop(DROP.replyNotSent);
      this.logLimited({ err: err.message }, 'stateless reply not sent');
    });
  }

  /** The socket's send side: packets, syscalls, drops, UDP GSO sends and fallbacks. */
  get sendCounters(): Readonly<BatchSenderCounters> {
    return this.sender.counters;
  }

  /** The socket's batched receive side (what dgram did not read itself). */
  get receiveCounters(): Readonly<BatchReceiverCounters> {
    return this.receiver.counters;
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
   * their idle timeout), sends those packets, and closes the socket. The connections end then and
   * there: with the socket and our timers gone nothing can reach them or move them on, so their
   * applications are told now (open requests are aborted, their timers cleared) and whenEmpty()
   * resolves; nothing of this endpoint runs after close(). `shutdown` tells them why (their
   * requests are logged with it).
   */
  close(code: number, shutdown: EndpointShutdown): void {
    if (this.closed) return;
    for (const conn of this.connections) conn.closeWithAppError(code, 'server shutting down');
    this.flush();
    this.closed = true;
    this.expiry.stop();
    this.timers.close();
    this.ackHolds.close();
    this.opts.socket.close();
    for (const conn of [...this.connections]) this.onClosed(conn, shutdown);
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

  /** The rest of the socket's queue, read in batches after dgram's datagram (BatchReceiver). */
  private drainQueued(): void {
    if (!this.closed) this.receiver.drainAfterRead(this.deliverBatched);
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
    let hdr: QuicheHeader;
    try {
      hdr = quiche.Header.fromSlice(msg, cidLength);
    } catch {
      this.drop(DROP.unparseable);
      return;
    }
    const ty = hdr.ty;
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
    this.onClientInitial(msg, dcidHex, hdr, peer);
  }

  private onClientInitial(msg: Buffer, dcidHex: string, hdr: QuicheHeader, peer: HostPort): void {
    const { tls } = this.opts;
    // The ClientHello is read for its SNI to choose a certificate, or a site.
    const readHello = !tls.single || this.opts.siteOf !== undefined;
    // The rest of a split ClientHello (or a retransmit) belongs to an attempt already admitted.
    const continuing = readHello && this.pending.has(dcidHex);
    let odcid: Buffer | undefined;
    if (!continuing) {
      const validation = this.validateToken(hdr, peer);
      odcid = validation.kind === 'valid' ? validation.odcid : undefined;
      const decision = this.opts.admission.decide(peer.host, odcid !== undefined);
      if (decision.action === 'retry') {
        this.sendRetry(hdr, peer);
        return;
      }
      if (decision.action === 'refuse') {
        this.drop(decision.limit === 'connections' ? DROP.refusedMaxConnections : decision.limit === 'handshakes' ? DROP.refusedMaxHandshakes : DROP.refusedMaxConnectionsPerIp);
        this.refuse(msg, peer);
        return;
      }
    }
    if (!readHello) {
      this.acceptFirstInitial(dcidHex, peer, msg, odcid);
      return;
    }
    const result = this.pending.push(dcidHex, msg, performance.now(), odcid);
    this.syncPending();
    // Expiry must not wait for the next attempt to arrive: a flood that stops leaves nothing behind.
    this.expiry.ensure(this.pending.nextExpiry);
    switch (result.kind) {
      case 'need-more':
        return;
      case 'too-long':
        this.drop(DROP.clientHelloTooLong);
        return;
      case 'undecodable':
        this.drop(DROP.undecodableInitial);
        this.opts.log.debug({ err: result.error.message, peer }, 'dropping client initial');
        return;
      case 'complete': {
        // Only once per attempt: a client follows one Retry only (RFC 9000 §17.2.5.2); after one
        // (ours or the site's own) the attempt is served here, and a request for another site's
        // name is answered 421.
        const site = result.odcid === undefined ? this.opts.siteOf?.(result.hello.serverName) : undefined;
        if (site) {
          this.drop(DROP.sentToSite);
          this.sendRetry(hdr, peer, site);
          return;
        }
        // A ClientHello without a protocol we speak still goes to quiche: it answers with the TLS
        // no_application_protocol alert, which tells the client why, instead of silence.
        this.accept(dcidHex, peer, this.opts.selectCertificate(result.hello.serverName), result.datagrams, result.odcid, admitEarlyData(this.opts.replayGuard, result.assembler));
      }
    }
  }

  /** A token that opens, for this address, naming the DCID the client used: its address is proven. */
  private validateToken(hdr: QuicheHeader, peer: HostPort): Validation {
    const token = hdr.token;
    if (!token || token.length === 0) return { kind: 'none' };
    const opened = this.opts.retryTokens.open(token, peer);
    if (opened.kind === 'valid' && Buffer.from(hdr.dcid).equals(opened.contents.retryScid)) return { kind: 'valid', odcid: opened.contents.odcid };
    // Forged, stale, or a NEW_TOKEN of another server: proceed as without one (RFC 9000 §8.1.3).
    this.drop(DROP.invalidRetryToken);
    return { kind: 'none' };
  }

  /**
   * RFC 9000 §8.1.2: a stateless Retry whose token proves the address when it comes back, to the
   * socket `to` issues CIDs for (ours; or another site's worker, which any token opens for).
   */
  private sendRetry(hdr: QuicheHeader, peer: HostPort, to: CidIssuer = this.opts.issuer): void {
    const retryScid = to.issue();
    const odcid = Buffer.from(hdr.dcid);
    const token = this.opts.retryTokens.seal(peer, { odcid, retryScid });
    const out = Buffer.allocUnsafe(RETRY_PACKET_MAX);
    const len = quiche.retry(hdr.scid, odcid, retryScid, token, hdr.version, out);
    if (to === this.opts.issuer) this.drop(DROP.retrySent);
    this.counters.datagramsOut++;
    this.counters.bytesOut += len;
    this.opts.socket.send(out.subarray(0, len), peer.port, peer.host);
  }

  /**
   * Over a limit without Retry: CONNECTION_REFUSED (RFC 9000 §20.1) from a throwaway quiche
   * connection that is never registered, its reply held to the 3x allowance of what arrived.
   */
  private refuse(msg: Buffer, peer: HostPort): void {
    const q = quiche.Connection.accept(this.opts.issuer.issue(), null, this.opts.local, peer, this.opts.tls.configFor(this.opts.selectCertificate(undefined), false));
    try {
      q.recv(msg, { from: peer, to: this.opts.local });
    } catch {
      // Still closable: quiche answers in whatever space it has keys for.
    }
    try {
      q.close(false, CONNECTION_REFUSED, Buffer.from('server busy'));
    } catch {
      // Already closing (e.g. quiche refused the ClientHello itself).
    }
    const budget = new AmplificationBudget(false);
    budget.onReceived(msg.length);
    const out = Buffer.allocUnsafe(Math.max(this.opts.limits.maxUdpPayload, MIN_SEND_ALLOWANCE));
    for (;;) {
      const allowance = budget.allowance;
      if (allowance < MIN_SEND_ALLOWANCE) break;
      let res;
      try {
        res = q.send(out.subarray(0, Math.min(out.length, allowance)));
      } catch {
        break;
      }
      if (res === null) break;
      budget.onSent(res[0]);
      this.counters.datagramsOut++;
      this.counters.bytesOut += res[0];
      this.opts.socket.send(Buffer.from(out.subarray(0, res[0])), peer.port, peer.host);
    }
  }

  private syncPending(): void {
    this.opts.admission.setPending(this, this.pending.size);
  }

  /**
   * The single-certificate path: accepted on the first Initial, without reading the ClientHello
   * ourselves unless the replay guard needs its random. The attempt gets the Config that accepts
   * 0-RTT and quiche reads the datagram; only if quiche went into early data (a resumed client
   * whose 0-RTT it took), or did not get through the ClientHello (split over datagrams,
   * undecryptable, or without SNI, which is how we tell), is the Initial decrypted here and the
   * guard asked (only now, after Retry validation: a client's retried Initial, same ClientHello,
   * is no replay). Should the guard refuse, the attempt starts over on the Config that refuses
   * 0-RTT: nothing was sent yet, so the client sees only that connection. A full handshake, the
   * common case, costs no second decryption. (0-RTT offered but declined by quiche spends no guard
   * entry: the guard still lets at most one connection per ClientHello into early data.)
   */
  private acceptFirstInitial(dcidHex: string, peer: HostPort, msg: Buffer, odcid: Buffer | undefined): void {
    const cert = this.opts.selectCertificate(undefined);
    const guard = this.opts.replayGuard;
    if (!guard) {
      this.accept(dcidHex, peer, cert, [msg], odcid, false);
      return;
    }
    const scid = this.scidFor(dcidHex, odcid);
    let quic = this.acceptQuic(scid, odcid, peer, cert, true);
    // quiche decrypts in place: a copy, so that the datagram can still be read, or read again.
    let rejected = this.recvFirst(quic, Buffer.from(msg), peer);
    // quiche takes the SNI when it reads the ClientHello: none means it has not read all of it
    // (or the client sent none; such a client's Initial is read here, as before).
    const helloRead = !rejected && quic.serverName() !== null;
    if ((quic.isInEarlyData() || !helloRead) && !admitEarlyData(guard, readFirstInitial(msg))) {
      quic = this.acceptQuic(scid, odcid, peer, cert, false);
      rejected = this.recvFirst(quic, msg, peer);
    }
    const conn = this.register(quic, scid, dcidHex, peer, odcid);
    this.budgetOf(conn)?.onReceived(msg.length);
    if (rejected) this.drop(DROP.rejectedByQuic);
    this.afterRecv(conn);
    this.wake(conn);
  }

  /** quiche reads a new attempt's first datagram; true if it refused it (as `feed` counts it). */
  private recvFirst(quic: QuicheConnection, msg: Buffer, peer: HostPort): boolean {
    try {
      quic.recv(msg, { from: peer, to: this.opts.local });
      return false;
    } catch {
      return true;
    }
  }

  /**
   * After a Retry the client addresses the CID our Retry named: quiche must use it as its SCID
   * (retry_source_connection_id) and echo the first DCID (original_destination_connection_id).
   */
  private scidFor(dcidHex: string, odcid: Buffer | undefined): Buffer {
    return odcid ? Buffer.from(dcidHex, 'hex') : this.opts.issuer.issue();
  }

  /** `earlyData` false: this attempt's 0-RTT is refused (replay guard), it may still resume in 1-RTT. */
  private acceptQuic(scid: Buffer, odcid: Buffer | undefined, peer: HostPort, cert: CertificateConfig, earlyData: boolean): QuicheConnection {
    return quiche.Connection.accept(scid, odcid ?? null, this.opts.local, peer, this.opts.tls.configFor(cert, earlyData));
  }

  /** `earlyData` false: this attempt's 0-RTT is refused (replay guard), it may still resume in 1-RTT. */
  private accept(dcidHex: string, peer: HostPort, cert: CertificateConfig, datagrams: Buffer[], odcid: Buffer | undefined, earlyData: boolean): void {
    const scid = this.scidFor(dcidHex, odcid);
    const conn = this.register(this.acceptQuic(scid, odcid, peer, cert, earlyData), scid, dcidHex, peer, odcid);
    for (const d of datagrams) this.feed(conn, d, peer);
  }

  /** A new attempt's connection: in the CID table, admitted (on probation), with its application. */
  private register(quic: QuicheConnection, scid: Buffer, dcidHex: string, peer: HostPort, odcid: Buffer | undefined): QuicConnection {
    const conn = new QuicConnection(quic, scid.toString('hex'), odcid ? odcid.toString('hex') : dcidHex, this.opts.local, peer, this);
    conn.cids.add(conn.id);
    conn.cids.add(dcidHex);
    this.byCid.set(conn.id, conn);
    this.byCid.set(dcidHex, conn);
    this.connections.add(conn);
    this.counters.connectionsAccepted++;
    const startedAt = performance.now();
    this.admitted.set(conn, { ip: peer.host, phase: { kind: 'handshaking', startedAt, budget: new AmplificationBudget(odcid !== undefined) } });
    this.handshaking.add(conn);
    this.expiry.ensure(startedAt + this.opts.limits.handshakeTimeoutMs);
    this.opts.admission.opened(peer.host);
    conn.app = this.opts.createApplication(conn);
    return conn;
  }

  /** The allowance of a connection still on probation; undefined once validated. */
  private budgetOf(conn: QuicConnection): AmplificationBudget | undefined {
    const phase = this.admitted.get(conn)?.phase;
    return phase?.kind === 'handshaking' ? phase.budget : undefined;
  }

  /** Handshake complete: the address is validated (RFC 9000 §8.1) and the timeout no longer applies. */
  private checkEstablished(conn: QuicConnection): void {
    const a = this.admitted.get(conn);
    if (a?.phase.kind !== 'handshaking' || !conn.quic.isEstablished()) return;
    a.phase = { kind: 'established' };
    this.handshaking.delete(conn);
    this.counters.handshakesCompleted++;
    this.opts.admission.established();
  }

  /**
   * Handshake timeouts and pending ClientHello expiry, on a timer: nothing waits for more traffic.
   * Returns when the next one is due (the oldest attempt left of either kind), if any.
   */
  private sweep(now: number): number | undefined {
    let next: number | undefined;
    try {
      this.pending.expire(now);
      this.syncPending();
      next = this.pending.nextExpiry;
      const limit = this.opts.limits.handshakeTimeoutMs;
      for (const conn of this.handshaking) {
        const phase = this.admitted.get(conn)?.phase;
        if (phase?.kind !== 'handshaking') {
          this.handshaking.delete(conn);
          continue;
        }
        if (now - phase.startedAt < limit) {
          if (next === undefined || phase.startedAt + limit < next) next = phase.startedAt + limit;
          break;
        }
        // Silently: a source that never completes is likely spoofed, and every reply is amplification.
        this.drop(DROP.handshakeTimeout);
        this.onClosed(conn);
      }
    } catch (err) {
      this.internalError(err, { in: 'sweep' });
      // Try again soon rather than never: the attempts left must still expire.
      next = now + 1000;
    }
    return this.closed ? undefined : next;
  }

  private feed(conn: QuicConnection, msg: Buffer, peer: HostPort): void {
    this.budgetOf(conn)?.onReceived(msg.length);
    // Path events and path changes arise only from a datagram of another address, so the common
    // case skips the extra native calls.
    const elsewhere = peer.port !== conn.peer.port || peer.host !== conn.peer.host;
    try {
      conn.quic.recv(msg, { from: peer, to: this.opts.local });
      // recv succeeds for packets quiche could not decrypt, so the datagram's source proves
      // nothing: the address we report upstream (X-Forwarded-For) moves only when quiche itself
      // migrated the connection to it, which it does for authenticated packets only.
      if (elsewhere) this.followPeer(conn);
    } catch {
      // quiche already accounted for the bad packet (or closed the connection); nothing to add.
      this.drop(DROP.rejectedByQuic);
    }
    if (this.afterRecv(conn)) conn.dataDatagrams++;
    if (elsewhere) this.settlePath(conn);
    else this.markDirty(conn);
  }

  /**
   * What follows quiche's read of a datagram: the handshake's progress, then the application's
   * turn. True when the datagram brought stream data.
   */
  private afterRecv(conn: QuicConnection): boolean {
    this.checkEstablished(conn);
    return this.guard(conn, () => conn.afterReceive()) === true;
  }

  /**
   * After a datagram from an address other than the connection's validated one: flush now and
   * leave quiche with a usable active path, before the next datagram is read.
   *
   * quiche 0.18 makes the path of a non-probing packet active at once, even one whose validation
   * failed (Chromium moves to a new port when its path degrades and may leave the PATH_CHALLENGE
   * unanswered; the 3x allowance of that unvalidated path runs out and quiche falls back to the old
   * path). Until the PATH_CHALLENGE it asks for again is sent, no path is usable and the next
   * non-probing packet closes the connection with PROTOCOL_VIOLATION (InvalidState). The flush
   * sends that challenge; should it not fit (congestion window), quiche falls back again.
   */
  private settlePath(conn: QuicConnection): void {
    this.dirty.delete(conn);
    this.guard(conn, () => this.flushConnection(conn));
    this.sender.flush();
    if (conn.closed) return;
    this.guard(conn, () => conn.ensureActivePath());
    this.wake(conn);
  }

  /** Drains quiche's path events (they queue up otherwise), logs them, and follows the peer it migrated to. */
  private followPeer(conn: QuicConnection): void {
    for (let ev = conn.quic.pathEventNext(); ev; ev = conn.quic.pathEventNext()) {
      // Debug only: a client's port migrations (and their validation) explain what it did next.
      this.opts.log.debug({ conn: conn.id, peer: conn.peer, event: ev }, 'path event');
      if (ev.type === 'PeerMigrated') conn.peer = ev.new;
    }
  }

  /** Runs connection work; a failure closes that connection (INTERNAL_ERROR) and spares the rest. */
  private guard<R>(conn: QuicConnection, work: () => R): R | undefined {
    try {
      return work();
    } catch (err) {
      this.failed(conn, err);
      return undefined;
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

  /** A flush of `conn` on this turn, for something other than received packets (a write, a timer, a close). */
  wake(conn: QuicConnection): void {
    conn.sendWanted = true;
    this.markDirty(conn);
  }

  /** `conn` is flushed (or its ACK held back, see holdsAck) at the end of this event-loop turn. */
  private markDirty(conn: QuicConnection): void {
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
      this.guard(conn, () => {
        if (this.holdsAck(conn)) this.holdAck(conn);
        else this.flushConnection(conn);
      });
    }
    this.sender.flush();
    this.timers.settle();
  }

  /**
   * Only received packets asked for this flush, one datagram of them with stream data, on an
   * established connection that is not sending a response: what quiche would send now is the ACK
   * (and whatever else waits as little), which our answer can carry if it comes soon.
   */
  private holdsAck(conn: QuicConnection): boolean {
    return !conn.sendWanted && conn.dataDatagrams === 1 && this.admitted.get(conn)?.phase.kind === 'established' && conn.app !== undefined && !conn.app.sending;
  }

  private holdAck(conn: QuicConnection): void {
    if (conn.ackHold.deadline === undefined) this.ackHolds.schedule(conn.ackHold, ACK_HOLD_MS);
    // quiche's own deadline moved with what it received (the idle timer, at least).
    this.timers.schedule(conn, conn.quic.timeout());
  }

  private flushConnection(conn: QuicConnection): void {
    if (conn.closed) return;
    const q = conn.quic;
    const sender = this.sender;
    conn.sendWanted = false;
    conn.dataDatagrams = 0;
    if (conn.ackHold.deadline !== undefined) this.ackHolds.schedule(conn.ackHold, undefined);
    this.checkEstablished(conn);
    const budget = this.budgetOf(conn);
    let held = false;
    for (;;) {
      let slot = sender.slot();
      if (!slot) {
        sender.flush();
        slot = sender.slot()!;
      }
      // RFC 9000 §8.1 counted by us: quiche 0.18 exceeds 3x on its own (PTO probes).
      const allowance = budget?.allowance ?? Infinity;
      if (allowance < MIN_SEND_ALLOWANCE) {
        this.drop(DROP.amplificationLimit);
        held = true;
        break;
      }
      let res;
      try {
        res = q.send(allowance < slot.length ? slot.subarray(0, allowance) : slot);
      } catch (err) {
        this.opts.log.warn({ conn: conn.id, err: (err as Error).message }, 'quic send failed');
        break;
      }
      if (res === null) break;
      budget?.onSent(res[0]);
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
    // Held back by the allowance: quiche's timer would only ask to send again (at once, in a
    // loop); the next datagram from the peer, or the handshake timeout, is what moves it on.
    this.timers.schedule(conn, held ? undefined : q.timeout());
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

  private onClosed(conn: QuicConnection, shutdown?: EndpointShutdown): void {
    if (conn.closed) return;
    conn.closed = true;
    this.dirty.delete(conn);
    const admitted = this.admitted.get(conn);
    if (admitted) {
      this.admitted.delete(conn);
      this.handshaking.delete(conn);
      this.opts.admission.closed(admitted.ip, admitted.phase.kind === 'handshaking');
    }
    this.timers.schedule(conn, undefined);
    this.ackHolds.schedule(conn.ackHold, undefined);
    for (const hex of conn.cids) if (this.byCid.get(hex) === conn) this.byCid.delete(hex);
    this.connections.delete(conn);
    this.counters.connectionsClosed++;
    try {
      conn.app?.onClosed(shutdown);
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

  /** Said once per endpoint (the counters keep the count): what the kernel refused, and what follows. */
  private onGsoFailure(errno: number, disabled: boolean): void {
    if (this.gsoFailureLogged) return;
    this.gsoFailureLogged = true;
    this.opts.log.warn(
      { local: this.opts.local, err: errnoText(errno) },
      disabled ? 'UDP GSO send refused for this socket: GSO off, one datagram per packet from now on' : 'UDP GSO send refused (resent one datagram per packet; GSO stays on for other sends)',
    );
  }

  private drop(reason: DropReason): void {
    this.counters.dropped[reason] = (this.counters.dropped[reason] ?? 0) + 1;
  }
}
