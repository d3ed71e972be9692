/**
 * One HTTP/1.1 connection (over TLS, or the plain redirect listener's): its clocks and its end.
 * Node's parser reads requests off the socket; this decides how long the connection may take to
 * send a request's header section (request_header_timeout, against slowloris), how long it may
 * stay idle between requests (keepalive_timeout), and when it must close (max_requests_per_connection,
 * a drain). One timer per connection, re-armed only when the connection changes state.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { HttpLimits } from '../config/types.js';
import type { RequestHandler } from '../http/exchange.js';
import { withListenerAltSvc } from '../http/alt-svc.js';
import type { AbortReason } from '../http/exchange-abort.js';
import { REFUSAL, type RefusalCounter } from '../http/refusals.js';
import type { TcpConnections } from './connections.js';
import { H1Exchange } from './h1-exchange.js';
import { buildH1Request, http10Authority } from './h1-request.js';
import { headerListSize } from './header-list-size.js';
import { endWithStatus } from './raw-response.js';

/**
 * `awaiting-request`: a request's header section is due (the connection is new, or bytes of the
 * next request arrived); `active`: requests are being served (pipelined ones may overlap);
 * `idle`: between requests; `ending`: we sent our FIN (drain, request limit) and serve nothing
 * more; `closed`: the socket is gone. `bytesAt` is the socket's byte count
 * when the state began: more since means a request has started arriving. (Counting bytes rather
 * than listening for 'data' keeps Node's parser reading the socket natively: a 'data' listener
 * would make it fall back to JavaScript reads.)
 */
type ConnState =
  | { readonly kind: 'awaiting-request'; readonly bytesAt: number }
  | { readonly kind: 'active'; exchanges: number }
  | { readonly kind: 'idle'; readonly bytesAt: number }
  | { readonly kind: 'ending' }
  | { readonly kind: 'closed' };

export interface H1ConnectionOptions {
  readonly handler: RequestHandler;
  readonly limits: Pick<HttpLimits, 'requestHeaderTimeoutMs' | 'requestBodyTimeoutMs' | 'keepaliveTimeoutMs' | 'maxRequestsPerConnection' | 'maxHeaderBytes'>;
  readonly connectionId: string;
  readonly connections: TcpConnections;
  readonly refusals: RefusalCounter;
  /** The listener's `alt-svc` value, on every response of this connection (none: alt_svc off). */
  readonly altSvc: string | undefined;
  readonly onHandlerError: (err: unknown, connectionId: string, streamId: number) => void;
}

/** Parser errors that are the connection failing, not the client sending something malformed. */
const TRANSPORT_ERRORS: ReadonlySet<string> = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT']);

export class H1Connection {
  private state: ConnState;
  private timer: NodeJS.Timeout | undefined;
  /** Requests taken on (counted against max_requests_per_connection). */
  private requests = 0;
  /** No request after the ones in progress: the next response says `Connection: close`. */
  private closing = false;
  /** The exchanges in progress (more than one only when the client pipelines). */
  private readonly exchanges = new Set<H1Exchange>();

  constructor(
    readonly socket: Socket,
    private readonly opts: H1ConnectionOptions,
  ) {
    this.state = { kind: 'awaiting-request', bytesAt: socket.bytesRead };
    socket.once('close', () => {
      this.state = { kind: 'closed' };
      this.clearTimer();
    });
    this.arm(opts.limits.requestHeaderTimeoutMs);
  }

  get activeRequests(): number {
    return this.state.kind === 'active' ? this.state.exchanges : 0;
  }

  /** Cut now (at drain_timeout): the requests in progress are aborted with `reason`, then the socket is destroyed. */
  cut(reason: AbortReason): void {
    for (const ex of [...this.exchanges]) ex.cut(reason);
    this.socket.destroy();
  }

  /**
   * Drain: requests in progress finish (their responses close the connection); a connection idle
   * between requests closes now (a client retries a request that crossed our close on a reused
   * connection). One that has not sent its first request is not idle: it may have been accepted
   * before the drain began, or be sending that request now, and a client does not retry a request
   * on a new connection that closed unanswered (curl: "Empty reply from server"). Its first request
   * is served (answered with `Connection: close`); a silent one closes at request_header_timeout.
   */
  drain(): void {
    this.closing = true;
    if (this.state.kind === 'idle' && !this.requestStarted(this.state.bytesAt)) this.socket.destroy();
  }

