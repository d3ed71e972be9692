/**
 * An in-memory QUIC connection for driving the HTTP/3 layer without sockets or root: it implements
 * QuicStreams the way quiche behaves towards its application (streamRecv returns null when nothing
 * is buffered and throws "StreamReset(code)" after a RESET_STREAM; streamSend takes what flow-control
 * credit allows, returns null without credit and throws once the peer sent STOP_SENDING), and gives
 * the test the client's side: open streams, send bytes and FIN, reset, stop, grant credit, read
 * what the server wrote. Delivery calls the application as QuicConnection.afterReceive does.
 */
import { FrameReader, encodeDataFrameHeader, encodeFrame, encodeHeadersFrame, type H3FrameEvent } from '../../src/proxy/h3/frames.js';
import { decodeFieldSection, encodeFieldSection } from '../../src/proxy/h3/qpack.js';
import type { QuicApplication, QuicStreams } from '../../src/proxy/quic/connection.js';

interface ServerRecv {
  chunks: Buffer[];
  fin: boolean;
  finDelivered: boolean;
  resetCode: number | undefined;
}

interface ServerSend {
  readonly data: Buffer[];
  fin: boolean;
  credit: number;
  /** STOP_SENDING from the client. */
  stoppedCode: number | undefined;
  /** Our RESET_STREAM. */
  resetCode: number | undefined;
}

export class MemoryQuicConnection implements QuicStreams {
  readonly id = 'c0ffee';
  peer = { host: '192.0.2.7', port: 50000 };
  isReady = true;
  /** The connection runs on 0-RTT keys: set before creating the session, ended by `completeHandshake()`. */
  inEarlyData = false;
  rttMs = 0;
  /** The client's CONNECTION_CLOSE arrived (`clientClose()`): the connection is draining. */
  peerClosed = false;
  get closing(): boolean {
    return this.closed !== undefined || this.peerClosed;
  }
  app: QuicApplication | undefined;
  /** CONNECTION_CLOSE the application asked for. */
  closed: { code: number; reason: string } | undefined;
  /** Our STOP_SENDING per stream (the code). */
  readonly stopSent = new Map<number, number>();
  wakes = 0;
  /** Credit each new stream starts with (bytes the server may send on it). */
  initialCredit = Number.POSITIVE_INFINITY;
  /** Whether sent bytes count as acknowledged at once (else `acknowledge()`). */
  autoAcknowledge = true;
  private acknowledged = new Set<number>();
  private readonly recv = new Map<number, ServerRecv>();
  private readonly send = new Map<number, ServerSend>();

  // ------------------------------------------------------------------ QuicStreams (server side)

  streamRecv(streamId: number, buf: Uint8Array): [number, boolean] | null {
    const r = this.recv.get(streamId);
    if (!r) return null;
    if (r.resetCode !== undefined) throw new Error(`StreamReset(${r.resetCode})`);
    let n = 0;
    while (r.chunks.length > 0 && n < buf.length) {
      const head = r.chunks[0]!;
      const take = Math.min(head.length, buf.length - n);
      buf.set(head.subarray(0, take), n);
      n += take;
      if (take === head.length) r.chunks.shift();
      else r.chunks[0] = head.subarray(take);
    }
    const fin = r.fin && r.chunks.length === 0 && !r.finDelivered;
    if (n === 0 && !fin) return null;
    if (fin) r.finDelivered = true;
    return [n, fin];
  }

  streamSend(streamId: number, data: Uint8Array, fin: boolean): number | null {
    const s = this.sendState(streamId);
    if (s.stoppedCode !== undefined) throw new Error(`StreamStopped(${s.stoppedCode})`);
    if (s.resetCode !== undefined || s.fin) throw new Error('InvalidStreamState');
    if (data.length > 0 && s.credit <= 0) return null;
    const n = Math.min(data.length, s.credit);
    s.credit -= n;
    if (n > 0) s.data.push(Buffer.from(data.subarray(0, n)));
    if (fin && n === data.length) s.fin = true;
    return n;
  }

  sendClosed(streamId: number): boolean {
    const s = this.send.get(streamId);
    if (!s) return false;
    if (s.stoppedCode !== undefined || s.resetCode !== undefined) return true;
    // quiche forgets a stream once our FIN is acknowledged and the peer's side is complete.
    const r = this.recv.get(streamId);
    const peerDone = !r || r.finDelivered || r.resetCode !== undefined;
    return s.fin && peerDone && (this.autoAcknowledge || this.acknowledged.has(streamId));
  }

  resetStream(streamId: number, code: number): void {
    const s = this.sendState(streamId);
    if (s.fin || s.resetCode !== undefined) return;
    s.resetCode = code;
  }

  stopSending(streamId: number, code: number): void {
    if (!this.stopSent.has(streamId)) this.stopSent.set(streamId, code);
  }

  closeWithAppError(code: number, reason = ''): void {
    this.closed ??= { code, reason };
  }

  wake(): void {
    this.wakes++;
  }

  // ------------------------------------------------------------------ the client's side

