/**
 * loadConfig: proxy.yaml → ProxyConfig, with every default filled in, or a ConfigError listing
 * every problem in the file (syntax errors alone when the YAML itself is broken: the structure
 * yaml recovers from a broken file would only produce misleading follow-up errors).
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import { ConfigError } from './errors.js';
import { canonicalIp } from './names.js';
import { readAdmin } from './section-admin.js';
import { readHttp } from './section-http.js';
import { readListeners } from './section-listeners.js';
import { readProcess, readWorkers } from './section-process.js';
import { readLogging, readQuic } from './section-quic.js';
import { readRoutes } from './section-routes.js';
import { IMPLICIT_SITE, readSites, type SiteRead } from './section-sites.js';
import { CertificateClaims, markDefaultCertificate, readTls, type TlsRead } from './section-tls.js';
import { readTrustedProxies } from './section-trusted-proxies.js';
import { readUpstreams } from './section-upstreams.js';
import { ensurePrivateDir, privateDirProblem } from './file-trust.js';
import { ensureSelfSigned, ensureTicketKey, selfSignedPlan, selfSignedProblem, ticketKeyProblem } from './tls-state.js';
import { siteParts } from './site-view.js';
import type { CertificateConfig, ListenerConfig, ProxyConfig, QuicLimits, SiteConfig, TlsConfig } from './types.js';
import { Cursor, IssueLog } from './yaml-cursor.js';

const TOP_KEYS = ['listeners', 'workers', 'drain_timeout', 'tls', 'routes', 'sites', 'upstreams', 'quic', 'logging', 'process', 'http', 'trusted_proxies', 'admin'] as const;
export const DRAIN_TIMEOUT_DEFAULT_MS = 30_000;

export interface LoadOptions {
  /**
   * Create missing generated state (self-signed certificate, ticket key) in the state directory.
   * Default true; `check` passes false so validating a file never writes anything.
   */
  readonly createState?: boolean;
}

/** What happened to generated state during the load ('pending': would be created, createState=false). */
export type StateFate = 'generated' | 'reused' | 'pending' | 'not used';

export interface LoadResult {
  readonly config: ProxyConfig;
  readonly selfSigned: StateFate;
  readonly ticketKey: StateFate;
}

export function loadConfig(file: string, options: LoadOptions = {}): ProxyConfig {
  return loadConfigWithState(file, options).config;
}

