/**
 * The CLI commands that talk to a running master over its control socket: `reload`, `upgrade`
 * and the master's part of `list --config`.
 */
import { controlRequest } from './control.js';
import { isFailure, type ControlCommand, type ControlRequest, type ControlSuccess, type StatusReply } from './control-protocol.js';
import { loadOrReport } from './load-config.js';
import type { TcpStats } from '../worker-stats.js';

/** `udpgrm-proxy reload --config FILE [--site NAME]`: asks the running master to reload and waits for the outcome. */
export function runReload(configFile: string, site?: string): Promise<number> {
  return ask(configFile, { cmd: 'reload', ...(site !== undefined && { site }) }, (r) => {
    const perSite = r.sites && r.sites.length > 1 ? `\n${r.sites.map((s) => `  ${s.site}: ${s.outcome}${s.generation !== undefined ? ` (generation ${s.generation})` : ''}`).join('\n')}` : '';
    return `reloaded: generation ${r.generation} is working (${JSON.stringify(r.phases)})${perSite}`;
  });
}

/** `udpgrm-proxy upgrade --config FILE`: binary upgrade of the running master; waits for the handover. */
export function runUpgrade(configFile: string): Promise<number> {
  return ask(configFile, { cmd: 'upgrade' }, (r) => `upgraded: master pid ${r.pid} took over; the previous master drains`);
}

/** `udpgrm-proxy list --config FILE`: the master's generations, workers and live counts. */
export function printMasterStatus(configFile: string): Promise<number> {
  return ask(configFile, { cmd: 'status' }, (r) => formatStatus(r).join('\n'));
}

/** `udpgrm-proxy list --config FILE --json`: the same as the admin endpoint's /generations. */
export function printMasterStatusJson(configFile: string): Promise<number> {
  return ask(configFile, { cmd: 'status' }, (r) => {
    const { ok: _ok, ...doc } = r;
    return JSON.stringify(doc);
  });
}

/** Sends `req` to the master of `configFile`; prints `describe(reply)`, or why it failed. Returns the exit code. */
async function ask<C extends ControlCommand>(configFile: string, req: ControlRequest<C>, describe: (reply: ControlSuccess<C>) => string): Promise<number> {
  // The file is validated here too, so errors print with positions even before the master sees them.
  const config = loadOrReport(configFile);
  if (!config) return 1;
  const reply = await controlRequest(config.process.controlSocket, req);
  if (isFailure(reply)) {
    process.stderr.write(`${req.cmd} failed: ${reply.error}\n`);
    return 1;
  }
  process.stdout.write(`${describe(reply)}\n`);
  return 0;
}

/** `list`'s lines (exported for its test). */
export function formatStatus(reply: StatusReply): string[] {
  const lines = [`master pid ${reply.pid}  reloads ok ${reply.counters.reloadsOk} failed ${reply.counters.reloadsFailed}  worker restarts ${reply.counters.workerRestarts}`];
  const sites = reply.sites ?? [];
  const bySite = sites.length > 1;
  for (const site of bySite ? sites : [undefined]) {
    if (site) lines.push(`site ${site.site}  app ${site.app}  names ${site.names.join(' ') || '(none: default)'}`);
    lines.push(...formatGenerations(reply.generations.filter((g) => !site || g.site === site.site), bySite ? '  ' : ''));
  }
  // Generations of sites no longer in the config (removed, draining).
  if (bySite) lines.push(...formatGenerations(reply.generations.filter((g) => !sites.some((s) => s.site === g.site)), '  '));
  return lines;
}

function formatGenerations(generations: StatusReply['generations'], indent: string): string[] {
  const lines: string[] = [];
  for (const g of generations) {
    const conns = g.workers.reduce((n, w) => n + w.connections, 0);
    const reqs = g.workers.reduce((n, w) => n + w.activeRequests, 0);
    const tcpConns = g.workers.reduce((n, w) => n + (w.tcp ? w.tcp.h1Connections + w.tcp.h2Connections : 0), 0);
    lines.push(
      `${indent}generation ${g.id}  ${g.state}  age ${(g.ageMs / 1000).toFixed(1)}s${g.drainingForMs !== undefined ? `  draining ${(g.drainingForMs / 1000).toFixed(1)}s` : ''}  bpf gens ${g.slots.join(',')}  connections ${conns} (tcp ${tcpConns})  requests ${reqs}`,
    );
    for (const w of g.workers) {
      const q = w.quic;
      const t = w.tcp;
      const drops = q ? Object.entries(q.dropped).map(([why, n]) => `${why}=${n}`).join(',') : '';
      const refused = w.refused ? Object.entries(w.refused).map(([why, n]) => `${why}=${n}`).join(',') : '';
      lines.push(
        `${indent}\tworker ${w.index}  pid ${w.pid ?? '-'}  connections ${w.connections}  requests ${w.activeRequests}` +
          (q ? `  datagrams in ${q.datagramsIn} out ${q.datagramsOut}  accepted ${q.connectionsAccepted}  resets ${q.statelessResets}  internal errors ${q.internalErrors}  dropped ${drops || 0}` : '') +
          (q?.gsoDatagrams !== undefined ? `  gso datagrams ${q.gsoDatagrams} fallbacks ${q.gsoFallbacks ?? 0}` : '') +
          (q?.batchedDatagramsIn !== undefined ? `  batched in ${q.batchedDatagramsIn}` : '') +
          (w.refused ? `  refused ${refused || 0}` : '') +
          (t ? `  tcp h1 ${t.h1Connections} h2 ${t.h2Connections} accepted ${t.accepted} over-limit ${t.refusedConnections} rapid-reset ${t.rapidResetCutoffs} tls-errors ${t.tlsErrors} malformed ${t.malformed}${handoffs(t)}` : ''),
      );
    }
  }
  return lines;
}

/** The TCP site handoffs (several sites only: one site never reads a ClientHello nor hands over). */
function handoffs(t: TcpStats): string {
  const { handedOff = 0, adopted = 0, handoffsFailed = 0, clientHellosRefused = 0 } = t;
  if (clientHellosRefused + handedOff + adopted + handoffsFailed === 0) return '';
  return `  sni handed-off ${handedOff} adopted ${adopted} handoff-failed ${handoffsFailed} hello-refused ${clientHellosRefused}`;
}
