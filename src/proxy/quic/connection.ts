/**
 * One QUIC connection: the quiche state machine plus what the endpoint needs around it (our CIDs,
 * the peer address, the timer) and the application (HTTP/3) it feeds. The application reads and
 * writes streams through this object; writes made outside a receive (e.g. when upstream data
 * arrives) call `wake()` so the endpoint flushes packets on the next tick.
 */
import type { TimerOwner } from './timer-queue.js';
import { Shutdown, type HostPort, type QuicheConnection, type QuicheStats } from './native.js';
import { ReadableStreams } from './readable-streams.js';

/**
 * Why the endpoint itself ended the connections it still held when it closed: the worker's drain
 * ran out of drain_timeout, or its start failed. Connections that end by themselves (either
 * side's CONNECTION_CLOSE, the idle timeout, a stateless reset) have none.
 */
export type EndpointShutdown = 'drain timeout' | 'start failed';

/** What runs on top of a QUIC connection (the HTTP/3 session). */
export interface QuicApplication {
  /** Handshake complete (or 0-RTT keys available): open control streams. */
  onReady(): void;
  /**
   * The handshake completed (called once, after onReady): the client is authenticated as the
   * holder of its keys, so what it sends from now on is no replay. Requests held back from
   * early data may go on.
   */
  onHandshakeComplete(): void;
  onStreamReadable(streamId: number): void;
  /**
   * The stream has flow-control credit: push what waits for it. Returns true when QUIC took none
   * of the bytes waiting although the stream has credit: the connection's send capacity is used
   * up, so no other stream can be written either until more packets arrive.
   */
  onStreamWritable(streamId: number): boolean;
  /**
   * The streams whose bytes (or FIN) wait for flow-control credit, in the order they should get
   * it; empty when none.
   */
  streamsAwaitingCredit(): readonly number[];
  /** Packets were processed (ACKs may have completed streams). */
  afterPackets?(): void;
  /**
   * True while a response is being written (started, not complete) or bytes wait for credit: the
   * peer's ACKs may let quiche send more at once, so its packets are not held back.
   */
  readonly sending: boolean;
  /**
   * The connection is gone (closed, timed out or drained). Release everything. `shutdown` when the
   * endpoint closed it at its own close(), and why.
   */
  onClosed(shutdown?: EndpointShutdown): void;
}

const TRANSPORT_INTERNAL_ERROR = 0x1;
/** The two low bits of a stream ID: who opened it, and whether it is unidirectional (RFC 9000 §2.1). */
const STREAM_DIRECTION_MASK = 0x3;
const SERVER_UNI = 0x3;

/**
 * What an application (HTTP/3) uses of its QUIC connection: stream I/O and the connection's facts.
 * QuicConnection implements it over quiche; the in-memory tests drive the HTTP/3 layer through it.
 */
export interface QuicStreams {
  /** Hex of the first CID we issued: the connection's name in logs. */
  readonly id: string;
  /** The client's address (the last one it sent an authenticated packet from). */
  readonly peer: HostPort;
  /** Handshake complete or 0-RTT keys available: streams may be opened. */
  readonly isReady: boolean;
  /**
   * True while the connection runs on 0-RTT keys (the handshake is not complete): what the client
   * sent so far may be a replay (RFC 8446 §8, RFC 9001 §9.2).
   */
  readonly inEarlyData: boolean;
  /** Smoothed round-trip time of the active path in ms (0 before a sample). */
  readonly rttMs: number;
  /** Either side sent CONNECTION_CLOSE (closing or draining): nothing on the streams matters any more. */
  readonly closing: boolean;
  /** Reads into `buf`: [bytes, fin], or null when nothing is buffered. Throws on RESET_STREAM. */
  streamRecv(streamId: number, buf: Uint8Array): [number, boolean] | null;
  /** Writes as much of `data` as flow control allows; null when the stream has no credit at all. Throws when stopped or reset. */
  streamSend(streamId: number, data: Uint8Array, fin: boolean): number | null;
  /** True once the stream carries nothing more from us (peer STOP_SENDING, or complete and forgotten). */
  sendClosed(streamId: number): boolean;
  resetStream(streamId: number, code: number): void;
  stopSending(streamId: number, code: number): void;
  closeWithAppError(code: number, reason?: string): void;
  /** Ask for a flush of this connection's packets (e.g. after reading freed flow-control credit). */
  wake(): void;
}

