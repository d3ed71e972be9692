/**
 * Ownership and mode checks for the files the proxy trusts without reading them critically: the
 * state directory and the secrets in it. Anyone who can replace them can plant a ticket key (and
 * decrypt every resumed session) or a certificate key, so they must be ours and private.
 */
import { lstatSync, mkdirSync, statSync, type Stats } from 'node:fs';

/** Our effective uid: files we trust must belong to it (root in production). */
function ourUid(): number {
  return process.geteuid?.() ?? 0;
}

function octal(mode: number): string {
  return `0${(mode & 0o777).toString(8)}`;
}

/**
 * Why `dir` cannot hold private state, 'missing', or undefined when it is fine: a directory
 * (a symlink to one is followed: the target is what is checked), owned by us, not writable by group
 * or other (whoever can write it can swap the files in it).
 */
export function privateDirProblem(dir: string): string | undefined {
  const st = inspect(() => statSync(dir));
  if (typeof st === 'string') return st;
  if (!st.isDirectory()) return 'is not a directory';
  if (st.uid !== ourUid()) return `is owned by uid ${st.uid}, not by us (uid ${ourUid()}): chown it or use another directory`;
  if (st.mode & 0o022) return `is writable by ${who(st.mode, 0o020, 0o002)} (mode ${octal(st.mode)}): chmod go-w it`;
  return undefined;
}

/** Creates `dir` (0700) when missing; throws naming the path and the problem when it is not private. */
export function ensurePrivateDir(dir: string): void {
  if (privateDirProblem(dir) === 'missing') mkdirSync(dir, { recursive: true, mode: 0o700 });
  const problem = privateDirProblem(dir);
  if (problem !== undefined) throw new Error(`state directory ${dir} ${problem}`);
}

/**
 * Why a secret file cannot be trusted, 'missing', or undefined when it is fine: a regular file
 * (never a symlink: its target could be anything), owned by us, not readable or writable by group
 * or other.
 */
export function secretFileProblem(file: string): string | undefined {
  const st = inspect(() => lstatSync(file));
  if (typeof st === 'string') return st;
  if (st.isSymbolicLink()) return 'is a symlink; a secret must be a regular file';
  if (!st.isFile()) return 'is not a regular file';
  if (st.uid !== ourUid()) return `is owned by uid ${st.uid}, not by us (uid ${ourUid()})`;
  if (st.mode & 0o066) return `is accessible to ${who(st.mode, 0o060, 0o006)} (mode ${octal(st.mode)}): chmod 600 it`;
  return undefined;
}

/** The stat of a path, or why there is none ('missing' when it does not exist). */
function inspect(stat: () => Stats): Stats | string {
  try {
    return stat();
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : `cannot be inspected (${(err as Error).message})`;
  }
}

function who(mode: number, group: number, other: number): string {
  const parts = [mode & group ? 'group' : '', mode & other ? 'other' : ''].filter((p) => p !== '');
  return parts.join(' and ');
}
