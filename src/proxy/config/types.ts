/**
 * The validated, normalised configuration the proxy runs on. `loadConfig` turns proxy.yaml into
 * this shape (every default filled in, every duration in milliseconds, every size in bytes).
 */

export interface ProxyConfig {
  /** Absolute path of the file this came from (for messages and relative paths). */
  readonly file: string;
  readonly listeners: readonly ListenerConfig[];
  /** Every certificate of the file (top-level and every site's): any worker may complete any handshake. */
  readonly tls: TlsConfig;
  /** The default site's routes (with `sites:`), else the top-level ones. */
  readonly routes: readonly RouteConfig[];
  /** Pools the routes above may use: the shared ones plus, with `sites:`, the default site's own. */
  readonly upstreams: ReadonlyMap<string, UpstreamPoolConfig>;
  /** The default site's QUIC limits (with `sites:`), else the top-level ones. */
  readonly quic: QuicLimits;
  readonly logging: LoggingConfig;
  /** The default site's workers (with `sites:`), else the top-level value. */
  readonly workers: number;
  /** How long a draining generation may live after a reload (ms). */
  readonly drainTimeoutMs: number;
  readonly process: ProcessConfig;
  readonly http: HttpLimits;
  /** Proxies whose X-Forwarded-For/-Proto/-Host and Forwarded fields are kept (default none). */
  readonly trustedProxies: readonly CidrConfig[];
  /** The master's admin endpoint; undefined: off. */
  readonly admin: AdminConfig | undefined;
  /**
   * Never empty; the default site first (it becomes kernel app 0), then the others in file order.
   * A config without `sites:` has one implicit site, IMPLICIT_SITE, holding the top-level routes.
   */
  readonly sites: readonly SiteConfig[];
  /** The top-level `upstreams:` pools, which every site may use. */
  readonly sharedUpstreams: ReadonlyMap<string, UpstreamPoolConfig>;
}

/**
 * One `sites:` entry: routes served to the connections whose TLS SNI matches `names`, by worker
 * generations of their own (new QUIC connections are steered to them by SNI in the kernel).
 */
export interface SiteConfig {
  /** The key under `sites:` (IMPLICIT_SITE for a config without `sites:`). */
  readonly name: string;
  /** Lowercase exact names and "*.suffix" one-label wildcards; a name belongs to one site only. */
  readonly names: readonly string[];
  /** Takes connections without SNI, with an SNI no site names, and whose SNI the kernel could not read. */
  readonly isDefault: boolean;
  /** True for the one site of a config without `sites:`. */
  readonly implicit: boolean;
  readonly routes: readonly RouteConfig[];
  /** The site's own pools (its `upstreams:`); its routes may also use `ProxyConfig.sharedUpstreams`. */
  readonly upstreams: ReadonlyMap<string, UpstreamPoolConfig>;
  /** The site's own certificates (also in `ProxyConfig.tls.certificates`, which every worker holds). */
  readonly certificates: readonly CertificateConfig[];
  readonly workers: number;
  /** The top-level `quic:` with the site's overrides (never `cidLength`, shared by the group). */
  readonly quic: QuicLimits;
}

/** `admin:` the master's HTTP endpoint for metrics, health and the generations. */
export interface AdminConfig {
  readonly listen: ListenAddressConfig;
  /** How long a scrape waits for each worker's counters before using the last ones it has. */
  readonly scrapeTimeoutMs: number;
}

/** How the master runs generations of workers. */
export interface ProcessConfig {
  /** bpffs directory of the generation manager's pinned maps (shared across restarts). */
  readonly pinDir: string;
  /** Unix socket the CLI (`reload`, `list`) talks to the running master through. */
  readonly controlSocket: string;
  readonly pidFile: string;
  /** Reloads beyond this many still-draining generations are refused. */
  readonly maxDrainingGenerations: number;
  /** How long a new generation's workers may take to become ready before the reload aborts. */
  readonly readyTimeoutMs: number;
}

export interface ListenAddressConfig {
  /** Literal IP address (IPv4 or IPv6, no brackets). */
  readonly host: string;
  readonly port: number;
  readonly family: 4 | 6;
}

/** What a listener serves: HTTP/3 on UDP; HTTP/1.1 and HTTP/2 over TLS on TCP. */
export const LISTENER_PROTOCOLS = ['h1', 'h2', 'h3'] as const;
export type ListenerProtocol = (typeof LISTENER_PROTOCOLS)[number];

/** One `listeners:` entry: the same IP:PORT on UDP (h3) and TCP (h1, h2), per `protocols`. */
export interface ListenerConfig extends ListenAddressConfig {
  /** Never empty, in LISTENER_PROTOCOLS order. */
  readonly protocols: readonly ListenerProtocol[];
  /** The Alt-Svc field value every response on this listener carries; undefined: none. */
  readonly altSvc: string | undefined;
  /** A plain-HTTP TCP address answering 308 to this listener's https URL. */
  readonly httpRedirect: ListenAddressConfig | undefined;
}