export interface ConnectionHost {
  /** Ask for a flush of this connection's packets on the next tick. */
  wake(conn: QuicConnection): void;
}

export class QuicConnection implements TimerOwner, QuicStreams {
  deadline: number | undefined;
  app: QuicApplication | undefined;
  /** Hex of every server CID that routes to this connection (for the endpoint's table). */
  readonly cids = new Set<string>();
  readonly openedAt = Date.now();
  /** How far the TLS handshake is, as the application sees it. */
  private handshake: 'in-progress' | 'early-data' | 'complete' = 'in-progress';
  private readonly readableStreams = new ReadableStreams();
  closed = false;
  /**
   * Since the last flush: whether something other than received packets asked for one (the
   * application wrote, a timer fired), and how many received datagrams brought stream data. The
   * endpoint may hold back the ACK for one such datagram until the answer can carry it.
   */
  sendWanted = false;
  dataDatagrams = 0;
  /** When a held-back ACK must go out at the latest (the endpoint's second timer queue). */
  readonly ackHold: TimerOwner = { deadline: undefined, onDeadline: () => this.wake() };
  /** Our unidirectional stream whose capacity tells the connection's: bytes written to it, and the peer's initial credit for it. */
  private probe: { readonly id: number; written: number; readonly credit: number } | undefined;

  constructor(
    readonly quic: QuicheConnection,
    /** Hex of the first CID we issued: the connection's name in logs. */
    readonly id: string,
    /** Hex of the client-chosen DCID of its first Initial (later Initials may still carry it). */
    readonly originalDcid: string,
    readonly local: HostPort,
    public peer: HostPort,
    private readonly host: ConnectionHost,
  ) {}

  onDeadline(): void {
    this.quic.onTimeout();
    this.host.wake(this);
  }

  /**
   * Makes quiche elect a usable active path if it has none (a failed path became active again):
   * its onTimeout does that after whatever timers are due, which it would handle now or soon anyway.
   */
  ensureActivePath(): void {
    this.quic.onTimeout();
  }

  /**
   * Called by the endpoint after packets were fed to quiche. True when a stream had bytes (or its
   * end) for the application: the peer sent something it expects an answer or an ACK for.
   */
  afterReceive(): boolean {
    const q = this.quic;
    const app = this.app;
    if (!app) return false;
    if (this.handshake !== 'complete') {
      const before = this.handshake;
      // Only forward: once on 0-RTT keys, the connection stays "early" until the handshake completes.
      if (q.isEstablished()) this.handshake = 'complete';
      else if (q.isInEarlyData()) this.handshake = 'early-data';
      if (before === 'in-progress' && this.handshake !== 'in-progress') app.onReady();
      // Before reading: streams read below in the same turn already count as after the handshake.
      if (this.handshake === 'complete') app.onHandshakeComplete();
    }
    if (this.handshake === 'in-progress') return false;
    // isReadable is one cheap call, and most packets (ACKs, flow-control updates) leave nothing to read.
    let read = false;
    if (q.isReadable()) {
      const found = this.readableStreams.collect(q);
      for (const id of found) app.onStreamReadable(id);
      for (const id of this.readableStreams.missed(q, found)) app.onStreamReadable(id);
      read = true;
    }
    // The waiting streams that have credit (stream-level, and connection capacity left) get it in
    // turn; once one takes nothing, or the connection's capacity is used up, the rest wait for the
    // next packet. quiche's writable() would list the same streams, but as a napi-rs generator it
    // costs ~50 µs per call, on every received packet of a bulk transfer; a capacity query ~0.2 µs.
    // Without the connection check, a hundred responses waiting meant a hundred capacity queries
    // per ACK, all but the first few answering 0.
    const waiting = app.streamsAwaitingCredit();
    if (waiting.length > 0 && this.connectionCapacityLeft()) {
      for (const id of waiting) {
        if (!this.mayTakeBytes(id)) continue;
        if (app.onStreamWritable(id) || !this.connectionCapacityLeft()) break;
      }
    }
    app.afterPackets?.();
    return read;
  }

