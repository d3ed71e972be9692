/**
 * One HTTP/3 connection (RFC 9114) on top of a QUIC connection: our control and QPACK streams,
 * the peer's unidirectional streams, request streams, and GOAWAY. Request streams are handed to
 * `RequestStream`; what happens to a request (routing, upstreams) is the handler's business.
 */
import type { RequestHandler } from '../http/exchange.js';
import { ABORT } from '../http/exchange-abort.js';
import { REFUSAL, type RefusalCounter } from '../http/refusals.js';
import type { EndpointShutdown, QuicApplication, QuicStreams } from '../quic/connection.js';
import { streamResetCode } from '../quic/native.js';
import { SweepTimer } from '../timers/sweep-timer.js';
import { H3_ERROR, H3Error } from './errors.js';
import { FRAME_TYPE, FrameReader, STREAM_TYPE, SETTINGS_ID, encodeControlStreamPreface, encodeGoaway, parseGoaway, parseSettings, parseSingleVarintPayload } from './frames.js';
import { HandshakeGate } from './handshake-gate.js';
import { HeaderBudget } from './header-budget.js';
import { DecoderStreamReceiver, EncoderStreamReceiver } from './qpack.js';
import { RequestStream, type RequestLimits, type RequestStreamOptions } from './request-stream.js';
import { StreamWriter } from './stream-writer.js';
import { decodeVarint } from '../quic/varint.js';

/** Server-initiated unidirectional stream IDs: 3, 7, 11 (RFC 9000 §2.1). */
const CONTROL_STREAM_ID = 3;
const QPACK_ENCODER_STREAM_ID = 7;
const QPACK_DECODER_STREAM_ID = 11;
const READ_CHUNK = 16 * 1024;
/**
 * A client bidirectional stream id above any a connection will reach: the first GOAWAY's limit.
 * (2^53 - 4 rather than the protocol's 2^62 - 4, so it stays an exact JS number.)
 */
const MAX_CLIENT_BIDI_ID = 2 ** 53 - 4;
/**
 * How long a drain holds its first GOAWAY for a response to travel with. Longer than a client's
 * usual pause between requests (a page's fetch loop: tens of ms); it delays an idle connection's
 * drain by this much.
 */
const GOAWAY_HOLD_MS = 1000;
/** Bounds of the wait between the two GOAWAY frames (a few RTTs in between). */
const GOAWAY_GRACE_MIN_MS = 100;
const GOAWAY_GRACE_MAX_MS = 3000;
const STOP_CHECK_INTERVAL_MS = 100;

/** Per-connection HTTP limits (config `http:`, same names; see config/REFERENCE.md). */
export interface SessionLimits extends RequestLimits {
  /** After this many requests: GOAWAY, and later streams are refused. */
  readonly maxRequestsPerConnection: number;
  /** Bytes held across all request streams whose HEADERS are incomplete. */
  readonly maxConnectionHeaderBytes: number;
}

export interface SessionOptions {
  readonly handler: RequestHandler;
  /** A handler threw (a bug): the client got a 500 or a reset; this reports it. */
  readonly onHandlerError: (err: unknown, streamId: number) => void;
  /** maxHeaderBytes is also what SETTINGS_MAX_FIELD_SECTION_SIZE announces. */
  readonly limits: SessionLimits;
  /** Called once when the connection is gone, with a summary for logs. */
  readonly onClosed?: (session: H3Session) => void;
  /** Counts what the limits and timeouts turn away (for `list`). */
  readonly refusals?: RefusalCounter;
  /** The listener's `alt-svc` value, on every response (RFC 9114 §3.1.1); none: alt_svc off. */
  readonly altSvc?: string;
}

/** A peer unidirectional stream, by what its type (the first varint, §6.2) made of it. */
type PeerUniStream =
  /** The type varint is not complete yet: its first bytes. */
  | { readonly kind: 'untyped'; readonly prefix: Buffer }
  | { readonly kind: 'control'; readonly reader: FrameReader; settings: 'awaited' | 'received' }
  | { readonly kind: 'qpack-encoder'; readonly receiver: EncoderStreamReceiver }
  | { readonly kind: 'qpack-decoder'; readonly receiver: DecoderStreamReceiver }
  /** Unknown or grease type: read and dropped (we sent STOP_SENDING). */
  | { readonly kind: 'ignored' };

