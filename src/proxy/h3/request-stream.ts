/**
 * One HTTP/3 request stream (RFC 9114 §4.1): HEADERS, DATA*, optional trailing HEADERS from the
 * client; the same shape back. It decodes and validates the request, streams the body to the
 * handler with backpressure (we stop reading from QUIC while the handler's body buffer is full, so
 * QUIC flow control slows the client), and encodes the response the handler writes. It is the
 * HTTP/3 implementation of the protocol-neutral HttpExchange.
 */
import { Aborter, type AbortLike } from '../abort.js';
import { ABORT, ExchangeAborted, type AbortReason } from '../http/exchange-abort.js';
import { formatDuration } from '../config/units.js';
import { BodyLengthCounter, validateRequest, validateTrailers, type FieldList, type ValidatedRequest } from '../http-semantics/index.js';
import { dispatchExchange, RequestBodyTooLargeError, RequestTimeoutError, respondText, type HttpExchange, type RequestHandler } from '../http/exchange.js';
import { withListenerAltSvc } from '../http/alt-svc.js';
import { overBodyLimit } from '../http/body-limit.js';
import { Recv, Send, type ExchangeState } from '../http/exchange-state.js';
import { REFUSAL, type RefusalCounter } from '../http/refusals.js';
import { RequestBody } from '../http/request-body.js';
import type { QuicStreams } from '../quic/connection.js';
import type { HostPort } from '../quic/native.js';
import { streamResetCode } from '../quic/native.js';
import { H3_ERROR, H3Error, h3ErrorName } from './errors.js';
import { FRAME_TYPE, FrameReader, FrameTooLargeError, encodeDataFrameHeader, encodeHeadersFrame } from './frames.js';
import type { HeaderBudget } from './header-budget.js';
import { FieldSectionTooLargeError, decodeFieldSection, encodeFieldSection } from './qpack.js';
import { StreamWriter } from './stream-writer.js';

/** The limits a request stream enforces itself (config `http:`). */
export interface RequestLimits {
  /** The complete HEADERS must arrive this long after the stream opened. */
  readonly requestHeaderTimeoutMs: number;
  /** Longest silence from the client while the request body is incomplete. */
  readonly requestBodyTimeoutMs: number;
  /** Largest header section: decoded size (RFC 9114 §4.2.2), and the HEADERS frame's payload. */
  readonly maxHeaderBytes: number;
}

export interface RequestStreamOptions {
  readonly handler: RequestHandler;
  readonly limits: RequestLimits;
  /** The connection's budget for bytes read before HEADERS complete. */
  readonly headerBudget: HeaderBudget;
  /** The stream's clock may now run out at `at` (see `deadline`): make sure someone checks then. */
  readonly scheduleDeadline: (at: number | undefined) => void;
  /** A handler threw (a bug): the client got a 500 or a reset; this reports it. */
  readonly onHandlerError: (err: unknown, streamId: number) => void;
  /** Called once when the stream is finished (the options are shared by the session's streams). */
  readonly onDone: (streamId: number) => void;
  /** The connection's handshake: true once complete, false if the connection ended before. */
  readonly handshakeComplete: () => Promise<boolean>;
  /** Starts the connection's graceful shutdown (GOAWAY). */
  readonly goAway: () => void;
  /** Counts what the limits and timeouts turn away (for `list`); absent in tests that do not look. */
  readonly refusals?: RefusalCounter;
  /** The listener's `alt-svc` value: every response carries it, replacing the handler's (none: alt_svc off). */
  readonly altSvc?: string;
}

/** Errors on a request stream that end the whole connection; the rest reset only the stream. */
const CONNECTION_ERRORS: ReadonlySet<number> = new Set([H3_ERROR.QPACK_DECOMPRESSION_FAILED, H3_ERROR.H3_FRAME_UNEXPECTED, H3_ERROR.H3_FRAME_ERROR]);

const READ_CHUNK = 64 * 1024;
const BODY_HIGH_WATER_MARK = 256 * 1024;
const scratch = Buffer.allocUnsafe(READ_CHUNK);

