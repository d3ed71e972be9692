/** `udpgrm-proxy check --config FILE`: validate without writing anything, and say what would run. */
import { ConfigError, formatConfigErrors } from './errors.js';
import { loadConfigWithState, type StateFate } from './load.js';
import { describeHostPattern } from './names.js';
import { formatListener } from './section-listeners.js';
import type { ProxyConfig, RouteConfig, SiteConfig, UpstreamPoolConfig } from './types.js';
import { formatDuration, formatSize } from './units.js';

export type CheckResult = { readonly ok: true; readonly summary: string } | { readonly ok: false; readonly errors: string };

export function checkConfigFile(file: string): CheckResult {
  try {
    const { config, selfSigned, ticketKey } = loadConfigWithState(file, { createState: false });
    return { ok: true, summary: summarise(config, selfSigned, ticketKey) };
  } catch (err) {
    if (err instanceof ConfigError) return { ok: false, errors: formatConfigErrors(err) };
    throw err;
  }
}

const FATE: Record<StateFate, string> = {
  generated: 'generated',
  reused: 'present',
  pending: 'will be generated at start',
  'not used': 'not used',
};

function describeRoute(r: RouteConfig): string {
  const hosts = r.hosts.map(describeHostPattern).join(',');
  const action = r.action.kind === 'proxy' ? `proxy to ${r.action.upstream}` : `respond ${r.action.status}`;
  return `${r.name}: host ${hosts} path ${r.pathPrefix} → ${action}`;
}

function describePool(u: UpstreamPoolConfig): string {
  return `upstream ${u.name}: ${u.targets.map((t) => t.url).join(', ')} (${u.protocol}, ${u.balance}, connect ${formatDuration(u.connectTimeoutMs)}, response ${formatDuration(u.responseTimeoutMs)}, queue ${formatDuration(u.queueTimeoutMs)}, retries ${u.retries}${u.health ? `, health ${u.health.path} every ${formatDuration(u.health.intervalMs)}` : ''}${u.passive ? `, passive ${u.passive.failures}/${formatDuration(u.passive.ejectionMs)}` : ''})`;
}

/** A site, its kernel app (the default site is app 0, the others follow in file order) and what it serves. */
function describeSite(site: SiteConfig, app: number): string[] {
  const names = site.names.length > 0 ? site.names.join(', ') : 'none';
  const role = site.isDefault ? ', default: no SNI, unmatched SNI, unreadable Initials' : '';
  const lines = [`  site ${site.name} (app ${app}${role}): names ${names}; workers ${site.workers}`];
  for (const r of site.routes) lines.push(`    ${describeRoute(r)}`);
  for (const u of site.upstreams.values()) lines.push(`    ${describePool(u)}`);
  return lines;
}

export function summarise(config: ProxyConfig, selfSigned: StateFate, ticketKey: StateFate): string {
  const lines = [`${config.file}: OK`];
  for (const l of config.listeners) {
    const redirect = l.httpRedirect ? `; http_redirect ${formatListener(l.httpRedirect)}` : '';
    lines.push(`  listener ${formatListener(l)}: ${l.protocols.join(', ')}; alt-svc ${l.altSvc ?? 'off'}${redirect}`);
  }
  lines.push(`  workers: ${config.workers}, drain_timeout: ${formatDuration(config.drainTimeoutMs)}`);
  for (const c of config.tls.certificates) {
    const origin = c.selfSigned ? `self-signed, ${FATE[selfSigned]}` : 'configured';
    lines.push(`  certificate: ${c.names.join(', ')}${c.isDefault ? ' (default)' : ''}: ${c.certFile} (${origin})`);
  }
  lines.push(`  alpn: ${config.tls.alpn.join(', ')}; ticket key: ${config.tls.ticketKeyFile} (${FATE[ticketKey]})`);
  if (config.sites[0]?.implicit === true) {
    for (const r of config.routes) lines.push(`  ${describeRoute(r)}`);
  } else {
    config.sites.forEach((site, app) => lines.push(...describeSite(site, app)));
  }
  for (const u of config.sharedUpstreams.values()) lines.push(`  ${describePool(u)}`);
  const q = config.quic;
  lines.push(
    `  quic: idle ${formatDuration(q.idleTimeoutMs)}, ${q.maxConcurrentBidiStreams} streams, max_data ${formatSize(q.initialMaxData)}, ` +
      `stream_data ${formatSize(q.initialMaxStreamData)}, udp payload ${q.maxUdpPayload}, cid ${q.cidLength} bytes`,
  );
  lines.push(`  logging: ${config.logging.level}, access log ${config.logging.accessLog ? 'on' : 'off'}`);
  const h = config.http;
  lines.push(
    `  http: header timeout ${formatDuration(h.requestHeaderTimeoutMs)}, body timeout ${formatDuration(h.requestBodyTimeoutMs)}, ` +
      `${h.maxRequestsPerConnection} requests/connection, headers ${formatSize(h.maxHeaderBytes)} (${formatSize(h.maxConnectionHeaderBytes)} per connection)`,
  );
  lines.push(`  admin: ${config.admin ? `http://${formatListener(config.admin.listen)} (scrape timeout ${formatDuration(config.admin.scrapeTimeoutMs)})` : 'off'}`);
  return lines.join('\n') + '\n';
}
