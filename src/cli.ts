// Entry point: parses the command line and dispatches to a command.
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

const USAGE = `udpgrm-proxy ${pkg.version}: HTTP/3 reverse proxy with eBPF-steered zero-downtime reloads

usage:
  udpgrm-proxy --config FILE             run the proxy
  udpgrm-proxy check --config FILE       validate a config: exit 0, or 1 listing every error
  udpgrm-proxy reload --config FILE      reload the running proxy (the sites that changed) and wait for the outcome
  udpgrm-proxy reload --config FILE --site NAME   reload only site NAME (a new generation even if unchanged)
  udpgrm-proxy upgrade --config FILE     start a new master from the binary on disk; the old one drains
  udpgrm-proxy list --config FILE        the running proxy's generations, workers, connections
  udpgrm-proxy list --config FILE --json the same as JSON (as the admin endpoint's /generations)
  udpgrm-proxy list [--pin-dir DIR] [-v] [IP:PORT]  groups, generations, sockets, counters
  udpgrm-proxy grm cleanup [--pin-dir DIR]  remove pinned BPF state
  udpgrm-proxy grm --daemon | --install[=CGROUP] | list | delete IP:PORT | -h
                                         udpgrm's interface for any UDP service (grm -h)
  udpgrm-proxy --help | --version
`;

export class UsageError extends Error {}

interface Command {
  readonly options: NonNullable<ParseArgsConfig['options']>;
  run(values: Record<string, unknown>, positionals: string[]): Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  run: {
    options: { config: { type: 'string', short: 'c' } },
    async run(values) {
      const { runProxy } = await import('./proxy/process/run-master.js');
      return runProxy(requireString(values, 'config'));
    },
  },
  reload: {
    options: { config: { type: 'string', short: 'c' }, site: { type: 'string' } },
    async run(values) {
      const { runReload } = await import('./proxy/process/control-client.js');
      const site = values.site;
      if (site !== undefined && (typeof site !== 'string' || site === '')) throw new UsageError('--site NAME needs a site name');
      return runReload(requireString(values, 'config'), site as string | undefined);
    },
  },
  upgrade: {
    options: { config: { type: 'string', short: 'c' } },
    async run(values) {
      const { runUpgrade } = await import('./proxy/process/control-client.js');
      return runUpgrade(requireString(values, 'config'));
    },
  },
  check: {
    options: { config: { type: 'string', short: 'c' } },
    async run(values) {
      const { checkConfigFile } = await import('./proxy/config/index.js');
      const result = checkConfigFile(requireString(values, 'config'));
      if (result.ok) {
        process.stdout.write(`${result.summary}\n`);
        return 0;
      }
      process.stderr.write(`${result.errors}\n`);
      return 1;
    },
  },
};

function requireString(values: Record<string, unknown>, name: string): string {
  const v = values[name];
  if (typeof v !== 'string' || v === '') throw new UsageError(`--${name} FILE is required`);
  return v;
}

/** `list` and `grm …` read pinned BPF state: handled by the generation manager's own CLI. */
async function runGrm(argv: string[]): Promise<number> {
  const { runGrmCommand } = await import('./grm/cli.js');
  return runGrmCommand(argv);
}

export async function main(argv: string[]): Promise<number> {
  // `grm -h` is udpgrm's help (exit 254), handled by grm/compat/cli.ts.
  if (argv[0] !== 'grm' && (argv.includes('--help') || argv.includes('-h'))) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (argv.includes('--version') || argv.includes('-V')) {
    process.stdout.write(`udpgrm-proxy ${pkg.version}\n`);
    return 0;
  }
  if (argv[0] === '__worker') {
    const { runWorker } = await import('./proxy/process/worker.js');
    return runWorker();
  }
  if (argv[0] === 'list') {
    const at = argv.findIndex((a) => a === '--config' || a === '-c');
    if (at < 0) return runGrm(argv);
    // With a config: the running master's generations first, then the kernel's view of its pins.
    const file = argv[at + 1];
    if (!file) throw new UsageError('--config FILE is required');
    const { printMasterStatus } = await import('./proxy/process/control-client.js');
    const { loadOrReport } = await import('./proxy/process/load-config.js');
    const config = loadOrReport(file);
    if (!config) return 1;
    if (argv.includes('--json')) {
      // The master's document alone: the pinned-state listing below is for people.
      const { printMasterStatusJson } = await import('./proxy/process/control-client.js');
      return printMasterStatusJson(file);
    }
    const rest = argv.filter((_, i) => i !== at && i !== at + 1);
    const code = await printMasterStatus(file);
    return (await runGrm([...rest, '--pin-dir', config.process.pinDir])) || code;
  }
  if (argv[0] === 'grm') {
    if (argv[1] === 'cleanup') return runGrm(argv.slice(1));
    // Everything else is udpgrm's command line (grm/compat/cli.ts).
    const { runCompatCli } = await import('./grm/compat/cli.js');
    return runCompatCli(argv.slice(1));
  }
  const name = argv[0] && !argv[0].startsWith('-') ? argv[0] : 'run';
  const rest = name === 'run' && argv[0] !== 'run' ? argv : argv.slice(1);
  const command = COMMANDS[name];
  if (!command) throw new UsageError(`unknown command "${name}"`);
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options: command.options, strict: true, allowPositionals: false });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  return command.run(parsed.values, parsed.positionals);
}

const worker = process.argv[2] === '__worker';
// `udpgrm-proxy list | head`: a reader that stops early is not an error of ours (as with any Unix tool).
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // A drained worker may still hold idle handles (pooled upstream sockets): it is done.
    if (worker) process.exit(code);
  },
  (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`udpgrm-proxy: ${err.message}\n\n${USAGE}`);
      process.exitCode = 2;
      return;
    }
    process.stderr.write(`udpgrm-proxy: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
