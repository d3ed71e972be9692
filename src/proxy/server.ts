/**
 * A serving unit: the sockets of one worker and everything that answers on them (QUIC endpoints
 * and HTTP/3 sessions on UDP; HTTP/1.1 and HTTP/2 over TLS, and plain-HTTP redirects, on TCP; the
 * router and upstream pools they share), built from one config. A reload builds a new one; a
 * draining one stops accepting, sends GOAWAY (or `Connection: close`) and finishes what it has.
 */
import { hkdfSync } from 'node:crypto';
import type { Logger } from 'pino';
import type { CidIssuer } from '../grm/interface.js';
import { formatListener, readTicketKey, selectCertificate } from './config/index.js';
import type { SiteNames } from './config/site-names.js';
import type { ListenerConfig, ProxyConfig } from './config/types.js';
import { H3_ERROR } from './h3/errors.js';
import { H3Session } from './h3/session.js';
import { AccessLog } from './http/access-log.js';
import { ABORT } from './http/exchange-abort.js';
import { ProxyHandler } from './http/proxy-handler.js';
import { RefusalCounter } from './http/refusals.js';
import { matchRoute } from './http/route.js';
import { TrustedProxies } from './http/trusted-proxies.js';
import type { TcpStats, WorkerStats } from './worker-stats.js';
import { RequestMetrics } from './metrics/request-metrics.js';
import { DROP, dropSeries } from './quic/drop-reasons.js';
import type { Series, WorkerMetricsSnapshot } from './metrics/snapshot.js';
import { openDgramSocket } from './net/udp-socket.js';
import { WorkerAdmission } from './quic/admission.js';
import { QuicEndpoint } from './quic/endpoint.js';
import type { EndpointShutdown } from './quic/connection.js';
import { ReplayGuard } from './quic/replay-guard.js';
import { RetryTokens, retryTokenKey } from './quic/retry-token.js';
import { TlsContexts } from './quic/tls-contexts.js';
import { TcpConnections } from './tcp/connections.js';
import { RedirectListener } from './tcp/redirect-listener.js';
import { NO_HANDOFF, TcpSiteSteering, type TcpHandoffChannel } from './tcp/site-steering.js';
import { TlsListener } from './tcp/tls-listener.js';
import { TcpCertificates, tcpTicketKeys } from './tcp/tls-options.js';
import { MAX_CLIENT_HELLO_STREAM_BYTES } from './tls/client-hello-records.js';
import { UpstreamRegistry } from './upstream/registry.js';

/** A UDP socket serving HTTP/3 for one listener (only listeners whose protocols include h3). */
export interface ServerSocket {
  readonly fd: number;
  /** The config listener this UDP socket serves (HTTP/3; its Alt-Svc among others). */
  readonly listener: ListenerConfig;
  readonly host: string;
  readonly port: number;
  readonly family: 4 | 6;
  readonly issuer: CidIssuer;
}

export interface TcpServerSocket {
  /** An already listening TCP socket (inherited from the master, shared with other workers). */
  readonly fd: number;
  readonly listener: ListenerConfig;
  /** The listener's index in the config (a handed-over connection names its listener by it). */
  readonly listenerIndex: number;
  /** h1/h2 over TLS per listener.protocols, or its plain-HTTP http_redirect address. */
  readonly role: 'tls' | 'redirect';
}

/**
 * The site this worker serves, and every site's names (replaced when a reload changes names):
 * what a request or a TCP connection for another site's name is told or handed to.
 */
export interface WorkerSite {
  readonly name: string;
  names: SiteNames;
  /** Per site, per UDP socket (index), issuers routing to its working generation's workers. */
  steering: ReadonlyMap<string, ReadonlyArray<readonly CidIssuer[]>>;
}

export class ProxyServer {
  private readonly endpoints: QuicEndpoint[] = [];
  private readonly sessions = new Set<H3Session>();
  /** By config listener index (a handed-over connection names the listener that accepted it). */
  private readonly tlsListeners = new Map<number, TlsListener>();
  private readonly redirectListeners: RedirectListener[] = [];
  private readonly tcp: TcpConnections;
  /** Requests the HTTP limits and timeouts turned away, over all listeners (for `list`). */
  readonly refusals = new RefusalCounter();
  /** Requests and upstream tries by label, for /metrics (counted where the access log is written). */
  private readonly requestMetrics = new RequestMetrics();
  private upstreams: UpstreamRegistry | undefined;
  private draining = false;

