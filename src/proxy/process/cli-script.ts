import { fileURLToPath } from 'node:url';

/**
 * The CLI entry on disk (dist/src/cli.js, two folders up from here): workers run its hidden
 * `__worker` command, and a binary upgrade runs it anew, so both pick up the binary now on disk.
 */
export const CLI_SCRIPT = fileURLToPath(new URL('../../cli.js', import.meta.url));
