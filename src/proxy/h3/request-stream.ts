/**
 * One HTTP/3 request stream (RFC 9114 §4.1): HEADERS, DATA*, optional trailing HEADERS from the
 * client; the same shape back. It decodes and validates the request, streams the body to the
 * handler with backpressure (we stop reading from QUIC while the handler's body buffer is full, so
 * QUIC flow control slows the client), and encodes the response the handler writes.
 */
import { BodyLengthCounter, validateRequest, validateTrailers, type FieldList, type ValidatedRequest } from '../http-semantics/index.js';
import type { QuicConnection } from '../quic/connection.js';
import type { HostPort } from '../quic/native.js';
import { streamResetCode } from '../quic/native.js';
import { H3_ERROR, H3Error, h3ErrorName } from './errors.js';
import { FRAME_TYPE, FrameReader, encodeDataFrameHeader, encodeHeadersFrame } from './frames.js';
import { decodeFieldSection, encodeFieldSection } from './qpack.js';
import { BodyPipe } from '../upstream/body-pipe.js';
import { StreamWriter } from './stream-writer.js';

/** What the proxy does with a request: route it, answer it, forward it. */
export interface RequestHandler {
  handle(exchange: Exchange): void;
}

/** The handler's view of one request/response exchange. */
export interface Exchange {
  readonly request: ValidatedRequest;
  /** The request body as it arrives (ends after trailers, if any, were received). */
  readonly body: BodyPipe;
  readonly client: HostPort;
  readonly connectionId: string;
  readonly streamId: number;
  /** Aborted when the client resets the stream or the connection goes away. */
  readonly signal: AbortSignal;
  readonly headersSent: boolean;
  readonly bytesReceived: number;
  readonly bytesSent: number;
  respond(status: number, headers: FieldList, endStream?: boolean): void;
  /** Sends body bytes; false means wait for `drained()` before writing more. */
  write(chunk: Buffer): boolean;
  drained(): Promise<void>;
  end(trailers?: FieldList): void;
  /** Abort the response with RESET_STREAM (e.g. the upstream failed mid-body). */
  reset(code: number): void;
}

const enum RecvState {
  Headers,
  Body,
  Trailers,
  Done,
}

const READ_CHUNK = 64 * 1024;
const BODY_HIGH_WATER_MARK = 256 * 1024;
const scratch = Buffer.allocUnsafe(READ_CHUNK);

export class RequestStream implements Exchange {
  readonly writer: StreamWriter;
  private readonly frames = new FrameReader();
  private readonly abortController = new AbortController();
  private recvState = RecvState.Headers;
  private lengthCounter: BodyLengthCounter | undefined;
  private bodyPipe: BodyPipe | undefined;
  private paused = false;
  private responseState: 'none' | 'headers' | 'done' = 'none';
  private finished = false;
  request!: ValidatedRequest;
  private requestTrailers: FieldList | undefined;
  bytesReceived = 0;
  bytesSent = 0;

  constructor(
    private readonly conn: QuicConnection,
    readonly streamId: number,
    private readonly handler: RequestHandler,
    private readonly onDone: () => void,
  ) {
    // STOP_SENDING from the client shows up as a failed write: stop the exchange (and the
    // upstream body it pulls) instead of reading it to the end for nobody.
    this.writer = new StreamWriter(conn, streamId, () => this.onWriteFailed());
  }

  private onWriteFailed(): void {
    if (this.finished) return;
    this.abortController.abort(new Error('client stopped the response stream'));
    this.bodyPipe?.abort('client stopped the response stream');
    this.responseState = 'done';
    this.recvState = RecvState.Done;
    this.finish();
  }

  get client(): HostPort {
    return this.conn.peer;
  }

  get connectionId(): string {
    return this.conn.id;
  }

  get signal(): AbortSignal {
    return this.abortController.signal;
  }

  get body(): BodyPipe {
    return this.bodyPipe!;
  }

  /** False once the request side is over (read to the end, or no longer wanted). */
  private get receiving(): boolean {
    return this.recvState !== RecvState.Done;
  }

  get headersSent(): boolean {
    return this.responseState !== 'none';
  }

  // ------------------------------------------------------------------ receive side

