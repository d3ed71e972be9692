/**
 * A small HTTP/3 client on quiche's native binding and our own codecs: for the tests that need a
 * request no off-the-shelf client sends (malformed headers), for reading the server certificate
 * (SNI selection), and for load in the benchmark. Never the only client in a test suite.
 */
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { FRAME_TYPE, FrameReader, SETTINGS_ID, STREAM_TYPE, encodeControlStreamPreface, encodeDataFrameHeader, encodeHeadersFrame } from '../../src/proxy/h3/frames.js';
import { decodeFieldSection, encodeFieldSection } from '../../src/proxy/h3/qpack.js';
import { quiche, streamResetCode, type QuicheConnection } from '../../src/proxy/quic/native.js';

export interface H3Response {
  status: number;
  headers: Array<[string, string]>;
  body: Buffer;
  trailers: Array<[string, string]> | undefined;
}

export class StreamResetError extends Error {
  constructor(readonly code: number) {
    super(`stream reset by server with code 0x${code.toString(16)}`);
  }
}

interface Pending {
  readonly reader: FrameReader;
  readonly chunks: Buffer[];
  headers?: Array<[string, string]>;
  trailers?: Array<[string, string]>;
  resolve(r: H3Response): void;
  reject(e: Error): void;
}

export interface ConnectOptions {
  host: string;
  port: number;
  sni?: string;
  /** Session from a previous connection (`client.session()`), for resumption. */
  session?: Uint8Array;
  timeoutMs?: number;
  /** ALPN protocols to offer (default ['h3']). */
  alpn?: string[];
  /** Offer 0-RTT when resuming `session` (requests written before the handshake completes go in early data). */
  earlyData?: boolean;
  /** Receives a copy of every datagram sent before the first one is received: the client's first flight. */
  firstFlight?: Buffer[];
  /** A zero-length CID of its own, as Chromium uses (the server addresses it by its address alone). */
  zeroLengthCid?: boolean;
}

export class H3Client {
  private readonly pending = new Map<number, Pending>();
  private nextStreamId = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly buf = Buffer.allocUnsafe(65535);
  private readonly local: { host: string; port: number };
  private closedResolve: (() => void) | undefined;
  readonly closed: Promise<void>;
  private established: (() => void) | undefined;
  private failed: ((e: Error) => void) | undefined;
  /** Set when the server closed the connection (its error code and whether it was an app error). */
  peerError: { isApp: boolean; errorCode: number } | null = null;
  /**
   * Sees every datagram before quiche does, with the local address it arrived on; returning false
   * drops it (a path that loses what the server sends).
   */
  filterInbound: ((local: { host: string; port: number }, datagram: Buffer) => boolean) | undefined;
  /** The sockets quiche may send from, by local port (a second one after `migrate`). */
  private readonly sockets = new Map<number, dgram.Socket>();
  /** Datagrams kept back by `holdOutbound`, in the order quiche wrote them. */
  private held: Array<{ datagram: Buffer; from: { port: number }; to: { host: string; port: number } }> | undefined;

  private constructor(
    private readonly socket: dgram.Socket,
    private readonly conn: QuicheConnection,
    private readonly peer: { host: string; port: number },
  ) {
    const a = socket.address();
    this.local = { host: a.address, port: a.port };
    this.closed = new Promise((r) => (this.closedResolve = r));
    this.listen(socket);
  }

  private listen(socket: dgram.Socket): void {
    const a = socket.address();
    const local = { host: a.address, port: a.port };
    this.sockets.set(local.port, socket);
    socket.on('message', (msg, rinfo) => {
      this.firstFlight = undefined;
      if (this.filterInbound && !this.filterInbound(local, msg)) return;
      try {
        this.conn.recv(msg, { from: { host: rinfo.address, port: rinfo.port }, to: local });
      } catch {
        // quiche dropped it
      }
      this.afterIo();
    });
  }

  /**
   * Moves the connection to a new local port (a new socket), as a client behind a rebinding NAT,
   * or Chromium on a degrading path, does: quiche sends from there with a spare server CID, at once
   * (no probing first). Resolves with the new local address.
   */
  async migrate(): Promise<{ host: string; port: number }> {
    const socket = dgram.createSocket(net.isIPv6(this.local.host) ? 'udp6' : 'udp4');
    await new Promise<void>((r) => socket.bind(0, this.local.host, () => r()));
    this.listen(socket);
    const a = socket.address();
    const local = { host: a.address, port: a.port };
    this.conn.migrate(local, this.peer);
    this.afterIo();
    return local;
  }