export class RequestStream implements HttpExchange {
  readonly protocol = 'h3';
  readonly httpVersion = '3';
  readonly writer: StreamWriter;
  private readonly frames: FrameReader;
  private readonly aborter = new Aborter();
  /** When we first heard of the stream: the header clock runs from here (performance.now() ms). */
  private readonly openedAt = performance.now();
  /** Last time the request moved (client bytes arrived, or our body consumer caught up). */
  private lastProgressAt = this.openedAt;
  /** Bytes this stream holds of the connection's header budget. */
  private headerBytesTaken = 0;
  /** Finished once both directions are done and every response byte went to QUIC, or when abandoned. */
  private state: ExchangeState = { phase: 'open', recv: Recv.Headers, send: Send.NotStarted };
  private lengthCounter: BodyLengthCounter | undefined;
  /** The route's max_request_body, once the handler set it (limitBody). */
  private bodyLimit: number | undefined;
  private requestBody: RequestBody | undefined;
  request!: ValidatedRequest;
  private requestTrailers: FieldList | undefined;
  bytesReceived = 0;
  bytesSent = 0;
  /**
   * Request bytes were read while the connection ran on 0-RTT keys. Kept after the handshake
   * completes: what arrived early may be a replay however late it is dispatched (RFC 8470 §5.1).
   */
  earlyData = false;

  constructor(
    private readonly conn: QuicStreams,
    readonly streamId: number,
    private readonly opts: RequestStreamOptions,
  ) {
    // STOP_SENDING from the client shows up as a failed write: stop the exchange (and the
    // upstream body it pulls) instead of reading it to the end for nobody.
    this.writer = new StreamWriter(conn, streamId, () => this.onWriteFailed());
    this.frames = new FrameReader({ maxFieldSectionFrameSize: opts.limits.maxHeaderBytes });
  }

  private onWriteFailed(): void {
    if (this.state.phase === 'finished') return;
    this.aborter.abort(new ExchangeAborted(ABORT.clientReset, 'client stopped the response stream'));
    this.requestBody?.abort('client stopped the response stream');
    this.finish();
  }

  get client(): HostPort {
    return this.conn.peer;
  }

  get connectionId(): string {
    return this.conn.id;
  }

  get signal(): AbortLike {
    return this.aborter;
  }

  handshakeComplete(): Promise<boolean> {
    return this.opts.handshakeComplete();
  }

  goAway(): void {
    this.opts.goAway();
  }

  get body(): RequestBody {
    return this.requestBody!;
  }

  /** False once the request side is over (read to the end, or no longer wanted). */
  private get receiving(): boolean {
    return this.state.phase === 'open' && this.state.recv !== Recv.Done;
  }

  /** True once response headers can no longer be sent (sent already, or the stream is finished). */
  get headersSent(): boolean {
    return this.state.phase === 'finished' || this.state.send !== Send.NotStarted;
  }

  // ------------------------------------------------------------------ receive side

  onReadable(): void {
    this.readAvailable();
    // Reading may have started a clock (a new stream, HEADERS done, a paused body resumed).
    this.opts.scheduleDeadline(this.deadline);
  }