  private constructor(
    readonly config: ProxyConfig,
    private readonly log: Logger,
    readonly site: WorkerSite,
    private readonly handoff: TcpHandoffChannel,
  ) {
    this.tcp = new TcpConnections(config.http.maxTcpConnections);
  }

  /**
   * `handoff`: where TCP connections for another site go (the worker process sends them through
   * the master); without it, such connections are closed.
   */
  static async start(
    config: ProxyConfig,
    sockets: readonly ServerSocket[],
    tcpSockets: readonly TcpServerSocket[],
    log: Logger,
    site: WorkerSite,
    handoff: TcpHandoffChannel = NO_HANDOFF,
  ): Promise<ProxyServer> {
    const server = new ProxyServer(config, log, site, handoff);
    try {
      await server.listen(sockets, tcpSockets);
    } catch (err) {
      await server.close('start failed');
      throw err;
    }
    return server;
  }

  private async listen(sockets: readonly ServerSocket[], tcpSockets: readonly TcpServerSocket[]): Promise<void> {
    const { config, log } = this;
    const ticketKey = readTicketKey(config.tls.ticketKeyFile);
    const resetKey = Buffer.from(hkdfSync('sha256', ticketKey, Buffer.alloc(0), 'udpgrm-proxy stateless reset', 32));
    // Same key material in every worker and generation: a token one issued, any other accepts.
    const retryTokens = new RetryTokens(retryTokenKey(ticketKey));
    // Limits are per worker, whatever listener a connection arrives on.
    const admission = new WorkerAdmission(config.quic);
    const tls = new TlsContexts({ certificates: config.tls.certificates, alpn: config.tls.alpn, limits: config.quic, ticketKey });
    // One guard for all of this worker's listeners: a replay sent to another listener is caught too.
    const replayGuard = config.quic.earlyData === 'off' ? undefined : new ReplayGuard();
    const upstreams = (this.upstreams = new UpstreamRegistry(config.upstreams, { log }));
    const handler = new ProxyHandler({
      route: (host, path) => matchRoute(config.routes, host, path),
      upstreams,
      accessLog: new AccessLog(config.logging.accessLog ? log.child({}) : undefined),
      trustedProxies: new TrustedProxies(config.trustedProxies),
      refusals: this.refusals,
      metrics: this.requestMetrics,
      site: this.site,
      maxRequestBody: config.http.maxRequestBody,
    });
    for (const [index, s] of sockets.entries()) {
      const socket = await openDgramSocket(s.fd, s.family);
      const siteOf = this.siteSteering(index);
      const endpoint = new QuicEndpoint({
        socket,
        fd: s.fd,
        local: { host: s.host, port: s.port },
        tls,
        selectCertificate: (sni) => selectCertificate(config.tls, sni),
        issuer: s.issuer,
        limits: config.quic,
        resetKey,
        retryTokens,
        admission,
        log,
        ...(replayGuard ? { replayGuard } : {}),
        ...(siteOf ? { siteOf } : {}),
        createApplication: (conn) => {
          const session = new H3Session(conn, {
            handler,
            ...(s.listener.altSvc !== undefined ? { altSvc: s.listener.altSvc } : {}),
            onHandlerError: (err, stream) => log.error({ conn: conn.id, stream, err }, 'request handler failed; answered 500 or reset'),
            limits: config.http,
            refusals: this.refusals,
            onClosed: (sess) => {
              this.sessions.delete(sess);
              // stats() builds an object through the binding (~7 µs): only for a line that is logged.
              if (!log.isLevelEnabled('debug')) return;
              const st = conn.stats();
              // Who closed it and why: an idle timeout, the peer's CONNECTION_CLOSE, or ours; and
              // whether we had told the client to go away (GOAWAY) before.
              const why = conn.quic.isTimedOut() ? 'idle timeout' : closeReason('peer', conn.quic.peerError()) ?? closeReason('local', conn.quic.localError());
              log.debug({ conn: conn.id, peer: conn.peer, requests: sess.requestsServed, sent: st.sent, recv: st.recv, lost: st.lost, durationMs: Date.now() - conn.openedAt, goaway: sess.draining, closedBy: why }, 'connection closed');
            },
          });
          this.sessions.add(session);
          // Draining still completes handshakes BPF pinned to our socket (a split ClientHello,
          // retransmits), but such a connection is told to go elsewhere straight away.
          if (this.draining) session.goaway('with-response');
          return session;
        },
      });
      this.endpoints.push(endpoint);
      log.info({ listen: formatListener(s), protocol: 'h3' }, 'listening');
    }
    await this.listenTcp(tcpSockets, handler, ticketKey);
  }

