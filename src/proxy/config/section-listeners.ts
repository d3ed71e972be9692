/** `listeners:` — the UDP addresses every worker binds (with SO_REUSEPORT). */
import { parseListenAddress } from './names.js';
import type { ListenerConfig } from './types.js';
import type { Cursor } from './yaml-cursor.js';

export function formatListener(l: ListenerConfig): string {
  return l.family === 6 ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}`;
}

export function readListeners(section: Cursor | undefined, root: Cursor): ListenerConfig[] {
  if (section === undefined || !section.present) {
    root.missing(['listeners'], 'missing "listeners": expected a list of UDP addresses such as "127.0.0.1:4433" and "[::1]:4433"');
    return [];
  }
  const items = section.oneOrMany();
  if (items === undefined) return [];
  if (items.length === 0) section.error('expected at least one listener address');
  const seen = new Map<string, string>();
  const out: ListenerConfig[] = [];
  for (const item of items) {
    if (item.isSequence) {
      // `- [::1]:4433` unquoted is YAML flow-list syntax; say what to write instead.
      item.error('expected a quoted address: write IPv6 listeners as "[::1]:4433" (with the quotes)');
      continue;
    }
    const listener = item.parsed(parseListenAddress, 'a listen address such as "127.0.0.1:4433"');
    if (listener === undefined) continue;
    const key = formatListener(listener);
    const first = seen.get(key);
    if (first !== undefined) {
      item.error(`duplicate listener ${key} (already listed at ${first})`);
      continue;
    }
    seen.set(key, item.path);
    out.push(listener);
  }
  return out;
}
