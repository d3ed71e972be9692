/**
 * `admin:` the master's HTTP admin endpoint (/metrics, /healthz, /ready, /generations). Off when
 * the section is absent. It has no authentication: keep it on loopback or a private network.
 */
import { parseListenAddress } from './names.js';
import { formatListener, servesTls } from './section-listeners.js';
import type { AdminConfig, ListenerConfig } from './types.js';
import type { Cursor } from './yaml-cursor.js';

const ADMIN_KEYS = ['listen', 'scrape_timeout'] as const;

export function readAdmin(section: Cursor | undefined, listeners: readonly ListenerConfig[]): AdminConfig | undefined {
  if (section === undefined || !section.present) return undefined;
  const f = section.fields(ADMIN_KEYS, 'admin settings');
  if (f === undefined) return undefined;
  if (f.listen === undefined) {
    section.error('missing "listen": expected an address such as "127.0.0.1:9901"');
    return undefined;
  }
  const listen = f.listen.parsed(parseListenAddress, 'a listen address such as "127.0.0.1:9901"');
  // Long enough for a busy worker's event loop, short enough that a scraper's own timeout (10 s by default) is not hit.
  const scrapeTimeoutMs = f.scrape_timeout?.duration(10, 10_000) ?? 1000;
  if (listen === undefined) return undefined;
  // The same TCP address as a listener would make one of the two binds fail at start.
  const key = formatListener(listen);
  for (const l of listeners) {
    const taken = (servesTls(l) && formatListener(l) === key) || (l.httpRedirect !== undefined && formatListener(l.httpRedirect) === key);
    if (taken) {
      f.listen.error(`TCP address ${key} is already used by a listener`);
      return undefined;
    }
  }
  return { listen, scrapeTimeoutMs };
}