export interface TlsConfig {
  /** Certificates, most specific first is NOT implied: selection is by `selectCertificate`. */
  readonly certificates: readonly CertificateConfig[];
  /** ALPN protocols offered (default ['h3']). */
  readonly alpn: readonly string[];
  /** Where the session ticket key lives (generated when missing); shared by all generations. */
  readonly ticketKeyFile: string;
  /** Absolute path of the directory holding generated state (self-signed pair, default ticket key). */
  readonly stateDir: string;
}

export interface CertificateConfig {
  /** Host names this certificate serves: exact ('a.example') or wildcard ('*.example.com'). */
  readonly names: readonly string[];
  /** Absolute paths of PEM files. */
  readonly certFile: string;
  readonly keyFile: string;
  /** True when the proxy generated this self-signed pair because none was configured. */
  readonly selfSigned: boolean;
  /** Serve this certificate when SNI is absent or matches no name. */
  readonly isDefault: boolean;
}

export type HostPattern = { readonly kind: 'any' } | { readonly kind: 'exact'; readonly name: string } | { readonly kind: 'wildcard'; readonly suffix: string /* '.example.com' */ };

export interface RouteConfig {
  /** Position in the file, for logs ("routes[2]"). */
  readonly name: string;
  /** Never empty: a route without `host:` gets [{ kind: 'any' }]. Names are lowercase, IPs canonical. */
  readonly hosts: readonly HostPattern[];
  /** Path prefix, always starting with '/'; matched on segment boundaries (see http/route.ts). */
  readonly pathPrefix: string;
  readonly action: RouteAction;
  /** Extra response headers added to every response of this route (e.g. x-config-version). */
  readonly responseHeaders: readonly (readonly [string, string])[];
  /** Proxy routes: forward the request target as received (default) or normalised (http-semantics/request-target.ts). */
  readonly forwardPath?: 'as_received' | 'normalised';
  /** Largest request body (bytes), null: no limit; absent: `http.max_request_body` applies. */
  readonly maxRequestBody?: number | null;
}

export type RouteAction =
  | { readonly kind: 'proxy'; readonly upstream: string }
  | {
      readonly kind: 'respond';
      readonly status: number;
      /** Lowercase names; includes content-type (text/plain; charset=utf-8 when the body is non-empty and none was given). */
      readonly headers: readonly (readonly [string, string])[];
      readonly body: Buffer;
    };

/** One `targets:` entry, parsed. `url` is its canonical text, used in logs and stats. */
export type UpstreamTarget =
  | {
      readonly kind: 'tcp';
      readonly url: string;
      /** https: TLS to the target. */
      readonly tls: boolean;
      /** A DNS name (resolved and re-resolved at run time) or an IP literal (IPv6 without brackets). */
      readonly host: string;
      readonly isIp: boolean;
      readonly port: number;
    }
  | { readonly kind: 'unix'; readonly url: string; readonly path: string };

export const UPSTREAM_PROTOCOLS = ['h1', 'h2'] as const;
export type UpstreamProtocol = (typeof UPSTREAM_PROTOCOLS)[number];

/** TLS to https targets. Files are absolute paths, checked when the config loads. */
export interface UpstreamTlsConfig {
  /** PEM CA bundle trusted instead of the system store; undefined: the system store. */
  readonly caFile?: string;
  /** Client certificate (chain) and its key, presented when the target asks. */
  readonly certFile?: string;
  readonly keyFile?: string;
  /** SNI and the name the certificate must match; default: the target's host name (none for an IP). */
  readonly serverName?: string;
}

/** Active health checks: GET `path` on every target every `intervalMs`. */
export interface HealthCheckConfig {
  readonly path: string;
  readonly intervalMs: number;
  /** A check without response headers and body within this fails. Never above intervalMs. */
  readonly timeoutMs: number;
  /** Consecutive passing checks that bring an unhealthy target back. */
  readonly healthyAfter: number;
  /** Consecutive failing checks that take a target out. */
  readonly unhealthyAfter: number;
  /** Statuses that pass, as inclusive ranges. */
  readonly expectStatus: readonly (readonly [number, number])[];
}

/** Passive ejection: `failures` consecutive connect failures or 5xx take a target out for `ejectionMs`. */
export interface PassiveEjectionConfig {
  readonly failures: number;
  readonly ejectionMs: number;
}

