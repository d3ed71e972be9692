/**
 * One TCP listener serving HTTP/1.1 and/or HTTP/2 over TLS on an already listening socket (an fd
 * the master opened and every worker shares). Node runs TLS and the protocols (`node:http2` with
 * `allowHTTP1` when both are served, `node:https` for HTTP/1.1 alone); the connections' limits,
 * clocks and drain live in H1Connection and H2Connection. Every response carries the listener's
 * `alt-svc`, the handler's and the protocol layer's own (400, 408, 431, 501) alike: the protocol
 * layer adds it wherever it writes a response head (`withListenerAltSvc`, `endWithStatus`).
 *
 * The TLS server never listens itself: a plain acceptor takes the connections unread
 * (pauseOnConnect), so that with several sites a connection can be read up to its ClientHello and
 * handed to another site's worker before TLS starts (site-steering.ts); connections handed over by
 * other workers enter through adopt().
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import http2, { type Http2SecureServer, type ServerHttp2Session } from 'node:http2';
import https from 'node:https';
import net, { type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { formatListener } from '../config/section-listeners.js';
import type { HttpLimits, ListenerConfig } from '../config/types.js';
import type { RequestHandler } from '../http/exchange.js';
import type { AbortReason } from '../http/exchange-abort.js';
import { REFUSAL, type RefusalCounter } from '../http/refusals.js';
import type { TcpConnections } from './connections.js';
import { H1Connection } from './h1-connection.js';
import { buildH1Request, http10Authority } from './h1-request.js';
import { H2Connection } from './h2-connection.js';
import { maxHeaderListFields } from './header-list-size.js';
import { endWithStatus } from './raw-response.js';
import type { TcpSiteSteering } from './site-steering.js';
import { tcpAlpn, type TcpCertificates } from './tls-options.js';

export interface TlsListenerOptions {
  /** A listening TCP socket. */
  readonly fd: number;
  readonly listener: ListenerConfig;
  /** Its index in the config's listeners (the same in every worker: reloads keep the listeners). */
  readonly listenerIndex: number;
  readonly handler: RequestHandler;
  readonly limits: HttpLimits;
  readonly certificates: TcpCertificates;
  readonly ticketKeys: Buffer;
  readonly connections: TcpConnections;
  readonly refusals: RefusalCounter;
  /** Where each accepted connection goes: this TLS server, or another site's worker. */
  readonly steering: TcpSiteSteering;
  readonly log: Logger;
}

type Server = Http2SecureServer | https.Server;

/** The socket settings the TLS server would give the connections it accepted itself. */
interface AcceptedSocketSettings {
  readonly allowHalfOpen: boolean;
  readonly noDelay: boolean;
  readonly keepAlive: boolean;
  /** Seconds, as net.Server keeps it. */
  readonly keepAliveInitialDelay: number;
  readonly highWaterMark: number;
}

export class TlsListener {
  private readonly h1 = new Map<Socket, H1Connection>();
  private readonly h2 = new Set<H2Connection>();
  private accepting = true;

  private constructor(
    private readonly server: Server,
    private readonly acceptor: net.Server,
    private readonly opts: TlsListenerOptions,
  ) {}

  /** Starts accepting on `opts.fd`; resolves once Node listens on it. */
  static async open(opts: TlsListenerOptions): Promise<TlsListener> {
    const server = createServer(opts);
    const settings = server as unknown as AcceptedSocketSettings;
    const acceptor = net.createServer({
      pauseOnConnect: true,
      allowHalfOpen: settings.allowHalfOpen,
      noDelay: settings.noDelay,
      keepAlive: settings.keepAlive,
      keepAliveInitialDelay: settings.keepAliveInitialDelay * 1000,
      highWaterMark: settings.highWaterMark,
    });
    const listener = new TlsListener(server, acceptor, opts);
    listener.wire();
    await new Promise<void>((resolve, reject) => {
      acceptor.once('error', reject);
      acceptor.listen({ fd: opts.fd }, () => {
        acceptor.off('error', reject);
        resolve();
      });
    });
    acceptor.on('error', (err) => opts.log.error({ err, listen: formatListener(opts.listener) }, 'TCP listener error'));
    acceptor.on('connection', (socket: Socket) => listener.accepted(socket));
    return listener;
  }