  private readAvailable(): void {
    if (!this.receiving) {
      this.discardInput();
      return;
    }
    while (this.state.phase === 'open' && this.state.recv !== Recv.Done && this.state.recv !== Recv.BodyPaused) {
      const inHeaders = this.state.recv === Recv.Headers;
      // Before HEADERS complete, read at most what the connection's header budget has room for
      // (one byte when it is spent, to see whether more comes): it is never overdrawn.
      const into = inHeaders ? scratch.subarray(0, Math.max(1, Math.min(READ_CHUNK, this.opts.headerBudget.available))) : scratch;
      let res: [number, boolean] | null;
      try {
        res = this.conn.streamRecv(this.streamId, into);
      } catch (err) {
        this.onPeerReset(streamResetCode(err) ?? H3_ERROR.H3_INTERNAL_ERROR);
        return;
      }
      if (res === null) return;
      const [n, fin] = res;
      this.lastProgressAt = performance.now();
      if (inHeaders && n > 0) {
        if (!this.opts.headerBudget.take(n)) {
          const limit = this.opts.headerBudget.limit;
          this.opts.refusals?.add(REFUSAL.connectionHeaderBudget);
          this.streamError(new H3Error(H3_ERROR.H3_EXCESSIVE_LOAD, `incomplete request headers on this connection above ${limit} bytes`));
          return;
        }
        this.headerBytesTaken += n;
      }
      try {
        if (n > 0) this.onBytes(scratch.subarray(0, n));
        // A response completed early (during onBytes) ends our interest in the request.
        if (fin && this.receiving) this.onFin();
      } catch (err) {
        if (isHeaderSectionTooLarge(err)) this.refuseSectionTooLarge(err);
        else this.streamError(err);
        return;
      }
      if (fin) return;
    }
  }

  /**
   * A header or trailer section above max_header_bytes, counted alike (one limit, one remedy, and
   * HTTP/1.1's parser reports both as one error). The request's HEADERS may get 431 rather than a
   * reset (RFC 9114 §4.2.2); trailers come once the request may be upstream: H3_EXCESSIVE_LOAD.
   */
  private refuseSectionTooLarge(err: H3Error): void {
    this.opts.refusals?.add(REFUSAL.headerTooLarge);
    if (this.state.phase === 'open' && this.state.recv === Recv.Headers) {
      this.releaseHeaderBytes();
      respondText(this, 431, 'request header fields too large\n');
    } else {
      this.streamError(err);
    }
  }

  /** Gives back what this stream held of the connection's header budget (idempotent). */
  private releaseHeaderBytes(): void {
    this.opts.headerBudget.release(this.headerBytesTaken);
    this.headerBytesTaken = 0;
  }

  // ------------------------------------------------------------------ timeouts

  /**
   * When this stream's clock runs out (performance.now() ms), or undefined while none runs: the
   * header clock until HEADERS complete (not extended by arriving bytes: slow-loris headers), then
   * the body idle clock while we wait for the client. It does not run while the body is paused
   * (our consumer is not reading; the upstream's own timeouts cover that) or once the request is in.
   */
  get deadline(): number | undefined {
    if (this.state.phase !== 'open') return undefined;
    switch (this.state.recv) {
      case Recv.Headers:
        return this.openedAt + this.opts.limits.requestHeaderTimeoutMs;
      case Recv.Body:
      case Recv.Trailers:
        return this.lastProgressAt + this.opts.limits.requestBodyTimeoutMs;
      case Recv.BodyPaused:
      case Recv.Done:
        return undefined;
    }
  }

  /** The session's sweep: act on an expired clock; returns the stream's next deadline. */
  checkDeadline(now: number): number | undefined {
    const at = this.deadline;
    if (at === undefined || now < at) return at;
    if (this.state.phase === 'open' && this.state.recv === Recv.Headers) {
      // H3_REQUEST_INCOMPLETE: we end the stream without a fully formed request (§8.1). Not
      // REJECTED (an invitation to retry at once) nor EXCESSIVE_LOAD (kept for the size limits).
      this.opts.refusals?.add(REFUSAL.headerTimeout);
      this.streamError(new H3Error(H3_ERROR.H3_REQUEST_INCOMPLETE, `request headers incomplete after ${formatDuration(this.opts.limits.requestHeaderTimeoutMs)}`));
    } else {
      this.bodyTimedOut();
    }
    return this.deadline;
  }

  /**
   * The client sent no body byte for request_body_timeout: cancel the exchange (the upstream
   * upload with it) and answer 408, or reset the stream when the response has started.
   */
  private bodyTimedOut(): void {
    const reason = `request body timeout: no bytes for ${formatDuration(this.opts.limits.requestBodyTimeoutMs)}`;
    this.opts.refusals?.add(REFUSAL.bodyTimeout);
    this.refuseBody(408, 'request body timeout\n', H3_ERROR.H3_REQUEST_INCOMPLETE, new RequestTimeoutError(reason));
  }