  /** Node's parser completed a request's header section. */
  onRequest(req: IncomingMessage, res: ServerResponse): void {
    // A request that crossed our FIN (the client sent it before it saw the close) is not served:
    // unanswered, it reached nothing, and the client retries it on a new connection (RFC 9112
    // §9.3.1) — serving it would run it twice should the client retry anyway.
    if (this.state.kind === 'closed' || this.state.kind === 'ending') return;
    // Node's parser may still emit a request from bytes it read before the socket was destroyed
    // (its 'close' comes later): no answer can reach the client, so nothing is started for it.
    if (this.socket.destroyed) return;
    if (this.requests >= this.opts.limits.maxRequestsPerConnection) {
      // Pipelined past the limit: the last allowed response closes the connection, which drops
      // this one unanswered (the client retries it on a new connection, as after GOAWAY).
      this.opts.refusals.add(REFUSAL.requestLimit);
      return;
    }
    this.requests++;
    if (this.requests === this.opts.limits.maxRequestsPerConnection) this.closing = true;
    this.clearTimer();
    this.state = { kind: 'active', exchanges: this.activeRequests + 1 };

    // Node's parser bounded what it read (maxHeaderSize: names, values and target); the fields are
    // held to max_header_bytes by the measure of HTTP/2 and HTTP/3 as well, so that a list of many
    // small fields gets the same answer on every protocol.
    if (headerListSize(req.rawHeaders) > this.opts.limits.maxHeaderBytes) {
      this.opts.refusals.add(REFUSAL.headerTooLarge);
      this.refuse(req, res, 431, 'request header fields too large');
      return;
    }
    const built = buildH1Request(req.method ?? '', req.url ?? '', req.rawHeaders, 'https', http10Authority(req));
    if (!built.ok) {
      if (built.status === 400) this.opts.connections.count('malformed');
      this.refuse(req, res, built.status, `${built.status === 400 ? 'bad request' : 'not implemented'}: ${built.reason}`);
      return;
    }
    const number = this.requests;
    const exchange: H1Exchange = new H1Exchange(req, res, built.request, {
      handler: this.opts.handler,
      altSvc: this.opts.altSvc,
      requestBodyTimeoutMs: this.opts.limits.requestBodyTimeoutMs,
      connectionId: this.opts.connectionId,
      requestNumber: number,
      maxHeaderBytes: this.opts.limits.maxHeaderBytes,
      closeAfterResponse: () => this.closing,
      goAway: () => this.drain(),
      onHandlerError: (err, stream) => this.opts.onHandlerError(err, this.opts.connectionId, stream),
      onDone: () => {
        this.exchanges.delete(exchange);
        this.exchangeDone();
      },
      onMalformed: () => this.opts.connections.count('malformed'),
      refusals: this.opts.refusals,
    });
    this.exchanges.add(exchange);
    exchange.start();
  }

  /** A request we do not serve (nor trust the framing or target of): answered, then the connection closes. */
  private refuse(req: IncomingMessage, res: ServerResponse, status: number, text: string): void {
    this.closing = true;
    req.resume();
    res.once('close', () => this.exchangeDone());
    const headers = withListenerAltSvc([['content-type', 'text/plain; charset=utf-8'], ['connection', 'close']], this.opts.altSvc);
    res.writeHead(status, headers.flat());
    res.end(`${text}\n`);
  }

  /**
   * Node's parser refused what arrived (llhttp: smuggling attempts, bad characters, obs-fold, a
   * header section above max_header_bytes): answer 400 or 431 and close. Not while a response is
   * being written on this connection (a pipelined request went bad): then the connection is cut.
   */
  onParseError(err: NodeJS.ErrnoException): void {
    const code = err.code ?? '';
    if (TRANSPORT_ERRORS.has(code) || this.state.kind === 'closed') {
      this.socket.destroy();
      return;
    }
    this.closing = true;
    if (code === 'HPE_HEADER_OVERFLOW') this.opts.refusals.add(REFUSAL.headerTooLarge);
    else this.opts.connections.count('malformed');
    // The body of a request being served may go bad (a bad chunk size): if no response has
    // started on this connection, the client still gets its 400; else the connection is cut.
    const exchanges = [...this.exchanges];
    if (this.state.kind === 'active' && (exchanges.length === 0 || exchanges.some((ex) => ex.headersSent))) {
      this.socket.destroy();
      return;
    }
    if (code === 'HPE_HEADER_OVERFLOW') endWithStatus(this.socket, 431, 'request header fields too large', this.opts.altSvc);
    else endWithStatus(this.socket, 400, `bad request: ${(err as { reason?: string }).reason ?? code}`.replace(/[\r\n]/g, ' '), this.opts.altSvc);
    // After the raw answer is written: their handlers are cancelled and write nothing more.
    for (const ex of exchanges) ex.abandon(`malformed request: ${code}`);
  }

  private exchangeDone(): void {
    if (this.state.kind !== 'active') return;
    if (--this.state.exchanges > 0) return;
    if (this.closing) {
      // Our last response said `Connection: close` (Node closes after it), or a drain came after
      // the response had started: nothing more is served here.
      this.state = { kind: 'ending' };
      this.socket.end();
      // A client that never closes its side is cut after the keep-alive timeout.
      this.arm(this.opts.limits.keepaliveTimeoutMs);
      return;
    }
    this.state = { kind: 'idle', bytesAt: this.socket.bytesRead };
    this.arm(this.opts.limits.keepaliveTimeoutMs);
  }

  private requestStarted(bytesAt: number): boolean {
    return this.socket.bytesRead > bytesAt;
  }

  private onTimer(): void {
    this.timer = undefined;
    const s = this.state;
    if (s.kind === 'idle' && this.requestStarted(s.bytesAt) && !this.closing) {
      // A request began during the keep-alive wait: its header section is due from now.
      this.state = { kind: 'awaiting-request', bytesAt: s.bytesAt };
      this.arm(this.opts.limits.requestHeaderTimeoutMs);
      return;
    }
    if (s.kind === 'awaiting-request' && this.requestStarted(s.bytesAt)) {
      // Slowloris: the header section did not complete in time (arriving bytes do not extend it).
      this.opts.refusals.add(REFUSAL.headerTimeout);
      this.closing = true;
      endWithStatus(this.socket, 408, 'request header timeout', this.opts.altSvc);
      return;
    }
    // Idle between requests, a new connection that never sent a byte, or one we ended whose
    // client keeps it open: close without a word.
    if (s.kind === 'idle' || s.kind === 'awaiting-request' || s.kind === 'ending') this.socket.destroy();
  }

  private arm(ms: number): void {
    this.clearTimer();
    // Not unref'd: cleared at every request and close, and Node still wakes the event loop at the
    // expiry of a cleared unref'd timer (see quic/timer-queue.ts arm). Workers end by process.exit.
    this.timer = setTimeout(() => this.onTimer(), ms);
  }

  private clearTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