  /**
   * On the default site's workers when there are several sites: the issuer of another site's
   * worker for an SNI that site names (the kernel could not read it from the first datagram).
   */
  private siteSteering(socketIndex: number): ((sni: string | undefined) => CidIssuer | undefined) | undefined {
    const { site } = this;
    if (site.names.single || site.names.spec.defaultSite !== site.name) return undefined;
    return (sni) => {
      const target = sni === undefined ? undefined : site.names.named(sni);
      if (target === undefined || target === site.name) return undefined;
      const issuers = site.steering.get(target)?.[socketIndex];
      return issuers && issuers.length > 0 ? issuers[Math.floor(Math.random() * issuers.length)] : undefined;
    };
  }

  private async listenTcp(tcpSockets: readonly TcpServerSocket[], handler: ProxyHandler, ticketKey: Buffer): Promise<void> {
    if (tcpSockets.length === 0) return;
    const { config, log } = this;
    const certificates = new TcpCertificates(config.tls);
    const ticketKeys = tcpTicketKeys(ticketKey);
    // A ClientHello is read only with several sites; its time bound is the one a request head has.
    const steering = new TcpSiteSteering({
      site: this.site,
      channel: this.handoff,
      bounds: { maxBytes: MAX_CLIENT_HELLO_STREAM_BYTES, timeoutMs: config.http.requestHeaderTimeoutMs },
      connections: this.tcp,
      log,
    });
    for (const s of tcpSockets) {
      const common = { fd: s.fd, listener: s.listener, connections: this.tcp, refusals: this.refusals, log };
      if (s.role === 'redirect') {
        this.redirectListeners.push(await RedirectListener.open({ ...common, limits: config.http }));
        log.info({ listen: formatListener(s.listener.httpRedirect ?? s.listener), redirectTo: formatListener(s.listener) }, 'listening (http redirect)');
        continue;
      }
      this.tlsListeners.set(
        s.listenerIndex,
        // Alt-Svc is added by the TCP protocol layer itself (TlsListener), not by wrapping the
        // handler: its own answers (400, 408, 431, 501) carry the field too.
        await TlsListener.open({ ...common, listenerIndex: s.listenerIndex, handler, limits: config.http, certificates, ticketKeys, steering }),
      );
      log.info({ listen: formatListener(s.listener), protocols: s.listener.protocols.filter((p) => p !== 'h3') }, 'listening (tcp)');
    }
  }

  get connectionCount(): number {
    return this.endpoints.reduce((n, e) => n + e.connectionCount, 0) + this.tcp.size;
  }

  /**
   * A TCP connection of this site that another site's worker accepted and handed over: served on
   * listener `listenerIndex` after `head` (the bytes that worker read). False when this server does
   * not take it (draining, or no such listener): the master then offers it to another worker.
   */
  adoptTcpConnection(listenerIndex: number, handle: object, head: Buffer): boolean {
    return this.tlsListeners.get(listenerIndex)?.adopt(handle, head) ?? false;
  }

  /** The master could not give a connection this worker handed over to any worker of its site. */
  tcpHandoffFailed(): void {
    this.tcp.count('handoffsFailed');
  }

  /** The TCP edge's counters (for `udpgrm-proxy list --config`). */
  tcpCounters(): TcpStats {
    return this.tcp.stats();
  }

  /** Endpoint counters of every listener added up (for `udpgrm-proxy list --config`). */
  quicCounters(): NonNullable<WorkerStats['quic']> {
    const dropped: Record<string, number> = {};
    let datagramsIn = 0;
    let datagramsOut = 0;
    let connectionsAccepted = 0;
    let statelessResets = 0;
    let internalErrors = 0;
    let gsoDatagrams = 0;
    let gsoFallbacks = 0;
    let batchedDatagramsIn = 0;
    for (const e of this.endpoints) {
      batchedDatagramsIn += e.receiveCounters.datagrams;
      gsoDatagrams += e.sendCounters.gsoPackets;
      gsoFallbacks += e.sendCounters.gsoFallbacks;
      const c = e.counters;
      datagramsIn += c.datagramsIn;
      datagramsOut += c.datagramsOut;
      connectionsAccepted += c.connectionsAccepted;
      statelessResets += c.statelessResets;
      internalErrors += c.internalErrors;
      for (const [reason, n] of Object.entries(c.dropped)) dropped[reason] = (dropped[reason] ?? 0) + n;
    }
    return { datagramsIn, datagramsOut, connectionsAccepted, statelessResets, internalErrors, dropped, gsoDatagrams, gsoFallbacks, batchedDatagramsIn };
  }

