/**
 * The undici Pool behind one endpoint: plain TCP, TLS (verified against the system store or the
 * pool's CA, with an optional client certificate), or a unix socket; HTTP/1.1, or HTTP/2 when the
 * pool asks for it and the target agrees in ALPN.
 */
import { readFileSync } from 'node:fs';
import { Client, Pool, type Dispatcher } from 'undici';
import type { UpstreamPoolConfig, UpstreamTlsConfig } from '../config/types.js';
import { filteringConnector } from './connector.js';
import type { Endpoint } from './targets.js';

/** undici's default SETTINGS_MAX_CONCURRENT_STREAMS (the target's own SETTINGS may lower it). */
const H2_STREAMS_PER_CONNECTION = 100;

/** The HTTP version an upstream connection speaks: HTTP/2 when ALPN chose `h2`, else HTTP/1.1. */
export type UpstreamHttpVersion = '1.1' | '2';

/** Whoever wants to know which version the connection its request is written to speaks. */
export interface ConnectionVersionSink {
  /** Set when the request is dispatched to a client; read once the request is on its connection. */
  connection: { readonly httpVersion: UpstreamHttpVersion } | null;
}

/** Dispatch options with the exchange a versioned client tells about its connection (pool.ts). */
export interface VersionedDispatchOptions extends Dispatcher.DispatchOptions {
  readonly exchange?: ConnectionVersionSink;
}

/**
 * A client of a `protocol: h2` pool: one connection at a time, HTTP/2 or HTTP/1.1 as the target
 * chose in ALPN. undici does not tell a dispatch handler which version its response came in, and
 * the pool hides which client runs a request, so the client names itself to the exchange: the
 * exchange reads the version when its request goes onto the connection (onRequestStart), and a
 * client's next connection only starts once the previous one is gone.
 */
class VersionedClient extends Client {
  httpVersion: UpstreamHttpVersion = '1.1';

  override dispatch(options: VersionedDispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    if (options.exchange !== undefined) options.exchange.connection = this;
    return super.dispatch(options, handler);
  }
}

/** PEM contents of the pool's TLS files, read once per pool. */
export interface TlsMaterial {
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
}

/** The config loader checked these files; they are read again here, when the pool starts. */
export function loadTlsMaterial(tls: UpstreamTlsConfig): TlsMaterial {
  const read = (file: string | undefined): Buffer | undefined => (file === undefined ? undefined : readFileSync(file));
  const ca = read(tls.caFile);
  const cert = read(tls.certFile);
  const key = read(tls.keyFile);
  return { ...(ca && { ca }), ...(cert && { cert }), ...(key && { key }) };
}

/** The name a TLS target's certificate must match, sent as SNI: server_name, else a DNS target's name. */
export function serverNameOf(endpoint: Endpoint, tls: UpstreamTlsConfig): string | undefined {
  const t = endpoint.target;
  if (t.kind !== 'tcp' || !t.tls) return undefined;
  return tls.serverName ?? (t.isIp ? undefined : t.host);
}

/** The Host field health checks send: the target as configured (a unix socket has no authority). */
export function hostOf(endpoint: Endpoint): string {
  const t = endpoint.target;
  if (t.kind === 'unix') return 'localhost';
  const host = t.host.includes(':') ? `[${t.host}]` : t.host;
  return t.port === (t.tls ? 443 : 80) ? host : `${host}:${t.port}`;
}

export function createDispatcher(endpoint: Endpoint, config: UpstreamPoolConfig, material: TlsMaterial, extraConnections: number): Pool {
  const t = endpoint.target;
  const h2 = config.protocol === 'h2';
  let origin: string;
  let transport: Record<string, unknown>;
  if (t.kind === 'unix') {
    // The origin only names the dispatcher; every connection goes to the socket file.
    origin = 'http://localhost';
    transport = { socketPath: t.path };
  } else {
    const address = endpoint.address!;
    origin = `${t.tls ? 'https' : 'http'}://${address.includes(':') ? `[${address}]` : address}:${t.port}`;
    const servername = serverNameOf(endpoint, config.tls);
    transport = t.tls ? { ...material, ...(servername !== undefined && { servername }), rejectUnauthorized: true, allowH2: h2 } : {};
  }
  const connect = { timeout: config.connectTimeoutMs, ...transport };
  return new Pool(origin, {
    connections: config.maxConnectionsPerTarget + extraConnections,
    // HTTP/1.1: one exchange per connection, never pipelined.
    pipelining: 1,
    // undici's connector, plus the removal of unsolicited 100 Continue responses (RFC 9110 §15.2).
    connect: filteringConnector(connect),
    // undici's pipelining also caps an HTTP/2 connection's concurrent streams, and is fixed before
    // ALPN tells which protocol a connection speaks: set per connection once it is known, with the
    // version the responses on it come in (for Via).
    ...(h2 && {
      allowH2: true,
      factory: (url: URL, options: object): Client => {
        const client = new VersionedClient(url, {
          ...options,
          connect: filteringConnector(connect, (isH2) => {
            client.pipelining = isH2 ? H2_STREAMS_PER_CONNECTION : 1;
            client.httpVersion = isH2 ? '2' : '1.1';
          }),
        });
        return client;
      },
    }),
    // Off here: the pool's ExchangeDeadlines runs them, or undici per request (pool.ts #dispatch).
    headersTimeout: 0,
    bodyTimeout: 0,
    keepAliveTimeout: Math.max(1, config.keepAliveTimeoutMs),
    // An upstream's "Keep-Alive: timeout=N" may shorten, never lengthen, our idle time.
    keepAliveMaxTimeout: Math.max(1, config.keepAliveTimeoutMs),
  });
}