type TypedUniStream = Exclude<PeerUniStream, { kind: 'untyped' }>;

const NONE_WAITING: readonly number[] = [];

const UNTYPED: PeerUniStream = { kind: 'untyped', prefix: Buffer.alloc(0) };

export class H3Session implements QuicApplication {
  private readonly requests = new Map<number, RequestStream>();
  /** Finished request streams whose response bytes quiche may still be delivering. */
  private readonly delivering = new Set<number>();
  private lastStopCheck = 0;
  private stopCheckTimer: NodeJS.Timeout | undefined;
  private readonly uni = new Map<number, PeerUniStream>();
  private readonly writers: StreamWriter[] = [];
  /** The peer's critical streams: one of each at most (RFC 9114 §6.2.1, RFC 9204 §4.2). */
  private readonly peerCriticalStreams = new Set<number>();
  /** Push-ID limits the client announced: MAX_PUSH_ID may only grow, its GOAWAY only shrink (§5.2, §7.2.7). */
  private clientMaxPushId: number | undefined;
  private clientGoawayId: number | undefined;
  /** Highest client bidi stream id we accepted; GOAWAY carries the next one. */
  private highestRequestId = -4;
  /** The last GOAWAY id sent (or to send once the connection is ready); none: not going away. */
  private goawayId: number | undefined;
  /**
   * A drain's first GOAWAY, held until a response goes out or this timer fires. This timer and
   * goawayGrace are ref'd and cleared when moot: Node still wakes the event loop at the expiry of a
   * cleared unref'd timer (see TimerQueue.arm). Sessions run in workers, which end by process.exit.
   */
  private goawayHold: NodeJS.Timeout | undefined;
  /** The wait between the two GOAWAY frames; cleared if the connection closes first. */
  private goawayGrace: NodeJS.Timeout | undefined;
  private closing = false;
  /** Request streams taken on (counted against maxRequestsPerConnection). */
  private requestsAccepted = 0;
  private readonly headerBudget: HeaderBudget;
  /** Request header and body clocks of every stream, behind one timer. */
  private readonly deadlines = new SweepTimer((now) => this.sweepDeadlines(now));
  requestsServed = 0;
  private readonly handshake: HandshakeGate;
  /** What every request stream of this session is given: one object, made with the first request. */
  private streamOptions: RequestStreamOptions | undefined;

  constructor(
    readonly conn: QuicStreams,
    private readonly opts: SessionOptions,
  ) {
    this.headerBudget = new HeaderBudget(opts.limits.maxConnectionHeaderBytes);
    // Created before the handshake completes (at accept): requests received in 0-RTT wait on it.
    this.handshake = new HandshakeGate(conn.isReady && !conn.inEarlyData);
  }

  /** Bytes held for request streams whose HEADERS are incomplete (at most maxConnectionHeaderBytes). */
  get headerBytesHeld(): number {
    return this.headerBudget.used;
  }

  get activeRequests(): number {
    return this.requests.size;
  }

  streamsAwaitingCredit(): readonly number[] {
    let ids: number[] | undefined;
    for (const w of this.writers) if (w.blocked) (ids ??= []).push(w.streamId);
    for (const r of this.requests.values()) if (r.writer.blocked) (ids ??= []).push(r.writer.streamId);
    return ids ?? NONE_WAITING;
  }

  get sending(): boolean {
    if (this.streamsAwaitingCredit().length > 0) return true;
    for (const r of this.requests.values()) if (r.responding) return true;
    return false;
  }

  onReady(): void {
    this.openUniStream(
      CONTROL_STREAM_ID,
      encodeControlStreamPreface([
        [SETTINGS_ID.QPACK_MAX_TABLE_CAPACITY, 0],
        [SETTINGS_ID.QPACK_BLOCKED_STREAMS, 0],
        [SETTINGS_ID.MAX_FIELD_SECTION_SIZE, this.opts.limits.maxHeaderBytes],
      ]),
    );
    this.openUniStream(QPACK_ENCODER_STREAM_ID, Buffer.from([STREAM_TYPE.QPACK_ENCODER]));
    this.openUniStream(QPACK_DECODER_STREAM_ID, Buffer.from([STREAM_TYPE.QPACK_DECODER]));
    if (this.goawayId !== undefined) this.sendGoaway();
  }

