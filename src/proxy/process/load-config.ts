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
