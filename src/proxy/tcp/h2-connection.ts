/**
 * One HTTP/2 connection (a ServerHttp2Session): its request streams, its limits and its end.
 * nghttp2 runs the protocol; this adds what the proxy's config asks for on top:
 *
 * - max_requests_per_connection: GOAWAY naming the last allowed stream, then a graceful close;
 * - keepalive_timeout: a connection with no open stream is closed (GOAWAY) after it, and a new
 *   connection that has not completed a request within request_header_timeout too;
 * - request_header_timeout for every header block: one left incomplete (HEADERS without
 *   END_HEADERS, CONTINUATION trickled or never sent) holds the whole connection (RFC 9113 §6.10),
 *   whatever else is active on it, so the connection is cut (see `checkHeaderBlock`). nghttp2
 *   bounds the block's size and CONTINUATION count;
 * - rapid reset (CVE-2023-44487): a client that resets more than h2_max_client_resets streams
 *   within 10 s before their responses completed gets GOAWAY ENHANCE_YOUR_CALM and is cut off,
 *   counted. nghttp2's own limit (a burst of 1000, then 33 per second, ending in GOAWAY
 *   INTERNAL_ERROR) stays behind it as a backstop;
 * - drain: the two-step GOAWAY of RFC 9113 §6.8 (see `drain`).
 */
