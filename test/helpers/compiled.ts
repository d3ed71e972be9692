/**
 * The sources compiled to plain JS in a temporary directory, for child processes a test starts with
 * `node` (a manager in another process). Compiled from the working tree, so they run the code under test.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** Compiles src/ into a new temporary directory (`<dir>/src/...`) and returns the directory. */
export function compileToTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const root = resolve(import.meta.dirname, '../..');
  execFileSync('npx', ['tsc', '-p', 'tsconfig.json', '--outDir', dir], { cwd: root, stdio: 'ignore' });
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
  writeFileSync(join(dir, 'package.json'), '{"type":"module"}\n');
  return dir;
}