  /** Handshake done: the application opens its streams. */
  start(app: QuicApplication): void {
    this.app = app;
    app.onReady();
    if (!this.inEarlyData) app.onHandshakeComplete();
  }

  /** The client's Finished arrived: the connection leaves early data (as QuicConnection reports it). */
  completeHandshake(): void {
    this.inEarlyData = false;
    this.app?.onHandshakeComplete();
  }

  /** Client bytes (and FIN) on a stream, then one delivery to the application. */
  clientSend(streamId: number, data: Uint8Array, fin = false): void {
    const r = this.recvState(streamId);
    if (data.length > 0) r.chunks.push(Buffer.from(data));
    if (fin) r.fin = true;
    this.deliver();
  }

  /** RESET_STREAM from the client. */
  clientReset(streamId: number, code: number): void {
    this.recvState(streamId).resetCode = code;
    this.deliver();
  }

  /** STOP_SENDING from the client: the server's next write on the stream fails. */
  clientStop(streamId: number, code: number): void {
    this.sendState(streamId).stoppedCode = code;
    this.deliver();
  }

  /** CONNECTION_CLOSE from the client (quiche drains the connection before reporting it closed). */
  clientClose(): void {
    this.peerClosed = true;
    this.deliver();
  }

  /** MAX_STREAM_DATA: more credit for the server on this stream. */
  grant(streamId: number, bytes: number): void {
    this.sendState(streamId).credit += bytes;
    this.deliver();
  }

  acknowledge(streamId: number): void {
    this.acknowledged.add(streamId);
    this.deliver();
  }

  /** What QuicConnection.afterReceive does after packets: readable streams, writable ones, afterPackets. */
  deliver(): void {
    const app = this.app;
    if (!app) return;
    for (const [id, r] of this.recv) {
      if (r.resetCode !== undefined || r.chunks.length > 0 || (r.fin && !r.finDelivered)) app.onStreamReadable(id);
    }
    for (const id of app.streamsAwaitingCredit()) {
      const s = this.send.get(id);
      if (s !== undefined && s.credit > 0 && s.stoppedCode === undefined) app.onStreamWritable(id);
    }
    app.afterPackets?.();
  }

  /** Client bytes still waiting for the server to read them. */
  unread(streamId: number): number {
    return (this.recv.get(streamId)?.chunks ?? []).reduce((n, c) => n + c.length, 0);
  }

  /** Everything the server wrote on a stream so far. */
  sent(streamId: number): { data: Buffer; fin: boolean; resetCode: number | undefined } {
    const s = this.send.get(streamId);
    return { data: Buffer.concat(s?.data ?? []), fin: s?.fin ?? false, resetCode: s?.resetCode };
  }

  private recvState(streamId: number): ServerRecv {
    let r = this.recv.get(streamId);
    if (!r) this.recv.set(streamId, (r = { chunks: [], fin: false, finDelivered: false, resetCode: undefined }));
    return r;
  }

  private sendState(streamId: number): ServerSend {
    let s = this.send.get(streamId);
    if (!s) this.send.set(streamId, (s = { data: [], fin: false, credit: this.initialCredit, stoppedCode: undefined, resetCode: undefined }));
    return s;
  }
}

// ------------------------------------------------------------------ client-side HTTP/3 encoding

export type Fields = Array<[string, string]>;

export function requestHeaders(method: string, path: string, extra: Fields = [], authority = 'example.test'): Fields {
  return [[':method', method], [':scheme', 'https'], [':authority', authority], [':path', path], ...extra];
}

export function headersFrame(fields: Fields): Buffer {
  return encodeHeadersFrame(encodeFieldSection(fields));
}

export function dataFrame(payload: Uint8Array): Buffer {
  return Buffer.concat([encodeDataFrameHeader(payload.length), payload]);
}

export { encodeFrame };

export interface ParsedResponse {
  /** Header sections in order: the response head, then trailers if any. */
  readonly headerSections: Fields[];
  readonly body: Buffer;
  readonly status: number | undefined;
  readonly fin: boolean;
  readonly resetCode: number | undefined;
}

/** Decodes what the server wrote on a request stream. */
export function parseResponse(conn: MemoryQuicConnection, streamId: number): ParsedResponse {
  const { data, fin, resetCode } = conn.sent(streamId);
  const headerSections: Fields[] = [];
  const body: Buffer[] = [];
  for (const ev of new FrameReader().push(data)) {
    if (ev.kind === 'data') body.push(Buffer.from(ev.data));
    else headerSections.push(decodeFieldSection(ev.payload));
  }
  const status = headerSections[0]?.find(([n]) => n === ':status')?.[1];
  return { headerSections, body: Buffer.concat(body), status: status === undefined ? undefined : Number(status), fin, resetCode };
}

/** The whole frames the server wrote on a unidirectional stream, after its type byte. */
export function serverUniFrames(conn: MemoryQuicConnection, streamId: number): { type: number; frames: H3FrameEvent[] } {
  const { data } = conn.sent(streamId);
  return { type: data[0]!, frames: [...new FrameReader().push(data.subarray(1))] };
}