  onHandshakeComplete(): void {
    this.handshake.complete();
  }

  onStreamReadable(streamId: number): void {
    try {
      if ((streamId & 0x3) === 0) this.onRequestStreamReadable(streamId);
      else if ((streamId & 0x3) === 2) this.onPeerUniReadable(streamId);
      // Server-initiated streams are never readable for us.
    } catch (err) {
      this.connectionError(err);
    }
  }

  onStreamWritable(streamId: number): boolean {
    const req = this.requests.get(streamId);
    if (req) return req.onWritable();
    for (const w of this.writers) if (w.streamId === streamId) return w.flush();
    return false;
  }

  onClosed(shutdown?: EndpointShutdown): void {
    this.cancelStopCheck();
    this.releaseGoawayHold();
    clearTimeout(this.goawayGrace);
    this.goawayGrace = undefined;
    this.deadlines.stop();
    // Cut by our own close at drain_timeout, or the connection went away (either side closed it, it timed out).
    const reason = shutdown === 'drain timeout' ? ABORT.drainTimeout : ABORT.connectionClosed;
    for (const req of this.requests.values()) req.abort(reason);
    this.requests.clear();
    this.handshake.close();
    this.opts.onClosed?.(this);
  }

  /**
   * Start a graceful shutdown (RFC 9114 §5.2) in two steps, so that a request the client sent
   * just before it saw our GOAWAY is still served: first GOAWAY with the largest stream id (no new
   * requests, nothing refused), then, a few RTTs later when everything in flight has arrived,
   * GOAWAY with the real limit. The connection closes with H3_NO_ERROR once no request is left.
   *
   * `with-response` (a drain) holds the first GOAWAY until a response goes out, at most
   * GOAWAY_HOLD_MS, so that the client reads it in the same packets as that response. A GOAWAY
   * arriving on its own can land between Chromium choosing this connection for a new request
   * and opening the request's stream, and Chromium then fails that request (net error -100,
   * CONNECTION_CLOSED) instead of retrying it; with a response it comes before the client's next
   * request. `now` (a 421: the client's retry of that request must go elsewhere) sends it at once.
   */
  goaway(timing: 'now' | 'with-response'): void {
    if (this.goawayId !== undefined) return;
    if (timing === 'with-response') {
      this.goawayHold ??= setTimeout(() => this.announceGoaway(), GOAWAY_HOLD_MS);
      return;
    }
    this.announceGoaway();
  }

  private announceGoaway(): void {
    if (this.goawayId !== undefined || this.closing) return;
    this.releaseGoawayHold();
    this.goawayId = MAX_CLIENT_BIDI_ID;
    if (this.conn.isReady) this.sendGoaway();
    const grace = Math.min(GOAWAY_GRACE_MAX_MS, Math.max(GOAWAY_GRACE_MIN_MS, 3 * this.conn.rttMs));
    this.goawayGrace = setTimeout(() => {
      this.goawayGrace = undefined;
      if (this.closing) return;
      this.lowerGoaway(this.highestRequestId + 4);
      this.closeIfIdle();
    }, grace);
  }

  /** GOAWAY with `id`, unless one with a lower id went out already (ids may only fall, §5.2). */
  private lowerGoaway(id: number): void {
    if (this.goawayId !== undefined && this.goawayId <= id) return;
    this.releaseGoawayHold();
    this.goawayId = id;
    if (this.conn.isReady) this.sendGoaway();
  }

  /** A GOAWAY is going out now (or the connection is gone): nothing is held for a response any more. */
  private releaseGoawayHold(): void {
    clearTimeout(this.goawayHold);
    this.goawayHold = undefined;
  }

  get draining(): boolean {
    return this.goawayId !== undefined || this.goawayHold !== undefined;
  }

  // ------------------------------------------------------------------ request streams

