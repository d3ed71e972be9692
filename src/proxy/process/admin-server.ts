/**
 * The master's HTTP admin endpoint: GET (or HEAD) /metrics, /healthz, /ready, /generations on
 * the admin socket. Anything else is answered 404 or 405; a request with a body 413; headers are
 * capped by Node's parser (maxHeaderSize) and slow or idle clients are timed out, and connections
 * are capped, so nothing a client sends is buffered without bound.
 */
import http from 'node:http';
import type { Logger } from 'pino';

export interface AdminHandlers {
  /** Prometheus text. */
  metrics(): Promise<{ readonly contentType: string; readonly body: string }>;
  /** Why the proxy does not serve every listener yet, or undefined when it does. */
  notReady(): string | undefined;
  /** The same document as `udpgrm-proxy list --config FILE --json`. */
  generations(): Promise<unknown>;
}

/** An admin request is a request line and a few headers: 8 KiB of them is generous. */
const MAX_HEADER_BYTES = 8 * 1024;
const MAX_CONNECTIONS = 64;
const REQUEST_TIMEOUT_MS = 10_000;
const IDLE_TIMEOUT_MS = 30_000;

type Route = (h: AdminHandlers) => Promise<{ status: number; type: string; body: string }>;

const ROUTES: Readonly<Record<string, Route>> = {
  '/metrics': async (h) => {
    const m = await h.metrics();
    return { status: 200, type: m.contentType, body: m.body };
  },
  '/healthz': async () => ({ status: 200, type: 'text/plain; charset=utf-8', body: 'ok\n' }),
  '/ready': async (h) => {
    const why = h.notReady();
    return why === undefined ? { status: 200, type: 'text/plain; charset=utf-8', body: 'ready\n' } : { status: 503, type: 'text/plain; charset=utf-8', body: `not ready: ${why}\n` };
  },
  '/generations': async (h) => ({ status: 200, type: 'application/json', body: `${JSON.stringify(await h.generations())}\n` }),
};

export class AdminServer {
  private constructor(private readonly server: http.Server) {}

  /** Serves on the already listening socket `fd`; the server owns it from here (close() closes it). */
  static async start(fd: number, handlers: AdminHandlers, log: Logger): Promise<AdminServer> {
    const server = http.createServer({ maxHeaderSize: MAX_HEADER_BYTES, requestTimeout: REQUEST_TIMEOUT_MS, headersTimeout: REQUEST_TIMEOUT_MS, keepAliveTimeout: IDLE_TIMEOUT_MS }, (req, res) => {
      void answer(req, handlers).then(
        (r) => send(req, res, r.status, r.type, r.body, r.headers),
        (err: unknown) => {
          log.error({ err: (err as Error).message, path: req.url }, 'admin request failed');
          send(req, res, 500, 'text/plain; charset=utf-8', `error: ${(err as Error).message}\n`);
        },
      );
    });
    server.maxConnections = MAX_CONNECTIONS;
    server.on('clientError', (_err, socket) => {
      // Oversized or malformed requests: Node's own 400/431 when the socket can still take it.
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      else socket.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ fd }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => log.error({ err: err.message }, 'admin listener error'));
    return new AdminServer(server);
  }

  /** Stops accepting and closes every admin connection (a scrape in flight is cut). */
  close(): void {
    this.server.close();
    this.server.closeAllConnections();
  }
}

async function answer(req: http.IncomingMessage, handlers: AdminHandlers): Promise<{ status: number; type: string; body: string; headers?: Record<string, string> }> {
  const text = 'text/plain; charset=utf-8';
  const path = (req.url ?? '/').split('?')[0]!;
  const route = Object.hasOwn(ROUTES, path) ? ROUTES[path] : undefined;
  if (route === undefined) return { status: 404, type: text, body: `not found: try ${Object.keys(ROUTES).join(', ')}\n` };
  if (req.method !== 'GET' && req.method !== 'HEAD') return { status: 405, type: text, body: 'method not allowed\n', headers: { allow: 'GET, HEAD' } };
  // No admin request has a body; one announced is refused unread.
  const length = Number(req.headers['content-length'] ?? 0);
  if (req.headers['transfer-encoding'] !== undefined || length > 0) return { status: 413, type: text, body: 'admin requests take no body\n' };
  return route(handlers);
}

function send(req: http.IncomingMessage, res: http.ServerResponse, status: number, type: string, body: string, headers: Record<string, string> = {}): void {
  if (res.headersSent) return;
  const bytes = Buffer.from(body);
  // A refused body is never read: close the connection rather than parse what follows as a request.
  const refusedBody = status === 413;
  res.writeHead(status, { 'content-type': type, 'content-length': String(bytes.length), 'cache-control': 'no-store', ...(refusedBody ? { connection: 'close' } : {}), ...headers });
  res.end(req.method === 'HEAD' ? undefined : bytes);
  if (refusedBody) req.socket.destroySoon();
}
