/** The proxy's configuration: load and validate proxy.yaml, pick certificates and routes. */
export type * from './types.js';
export { ConfigError, formatConfigErrors, type ConfigIssue } from './errors.js';
export { loadConfig, loadConfigWithState, type LoadOptions, type LoadResult, type StateFate } from './load.js';
export { checkConfigFile, type CheckResult } from './check.js';
export { selectCertificate } from './select-certificate.js';
export { readTicketKey, TICKET_KEY_BYTES } from './tls-state.js';
export { formatListener, servesTls, servesUdp } from './section-listeners.js';
export { parseDuration, parseSize } from './units.js';