  /** Keeps back every datagram quiche writes from now on, as a stalled path would, until `releaseOutbound`. */
  holdOutbound(): void {
    this.held ??= [];
  }

  /** Sends what `holdOutbound` kept back, in order, and sends at once again; resolves with their count once the kernel has them. */
  async releaseOutbound(): Promise<number> {
    const held = this.held ?? [];
    this.held = undefined;
    await Promise.all(held.map(({ datagram, from, to }) => new Promise((r) => (this.sockets.get(from.port) ?? this.socket).send(datagram, to.port, to.host, r))));
    return held.length;
  }

  private closeSockets(): void {
    for (const socket of this.sockets.values()) {
      socket.removeAllListeners('message');
      socket.close();
    }
    this.sockets.clear();
  }

  static async connect(opts: ConnectOptions): Promise<H3Client> {
    const client = await H3Client.open(opts);
    await client.handshake;
    return client;
  }

  /** Resolves once the handshake completed; rejects when it failed or timed out. */
  handshake: Promise<void> = Promise.resolve();

  /**
   * Starts a connection without waiting for the handshake: with `session` and `earlyData`, requests
   * made right away are sent in 0-RTT. `handshake` settles when the handshake does.
   */
  static async open(opts: ConnectOptions): Promise<H3Client> {
    const family = net.isIPv6(opts.host) ? 'udp6' : 'udp4';
    const socket = dgram.createSocket(family);
    await new Promise<void>((r) => socket.bind(0, opts.host, () => r()));
    const cfg = new quiche.Config();
    cfg.verifyPeer(false);
    cfg.setApplicationProtos(opts.alpn ?? ['h3']);
    cfg.setMaxIdleTimeout(30_000);
    cfg.setMaxRecvUdpPayloadSize(1350);
    cfg.setMaxSendUdpPayloadSize(1350);
    cfg.setInitialMaxData(64 * 1024 * 1024);
    cfg.setInitialMaxStreamDataBidiLocal(16 * 1024 * 1024);
    cfg.setInitialMaxStreamDataBidiRemote(1024 * 1024);
    cfg.setInitialMaxStreamDataUni(1024 * 1024);
    cfg.setInitialMaxStreamsBidi(100);
    cfg.setInitialMaxStreamsUni(100);
    if (opts.earlyData) cfg.enableEarlyData();
    const a = socket.address();
    const peer = { host: opts.host, port: opts.port };
    const conn = quiche.Connection.connect(opts.sni ?? null, opts.zeroLengthCid ? Buffer.alloc(0) : randomBytes(16), { host: a.address, port: a.port }, peer, cfg);
    if (opts.session) conn.setSession(opts.session);
    const client = new H3Client(socket, conn, peer);
    client.firstFlight = opts.firstFlight;
    client.handshake = new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('handshake timed out')), opts.timeoutMs ?? 5000);
      client.established = () => {
        clearTimeout(t);
        resolve();
      };
      client.failed = (e) => {
        clearTimeout(t);
        reject(e);
      };
      client.afterIo();
    });
    // Observed by `connect`, or by the caller of `open`; never an unhandled rejection meanwhile.
    client.handshake.catch(() => {});
    return client;
  }

  /** Where the first flight goes (until the first datagram is received). */
  private firstFlight: Buffer[] | undefined;

  /** True while 0-RTT keys are in use (the handshake has not completed). */
  get isInEarlyData(): boolean {
    return this.conn.isInEarlyData();
  }

  /** DER bytes of the certificate the server presented. */
  peerCertificate(): Buffer | undefined {
    const chain = this.conn.peerCertChain();
    return chain?.[0] ? Buffer.from(chain[0]) : undefined;
  }

  session(): Uint8Array | null {
    return this.conn.session();
  }

  get isResumed(): boolean {
    return this.conn.isResumed();
  }

  /** A request from a plain header list (pseudo-headers included, sent exactly as given). */
  request(fields: Array<[string, string]>, body?: Buffer): Promise<H3Response> {
    return this.requestWithBlock(encodeFieldSection(fields), body);
  }

  /**
   * A request whose QPACK field section is given as bytes (to send what the encoder would not),
   * optionally on a chosen stream id (e.g. to open streams out of order).
   */
  requestWithBlock(fieldSection: Buffer, body?: Buffer, streamId?: number): Promise<H3Response> {
    const id = streamId ?? this.nextStreamId;
    this.nextStreamId = Math.max(this.nextStreamId, id + 4);
    const parts = [encodeHeadersFrame(fieldSection)];
    if (body && body.length > 0) parts.push(encodeDataFrameHeader(body.length), body);
    const payload = Buffer.concat(parts);
    const promise = new Promise<H3Response>((resolve, reject) => {
      this.pending.set(id, { reader: new FrameReader(), chunks: [], resolve, reject });
    });
    this.sendAll(id, payload);
    this.afterIo();
    return promise;
  }

  /**
   * A request whose stream stays open after its HEADERS (and `body`, if given): send the rest with
   * `sendData`, as slowly as the test likes. The response may come before the request ends.
   */
  openRequest(fields: Array<[string, string]>, body?: Buffer): { streamId: number; response: Promise<H3Response> } {
    const streamId = this.nextStreamId;
    this.unfinished.add(streamId);
    const response = this.requestWithBlock(encodeFieldSection(fields), body, streamId);
    return { streamId, response };
  }

  /**
   * A request stream carrying `bytes` exactly as given (e.g. the first part of a HEADERS frame)
   * and left open, as a client that stalls mid-request leaves it.
   */
  openRaw(bytes: Buffer): { streamId: number; response: Promise<H3Response> } {
    const streamId = this.nextStreamId;
    this.nextStreamId += 4;
    this.unfinished.add(streamId);
    const response = new Promise<H3Response>((resolve, reject) => {
      this.pending.set(streamId, { reader: new FrameReader(), chunks: [], resolve, reject });
    });
    this.sendAll(streamId, bytes);
    this.afterIo();
    return { streamId, response };
  }

  /** More of an open request's body (a DATA frame), and the end of the stream when `fin`. */
  sendData(streamId: number, data: Buffer, fin = false): void {
    if (fin) this.unfinished.delete(streamId);
    this.sendAll(streamId, data.length > 0 ? Buffer.concat([encodeDataFrameHeader(data.length), data]) : data);
    this.afterIo();
  }

  /**
   * The code of the server's STOP_SENDING on a request stream, as quiche reported it when we next
   * tried to send on it (with bytes still queued); undefined when none was seen.
   */
  stopSendingCode(streamId: number): number | undefined {
    return this.stoppedStreams.get(streamId);
  }

  /** Abandon a request: STOP_SENDING with `code` (what a browser does when a fetch is cancelled). */
  cancel(streamId: number, code: number): void {
    try {
      this.conn.streamShutdown(streamId, quiche.Shutdown.Read, code);
    } catch {
      // already finished
    }
    this.afterIo();
  }

  get(authority: string, path: string): Promise<H3Response> {
    return this.request([
      [':method', 'GET'],
      [':scheme', 'https'],
      [':authority', authority],
      [':path', path],
    ]);
  }

  /** The client's own address (its UDP socket). */
  get localAddress(): { host: string; port: number } {
    return this.local;
  }

  /** The server CID this client currently sends to (what an on-path observer sees). */
  get serverCid(): Buffer {
    return Buffer.from(this.conn.destinationId());
  }

  /** Server CIDs received and not in use: a move to a new port needs one. */
  get spareServerCids(): number {
    return this.conn.availableDcids();
  }

  /** Goes silent without a CONNECTION_CLOSE (a client that vanished): the server must time it out. */
  abandon(): void {
    if (this.timer) clearTimeout(this.timer);
    this.closeSockets();
    for (const p of this.pending.values()) p.reject(new Error('abandoned'));
    this.pending.clear();
    this.closedResolve?.();
  }

  /** Closes the connection (at once resolved when the server closed it already). */
  close(): Promise<void> {
    // Closed by the server: its socket is already gone.
    if (this.conn.isClosed()) return this.closed;
    try {
      this.conn.close(true, 0x100, Buffer.alloc(0));
    } catch {
      // already closing
    }
    this.afterIo();
    return this.closed;
  }

  private outgoing = new Map<number, Buffer>();
  /** Streams the server stopped (STOP_SENDING) while we had bytes queued for them: its code. */
  private readonly stoppedStreams = new Map<number, number>();
  /** Request streams opened with openRequest whose end the test has not sent yet. */
  private readonly unfinished = new Set<number>();

  private sendAll(id: number, data: Buffer): void {
    const queued = this.outgoing.get(id);
    this.outgoing.set(id, queued ? Buffer.concat([queued, data]) : data);
    this.pumpWrites();
  }

  private pumpWrites(): void {
    for (const [id, data] of this.outgoing) {
      const uni = (id & 2) !== 0;
      let n: number | null;
      try {
        n = this.conn.streamSend(id, data, !uni && !this.unfinished.has(id));
      } catch (err) {
        const stopped = err instanceof Error ? /^StreamStopped\((\d+)\)/.exec(err.message) : null;
        if (stopped) this.stoppedStreams.set(id, Number(stopped[1]));
        this.outgoing.delete(id);
        continue;
      }
      if (n === null) continue;
      if (n === data.length) this.outgoing.delete(id);
      else this.outgoing.set(id, data.subarray(n));
    }
  }

  private openedControl = false;

  private afterIo(): void {
    const c = this.conn;
    if (c.isEstablished() && !this.openedControl) {
      this.openedControl = true;
      this.sendUni(2, encodeControlStreamPreface([[SETTINGS_ID.QPACK_MAX_TABLE_CAPACITY, 0], [SETTINGS_ID.QPACK_BLOCKED_STREAMS, 0]]));
      this.sendUni(6, Buffer.from([STREAM_TYPE.QPACK_ENCODER]));
      this.sendUni(10, Buffer.from([STREAM_TYPE.QPACK_DECODER]));
      this.established?.();
    }
    // A handshake the server refused: fail now rather than after the closing period.
    const refused = !this.openedControl ? c.peerError() : null;
    if (refused) this.failed?.(new Error(`handshake refused by peer (0x${refused.errorCode.toString(16)})`));
    for (const id of c.readable()) this.readStream(id);
    if (this.outgoing.size > 0) this.pumpWrites();
    for (;;) {
      const r = c.send(this.buf);
      if (!r) break;
      const datagram = Buffer.from(this.buf.subarray(0, r[0]));
      this.firstFlight?.push(Buffer.from(datagram));
      const { from, to } = r[1];
      if (this.held) this.held.push({ datagram, from, to });
      else (this.sockets.get(from.port) ?? this.socket).send(datagram, to.port, to.host);
    }
    // A CONNECTION_CLOSE from the server ends it here, not after the draining period (3 PTOs, long
    // on a path that lost packets): nothing is sent while draining.
    if (c.isClosed() || c.peerError()) {
      this.peerError = c.peerError();
      if (this.timer) clearTimeout(this.timer);
      const err = new Error(`connection closed${this.peerError ? ` by peer (0x${this.peerError.errorCode.toString(16)})` : ''}`);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
      this.failed?.(err);
      this.closeSockets();
      this.closedResolve?.();
      return;
    }
    const t = c.timeout();
    if (this.timer) clearTimeout(this.timer);
    if (t !== null) {
      this.timer = setTimeout(() => {
        c.onTimeout();
        this.afterIo();
      }, t);
    }
  }

  private sendUni(id: number, data: Buffer): void {
    this.sendAll(id, data);
  }

  private readStream(id: number): void {
    const p = this.pending.get(id);
    const scratch = Buffer.allocUnsafe(65536);
    for (;;) {
      let r: [number, boolean] | null;
      try {
        r = this.conn.streamRecv(id, scratch);
      } catch (err) {
        const code = streamResetCode(err);
        if (p) {
          this.pending.delete(id);
          p.reject(new StreamResetError(code ?? -1));
        }
        return;
      }
      if (!r) return;
      if (!p) continue; // server control / QPACK streams: not needed by this client
      const [n, fin] = r;
      for (const ev of p.reader.push(Buffer.from(scratch.subarray(0, n)))) {
        if (ev.kind === 'data') p.chunks.push(Buffer.from(ev.data));
        else if (ev.type === FRAME_TYPE.HEADERS) {
          const fields = decodeFieldSection(ev.payload);
          if (!p.headers) p.headers = fields;
          else p.trailers = fields;
        }
      }
      if (fin) {
        this.pending.delete(id);
        const headers = p.headers ?? [];
        const status = Number(headers.find(([k]) => k === ':status')?.[1] ?? 0);
        p.resolve({ status, headers: headers.filter(([k]) => !k.startsWith(':')), body: Buffer.concat(p.chunks), trailers: p.trailers });
        return;
      }
    }
  }
}
