import { ConfigError, formatConfigErrors, loadConfig } from '../config/index.js';
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
 * Why this master cannot serve `config`, or undefined. `check` accepts several sites, but until the
 * master runs a generation per site (issue 9) its workers would answer every SNI with the default
 * site's routes: refuse rather than serve a site's names with another site's routes.
 */
export function unservedSites(config: ProxyConfig): string | undefined {
  if (config.sites.length <= 1) return undefined;
  return `${config.sites.length} sites (${config.sites.map((s) => s.name).join(', ')}): this version serves one site only; per-site generations are not built yet`;
}