  private onRequestStreamReadable(streamId: number): void {
    let req = this.requests.get(streamId);
    if (!req && this.delivering.has(streamId)) {
      // A request we already finished (e.g. answered early): its late bytes are dropped. (Not
      // "id <= highest seen": quiche reports readable streams in no particular order.)
      this.discard(streamId);
      return;
    }
    if (!req) {
      const { maxRequestsPerConnection } = this.opts.limits;
      if ((this.goawayId !== undefined && streamId >= this.goawayId) || this.requestsAccepted >= maxRequestsPerConnection) {
        // Above our GOAWAY, or beyond the request limit (even a lower id that arrived late):
        // unprocessed, so the client retries it on a new connection (RFC 9114 §4.1.1, §5.2).
        if (this.requestsAccepted >= maxRequestsPerConnection) this.opts.refusals?.add(REFUSAL.requestLimit);
        this.conn.stopSending(streamId, H3_ERROR.H3_REQUEST_REJECTED);
        this.conn.resetStream(streamId, H3_ERROR.H3_REQUEST_REJECTED);
        this.discard(streamId);
        return;
      }
      if (this.closing) return;
      req = new RequestStream(this.conn, streamId, (this.streamOptions ??= this.requestStreamOptions()));
      this.requests.set(streamId, req);
      if (streamId > this.highestRequestId) this.highestRequestId = streamId;
      // The last request we take: tell the client now (one GOAWAY, no grace: we refuse the rest).
      if (++this.requestsAccepted === maxRequestsPerConnection) this.lowerGoaway(this.highestRequestId + 4);
    }
    req.onReadable();
  }

  private requestStreamOptions(): RequestStreamOptions {
    return {
      handler: this.opts.handler,
      limits: this.opts.limits,
      headerBudget: this.headerBudget,
      scheduleDeadline: (at) => this.deadlines.ensure(at),
      onHandlerError: this.opts.onHandlerError,
      onDone: (streamId) => this.onRequestDone(streamId),
      handshakeComplete: () => this.handshake.wait(),
      goAway: () => this.goaway('now'),
      ...(this.opts.refusals ? { refusals: this.opts.refusals } : {}),
      ...(this.opts.altSvc !== undefined ? { altSvc: this.opts.altSvc } : {}),
    };
  }

  /**
   * The deadline timer fired: every stream acts on its own expired clock (reset, 408); the
   * earliest clock still running re-arms the timer. O(open requests) per expiry, nothing per byte.
   */
  private sweepDeadlines(now: number): number | undefined {
    if (this.closing) return undefined;
    let next: number | undefined;
    try {
      for (const req of this.requests.values()) {
        const at = req.checkDeadline(now);
        if (at !== undefined && (next === undefined || at < next)) next = at;
      }
    } catch (err) {
      this.connectionError(err);
    }
    // Outside any receive: flush the resets and 408s now.
    this.conn.wake();
    return this.closing ? undefined : next;
  }

  private onRequestDone(streamId: number): void {
    if (!this.requests.delete(streamId)) return;
    this.requestsServed++;
    this.delivering.add(streamId);
    // The response's last bytes were just handed to QUIC: the held GOAWAY goes out with them.
    if (this.goawayHold) this.announceGoaway();
    if (this.delivering.size > 32) this.pruneDelivered();
    this.closeIfIdle();
  }

  /**
   * The connection is closing (a client usually closes right after its last response): no
   * STOP_SENDING can matter any more, and the pending look would wake the event loop for nothing
   * (a cleared ref'd Node timer that is not the next one due costs no wake-up).
   */
  private cancelStopCheck(): void {
    if (this.stopCheckTimer !== undefined) clearTimeout(this.stopCheckTimer);
    this.stopCheckTimer = undefined;
  }

  /**
   * STOP_SENDING is reported by quiche only when asked. A client sends it to cancel a request
   * whose response has not started (the upstream is slow): the upstream exchange is then cancelled
   * instead of waited for. On our control or QPACK streams it is a connection error (RFC 9114
   * §6.2.1). Ask at most every STOP_CHECK_INTERVAL_MS.
   */
  private checkStoppedStreams(): void {
    const now = performance.now();
    const due = this.lastStopCheck + STOP_CHECK_INTERVAL_MS;
    if (now < due) {
      // Checked recently: look again when the interval is over (STOP_SENDING may be the last
      // packet the client sends for a while).
      if (this.stopCheckTimer !== undefined || this.conn.closing) return;
      this.stopCheckTimer = setTimeout(() => {
        this.stopCheckTimer = undefined;
        if (this.closing) return;
        this.checkStoppedStreams();
        this.conn.wake();
      }, due - now); // not unref'd: cancelled at close, and a cleared unref'd timer still wakes the loop (TimerQueue.arm)
      return;
    }
    this.lastStopCheck = now;
    for (const w of this.writers) {
      if (this.conn.sendClosed(w.streamId)) {
        this.connectionError(new H3Error(H3_ERROR.H3_CLOSED_CRITICAL_STREAM, `peer stopped our critical stream ${w.streamId}`));
        return;
      }
    }
    for (const req of this.requests.values()) if (req.awaitingResponse) req.checkStopped();
  }

