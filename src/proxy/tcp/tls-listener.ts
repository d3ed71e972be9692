/**
 * One TCP listener serving HTTP/1.1 and/or HTTP/2 over TLS on an already listening socket (an fd
 * the master opened and every worker shares). Node runs TLS and the protocols (`node:http2` with
 * `allowHTTP1` when both are served, `node:https` for HTTP/1.1 alone); the connections' limits,
 * clocks and drain live in H1Connection and H2Connection. Every response carries the listener's
 * `alt-svc`, the handler's and the protocol layer's own (400, 408, 431, 501) alike: the protocol
 * layer adds it wherever it writes a response head (`withListenerAltSvc`, `endWithStatus`).
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import http2, { type Http2SecureServer, type ServerHttp2Session } from 'node:http2';
import https from 'node:https';
import type { Socket } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { formatListener } from '../config/section-listeners.js';
import type { HttpLimits, ListenerConfig } from '../config/types.js';
import type { RequestHandler } from '../http/exchange.js';
import { REFUSAL, type RefusalCounter } from '../http/refusals.js';
import type { TcpConnections } from './connections.js';
import { H1Connection } from './h1-connection.js';
import { buildH1Request, http10Authority } from './h1-request.js';
import { H2Connection } from './h2-connection.js';
import { endWithStatus } from './raw-response.js';
import { tcpAlpn, type TcpCertificates } from './tls-options.js';

export interface TlsListenerOptions {
  /** A listening TCP socket. */
  readonly fd: number;
  readonly listener: ListenerConfig;
  readonly handler: RequestHandler;
  readonly limits: HttpLimits;
  readonly certificates: TcpCertificates;
  readonly ticketKeys: Buffer;
  readonly connections: TcpConnections;
  readonly refusals: RefusalCounter;
  readonly log: Logger;
}

type Server = Http2SecureServer | https.Server;

export class TlsListener {
  private readonly h1 = new Map<Socket, H1Connection>();
  private readonly h2 = new Set<H2Connection>();
  private accepting = true;

  private constructor(
    private readonly server: Server,
    private readonly opts: TlsListenerOptions,
  ) {}

