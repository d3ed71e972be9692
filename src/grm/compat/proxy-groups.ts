/**
 * The proxy's own groups (its generation manager's pin dir, read-only) for `grm list`, so one
 * command shows every generation on the host. Their layout is the proxy's `list` (src/grm/cli.ts);
 * the address line ends with "  (udpgrm-proxy)", as udpgrm marks groups it does not own with
 * " (old)", so a script parsing udpgrm's layout can tell them apart.
 */
import { existsSync } from 'node:fs';
import { formatGroup } from '../cli.js';
import { PinnedState } from '../pinned.js';

export const PROXY_MARK = '  (udpgrm-proxy)';

/** The proxy's groups in `pinDir` ('' when it has none there); `only` = "IP:PORT". */
export function listProxyGroups(pinDir: string, verbose: boolean, only?: string): string {
  if (!existsSync(pinDir)) return '';
  const state = PinnedState.open(pinDir);
  try {
    return state
      .groups()
      .filter((g) => !only || g.toString() === only)
      .map((g) => {
        const text = formatGroup(g, verbose, state);
        const nl = text.indexOf('\n');
        return `${text.slice(0, nl)}${PROXY_MARK}${text.slice(nl)}\n`;
      })
      .join('');
  } finally {
    state.close();
  }
}