  private pruneDelivered(): void {
    for (const id of this.delivering) if (this.conn.sendClosed(id)) this.delivering.delete(id);
  }

  afterPackets(): void {
    if (this.stopCheckTimer !== undefined && this.conn.closing) this.cancelStopCheck();
    else this.checkStoppedStreams();
    if (this.goawayId !== undefined) this.closeIfIdle();
  }

  /**
   * After the final GOAWAY: close once no request is open and every response was acknowledged
   * (closing earlier would discard response bytes quiche has not delivered yet).
   */
  private closeIfIdle(): void {
    if (this.goawayId === undefined || this.goawayId === MAX_CLIENT_BIDI_ID || this.requests.size > 0 || this.closing) return;
    this.pruneDelivered();
    if (this.delivering.size > 0) return;
    this.closing = true;
    this.conn.closeWithAppError(H3_ERROR.H3_NO_ERROR, 'goaway');
  }

  // ------------------------------------------------------------------ unidirectional streams

  private openUniStream(streamId: number, preface: Buffer): void {
    const w = new StreamWriter(this.conn, streamId);
    this.writers.push(w);
    w.write(preface);
  }

  private sendGoaway(): void {
    const control = this.writers.find((w) => w.streamId === CONTROL_STREAM_ID);
    control?.write(encodeGoaway(this.goawayId!));
  }

  private onPeerUniReadable(streamId: number): void {
    let s = this.uni.get(streamId) ?? UNTYPED;
    const buf = Buffer.allocUnsafe(READ_CHUNK);
    for (;;) {
      let res: [number, boolean] | null;
      try {
        res = this.conn.streamRecv(streamId, buf);
      } catch (err) {
        if (streamResetCode(err) !== undefined && isCritical(s)) {
          throw new H3Error(H3_ERROR.H3_CLOSED_CRITICAL_STREAM, `peer reset critical stream ${streamId}`);
        }
        this.uni.delete(streamId);
        return;
      }
      if (res === null) break;
      const [n, fin] = res;
      s = this.onPeerUniBytes(streamId, s, Buffer.from(buf.subarray(0, n)));
      if (fin) {
        if (isCritical(s)) throw new H3Error(H3_ERROR.H3_CLOSED_CRITICAL_STREAM, `peer closed critical stream ${streamId}`);
        this.uni.delete(streamId);
        return;
      }
    }
    this.uni.set(streamId, s);
  }

  /** Handles bytes of a peer unidirectional stream; returns its state afterwards. */
  private onPeerUniBytes(streamId: number, stream: PeerUniStream, chunk: Buffer): PeerUniStream {
    let s: TypedUniStream;
    if (stream.kind === 'untyped') {
      const data = stream.prefix.length ? Buffer.concat([stream.prefix, chunk]) : chunk;
      const v = decodeVarint(data, 0);
      if (!v) return { kind: 'untyped', prefix: data };
      s = this.startPeerUniStream(streamId, v.value);
      chunk = data.subarray(v.length);
    } else {
      s = stream;
    }
    switch (s.kind) {
      case 'control':
        for (const ev of s.reader.push(chunk)) {
          if (ev.kind === 'data') throw new H3Error(H3_ERROR.H3_FRAME_UNEXPECTED, 'DATA on the control stream');
          this.onControlFrame(s, ev.type, ev.payload);
        }
        return s;
      case 'qpack-encoder':
      case 'qpack-decoder':
        s.receiver.push(chunk);
        return s;
      case 'ignored':
        return s;
    }
  }