  /**
   * A connection of this listener that another worker accepted and handed over (its native handle,
   * not read since that worker read `head`). False while not accepting (draining): the master then
   * gives it to another worker.
   */
  adopt(handle: object, head: Buffer): boolean {
    if (!this.accepting) return false;
    const settings = this.server as unknown as AcceptedSocketSettings;
    const socket = new net.Socket({
      handle,
      allowHalfOpen: settings.allowHalfOpen,
      readable: true,
      writable: true,
      readableHighWaterMark: settings.highWaterMark,
      writableHighWaterMark: settings.highWaterMark,
    } as net.SocketConstructorOpts);
    if (settings.noDelay) socket.setNoDelay(true);
    if (settings.keepAlive) socket.setKeepAlive(true, settings.keepAliveInitialDelay * 1000);
    this.opts.connections.count('adopted');
    if (!this.opts.connections.admit(socket)) {
      this.opts.refusals.add(REFUSAL.tcpConnectionLimit);
      return true;
    }
    socket.unshift(head);
    this.serve(socket);
    return true;
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
   * close` on HTTP/1.1's next response and ones idle between requests closed now.
   */
  drain(): void {
    this.stopAccepting();
    for (const c of this.h1.values()) c.drain();
    for (const c of this.h2) c.drain();
  }

  /**
   * The end of a drain's time: every connection's requests are aborted with `reason` and the
   * connections destroyed, at once (their sockets' closes would come later, looking like the
   * clients' doing, and after the upstream pools closed).
   */
  cut(reason: AbortReason): void {
    this.stopAccepting();
    for (const c of [...this.h1.values()]) c.cut(reason);
    for (const c of [...this.h2]) c.cut(reason);
  }

  stopAccepting(): void {
    if (!this.accepting) return;
    this.accepting = false;
    // Only the acceptor listens. (The TLS server is never closed: Http2SecureServer's close also
    // closes sessions and idle HTTP/1.1 connections at once on some Node versions, before our
    // graceful GOAWAY steps.)
    this.acceptor.close();
  }

  /** A connection from the acceptor, not read yet: admitted (or dropped untouched), then steered. */
  private accepted(socket: Socket): void {
    if (!this.opts.connections.admit(socket)) {
      this.opts.refusals.add(REFUSAL.tcpConnectionLimit);
      return;
    }
    this.opts.steering.route(socket, this.opts.listenerIndex, (s) => this.serve(s));
  }

  /** Into TLS, as if the TLS server had accepted the connection itself. */
  private serve(socket: Socket): void {
    this.server.emit('connection', socket);
  }

  private wire(): void {
    const { server, opts } = this;
    const { connections, log } = opts;
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
      const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
        // Only HTTP/1.x arrives here (see createServer); anything else would be handled twice.
        if (req.httpVersionMajor !== 1) return;
        const socket = req.socket;
        // A socket whose 'close' already came is tracked no more and never will be again.
        const conn = this.h1.get(socket) ?? (socket.destroyed ? undefined : this.trackH1(socket));
        conn?.onRequest(req, res);
      };
      server.on('request', onRequest);
      // With a listener, Node does not answer `Expect: 100-continue` itself: H1Exchange sends the
      // 100 when the upstream starts reading the body.
      server.on('checkContinue', onRequest);
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
  // Node stops collecting fields into rawHeaders (which we forward) past maxHeadersCount, silently
  // (default 1,000): the cap is set where a list it cuts is above max_header_bytes anyway, and
  // H1Connection refuses it with 431.
  const h1Properties = { maxHeadersCount: maxHeaderListFields(limits.maxHeaderBytes) };
  if (!listener.protocols.includes('h2')) return Object.assign(https.createServer({ ...tlsOptions, ...h1Settings }), h1Properties);
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
    maxHeaderListPairs: maxHeaderListFields(limits.maxHeaderBytes),
  });
  // The HTTP/1.1 side of an allowHTTP1 server reads these from the server object.
  Object.assign(server, h1Settings, h1Properties);
  return server;
}