  /** Everything this worker counts for /metrics (the master folds and labels it; snapshot.ts). */
  metricsSnapshot(): WorkerMetricsSnapshot {
    const quic = this.quicCounters();
    const handshakesCompleted = this.endpoints.reduce((n, e) => n + e.counters.handshakesCompleted, 0);
    const tcp = this.tcp.stats();
    const h3 = this.endpoints.reduce((n, e) => n + e.connectionCount, 0);
    const health: Series[] = [];
    for (const name of this.upstreams?.names ?? []) {
      for (const t of this.upstreams!.get(name)!.stats()) health.push({ labels: [name, t.target], value: t.health === 'healthy' ? 1 : 0 });
    }
    return {
      counters: {
        requests: this.requestMetrics.requests.series(),
        upstreamRequests: this.requestMetrics.upstreamRequests.series(),
        handshakes: [
          { labels: ['quic', 'completed'], value: handshakesCompleted },
          { labels: ['quic', 'timed_out'], value: quic.dropped[DROP.handshakeTimeout] ?? 0 },
          { labels: ['tcp', 'completed'], value: this.tcp.handshakes },
          { labels: ['tcp', 'failed'], value: tcp.tlsErrors },
        ],
        quicDropped: dropSeries(quic.dropped),
        misdirected: this.requestMetrics.misdirected.series(),
        httpRefused: this.refusals.series(),
      },
      gauges: {
        connections: [
          { labels: ['h1'], value: tcp.h1Connections },
          { labels: ['h2'], value: tcp.h2Connections },
          { labels: ['h3'], value: h3 },
        ],
        upstreamHealth: health,
      },
      histograms: { requestDuration: { bounds: this.requestMetrics.duration.bounds, series: this.requestMetrics.duration.series() } },
    };
  }

  get activeRequests(): number {
    let n = 0;
    for (const s of this.sessions) n += s.activeRequests;
    for (const l of this.tlsListeners.values()) n += l.activeRequests;
    return n;
  }

  /**
   * Graceful stop: TCP listeners stop accepting at once (other processes keep the sockets and
   * their queues), GOAWAY everywhere (HTTP/1.1: `Connection: close`, idle ones closed), wait for
   * connections to finish or `timeoutMs`, then close.
   */
  async drain(timeoutMs: number): Promise<{ timedOut: boolean }> {
    this.draining = true;
    for (const l of this.tlsListeners.values()) l.drain();
    for (const l of this.redirectListeners) l.drain();
    for (const s of this.sessions) s.goaway('with-response');
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      Promise.all([...this.endpoints.map((e) => e.whenEmpty()), this.tcp.whenEmpty()]).then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs))),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      // What outlived drain_timeout is cut now: say what it was, so a stuck client can be found.
      const tcp = this.tcp.stats();
      this.log.warn(
        { quicConnections: this.endpoints.reduce((n, e) => n + e.connectionCount, 0), h1Connections: tcp.h1Connections, h2Connections: tcp.h2Connections, activeRequests: this.activeRequests },
        'drain timeout: closing the connections still open',
      );
    }
    // Connections are still open only when it timed out.
    await this.close('drain timeout');
    return { timedOut };
  }

  /** Closes everything still open, at once; `shutdown` says why (requests cut are logged with it). */
  async close(shutdown: EndpointShutdown): Promise<void> {
    for (const e of this.endpoints) e.close(H3_ERROR.H3_NO_ERROR, shutdown);
    // Requests still open are aborted now, with the reason, before their sockets close (later)
    // and before the upstream pools close under them.
    const reason = shutdown === 'drain timeout' ? ABORT.drainTimeout : ABORT.connectionClosed;
    for (const l of this.tlsListeners.values()) l.cut(reason);
    for (const l of this.redirectListeners) l.drain();
    this.tcp.destroyAll();
    await this.upstreams?.destroy();
  }
}

function closeReason(by: 'peer' | 'local', err: { isApp: boolean; errorCode: number; reason: Uint8Array } | null): string | undefined {
  if (!err) return undefined;
  const reason = Buffer.from(err.reason).toString('latin1');
  return `${by} ${err.isApp ? 'application' : 'transport'} error 0x${err.errorCode.toString(16)}${reason ? ` (${reason})` : ''}`;
}
