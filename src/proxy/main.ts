/**
 * `udpgrm-proxy --config FILE`: load the config, bind the listeners, serve until a signal.
 * SIGTERM/SIGINT drain gracefully (GOAWAY, bounded by drain_timeout); SIGQUIT stops at once.
 */
import { loadConfig, formatConfigErrors, ConfigError } from './config/index.js';
import { createLogger } from './log.js';
import { createReusePortSocket } from './net/udp-socket.js';
import { RandomCidIssuer } from './quic/random-cid.js';
import { ProxyServer, type ServerSocket } from './server.js';

export async function runProxy(configFile: string): Promise<number> {
  let config;
  try {
    config = loadConfig(configFile);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${formatConfigErrors(err)}\n`);
      return 1;
    }
    throw err;
  }
  const log = createLogger(config.logging);
  const sockets: ServerSocket[] = config.listeners.map((l) => ({
    fd: createReusePortSocket(l),
    host: l.host,
    port: l.port,
    family: l.family,
    issuer: new RandomCidIssuer(config.quic.cidLength),
  }));
  const server = await ProxyServer.start(config, sockets, log);
  log.info({ config: config.file, listeners: config.listeners.length }, 'ready');

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (graceful: boolean) => async () => {
      if (stopping) return;
      stopping = true;
      log.info({ graceful }, 'stopping');
      if (graceful) {
        const { timedOut } = await server.drain(config.drainTimeoutMs);
        log.info({ timedOut }, 'drained');
      } else {
        await server.close();
      }
      resolve(0);
    };
    process.on('SIGTERM', stop(true));
    process.on('SIGINT', stop(true));
    process.on('SIGQUIT', stop(false));
  });
}