  onReadable(): void {
    if (!this.receiving) {
      this.discardInput();
      return;
    }
    while (!this.paused && this.receiving && !this.finished) {
      let res: [number, boolean] | null;
      try {
        res = this.conn.streamRecv(this.streamId, scratch);
      } catch (err) {
        this.onPeerReset(streamResetCode(err) ?? H3_ERROR.H3_INTERNAL_ERROR);
        return;
      }
      if (res === null) return;
      const [n, fin] = res;
      try {
        if (n > 0) this.onBytes(scratch.subarray(0, n));
        // A response completed early (during onBytes) ends our interest in the request.
        if (fin && this.receiving) this.onFin();
      } catch (err) {
        this.streamError(err);
        return;
      }
      if (fin) return;
    }
  }

  private onBytes(chunk: Buffer): void {
    this.bytesReceived += chunk.length;
    for (const ev of this.frames.push(chunk)) {
      // The handler may answer synchronously (built-in routes, errors) while frames of this chunk
      // remain: the rest of the request is no longer wanted (we sent STOP_SENDING).
      if (!this.receiving) return;
      if (ev.kind === 'data') {
        if (this.recvState !== RecvState.Body) throw new H3Error(H3_ERROR.H3_FRAME_UNEXPECTED, 'DATA outside the body');
        const problem = this.lengthCounter!.add(ev.data.length);
        if (problem) throw new H3Error(H3_ERROR.H3_MESSAGE_ERROR, problem);
        // The piece is a view into the shared scratch buffer: copy before handing it on.
        if (ev.data.length > 0 && !this.bodyPipe!.push(Buffer.from(ev.data))) this.pauseUntilDrained();
        continue;
      }
      if (ev.type !== FRAME_TYPE.HEADERS) {
        // PUSH_PROMISE is client-forbidden; control frames do not belong here (§7.2).
        throw new H3Error(H3_ERROR.H3_FRAME_UNEXPECTED, `frame 0x${ev.type.toString(16)} on a request stream`);
      }
      if (this.recvState === RecvState.Headers) this.onRequestHeaders(ev.payload);
      else if (this.recvState === RecvState.Body) this.onRequestTrailers(ev.payload);
      else throw new H3Error(H3_ERROR.H3_FRAME_UNEXPECTED, 'HEADERS after trailers');
    }
  }

  private onRequestHeaders(block: Buffer): void {
    const fields = decodeFieldSection(block);
    const v = validateRequest(fields);
    if (!v.ok) {
      if (v.kind === 'malformed') throw new H3Error(H3_ERROR.H3_MESSAGE_ERROR, v.reason);
      // Well-formed but not something we serve (e.g. CONNECT): answer instead of resetting.
      this.recvState = RecvState.Body;
      this.lengthCounter = new BodyLengthCounter(undefined);
      this.bodyPipe = new BodyPipe(BODY_HIGH_WATER_MARK);
      this.respond(501, [['content-type', 'text/plain']]);
      this.write(Buffer.from(`${v.reason}\n`));
      this.end();
      return;
    }
    this.request = v.request;
    this.recvState = RecvState.Body;
    this.lengthCounter = new BodyLengthCounter(v.request.contentLength);
    this.bodyPipe = new BodyPipe(BODY_HIGH_WATER_MARK);
    try {
      this.handler.handle(this);
    } catch {
      this.failResponse();
    }
  }

  private onRequestTrailers(block: Buffer): void {
    const v = validateTrailers(decodeFieldSection(block));
    if (!v.ok) throw new H3Error(H3_ERROR.H3_MESSAGE_ERROR, v.reason);
    this.requestTrailers = v.trailers;
    this.recvState = RecvState.Trailers;
  }

  private onFin(): void {
    this.frames.end();
    if (this.recvState === RecvState.Headers) throw new H3Error(H3_ERROR.H3_REQUEST_INCOMPLETE, 'stream ended before HEADERS');
    const problem = this.lengthCounter!.finish();
    if (problem) throw new H3Error(H3_ERROR.H3_MESSAGE_ERROR, problem);
    this.recvState = RecvState.Done;
    this.bodyPipe!.end(this.requestTrailers);
    this.maybeDone();
  }

