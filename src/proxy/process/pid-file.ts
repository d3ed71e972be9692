/**
 * The pid file, written and removed without ever following a symlink at its path: as root, writing
 * through a symlink someone planted would overwrite whatever file it points to.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';

/**
 * Writes `pid` to a fresh file beside `file` (O_CREAT|O_EXCL|O_NOFOLLOW: never an existing file,
 * never through a link) and renames it over `file`; the rename replaces a symlink there, not its
 * target, and a reader sees the old or the new content, never a partial one.
 */
export function writePidFile(file: string, pid = process.pid): void {
  const tmp = `${file}.${pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
  try {
    writeSync(fd, `${pid}\n`);
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(tmp, file);
  } catch (err) {
    unlinkSync(tmp);
    throw err;
  }
}

/** The pid in `file` (read without following a symlink), or undefined when absent or not a pid file. */
export function readPidFile(file: string): number | undefined {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch {
    return undefined;
  }
  try {
    const buf = Buffer.alloc(32);
    const text = buf.subarray(0, readSync(fd, buf)).toString('latin1').trim();
    return /^[1-9][0-9]*$/.test(text) ? Number(text) : undefined;
  } finally {
    closeSync(fd);
  }
}

/** Removes `file` if it names us (after an upgrade it names the new master: leave it). */
export function removePidFile(file: string, pid = process.pid): void {
  if (readPidFile(file) !== pid) return;
  try {
    unlinkSync(file);
  } catch {
    // already gone
  }
}
