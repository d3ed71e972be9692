#!/usr/bin/env node
// Entry point: parses the command line and dispatches to a command.
import { readFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

const USAGE = `usage: udpgrm-proxy [--config FILE]          run the proxy
       udpgrm-proxy check --config FILE     validate a config and exit
       udpgrm-proxy --help | --version
`;

export function main(argv: string[]): number {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (argv.includes('--version')) {
    process.stdout.write(`udpgrm-proxy ${pkg.version}\n`);
    return 0;
  }
  process.stderr.write(`udpgrm-proxy: not implemented yet\n${USAGE}`);
  return 2;
}

process.exitCode = main(process.argv.slice(2));