  /** Stop reading QUIC (so flow control slows the client) until the body consumer catches up. */
  private pauseUntilDrained(): void {
    this.paused = true;
    void this.bodyPipe!.drained().then(() => {
      this.paused = false;
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
    this.abort(`client reset stream (${h3ErrorName(code)})`);
  }

  /** Client reset, connection closed: stop everything for this exchange. */
  abort(reason: string): void {
    if (this.finished) return;
    this.recvState = RecvState.Done;
    this.bodyPipe?.abort(reason);
    this.abortController.abort(new Error(reason));
    this.writer.fail();
    this.conn.resetStream(this.streamId, H3_ERROR.H3_REQUEST_CANCELLED);
    this.finish();
  }

  /** A malformed request or frame: stream error (RFC 9114 §4.1.2), the connection lives on. */
  private streamError(err: unknown): void {
    if (err instanceof H3Error && (err.code === H3_ERROR.QPACK_DECOMPRESSION_FAILED || err.code === H3_ERROR.H3_FRAME_UNEXPECTED)) {
      // QPACK failures and frames in the wrong place are connection errors (RFC 9204 §2.2.3, RFC 9114 §7.2).
      this.abort(err.message);
      this.conn.closeWithAppError(err.code, err.message.slice(0, 100));
      return;
    }
    const code = err instanceof H3Error ? err.code : H3_ERROR.H3_INTERNAL_ERROR;
    this.recvState = RecvState.Done;
    this.bodyPipe?.abort(err instanceof Error ? err.message : String(err));
    this.abortController.abort(err);
    this.conn.stopSending(this.streamId, code);
    this.conn.resetStream(this.streamId, code);
    this.writer.fail();
    this.finish();
  }

  // ------------------------------------------------------------------ send side

  respond(status: number, headers: FieldList, endStream = false): void {
    if (this.responseState !== 'none') throw new Error('response headers already sent');
    this.responseState = 'headers';
    this.sendFields([[':status', String(status)], ...headers], endStream);
    if (endStream) this.completeResponse();
  }

  write(chunk: Buffer): boolean {
    if (this.responseState !== 'headers' || chunk.length === 0) return !this.writer.failed;
    this.bytesSent += chunk.length;
    this.writer.write(encodeDataFrameHeader(chunk.length));
    return this.writer.write(chunk);
  }

  drained(): Promise<void> {
    return this.writer.drained();
  }

  end(trailers?: FieldList): void {
    if (this.responseState !== 'headers') return;
    if (trailers && trailers.length > 0) this.sendFields(trailers, true);
    else this.writer.end();
    this.completeResponse();
  }

  reset(code: number): void {
    if (this.finished) return;
    this.responseState = 'done';
    this.writer.fail();
    this.conn.resetStream(this.streamId, code);
    if (this.recvState !== RecvState.Done) this.conn.stopSending(this.streamId, code);
    this.recvState = RecvState.Done;
    this.bodyPipe?.abort('response reset');
    this.finish();
  }

  private sendFields(fields: FieldList, fin: boolean): void {
    this.writer.write(encodeHeadersFrame(encodeFieldSection(fields)), fin);
  }

  private completeResponse(): void {
    this.responseState = 'done';
    if (this.recvState !== RecvState.Done) {
      // The response is complete: the rest of the request body is not needed (§4.1.2).
      this.conn.stopSending(this.streamId, H3_ERROR.H3_NO_ERROR);
      this.recvState = RecvState.Done;
      this.bodyPipe?.end();
    }
    this.maybeDone();
  }

  /** The handler threw synchronously: answer 500 if we still can. */
  private failResponse(): void {
    if (this.responseState === 'none') {
      this.respond(500, [['content-type', 'text/plain']]);
      this.write(Buffer.from('internal error\n'));
      this.end();
    } else {
      this.reset(H3_ERROR.H3_INTERNAL_ERROR);
    }
  }

  /**
   * True while nothing of the response was written yet (e.g. the upstream has not answered):
   * a client's STOP_SENDING cannot surface through a failed write then.
   */
  get awaitingResponse(): boolean {
    return this.responseState === 'none' && !this.finished;
  }

  /**
   * Did the client stop this stream (STOP_SENDING)? Then give up the exchange now. (Once quiche
   * has reset and forgotten the stream, it reports it the same way.)
   */
  checkStopped(): void {
    if (this.conn.sendClosed(this.streamId)) this.onWriteFailed();
  }

  /** QUIC has credit for this stream again: push queued response bytes. */
  onWritable(): void {
    this.writer.flush();
    this.maybeDone();
  }

  /** Done once both directions are complete and every response byte is handed to QUIC. */
  private maybeDone(): void {
    if (this.responseState === 'done' && this.recvState === RecvState.Done && !this.writer.blocked) this.finish();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.onDone();
  }
}