  limitBody(maxBytes: number): void {
    this.bodyLimit = maxBytes;
    const over = overBodyLimit(maxBytes, this.lengthCounter?.received ?? 0, this.request.contentLength);
    if (over !== null) this.bodyTooLarge(over);
  }

  /** The body is larger than max_request_body: 413 (completing the response sends STOP_SENDING H3_NO_ERROR, §4.1), or a reset. */
  private bodyTooLarge(detail: string): void {
    if (this.state.phase !== 'open') return;
    this.opts.refusals?.add(REFUSAL.bodyTooLarge);
    this.refuseBody(413, 'request body too large\n', H3_ERROR.H3_EXCESSIVE_LOAD, new RequestBodyTooLargeError(`request body too large: ${detail}`));
  }

  /**
   * The request cannot go on (body timeout, body too large): cancel the exchange (the upstream
   * upload with it) and answer `status`, or reset the stream with `code` once the response has started.
   */
  private refuseBody(status: number, text: string, code: number, why: RequestTimeoutError | RequestBodyTooLargeError): void {
    // Fail the body first: the answer below completes the response, which would otherwise end the
    // body as if the upload were whole.
    this.requestBody?.abort(why.message);
    if (!this.headersSent) {
      respondText(this, status, text);
    } else {
      this.conn.stopSending(this.streamId, code);
      this.conn.resetStream(this.streamId, code);
      this.writer.fail();
      this.finish();
    }
    // Last: the handler sees the exchange already answered and only cancels and logs.
    this.aborter.abort(why);
  }

  private onBytes(chunk: Buffer): void {
    this.bytesReceived += chunk.length;
    if (this.conn.inEarlyData) this.earlyData = true;
    for (const ev of this.frames.push(chunk)) {
      // The handler may answer synchronously (built-in routes, errors) while frames of this chunk
      // remain: the rest of the request is no longer wanted (we sent STOP_SENDING).
      if (this.state.phase !== 'open' || this.state.recv === Recv.Done) return;
      const recv = this.state.recv;
      if (ev.kind === 'data') {
        if (recv !== Recv.Body && recv !== Recv.BodyPaused) throw new H3Error(H3_ERROR.H3_FRAME_UNEXPECTED, 'DATA outside the body');
        const problem = this.lengthCounter!.add(ev.data.length);
        if (problem) throw new H3Error(H3_ERROR.H3_MESSAGE_ERROR, problem);
        const over = this.bodyLimit === undefined ? null : overBodyLimit(this.bodyLimit, this.lengthCounter!.received);
        if (over !== null) {
          this.bodyTooLarge(over);
          return;
        }
        // The piece is a view into the shared scratch buffer: copy before handing it on.
        if (ev.data.length > 0 && !this.requestBody!.push(Buffer.from(ev.data))) this.pauseUntilDrained();
        continue;
      }
      if (ev.type !== FRAME_TYPE.HEADERS) {
        // PUSH_PROMISE is client-forbidden; control frames do not belong here (§7.2).
        throw new H3Error(H3_ERROR.H3_FRAME_UNEXPECTED, `frame 0x${ev.type.toString(16)} on a request stream`);
      }
      if (recv === Recv.Headers) this.onRequestHeaders(ev.payload);
      else if (recv === Recv.Body || recv === Recv.BodyPaused) this.onRequestTrailers(ev.payload);
      else throw new H3Error(H3_ERROR.H3_FRAME_UNEXPECTED, 'HEADERS after trailers');
    }
  }

  private setRecv(recv: Recv): void {
    if (this.state.phase === 'open') this.state.recv = recv;
  }