  private startPeerUniStream(streamId: number, type: number): TypedUniStream {
    switch (type) {
      case STREAM_TYPE.CONTROL:
      case STREAM_TYPE.QPACK_ENCODER:
      case STREAM_TYPE.QPACK_DECODER:
        if (this.peerCriticalStreams.has(type)) throw new H3Error(H3_ERROR.H3_STREAM_CREATION_ERROR, `second stream of type 0x${type.toString(16)}`);
        this.peerCriticalStreams.add(type);
        if (type === STREAM_TYPE.CONTROL) return { kind: 'control', reader: new FrameReader(), settings: 'awaited' };
        // Our encoder never references the dynamic table: the decoder stream may only cancel streams.
        if (type === STREAM_TYPE.QPACK_DECODER) return { kind: 'qpack-decoder', receiver: new DecoderStreamReceiver() };
        return { kind: 'qpack-encoder', receiver: new EncoderStreamReceiver() };
      case STREAM_TYPE.PUSH:
        throw new H3Error(H3_ERROR.H3_STREAM_CREATION_ERROR, 'client opened a push stream');
      default:
        // Unknown or grease stream type: not an error; tell the peer we will not read it (§6.2).
        // Its bytes are read and dropped until the peer resets it.
        this.conn.stopSending(streamId, H3_ERROR.H3_STREAM_CREATION_ERROR);
        return { kind: 'ignored' };
    }
  }

  private onControlFrame(s: Extract<PeerUniStream, { kind: 'control' }>, type: number, payload: Buffer): void {
    if (s.settings === 'awaited') {
      if (type !== FRAME_TYPE.SETTINGS) throw new H3Error(H3_ERROR.H3_MISSING_SETTINGS, 'first control frame is not SETTINGS');
      s.settings = 'received';
      parseSettings(payload); // validates; we need none of the client's values
      return;
    }
    switch (type) {
      case FRAME_TYPE.SETTINGS:
        throw new H3Error(H3_ERROR.H3_FRAME_UNEXPECTED, 'second SETTINGS frame');
      case FRAME_TYPE.GOAWAY: {
        // A client GOAWAY names a push id; we never push, so there is nothing to cancel, but the
        // id must not grow (§5.2).
        const id = parseGoaway(payload);
        if (this.clientGoawayId !== undefined && id > this.clientGoawayId) throw new H3Error(H3_ERROR.H3_ID_ERROR, `client GOAWAY id grew from ${this.clientGoawayId} to ${id}`);
        this.clientGoawayId = id;
        return;
      }
      case FRAME_TYPE.MAX_PUSH_ID: {
        const id = parseSingleVarintPayload(payload, 'MAX_PUSH_ID');
        if (this.clientMaxPushId !== undefined && id < this.clientMaxPushId) throw new H3Error(H3_ERROR.H3_ID_ERROR, `MAX_PUSH_ID fell from ${this.clientMaxPushId} to ${id}`);
        this.clientMaxPushId = id;
        return;
      }
      case FRAME_TYPE.CANCEL_PUSH: {
        // Only a push id the client allowed can be cancelled (§7.2.3); we never promise one.
        const id = parseSingleVarintPayload(payload, 'CANCEL_PUSH');
        if (this.clientMaxPushId === undefined || id > this.clientMaxPushId) throw new H3Error(H3_ERROR.H3_ID_ERROR, `CANCEL_PUSH for push ${id}, above the client's MAX_PUSH_ID`);
        return;
      }
      default:
        throw new H3Error(H3_ERROR.H3_FRAME_UNEXPECTED, `frame 0x${type.toString(16)} on the control stream`);
    }
  }

  private discard(streamId: number): void {
    const buf = Buffer.allocUnsafe(READ_CHUNK);
    try {
      while (this.conn.streamRecv(streamId, buf) !== null);
    } catch {
      // Reset by the peer: nothing to discard.
    }
  }

  private connectionError(err: unknown): void {
    const code = err instanceof H3Error ? err.code : H3_ERROR.H3_INTERNAL_ERROR;
    this.closing = true;
    this.conn.closeWithAppError(code, err instanceof Error ? err.message.slice(0, 100) : 'internal error');
  }
}

/** Closing or resetting one of these is a connection error (RFC 9114 §6.2.1, RFC 9204 §4.2). */
function isCritical(s: PeerUniStream): boolean {
  return s.kind === 'control' || s.kind === 'qpack-encoder' || s.kind === 'qpack-decoder';
}