import http2, { type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { Logger } from 'pino';
import { H2_MAX_WINDOW, H2_RESET_WINDOW_MS } from '../config/section-http.js';
import type { HttpLimits } from '../config/types.js';
import { validateRequest, type FieldList } from '../http-semantics/index.js';
import { withListenerAltSvc } from '../http/alt-svc.js';
import type { RequestHandler } from '../http/exchange.js';
import type { AbortReason } from '../http/exchange-abort.js';
import { REFUSAL, type RefusalCounter } from '../http/refusals.js';
import type { TcpConnections } from './connections.js';
import { H2Exchange } from './h2-exchange.js';
import { headerListSize } from './header-list-size.js';
import { ResetWindow } from './reset-window.js';

const { NGHTTP2_NO_ERROR, NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_INTERNAL_ERROR, NGHTTP2_PROTOCOL_ERROR, NGHTTP2_REFUSED_STREAM } = http2.constants;

/** The highest stream id (2^31 - 1): a GOAWAY with it refuses nothing yet (RFC 9113 §6.8). */
const MAX_STREAM_ID = 2 ** 31 - 1;
/** How long a cut-off connection stays open after its GOAWAY ENHANCE_YOUR_CALM, so the client reads it. */
const CUTOFF_LINGER_MS = 500;
/** The wait for the PING between the two GOAWAY frames, should the client not answer it. */
const GOAWAY_PING_TIMEOUT_MS = 3000;
/**
 * The connection window is this many stream windows: a bulk transfer on one stream is not capped
 * at the protocol's 64 KiB default, and one connection holds at most this much unread request body.
 */
const CONNECTION_WINDOW_STREAMS = 4;

export interface H2ConnectionOptions {
  readonly handler: RequestHandler;
  /** The listener's `alt-svc` value, on every response of this connection (none: alt_svc off). */
  readonly altSvc: string | undefined;
  readonly limits: HttpLimits;
  readonly connectionId: string;
  readonly connections: TcpConnections;
  readonly refusals: RefusalCounter;
  readonly log: Logger;
  readonly onHandlerError: (err: unknown, connectionId: string, streamId: number) => void;
}

/**
 * `serving`: streams are taken; `closing`: a final GOAWAY went out (request limit, idle, drain's
 * second step): open streams finish, then the session closes; `closed`.
 */
type Phase = 'serving' | 'closing' | 'closed';

export class H2Connection {
  private phase: Phase = 'serving';
  private readonly exchanges = new Set<H2Exchange>();
  private requests = 0;
  private readonly resets: ResetWindow;
  /** Streams we reset ourselves: their close is not the client's reset. */
  private readonly resetByUs = new WeakSet<ServerHttp2Stream>();
  private idleTimer: NodeJS.Timeout | undefined;
  /** The drain's first GOAWAY went out. */
  private draining = false;
  private readonly headerClock: NodeJS.Timeout;
  /** The highest stream id whose header block is known complete (its 'stream' event, or a PING answered after it began). */
  private settledStreamId = 0;
  /** A PING sent to find out whether the header block of stream `streamId` is still open. */
  private probe: { readonly streamId: number } | undefined;

  constructor(
    readonly session: ServerHttp2Session,
    private readonly opts: H2ConnectionOptions,
  ) {
    this.resets = new ResetWindow(opts.limits.h2MaxClientResets, H2_RESET_WINDOW_MS);
    session.on('stream', (stream: ServerHttp2Stream, _headers: unknown, _flags: number, rawHeaders: string[]) => this.onStream(stream, rawHeaders));
    session.on('error', (err) => opts.log.debug({ conn: opts.connectionId, err }, 'HTTP/2 session error'));
    session.once('close', () => {
      this.phase = 'closed';
      this.clearIdle();
      clearInterval(this.headerClock);
    });
    this.headerClock = setInterval(() => this.checkHeaderBlock(), opts.limits.requestHeaderTimeoutMs); // ref'd, as the idle timer (armIdle)
    try {
      session.setLocalWindowSize(Math.min(H2_MAX_WINDOW, opts.limits.h2InitialWindow * CONNECTION_WINDOW_STREAMS));
    } catch {
      // The session failed before its settings went out: it is closing anyway.
    }
    this.armIdle();
  }

  get activeRequests(): number {
    return this.exchanges.size;
  }

  private onStream(stream: ServerHttp2Stream, rawHeaders: string[]): void {
    this.settledStreamId = Math.max(this.settledStreamId, stream.id ?? 0);
    stream.on('error', () => {});
    // Counted whatever becomes of the request: the client reset it before our response was
    // complete. (`aborted`: Node closed the stream while our side was still writing; by 'close'
    // Node has ended the writable side itself, so writableEnded cannot tell.)
    stream.on('close', () => {
      if (stream.aborted && stream.rstCode !== NGHTTP2_NO_ERROR && !this.resetByUs.has(stream)) this.onClientReset();
    });
    // Once the client acknowledged our SETTINGS, Node resets a trailer list above the
    // SETTINGS_MAX_HEADER_LIST_SIZE we announce (or of more than its 128 fields) itself, before
    // any event: ENHANCE_YOUR_CALM, or INTERNAL_ERROR (33 of a burst of 60 over TLS: seemingly
    // when Node's reset waits behind a write, nghttp2's own for the failed header callback wins).
    // nghttp2 closed the stream, the client did not (remoteClose 0, readable only until the
    // stream is destroyed: here). Our refusal, as when our own check runs (H2Exchange), not the
    // client's reset.
    stream.on('aborted', () => {
      if (this.resetByUs.has(stream) || (stream.rstCode !== NGHTTP2_ENHANCE_YOUR_CALM && stream.rstCode !== NGHTTP2_INTERNAL_ERROR)) return;
      if (stream.state.remoteClose !== 0) return;
      this.resetByUs.add(stream);
      this.opts.refusals.add(REFUSAL.headerTooLarge);
    });
    if (this.phase !== 'serving') {
      this.resetStream(stream, NGHTTP2_REFUSED_STREAM);
      return;
    }
    const { maxRequestsPerConnection } = this.opts.limits;
    if (this.requests >= maxRequestsPerConnection) {
      this.opts.refusals.add(REFUSAL.requestLimit);
      this.resetStream(stream, NGHTTP2_REFUSED_STREAM);
      return;
    }
    if (++this.requests === maxRequestsPerConnection) this.closeGracefully(stream.id);

    const fields: FieldList = [];
    for (let i = 0; i + 1 < rawHeaders.length; i += 2) fields.push([rawHeaders[i]!, rawHeaders[i + 1]!]);
    if (headerListSize(rawHeaders) > this.opts.limits.maxHeaderBytes) {
      // SETTINGS_MAX_HEADER_LIST_SIZE is advisory (RFC 9113 §6.5.2) and Node enforces the value
      // it announces only once the client acknowledged it (RST_STREAM ENHANCE_YOUR_CALM): before
      // that we do, with 431 as over HTTP/3 (the block is bounded by nghttp2). Node's own reset
      // comes before any event (no 'stream', nothing on the session; Node 20), so it cannot be
      // counted, and it enforces the acknowledged value: no setting lets this check run first.
      this.opts.refusals.add(REFUSAL.headerTooLarge);
      this.respondPlain(stream, 431, 'request header fields too large');
      return;
    }
    const v = validateRequest(fields);
    if (!v.ok && v.kind === 'malformed') {
      // RFC 9113 §8.1.1: a malformed request is a stream error of type PROTOCOL_ERROR.
      this.opts.connections.count('malformed');
      this.resetStream(stream, NGHTTP2_PROTOCOL_ERROR);
      return;
    }
    if (!v.ok) {
      // Well-formed but not served (CONNECT, another scheme): answered, as over HTTP/3.
      this.respondPlain(stream, 501, v.reason);
      return;
    }
    const exchange: H2Exchange = new H2Exchange(stream, v.request, {
      handler: this.opts.handler,
      altSvc: this.opts.altSvc,
      requestBodyTimeoutMs: this.opts.limits.requestBodyTimeoutMs,
      maxHeaderBytes: this.opts.limits.maxHeaderBytes,
      connectionId: this.opts.connectionId,
      client: { host: this.session.socket?.remoteAddress ?? '', port: this.session.socket?.remotePort ?? 0 },
      onHandlerError: (err, id) => this.opts.onHandlerError(err, this.opts.connectionId, id),
      onDone: () => {
        this.exchanges.delete(exchange);
        this.armIdle();
      },
      onMalformed: () => this.opts.connections.count('malformed'),
      resetStream: (s, code) => this.resetStream(s, code),
      connectionGone: () => this.session.destroyed,
      goAway: () => this.drain(),
      refusals: this.opts.refusals,
    });
    this.exchanges.add(exchange);
    this.clearIdle();
    exchange.start();
  }

  /** A short answer of our own, before any exchange; the request body is read and dropped. */
  private respondPlain(stream: ServerHttp2Stream, status: number, text: string): void {
    stream.on('close', () => this.armIdle());
    const headers = withListenerAltSvc([['content-type', 'text/plain; charset=utf-8']], this.opts.altSvc);
    stream.respond({ ...Object.fromEntries(headers), ':status': status });
    stream.end(`${text}\n`);
    stream.resume();
  }

  private resetStream(stream: ServerHttp2Stream, code: number): void {
    this.resetByUs.add(stream);
    if (!stream.closed && !stream.destroyed) stream.close(code);
  }

  /** The client reset a stream before our response completed: too many, and it is cut off. */
  private onClientReset(): void {
    if (this.phase === 'closed' || !this.resets.record(performance.now())) return;
    this.opts.connections.count('rapidResetCutoffs');
    this.opts.refusals.add(REFUSAL.rapidReset);
    this.opts.log.warn({ conn: this.opts.connectionId, resets: this.resets.limit, windowMs: this.resets.windowMs }, 'HTTP/2 client reset too many streams (rapid reset): connection closed');
    // The real last stream we took: a client may retry only what is above it (RFC 9113 §6.8);
    // 0 would tell it that nothing it sent was processed, inviting repeats of what was.
    this.cutOff(this.settledStreamId);
  }

  /**
   * Runs every request_header_timeout. nghttp2 counts a stream as processed (`lastProcStreamID`)
   * from its first HEADERS frame, Node tells us of it once the block is complete ('stream'). A
   * begun stream we were not told of has an open block, or was refused by nghttp2 (malformed):
   * a PING tells them apart, since a client inside a header block can send nothing but
   * CONTINUATION, so its answer comes only after the block. Unanswered a period later, the block
   * has been open longer than request_header_timeout (at most twice it): the connection is cut.
   */
  private checkHeaderBlock(): void {
    if (this.phase === 'closed' || this.session.destroyed) return;
    if (this.probe !== undefined) {
      this.opts.refusals.add(REFUSAL.headerTimeout);
      this.cutOff(this.settledStreamId);
      return;
    }
    const begun = this.session.state.lastProcStreamID ?? 0;
    if (begun <= this.settledStreamId) return;
    const probe = { streamId: begun };
    const sent = this.session.ping((err) => {
      if (err || this.probe !== probe) return;
      this.probe = undefined;
      this.settledStreamId = Math.max(this.settledStreamId, probe.streamId);
    });
    if (sent) this.probe = probe;
  }

  /** GOAWAY ENHANCE_YOUR_CALM naming `lastStreamId`, then the socket closed a moment later. */
  private cutOff(lastStreamId: number): void {
    this.phase = 'closed';
    this.clearIdle();
    clearInterval(this.headerClock);
    // GOAWAY first (measured: destroy(undefined, code) alone closes the socket with no GOAWAY
    // reaching the client), and the socket closed a moment later: closing it at once, with the
    // flood still arriving unread, makes the kernel send a reset that discards the GOAWAY at the
    // client before it reads it. Meanwhile nghttp2 ignores the client's new streams (above the
    // GOAWAY's last stream id) and we refuse any that still surface.
    this.session.goaway(NGHTTP2_ENHANCE_YOUR_CALM, lastStreamId);
    setTimeout(() => this.session.destroy(), CUTOFF_LINGER_MS).unref();
  }

  /** Cut now (at drain_timeout): the requests in progress are aborted with `reason`, then the session is destroyed. */
  cut(reason: AbortReason): void {
    for (const ex of [...this.exchanges]) ex.cut(reason);
    this.session.destroy();
  }

  /**
   * Graceful shutdown in two steps (RFC 9113 §6.8): GOAWAY with 2^31-1 (nothing refused, the client
   * stops opening streams), then after one round trip (a PING's ack) GOAWAY with the last stream
   * nghttp2 processed, so a request that was in flight when the first went out is still served.
   * Node's `goaway(code, lastStreamID)` sends the id as given (2^31-1 reaches the wire unchanged),
   * and `close()` sends GOAWAY with nghttp2's last processed stream id, then closes the session
   * once its open streams are done.
   */
  drain(): void {
    if (this.draining || this.phase !== 'serving') return;
    this.draining = true;
    try {
      this.session.goaway(NGHTTP2_NO_ERROR, MAX_STREAM_ID);
    } catch {
      this.closeGracefully();
      return;
    }
    let fallback: NodeJS.Timeout | undefined;
    const second = (): void => {
      clearTimeout(fallback);
      this.closeGracefully();
    };
    fallback = setTimeout(second, GOAWAY_PING_TIMEOUT_MS).unref();
    if (!this.session.ping(() => second())) second();
  }

  /** The final GOAWAY (with `lastStreamId`, else nghttp2's last processed one), then close once streams are done. */
  private closeGracefully(lastStreamId?: number): void {
    if (this.phase !== 'serving') return;
    this.phase = 'closing';
    this.clearIdle();
    if (this.session.closed || this.session.destroyed) return;
    if (lastStreamId !== undefined) this.session.goaway(NGHTTP2_NO_ERROR, lastStreamId);
    this.session.close();
  }

  /** No open stream: the connection may stay this long (shorter before its first request). */
  private armIdle(): void {
    if (this.phase !== 'serving' || this.exchanges.size > 0) return;
    this.clearIdle();
    const ms = this.requests === 0 ? this.opts.limits.requestHeaderTimeoutMs : this.opts.limits.keepaliveTimeoutMs;
    // Not unref'd: cleared at each stream and at close, and Node still wakes the event loop at the
    // expiry of a cleared unref'd timer (see quic/timer-queue.ts arm). Workers end by process.exit.
    this.idleTimer = setTimeout(() => this.closeGracefully(), ms);
  }

  private clearIdle(): void {
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }
}
