/**
 * `udpgrm-proxy list` and `udpgrm-proxy grm cleanup`: read (or remove) the pinned state of a
 * generation manager. Layout close to `udpgrm list`.
 */
import { existsSync } from 'node:fs';
import { GRM, grm_gen_stats, grm_group_stats } from './abi.generated.js';
import { GrmError } from './errors.js';
import type { Group } from './group.js';
import { DEFAULT_PIN_DIR } from './manager.js';
import { PinnedState } from './pinned.js';

const USAGE = `usage: list [--pin-dir DIR] [-v] [IP:PORT]    groups, apps, generations, sockets, counters
       cleanup [--pin-dir DIR]                detach the steering program and unpin all state
`;

interface Parsed {
  command: string | undefined;
  pinDir: string;
  verbose: boolean;
  filter: string | undefined;
}

function parse(argv: string[]): Parsed {
  const out: Parsed = { command: undefined, pinDir: DEFAULT_PIN_DIR, verbose: false, filter: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--pin-dir') {
      const v = argv[++i];
      if (!v) throw new GrmError('BAD_ARGUMENT', '--pin-dir needs a directory');
      out.pinDir = v;
    } else if (a.startsWith('--pin-dir=')) out.pinDir = a.slice('--pin-dir='.length);
    else if (a === '-v' || a === '--verbose') out.verbose = true;
    else if (a.startsWith('-')) throw new GrmError('BAD_ARGUMENT', `unknown option ${a}`);
    else if (!out.command) out.command = a;
    else if (!out.filter) out.filter = a;
    else throw new GrmError('BAD_ARGUMENT', `unexpected argument ${a}`);
  }
  return out;
}

export function formatGroup(g: Group, verbose: boolean, state: PinnedState): string {
  const s = g.state();
  const lines: string[] = [g.toString()];
  const flags = s.flags & GRM.GROUP_DROP_UNPARSEABLE ? '  drop_unparseable' : '';
  const live = [...state.liveKeys().values()].map((k) => `${k.configId}:${k.cidLength}B`).join(',');
  let issuing = '-';
  try {
    issuing = String(state.issuingKey().configId);
  } catch {
    /* no issuing key recorded: show '-' */
  }
  lines.push(`\tgroup ${s.id}  attempt_ttl_ms ${s.attemptTtlMs}  cid_configs ${live || '-'} issuing ${issuing}${flags}`);
  const names = g.serverNames();
  const apps = new Set<number>([...names.keys(), ...s.slotApp.filter((_, i) => s.slotState[i] === GRM.SLOT_IN_USE)]);
  apps.add(0);
  lines.push('\tapps:');
  for (const app of [...apps].sort((a, b) => a - b)) {
    const w = g.working(app);
    lines.push(`\t\tapp ${app}  working gen ${w ?? '-'}${names.get(app) ? `  names ${names.get(app)!.join(' ')}` : ''}`);
  }
  lines.push('\tsocket generations:');
  for (const gen of g.generations()) {
    const socks = gen.sockets.map((k) => `${k.worker}:0x${k.cookie.toString(16)}`).join(' ');
    const role = gen.working ? 'working' : 'draining';
    lines.push(`\t\tgen ${String(gen.gen).padStart(2)}  slot ${String(gen.slot).padStart(2)}  ${socks || '(no sockets)'}  <=  app ${gen.app}  ${role}`);
  }
  lines.push('\tmetrics:');
  const st = g.stats();
  for (const name of Object.keys(grm_group_stats.fields) as Array<keyof typeof st.group>) {
    const v = st.group[name];
    if (Array.isArray(v)) {
      v.forEach((x, app) => {
        if (x > 0n || verbose) lines.push(`\t\t${name}{app=${app}} ${x}`);
      });
    } else if (v > 0n || verbose) lines.push(`\t\t${name} ${v}`);
  }
  for (const gen of st.generations) {
    for (const name of Object.keys(grm_gen_stats.fields) as Array<keyof typeof gen.counters>) {
      const v = gen.counters[name];
      if (v > 0n || verbose) lines.push(`\t\t${name}{gen=${gen.gen}} ${v}`);
    }
  }
  return lines.join('\n');
}

/** Runs `list` or `cleanup`; returns the exit status. Output on stdout, errors on stderr. */
export async function runGrmCommand(argv: string[]): Promise<number> {
  let p: Parsed;
  try {
    p = parse(argv);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (p.command !== 'list' && p.command !== 'cleanup') {
    process.stderr.write(p.command ? `unknown command '${p.command}'\n${USAGE}` : USAGE);
    return 2;
  }
  if (!existsSync(p.pinDir)) {
    if (p.command === 'cleanup') return 0; // nothing to clean
    process.stderr.write(`no generation manager state in ${p.pinDir}\n`);
    return 1;
  }
  let state: PinnedState;
  try {
    state = PinnedState.open(p.pinDir);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 1;
  }
  if (p.command === 'cleanup') {
    const errors = state.cleanup();
    for (const e of errors) process.stderr.write(`cleanup: ${e}\n`);
    process.stdout.write(`removed ${p.pinDir}\n`);
    return errors.length ? 1 : 0;
  }
  try {
    const groups = state.groups().filter((g) => !p.filter || g.toString() === p.filter);
    if (p.filter && groups.length === 0) {
      process.stderr.write(`no group ${p.filter}\n`);
      return 1;
    }
    process.stdout.write(groups.map((g) => `${formatGroup(g, p.verbose, state)}\n`).join(''));
    return 0;
  } finally {
    state.close();
  }
}