  /** Starts accepting on `opts.fd`; resolves once Node listens on it. */
  static async open(opts: TlsListenerOptions): Promise<TlsListener> {
    const server = createServer(opts);
    const listener = new TlsListener(server, opts);
    listener.wire();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ fd: opts.fd }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => opts.log.error({ err, listen: formatListener(opts.listener) }, 'TCP listener error'));
    return listener;
  }

  get activeRequests(): number {
    let n = 0;
    for (const c of this.h1.values()) n += c.activeRequests;
    for (const c of this.h2) n += c.activeRequests;
    return n;
  }

  /**
   * Stop accepting at once (this process's copy of the listening socket closes; the others keep
   * the socket and its queue) and ask every connection to finish: GOAWAY for HTTP/2, `Connection:
   * close` on HTTP/1.1's next response and idle ones closed now.
   */
  drain(): void {
    this.stopAccepting();
    for (const c of this.h1.values()) c.drain();
    for (const c of this.h2) c.drain();
  }

  stopAccepting(): void {
    if (!this.accepting) return;
    this.accepting = false;
    // tls.Server's close, not Http2SecureServer's: that one also closes sessions and idle
    // HTTP/1.1 connections at once on some Node versions, before our graceful GOAWAY steps.
    tls.Server.prototype.close.call(this.server);
  }

  private wire(): void {
    const { server, opts } = this;
    const { connections, log } = opts;
    // Before tls.Server's own listener wraps the socket: one over the limit is dropped untouched.
    server.prependListener('connection', (socket: Socket) => {
      if (!connections.admit(socket)) opts.refusals.add(REFUSAL.tcpConnectionLimit);
    });
    server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
      if (socket.destroyed && err.code === 'ECONNRESET') return; // refused above, or the client gave up
      connections.count('tlsErrors');
      log.debug({ err: err.message, peer: socket.remoteAddress }, 'TLS handshake failed');
    });
    server.on('secureConnection', (socket: TLSSocket) => {
      const protocol = socket.alpnProtocol === 'h2' ? 'h2' : 'h1';
      if (protocol === 'h1' && !opts.listener.protocols.includes('h1')) return; // 'unknownProtocol' below
      connections.opened(socket, protocol);
      if (protocol === 'h1') this.trackH1(socket);
    });
    const onHandlerError = (err: unknown, conn: string, stream: number): void => log.error({ conn, stream, err }, 'request handler failed; answered 500 or reset');

    if (!opts.listener.protocols.includes('h1')) {
      // HTTP/2 only, and the client chose no protocol in ALPN (one that offered only http/1.1
      // got the no_application_protocol alert in the handshake). Such clients speak HTTP/1.1:
      // say 505 (RFC 9110 §15.6.6) with our Alt-Svc, where Node would answer a bare 403.
      server.on('unknownProtocol', (socket: TLSSocket) => {
        // The request is read and dropped (unread bytes would turn our close into a reset). Not
        // ended within the handshake's own callback: TLS would then close without close_notify.
        socket.resume();
        setImmediate(() => endWithStatus(socket, 505, 'this address serves HTTP/2 only (TLS ALPN h2)', opts.listener.altSvc));
      });
    }
    if (opts.listener.protocols.includes('h2')) {
      server.on('session', (session: ServerHttp2Session) => {
        const conn = new H2Connection(session, { handler: opts.handler, altSvc: opts.listener.altSvc, limits: opts.limits, connectionId: connectionId(), connections, refusals: opts.refusals, log, onHandlerError });
        this.h2.add(conn);
        session.once('close', () => this.h2.delete(conn));
        if (!this.accepting) conn.drain();
      });
    }
    if (opts.listener.protocols.includes('h1')) {
      server.on('request', (req: IncomingMessage, res: ServerResponse) => {
        // Only HTTP/1.x arrives here (see createServer); anything else would be handled twice.
        if (req.httpVersionMajor !== 1) return;
        const socket = req.socket;
        (this.h1.get(socket) ?? this.trackH1(socket)).onRequest(req, res);
      });
      // Adding a 'request' listener made node:http2 route HTTP/2 streams through its compatibility
      // layer too (a second 'stream' listener on the server, which would consume each stream's
      // body and emit it as a 'request'). Streams are ours (H2Connection listens on each session),
      // so that listener goes; the httpVersionMajor check above stays as a guard.
      server.removeAllListeners('stream');
      server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
        const conn = this.h1.get(socket);
        if (conn) conn.onParseError(err);
        else socket.destroy();
      });
      server.on('connect', (req: IncomingMessage, socket: Socket) => {
        // CONNECT (authority-form): answered like over HTTP/3 (501), or 400 when malformed.
        const built = buildH1Request(req.method ?? '', req.url ?? '', req.rawHeaders, 'https', http10Authority(req));
        if (!built.ok && built.status === 400) connections.count('malformed');
        endWithStatus(socket, built.ok ? 501 : built.status, built.ok ? 'not implemented' : built.reason, opts.listener.altSvc);
      });
    }
  }

  private trackH1(socket: Socket): H1Connection {
    const { opts } = this;
    const conn = new H1Connection(socket, {
      handler: opts.handler,
      altSvc: opts.listener.altSvc,
      limits: opts.limits,
      connectionId: connectionId(),
      connections: opts.connections,
      refusals: opts.refusals,
      onHandlerError: (err, conn, stream) => opts.log.error({ conn, stream, err }, 'request handler failed; answered 500 or reset'),
    });
    this.h1.set(socket, conn);
    socket.once('close', () => this.h1.delete(socket));
    if (!this.accepting) conn.drain();
    return conn;
  }
}

function connectionId(): string {
  return randomBytes(8).toString('hex');
}

function createServer(opts: TlsListenerOptions): Server {
  const { limits, listener } = opts;
  const tlsOptions = { ...opts.certificates.serverOptions(opts.ticketKeys, limits.requestHeaderTimeoutMs), ALPNProtocols: tcpAlpn(listener.protocols) };
  // Our own clocks (H1Connection, H1Exchange) replace Node's HTTP/1.1 timeouts, which are only
  // checked every 30 s and would cut long uploads (requestTimeout).
  const h1Settings = { maxHeaderSize: limits.maxHeaderBytes, headersTimeout: 0, requestTimeout: 0, keepAliveTimeout: 0, requireHostHeader: false };
  if (!listener.protocols.includes('h2')) return https.createServer({ ...tlsOptions, ...h1Settings });
  const server = http2.createSecureServer({
    ...tlsOptions,
    // Node sets ALPN itself from allowHTTP1: h2, plus http/1.1 when allowed.
    allowHTTP1: listener.protocols.includes('h1'),
    settings: {
      maxConcurrentStreams: limits.h2MaxConcurrentStreams,
      initialWindowSize: limits.h2InitialWindow,
      maxHeaderListSize: limits.maxHeaderBytes,
      enablePush: false,
    },
  });
  // The HTTP/1.1 side of an allowHTTP1 server reads these from the server object.
  Object.assign(server, h1Settings);
  return server;
}