  private onRequestHeaders(block: Buffer): void {
    this.releaseHeaderBytes();
    const fields = decodeFieldSection(block, { maxFieldSectionSize: this.opts.limits.maxHeaderBytes });
    const v = validateRequest(fields);
    if (!v.ok) {
      if (v.kind === 'malformed') throw new H3Error(H3_ERROR.H3_MESSAGE_ERROR, v.reason);
      // Well-formed but not something we serve (e.g. CONNECT): answer instead of resetting.
      this.startBody(undefined);
      this.respond(501, [['content-type', 'text/plain']]);
      this.write(Buffer.from(`${v.reason}\n`));
      this.end();
      return;
    }
    this.request = v.request;
    this.startBody(v.request.contentLength);
    dispatchExchange(this.opts.handler, this, (err) => this.opts.onHandlerError(err, this.streamId));
  }

  private startBody(contentLength: number | undefined): void {
    this.setRecv(Recv.Body);
    this.lengthCounter = new BodyLengthCounter(contentLength);
    this.requestBody = new RequestBody(BODY_HIGH_WATER_MARK);
  }

  private onRequestTrailers(block: Buffer): void {
    const v = validateTrailers(decodeFieldSection(block, { maxFieldSectionSize: this.opts.limits.maxHeaderBytes }));
    if (!v.ok) throw new H3Error(H3_ERROR.H3_MESSAGE_ERROR, v.reason);
    this.requestTrailers = v.trailers;
    this.setRecv(Recv.Trailers);
  }

  private onFin(): void {
    this.frames.end();
    if (this.state.phase === 'open' && this.state.recv === Recv.Headers) {
      throw new H3Error(H3_ERROR.H3_REQUEST_INCOMPLETE, 'stream ended before HEADERS');
    }
    const problem = this.lengthCounter!.finish();
    if (problem) throw new H3Error(H3_ERROR.H3_MESSAGE_ERROR, problem);
    this.setRecv(Recv.Done);
    this.requestBody!.end(this.requestTrailers);
    this.maybeDone();
  }

  /** Stop reading QUIC (so flow control slows the client) until the body consumer catches up. */
  private pauseUntilDrained(): void {
    this.setRecv(Recv.BodyPaused);
    void this.requestBody!.drained().then(() => {
      if (this.state.phase === 'open' && this.state.recv === Recv.BodyPaused) {
        this.state.recv = Recv.Body;
        // The client was not the one waiting: its idle clock starts again now.
        this.lastProgressAt = performance.now();
      }
      this.onReadable();
      // Reading freed flow-control credit: let the endpoint send MAX_STREAM_DATA.
      this.conn.wake();
    });
  }

  /** Reads and drops what the client still sends after we stopped caring (lets quiche finish the stream). */
  private discardInput(): void {
    try {
      while (this.conn.streamRecv(this.streamId, scratch) !== null);
    } catch {
      // reset by the client: nothing left to read
    }
  }

  private onPeerReset(code: number): void {
    this.abort(ABORT.clientReset, `client reset stream (${h3ErrorName(code)})`);
  }

  /** Client reset, connection closed, drain timeout: stop everything for this exchange. */
  abort(reason: AbortReason, detail?: string): void {
    if (this.state.phase === 'finished') return;
    this.requestBody?.abort(detail ?? reason);
    this.aborter.abort(new ExchangeAborted(reason, detail));
    this.writer.fail();
    this.conn.resetStream(this.streamId, H3_ERROR.H3_REQUEST_CANCELLED);
    this.finish();
  }

  /** A malformed request or frame: stream error (RFC 9114 §4.1.2), the connection lives on. */
  private streamError(err: unknown): void {
    if (err instanceof H3Error && CONNECTION_ERRORS.has(err.code)) {
      // QPACK failures, frames in the wrong place and malformed or truncated frames are connection
      // errors (RFC 9204 §2.2.3, RFC 9114 §7.1, §7.2).
      this.abort(ABORT.badRequest, err.message);
      this.conn.closeWithAppError(err.code, err.message.slice(0, 100));
      return;
    }
    const code = err instanceof H3Error ? err.code : H3_ERROR.H3_INTERNAL_ERROR;
    const detail = err instanceof Error ? err.message : String(err);
    this.requestBody?.abort(detail);
    this.aborter.abort(new ExchangeAborted(ABORT.badRequest, detail));
    this.conn.stopSending(this.streamId, code);
    this.conn.resetStream(this.streamId, code);
    this.writer.fail();
    this.finish();
  }

