/**
 * A worker process: serves HTTP/3 on the sockets the master passed it (one per listener, already
 * registered in the generation's BPF slot), until the master tells it to drain.
 */
import { createCidIssuer } from '../../grm/index.js';
import { loadConfig, siteConfig } from '../config/index.js';
import { SiteNames } from '../config/site-names.js';
import { FIRST_SOCKET_FD, type MasterToWorker, type SiteSteering, type WorkerToMaster } from './ipc.js';
import { createLogger } from '../log.js';
import type { ListenerConfig, ProxyConfig } from '../config/types.js';
import { ProxyServer, type ServerSocket, type TcpServerSocket, type WorkerSite } from '../server.js';
import { WorkerTcpHandoff } from './worker-tcp-handoff.js';
import { tuneWorkerMalloc } from './worker-memory.js';

function send(msg: WorkerToMaster): void {
  // After the master went away the channel is closed: there is nobody left to tell.
  if (process.connected) process.send?.(msg);
}

export async function runWorker(): Promise<number> {
  if (!process.send) throw new Error('worker mode needs an IPC channel to the master');
  tuneWorkerMalloc();
  // The master coordinates shutdown: a terminal's Ctrl-C or HUP reaches the whole process group.
  process.on('SIGINT', () => {});
  process.on('SIGHUP', () => {});
  // From the first message on: the master may offer a connection to a worker it has just forked,
  // and a message carrying a handle that nobody listens to would leak its descriptor.
  const tcpHandoff = new WorkerTcpHandoff();
  process.on('message', (m: MasterToWorker, handle?: unknown) => {
    if (m.type === 'tcp-connection') tcpHandoff.offered(m, handle);
  });
  const init = await new Promise<Extract<MasterToWorker, { type: 'init' }>>((resolve) => {
    const onMessage = (m: MasterToWorker): void => {
      if (m.type !== 'init') return;
      process.off('message', onMessage);
      resolve(m);
    };
    process.on('message', onMessage);
  });

  // Listen from the start: a drain may come while we are still starting (a worker restarted
  // into a generation that begins draining).
  let server: ProxyServer | undefined;
  const site: WorkerSite = { name: init.site, names: new SiteNames(init.siteNames), steering: steeringIssuers(init.steering) };
  let drain: ((timeoutMs: number) => void) | undefined;
  let drainAskedEarly: number | undefined;
  process.on('message', (m: MasterToWorker) => {
    if (m.type === 'drain') {
      if (drain) drain(m.timeoutMs);
      else drainAskedEarly = m.timeoutMs;
    } else if (m.type === 'site-names') {
      site.names = new SiteNames(m.spec);
      site.steering = steeringIssuers(m.steering);
    } else if (m.type === 'tcp-handoff-failed') {
      server?.tcpHandoffFailed();
    } else if (m.type === 'stats') {
      send({ type: 'stats', id: m.id, connections: server?.connectionCount ?? 0, activeRequests: server?.activeRequests ?? 0, quic: server?.quicCounters(), tcp: server?.tcpCounters(), refused: server?.refusals.counts });    } else if (m.type === 'metrics') {
      // Before the server runs there is nothing counted yet; the master keeps its last answer.
      if (server) send({ type: 'metrics', id: m.id, snapshot: server.metricsSnapshot() });
    }
  });

  try {
    // The site's routes, pools, workers and QUIC limits; listeners and certificates are every site's.
    const config = siteConfig(loadConfig(init.configFile, { createState: false }), init.site);
    const log = createLogger(config.logging, { worker: init.workerIndex, gen: init.generation, ...(site.names.single ? {} : { site: site.name }) });
    const { udp, tcp } = workerSockets(init, config);
    server = await ProxyServer.start(config, udp, tcp, log, site, tcpHandoff);
    tcpHandoff.serving(server);
    log.info('worker ready');
  } catch (err) {
    send({ type: 'failed', error: err instanceof Error ? err.message : String(err) });
    return 1;
  }
  send({ type: 'ready' });

  const ready = server;
  return new Promise<number>((resolve) => {
    let draining = false;
    drain = (timeoutMs: number): void => {
      if (draining) return;
      draining = true;
      void ready.drain(timeoutMs).then(({ timedOut }) => {
        // The final counts, so the master's totals include what happened since its last scrape.
        send({ type: 'metrics', id: 0, snapshot: ready.metricsSnapshot() });
        send({ type: 'drained', timedOut });
        if (process.connected) process.disconnect();
        resolve(0);
      });
    };
    if (drainAskedEarly !== undefined) drain(drainAskedEarly);
    // Killed master or a direct SIGTERM: finish what we have, then go.
    process.on('disconnect', () => drain!(ready.config.drainTimeoutMs));
    process.on('SIGTERM', () => drain!(ready.config.drainTimeoutMs));
  });
}

function steeringIssuers(steering: SiteSteering): WorkerSite['steering'] {
  return new Map(Object.entries(steering).map(([site, groups]) => [site, groups.map((workers) => workers.map((p) => createCidIssuer(p)))]));
}

/**
 * The inherited sockets with the config listener each serves. The worker reads the config file
 * itself: should it have changed since the master read it, the listeners no longer line up and
 * the worker refuses to start (the reload fails; the current generation serves on).
 */
function workerSockets(init: Extract<MasterToWorker, { type: 'init' }>, config: ProxyConfig): { udp: ServerSocket[]; tcp: TcpServerSocket[] } {
  const listenerAt = (index: number, redirect: boolean, host: string, port: number): ListenerConfig => {
    const l = config.listeners[index];
    const address = redirect ? l?.httpRedirect : l;
    if (!l || !address || address.host !== host || address.port !== port) {
      throw new Error(`${config.file} changed while the generation started (listener ${index} is no longer ${host}:${port}); reload again`);
    }
    return l;
  };
  const udp = init.sockets.map((s) => ({ fd: FIRST_SOCKET_FD + s.index, listener: listenerAt(s.listenerIndex, false, s.host, s.port), host: s.host, port: s.port, family: s.family, issuer: createCidIssuer(s.cid) }));
  const tcp = init.tcpSockets.map((s) => ({ fd: FIRST_SOCKET_FD + s.index, listener: listenerAt(s.listenerIndex, s.role === 'redirect', s.host, s.port), listenerIndex: s.listenerIndex, role: s.role }));
  return { udp, tcp };
}
