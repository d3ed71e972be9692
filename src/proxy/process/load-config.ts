import { ConfigError, formatConfigErrors, formatListener, loadConfig } from '../config/index.js';
import type { ProxyConfig } from '../config/types.js';

/** The config, or undefined after printing every error in it (file:line:col) to stderr. */
export function loadOrReport(configFile: string): ProxyConfig | undefined {
  try {
    return loadConfig(configFile);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${formatConfigErrors(err)}\n`);
      return undefined;
    }
    throw err;
  }
}

/**
 * Why this master cannot serve `config`, or undefined. TCP has one listening socket per address
 * shared by every site's workers, so a connection may be accepted by another site's worker; until
 * it is handed to the right site by its SNI, several sites are served on HTTP/3 listeners only.
 */
export function unservedSites(config: ProxyConfig): string | undefined {
  if (config.sites.length <= 1) return undefined;
  const tcp = config.listeners.filter((l) => l.protocols.some((p) => p !== 'h3'));
  if (tcp.length === 0) return undefined;
  return `${config.sites.length} sites with HTTP/1.1 or HTTP/2 on ${tcp.map((l) => formatListener(l)).join(', ')}: this version serves several sites on HTTP/3 only (protocols: [h3]); TCP connections are not yet handed to their site's workers`;
}
