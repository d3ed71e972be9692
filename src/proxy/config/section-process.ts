/** `process:` how the master runs generations: BPF pin dir, control socket, pid file, limits; and `workers`. */
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import type { ProcessConfig } from './types.js';
import type { Cursor } from './yaml-cursor.js';

const PROCESS_KEYS = ['pin_dir', 'control_socket', 'pid_file', 'max_draining_generations', 'ready_timeout'] as const;
export const DEFAULT_PIN_DIR = '/sys/fs/bpf/udpgrm-proxy';

export function readProcess(section: Cursor | undefined, configFile: string, stateDir: string): ProcessConfig {
  const f = section?.fields(PROCESS_KEYS, 'process settings') ?? {};
  const path = (c: Cursor | undefined, fallback: string): string => {
    const text = c?.string('a file path');
    return text === undefined ? fallback : resolve(configFile, '..', text);
  };
  const pinDir = path(f.pin_dir, DEFAULT_PIN_DIR);
  if (f.pin_dir && !pinDir.startsWith('/sys/fs/bpf/')) f.pin_dir.error('pin_dir must be a directory under /sys/fs/bpf');
  return {
    pinDir,
    controlSocket: path(f.control_socket, resolve(stateDir, 'control.sock')),
    pidFile: path(f.pid_file, resolve(stateDir, 'udpgrm-proxy.pid')),
    maxDrainingGenerations: f.max_draining_generations?.integer(1, 16, 'max_draining_generations') ?? 4,
    readyTimeoutMs: f.ready_timeout?.duration(100, 300_000) ?? 10_000,
  };
}

/** `workers:` processes per generation, at the top level (fallback: one per core) or per site (fallback: the top level's). */
export function readWorkers(c: Cursor | undefined, fallback = availableParallelism()): number {
  if (c === undefined) return fallback;
  if (c.scalar === 'auto') return availableParallelism();
  return c.integer(1, 1024, 'workers (or "auto")') ?? fallback;
}
