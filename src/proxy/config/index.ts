/** The proxy's configuration: load and validate proxy.yaml, pick certificates and routes. */
export type * from './types.js';
export { ConfigError, formatConfigErrors, type ConfigIssue } from './errors.js';
export { loadConfig, loadConfigWithState, type LoadOptions, type LoadResult, type StateFate } from './load.js';
export { checkConfigFile, type CheckResult } from './check.js';
export { selectCertificate } from './select-certificate.js';
export { readTicketKey, TICKET_KEY_BYTES } from './tls-state.js';
export { formatListener, servesTls, servesUdp } from './section-listeners.js';
export { parseDuration, parseSize } from './units.js';
export { siteConfig, siteFingerprint, findSite, type SiteFingerprint, type FileDigest } from './site-view.js';
export { diffSites, fingerprintSites, formatSiteChanges, type SiteChange } from './site-diff.js';
export { IMPLICIT_SITE, MAX_SITES } from './section-sites.js';
