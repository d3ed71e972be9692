/**
 * A listener's `http_redirect` address: plain HTTP answering every request with 308 to the same
 * target on the listener's https URL (RFC 9110 §15.4.9: method and body are kept on the retry).
 * Nothing is routed or forwarded; each response closes its connection, and small header and
 * time bounds keep an idle or slow client from holding one.
 *
 * No response here carries Alt-Svc: an alternative service is advertised for the origin of the
 * response that carries it (RFC 7838 §2), here the http:// origin. A client honouring it would
 * send that origin's requests (scheme http, RFC 8164) to our HTTP/3 port, where they would be
 * served as if they had come over TLS, instead of following the redirect to https. The https
 * origin learns of HTTP/3 from the TLS listener's own responses.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { formatListener } from '../config/section-listeners.js';
import type { HttpLimits, ListenerConfig } from '../config/types.js';
import { REFUSAL, type RefusalCounter } from '../http/refusals.js';
import type { TcpConnections } from './connections.js';
import { buildH1Request, http10Authority } from './h1-request.js';
import { endWithStatus } from './raw-response.js';

/** A redirect needs the request line and Host only. */
const MAX_HEADER_BYTES = 8 * 1024;
/** How often Node checks its header timeout (its default, 30 s, is far above the timeout itself). */
const CHECK_INTERVAL_MS = 1000;

export interface RedirectListenerOptions {
  readonly fd: number;
  /** The TLS listener redirected to (its port goes into the URL). */
  readonly listener: ListenerConfig;
  readonly limits: Pick<HttpLimits, 'requestHeaderTimeoutMs'>;
  readonly connections: TcpConnections;
  readonly refusals: RefusalCounter;
  readonly log: Logger;
}

/** The https URL for a request: Host's name (port dropped), the listener's port unless 443, the target. */
export function redirectLocation(authority: string, path: string, httpsPort: number): string {
  const host = authority.startsWith('[') ? authority.slice(0, authority.indexOf(']') + 1) : authority.split(':')[0]!;
  const port = httpsPort === 443 ? '' : `:${httpsPort}`;
  return `https://${host}${port}${path === '*' ? '/' : path}`;
}

export class RedirectListener {
  private constructor(private readonly server: http.Server) {}

  static async open(opts: RedirectListenerOptions): Promise<RedirectListener> {
    const timeout = opts.limits.requestHeaderTimeoutMs;
    const server = http.createServer({
      maxHeaderSize: MAX_HEADER_BYTES,
      headersTimeout: timeout,
      requestTimeout: timeout,
      connectionsCheckingInterval: CHECK_INTERVAL_MS,
      requireHostHeader: false,
      keepAliveTimeout: timeout,
    });
    // A connection that sends nothing at all is closed after the same time.
    server.setTimeout(timeout);
    server.prependListener('connection', (socket: Socket) => {
      if (!opts.connections.admit(socket)) opts.refusals.add(REFUSAL.tcpConnectionLimit);
    });
    server.on('request', (req: IncomingMessage, res: ServerResponse) => answer(req, res, opts));
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') {
        socket.destroy();
        return;
      }
      if (err.code === 'HPE_HEADER_OVERFLOW') endWithStatus(socket, 431, 'request header fields too large');
      else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') endWithStatus(socket, 408, 'request timeout');
      else {
        opts.connections.count('malformed');
        endWithStatus(socket, 400, 'bad request');
      }
    });
    server.on('connect', (_req: IncomingMessage, socket: Socket) => endWithStatus(socket, 400, 'bad request: CONNECT'));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ fd: opts.fd }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => opts.log.error({ err, listen: formatListener(opts.listener.httpRedirect ?? opts.listener) }, 'redirect listener error'));
    return new RedirectListener(server);
  }

  /** Stop accepting; connections end with their (single) response or their timeout. */
  drain(): void {
    if (!this.server.listening) return;
    this.server.close();
    this.server.closeIdleConnections();
  }
}

function answer(req: IncomingMessage, res: ServerResponse, opts: RedirectListenerOptions): void {
  req.resume();
  res.shouldKeepAlive = false;
  const built = buildH1Request(req.method ?? '', req.url ?? '', req.rawHeaders, 'http', http10Authority(req));
  if (!built.ok) {
    if (built.status === 400) opts.connections.count('malformed');
    const body = `bad request: ${built.reason}\n`;
    res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close' });
    res.end(body);
    return;
  }
  const location = redirectLocation(built.request.authority, built.request.path, opts.listener.port);
  const body = `redirecting to ${location}\n`;
  res.writeHead(308, { location, 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close' });
  res.end(req.method === 'HEAD' ? undefined : body);
}