export interface UpstreamPoolConfig {
  readonly name: string;
  readonly targets: readonly UpstreamTarget[];
  readonly balance: 'round_robin' | 'least_requests';
  /** h2: HTTP/2 offered by ALPN (https targets only), HTTP/1.1 when the target declines. */
  readonly protocol: UpstreamProtocol;
  readonly tls: UpstreamTlsConfig;
  /** How often DNS names among the targets are resolved again. */
  readonly resolveIntervalMs: number;
  readonly connectTimeoutMs: number;
  /** Time allowed for the upstream to send response headers. */
  readonly responseTimeoutMs: number;
  /** Idle time between body chunks before the exchange is aborted. */
  readonly bodyTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
  /** Exchanges at once per target (HTTP/1.1: connections; HTTP/2: streams over few connections). */
  readonly maxConnectionsPerTarget: number;
  /** Longest wait for a free connection when all `maxConnectionsPerTarget` are busy (0: fail at once). */
  readonly queueTimeoutMs: number;
  /** Requests that may wait for a free connection at once; beyond it 503 at once. */
  readonly maxPending: number;
  /** Further tries on other targets after a failure the request cannot have been applied through. */
  readonly retries: number;
  /** A retry is only started within this time of the first try. */
  readonly tryTimeoutMs: number;
  /** Active health checks; undefined: none. */
  readonly health: HealthCheckConfig | undefined;
  /** Passive ejection; undefined: none. */
  readonly passive: PassiveEjectionConfig | undefined;
}

export interface QuicLimits {
  readonly idleTimeoutMs: number;
  readonly maxConcurrentBidiStreams: number;
  readonly initialMaxData: number;
  readonly initialMaxStreamData: number;
  readonly maxUdpPayload: number;
  /** Length of server connection IDs we issue (8..20). */
  readonly cidLength: number;
  /** TLS early data (0-RTT): refused, or accepted with the replay rules of EARLY_DATA_MODES. */
  readonly earlyData: EarlyDataMode;
  /** UDP GSO for runs of packets to one peer: where the kernel supports it, or never. */
  readonly gso: GsoMode;
  /** Clients may move a connection to an address of their choosing (off: disable_active_migration sent). */
  readonly activeMigration: boolean;
  /** Address validation with Retry (RFC 9000 §8.1.2): always, never, or once handshakes pile up. */
  readonly retry: RetryMode;
  /** In `auto`: handshakes in progress in a worker from which clients without a token get a Retry. */
  readonly retryThreshold: number;
  /** Connections (handshaking or not) per worker; beyond it: Retry or CONNECTION_REFUSED. */
  readonly maxConnections: number;
  /** Handshakes in progress (incl. pending split ClientHellos) per worker. */
  readonly maxHandshakes: number;
  /** Connections per client IP address per worker. */
  readonly maxConnectionsPerIp: number;
  /** A connection not established within this is discarded silently (ms). */
  readonly handshakeTimeoutMs: number;
  /** Pending split-ClientHello attempts (multi-certificate configs): entries, bytes and age bounds. */
  readonly pendingClientHellos: number;
  readonly pendingClientHelloBytes: number;
  readonly pendingClientHelloTimeoutMs: number;
}

export type RetryMode = 'auto' | 'always' | 'never';

/**
 * `off`: no 0-RTT. `safe`: 0-RTT accepted; only safe methods without a body are served from it
 * (forwarded with `Early-Data: 1`), anything else waits for the handshake (RFC 8470).
 */
export const GSO_MODES = ['auto', 'off'] as const;
export type GsoMode = (typeof GSO_MODES)[number];

export const EARLY_DATA_MODES = ['off', 'safe'] as const;
export type EarlyDataMode = (typeof EARLY_DATA_MODES)[number];

export interface LoggingConfig {
  readonly level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
  readonly accessLog: boolean;
}

/** `http:` limits of each request and each client connection (all protocols). */
export interface HttpLimits {
  /** A request must deliver its complete header section this long after its stream opened. */
  readonly requestHeaderTimeoutMs: number;
  /** Longest silence from the client while a request body is incomplete. */
  readonly requestBodyTimeoutMs: number;
  /** Requests served on one connection before it is told to go away (GOAWAY). */
  readonly maxRequestsPerConnection: number;
  /** Largest request header section, decoded (HTTP/3: SETTINGS_MAX_FIELD_SECTION_SIZE). */
  readonly maxHeaderBytes: number;
  /** Bytes one connection may hold for requests whose header section is still incomplete. */
  readonly maxConnectionHeaderBytes: number;
  /** An HTTP/1.1 or HTTP/2 connection with no request in progress is closed after this. */
  readonly keepaliveTimeoutMs: number;
  /** HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS. */
  readonly h2MaxConcurrentStreams: number;
  /** HTTP/2 SETTINGS_INITIAL_WINDOW_SIZE (per stream); the connection window is raised to a multiple of it. */
  readonly h2InitialWindow: number;
  /** HTTP/2 rapid reset (CVE-2023-44487): more client resets than this within 10 s cut the connection. */
  readonly h2MaxClientResets: number;
  /** Open TCP connections per worker (all TCP listeners); beyond it new ones are closed at once. */
  readonly maxTcpConnections: number;
  /** Largest request body (bytes); null: no limit. A route's own `maxRequestBody` wins. */
  readonly maxRequestBody: number | null;
}

/** A CIDR range: canonical network address and prefix length (32 or 128 for a single host). */
export interface CidrConfig {
  readonly address: string;
  readonly prefixLength: number;
  readonly family: 4 | 6;
}