export function loadConfigWithState(file: string, options: LoadOptions = {}): LoadResult {
  const path = resolve(file);
  let source: string;
  try {
    source = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'file not found' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new ConfigError([{ file: path, line: 0, col: 0, path: '', message: `cannot read config: ${why}` }]);
  }

  const lineCounter = new LineCounter();
  const doc = parseDocument(source, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const log = new IssueLog(path, lineCounter);
  if (doc.errors.length > 0) {
    for (const e of doc.errors) {
      // yaml points misindented items at the start of their indentation; point at the token instead.
      let at = e.pos[0];
      while (source[at] === ' ') at++;
      log.add(at, '', `YAML syntax error: ${e.message}${syntaxHint(source, lineCounter.linePos(at).line)}`);
    }
    throw new ConfigError(log.sorted(), source);
  }

  const root = Cursor.root(log, doc);
  if (root.present && !root.isMapping) {
    root.expected(`a mapping with keys ${TOP_KEYS.join(', ')}`);
    throw new ConfigError(log.sorted(), source);
  }
  const f = root.fields(TOP_KEYS) ?? {};
  const listeners = readListeners(f.listeners, root);
  const workers = readWorkers(f.workers);
  const drainTimeoutMs = f.drain_timeout?.duration(0, 3_600_000) ?? DRAIN_TIMEOUT_DEFAULT_MS;
  const claims = new CertificateClaims();
  const tlsRead = readTls(f.tls, path, claims);
  const upstreams = readUpstreams(f.upstreams, path);
  const quic = readQuic(f.quic);
  const sites = readSiteList(f.sites, f.routes, root, { configFile: path, sharedPools: upstreams.pools, sharedDeclared: upstreams.declared, workers, quic, certificates: claims });
  // The default site's certificate answers clients without a matching SNI, unless one says `default: true`.
  markDefaultCertificate(claims, [sites[0]?.certificates ?? [], tlsRead.certificates, ...sites.slice(1).map((s) => s.certificates)]);
  const certificates = [...tlsRead.certificates, ...sites.flatMap((s) => s.certificates)];
  const logging = readLogging(f.logging);
  const processConfig = readProcess(f.process, path, tlsRead.stateDir);
  const http = readHttp(f.http);
  const trustedProxies = readTrustedProxies(f.trusted_proxies);
  const admin = readAdmin(f.admin, listeners);

  if (log.issues.length > 0) throw new ConfigError(log.sorted(), source);

  // Only a valid config earns side effects on disk.
  const state = prepareTlsState({ ...tlsRead, certificates }, listeners, options.createState ?? true, log);
  if (log.issues.length > 0 || state === undefined) throw new ConfigError(log.sorted(), source);

  const siteConfigs: SiteConfig[] = sites.map((s) => ({ ...s }));
  const config: ProxyConfig = {
    file: path,
    listeners,
    tls: state.tls,
    // The default site's view (siteConfig(config, default) is this same config): what runs until
    // the master starts a generation per site, and what a config without sites always ran.
    ...siteParts(siteConfigs[0]!, upstreams.pools),
    logging,
    drainTimeoutMs,
    process: processConfig,
    http,
    trustedProxies,
    admin,
    sites: siteConfigs,
    sharedUpstreams: upstreams.pools,
  };
  return { config, selfSigned: state.selfSigned, ticketKey: state.ticketKey };
}

/**
 * `sites:`, or the one implicit site of a config without it: the top-level routes, served to every
 * SNI by the top-level workers, exactly as before sites existed.
 */
function readSiteList(
  sitesSection: Cursor | undefined,
  routesSection: Cursor | undefined,
  root: Cursor,
  defaults: Parameters<typeof readSites>[1],
): SiteRead[] {
  if (sitesSection === undefined || !sitesSection.present) {
    const routes = readRoutes(routesSection, root, defaults.sharedDeclared);
    return [implicitSite(routes, defaults.workers, defaults.quic)];
  }
  if (routesSection !== undefined) {
    routesSection.error('with "sites", routes belong to each site ("sites.NAME.routes"): move these under the site that serves them');
  }
  return readSites(sitesSection, defaults);
}

function implicitSite(routes: SiteRead['routes'], workers: number, quic: QuicLimits): SiteRead {
  return { name: IMPLICIT_SITE, names: [], isDefault: true, implicit: true, routes, upstreams: new Map(), certificates: [], workers, quic };
}

/** Names the generated certificate covers: localhost plus every specific listener address. */
export function selfSignedNames(listeners: readonly ListenerConfig[]): string[] {
  const ips = listeners.map((l) => l.host).filter((ip) => ip !== '0.0.0.0' && ip !== '::');
  return ['localhost', ...new Set(ips)];
}

function prepareTlsState(
  tls: TlsRead,
  listeners: readonly ListenerConfig[],
  create: boolean,
  log: IssueLog,
): { tls: TlsConfig; selfSigned: StateFate; ticketKey: StateFate } | undefined {
  let certificates: CertificateConfig[] = tls.certificates;
  let selfSigned: StateFate = 'not used';
  const stateWhere = (c: Cursor | undefined, key: string): [number | undefined, string] => [c?.offset, `tls.${key}`];

  // The state dir holds the secrets, the pid file and the control socket: it must be ours alone.
  if (create) {
    try {
      ensurePrivateDir(tls.stateDir);
    } catch (err) {
      log.add(...stateWhere(tls.stateDirCursor, 'state_dir'), oneLine(err));
      return undefined;
    }
  } else {
    const problem = privateDirProblem(tls.stateDir);
    if (problem !== undefined && problem !== 'missing') {
      log.add(...stateWhere(tls.stateDirCursor, 'state_dir'), `state directory ${tls.stateDir} ${problem}`);
      return undefined;
    }
  }

  if (certificates.length === 0) {
    const names = selfSignedNames(listeners);
    const plan = selfSignedPlan(tls.stateDir, names);
    const problem = selfSignedProblem(plan);
    if (problem === undefined) selfSigned = 'reused';
    else if (!create) selfSigned = 'pending';
    else {
      try {
        ensureSelfSigned(plan, tls.stateDir);
        selfSigned = 'generated';
      } catch (err) {
        log.add(...stateWhere(tls.stateDirCursor, 'state_dir'), `cannot generate the self-signed certificate in ${tls.stateDir}: ${oneLine(err)}`);
        return undefined;
      }
    }
    // Only DNS names go in `names`: SNI never carries an IP, and as the default it serves IP clients anyway.
    const dnsNames = names.filter((n) => canonicalIp(n) === undefined);
    certificates = [{ names: dnsNames, certFile: plan.certFile, keyFile: plan.keyFile, selfSigned: true, isDefault: true }];
  }

  let ticketKey: StateFate;
  const ticketProblem = ticketKeyProblem(tls.ticketKeyFile);
  if (ticketProblem === undefined) ticketKey = 'reused';
  else if (ticketProblem !== 'missing') {
    log.add(...stateWhere(tls.ticketKeyCursor, 'ticket_key_file'), `ticket key file ${tls.ticketKeyFile} ${ticketProblem}`);
    return undefined;
  } else if (!create) ticketKey = 'pending';
  else {
    try {
      mkdirSync(dirname(tls.ticketKeyFile), { recursive: true, mode: 0o700 });
      ticketKey = ensureTicketKey(tls.ticketKeyFile) ? 'generated' : 'reused';
    } catch (err) {
      log.add(...stateWhere(tls.ticketKeyCursor, 'ticket_key_file'), `cannot create the ticket key ${tls.ticketKeyFile}: ${oneLine(err)}`);
      return undefined;
    }
  }

  return {
    tls: { certificates, alpn: tls.alpn, ticketKeyFile: tls.ticketKeyFile, stateDir: tls.stateDir },
    selfSigned,
    ticketKey,
  };
}

function oneLine(err: unknown): string {
  const e = err as Error & { stderr?: Buffer };
  const detail = e.stderr?.toString().trim().split('\n')[0];
  return detail !== undefined && detail !== '' ? detail : e.message;
}

/** Hints for the YAML mistakes this schema invites. */
function syntaxHint(source: string, line: number): string {
  const text = source.split(/\r?\n/)[line - 1] ?? '';
  if (/-\s*\[[0-9a-fA-F:.]*\]:\d/.test(text) || /:\s*\[[0-9a-fA-F:.]*\]:\d/.test(text)) return ' (IPv6 addresses with a port must be quoted: "[::1]:4433")';
  return '';
}