  /**
   * True once quiche carries nothing more on the stream: the peer stopped it (STOP_SENDING), or
   * quiche forgot it because it is complete (everything we sent acknowledged, the peer's side
   * finished or reset). quiche answers both by failing a capacity query.
   */
  sendClosed(streamId: number): boolean {
    // The answer for a finished stream is an exception (once per request): without a stack trace
    // it costs less than half as much (~6 µs instead of ~13 µs).
    const stackTraceLimit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      this.quic.streamCapacity(streamId);
      return false;
    } catch {
      return true;
    } finally {
      Error.stackTraceLimit = stackTraceLimit;
    }
  }

  /**
   * The stream has credit now (min of its own and the connection's), or writing to it fails
   * (stopped, reset): either way its writer has something to learn from a write.
   */
  private mayTakeBytes(streamId: number): boolean {
    try {
      return this.quic.streamCapacity(streamId) > 0;
    } catch {
      return true;
    }
  }

  get closing(): boolean {
    return this.closed || this.quic.isDraining() || this.quic.isClosed();
  }

  /**
   * False when quiche's send capacity for the connection (congestion window and connection-level
   * flow control) is used up, so that no stream can take a byte until more packets arrive; true
   * when some is left or when that cannot be told. quiche answers a stream's capacity as the
   * minimum of the connection's and the stream's own credit, so the probe is one of our
   * unidirectional streams while fewer bytes were written to it than the peer's initial credit for
   * such streams (credit only grows): its own credit is then certainly left.
   */
  private connectionCapacityLeft(): boolean {
    const probe = this.probe;
    return probe === undefined || probe.written >= probe.credit || this.mayTakeBytes(probe.id);
  }

  get isReady(): boolean {
    return this.handshake !== 'in-progress';
  }

  get inEarlyData(): boolean {
    return this.handshake === 'early-data';
  }

  get rttMs(): number {
    return this.quic.pathStats()[0]?.rtt ?? 0;
  }

  /** Ask the endpoint to flush this connection's packets (e.g. after reading freed flow-control credit). */
  wake(): void {
    this.host.wake(this);
  }

  // --- stream I/O for the application ---

  /** Reads into `buf`: [bytes, fin], or null when nothing is buffered. Throws on RESET_STREAM. */
  streamRecv(streamId: number, buf: Uint8Array): [number, boolean] | null {
    return this.quic.streamRecv(streamId, buf);
  }

  /**
   * Writes as much of `data` as flow control allows: the byte count accepted, or null when the
   * stream has no credit at all. Throws when the stream is stopped or reset.
   */
  streamSend(streamId: number, data: Uint8Array, fin: boolean): number | null {
    const n = this.quic.streamSend(streamId, data, fin);
    if ((streamId & STREAM_DIRECTION_MASK) === SERVER_UNI) this.wroteOwnUni(streamId, n ?? 0);
    this.host.wake(this);
    return n;
  }

  streamCapacity(streamId: number): number {
    return this.quic.streamCapacity(streamId);
  }

  /** The first of our unidirectional streams written to becomes the capacity probe (connectionCapacityLeft). */
  private wroteOwnUni(streamId: number, bytes: number): void {
    this.probe ??= { id: streamId, written: 0, credit: this.quic.stats().peerInitialMaxStreamDataUni };
    if (this.probe.id === streamId) this.probe.written += bytes;
  }

  /** Reset our sending side (RESET_STREAM) with an application error code. */
  resetStream(streamId: number, code: number): void {
    this.shutdown(streamId, Shutdown.Write, code);
  }

  /** Ask the peer to stop sending (STOP_SENDING) with an application error code. */
  stopSending(streamId: number, code: number): void {
    this.shutdown(streamId, Shutdown.Read, code);
  }

  private shutdown(streamId: number, direction: number, code: number): void {
    try {
      this.quic.streamShutdown(streamId, direction, code);
    } catch {
      // Already finished or reset in that direction: nothing left to shut down.
    }
    this.host.wake(this);
  }

  /** Close with an application error (CONNECTION_CLOSE of type 0x1d). */
  closeWithAppError(code: number, reason = ''): void {
    try {
      this.quic.close(true, code, Buffer.from(reason));
    } catch {
      // Already closing.
    }
    this.host.wake(this);
  }

  /**
   * Close after a failure in our own code (transport INTERNAL_ERROR, RFC 9000 §20.1): the state of
   * this connection can no longer be trusted, the worker's other connections carry on.
   */
  closeOnInternalError(): void {
    try {
      this.quic.close(false, TRANSPORT_INTERNAL_ERROR, Buffer.from('internal error'));
    } catch {
      // Already closing.
    }
    this.host.wake(this);
  }

  stats(): QuicheStats {
    return this.quic.stats();
  }
}