  // ------------------------------------------------------------------ send side

  respond(status: number, headers: FieldList, endStream = false): void {
    // After an abort (reset, timeout) the exchange is over for the handler: nothing to answer.
    if (this.state.phase === 'finished' || this.aborter.aborted) return;
    if (this.state.send !== Send.NotStarted) throw new Error('response headers already sent');
    this.state.send = Send.Body;
    this.sendFields([[':status', String(status)], ...withListenerAltSvc(headers, this.opts.altSvc)], endStream);
    if (endStream) this.completeResponse();
  }

  private get sendingBody(): boolean {
    return this.state.phase === 'open' && this.state.send === Send.Body;
  }

  write(chunk: Buffer): boolean {
    if (!this.sendingBody || chunk.length === 0) return !this.writer.failed;
    this.bytesSent += chunk.length;
    this.writer.write(encodeDataFrameHeader(chunk.length));
    return this.writer.write(chunk);
  }

  drained(): Promise<void> {
    return this.writer.drained();
  }

  end(trailers?: FieldList): void {
    if (!this.sendingBody) return;
    if (trailers && trailers.length > 0) this.sendFields(trailers, true);
    else this.writer.end();
    this.completeResponse();
  }

  reset(): void {
    if (this.state.phase === 'finished') return;
    const code = H3_ERROR.H3_INTERNAL_ERROR;
    this.writer.fail();
    this.conn.resetStream(this.streamId, code);
    if (this.state.recv !== Recv.Done) this.conn.stopSending(this.streamId, code);
    this.requestBody?.abort('response reset');
    this.finish();
  }

  private sendFields(fields: FieldList, fin: boolean): void {
    this.writer.write(encodeHeadersFrame(encodeFieldSection(fields)), fin);
  }

  private completeResponse(): void {
    if (this.state.phase === 'finished') return;
    this.state.send = Send.Done;
    if (this.state.recv !== Recv.Done) {
      // The response is complete: the rest of the request body is not needed (§4.1.2).
      this.conn.stopSending(this.streamId, H3_ERROR.H3_NO_ERROR);
      this.state.recv = Recv.Done;
      this.releaseHeaderBytes();
      this.requestBody?.end();
    }
    this.maybeDone();
  }

  /** True while the response is under way: started, not yet complete. */
  get responding(): boolean {
    return this.state.phase === 'open' && this.state.send === Send.Body;
  }

  /**
   * True while nothing of the response was written yet (e.g. the upstream has not answered):
   * a client's STOP_SENDING cannot surface through a failed write then.
   */
  get awaitingResponse(): boolean {
    return this.state.phase === 'open' && this.state.send === Send.NotStarted;
  }

  /**
   * Did the client stop this stream (STOP_SENDING)? Then give up the exchange now. (Once quiche
   * has reset and forgotten the stream, it reports it the same way.)
   */
  checkStopped(): void {
    if (this.conn.sendClosed(this.streamId)) this.onWriteFailed();
  }

  /**
   * QUIC has credit for this stream again: push queued response bytes. True when QUIC took none
   * of the bytes waiting (see StreamWriter.flush).
   */
  onWritable(): boolean {
    const starved = this.writer.flush();
    this.maybeDone();
    return starved;
  }

  /** Done once both directions are complete and every response byte is handed to QUIC. */
  private maybeDone(): void {
    if (this.state.phase === 'open' && this.state.send === Send.Done && this.state.recv === Recv.Done && !this.writer.blocked) this.finish();
  }

  private finish(): void {
    if (this.state.phase === 'finished') return;
    this.state = { phase: 'finished' };
    this.releaseHeaderBytes();
    this.opts.onDone(this.streamId);
  }
}

function isHeaderSectionTooLarge(err: unknown): err is FieldSectionTooLargeError | FrameTooLargeError {
  return err instanceof FieldSectionTooLargeError || (err instanceof FrameTooLargeError && err.frameType === FRAME_TYPE.HEADERS);
}
