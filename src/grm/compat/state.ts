/**
 * The loaded compat object (bpf/compat.bpf.o) with its maps pinned in a pin dir of their own:
 * opening it again adopts the pinned maps, so hooks, groups, sockets and queued registration
 * requests outlive any agent. Programs are not pinned: the cgroup links (install.ts) and the
 * reuseport groups hold them.
 */
import { existsSync, readdirSync, rmdirSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { COMPAT_MAP_NAMES } from '../abi.generated.js';
import { ensureBpffs } from '../bpffs.js';
import { GrmError } from '../errors.js';
import { bpf } from '../libbpf.js';
import { loadPinnedObject } from '../object-load.js';
import { defaultObjectPath } from '../manager.js';
import { compatMapFromFd, type CompatMaps } from './maps.js';

/** udpgrm's default pin dir: scripts written for udpgrm find the state where they expect it. */
export const DEFAULT_COMPAT_PIN_DIR = '/sys/fs/bpf/udpgrm';

/** Program names in compat.bpf.c. */
export const PROGRAMS = ['grmc_select', 'grmc_setsockopt', 'grmc_getsockopt', 'grmc_bind4', 'grmc_bind6', 'grmc_sendmsg4', 'grmc_sendmsg6'] as const;
export type ProgramName = (typeof PROGRAMS)[number];

export function compatObjectPath(): string {
  return join(dirname(defaultObjectPath()), 'compat.bpf.o');
}

export class CompatState {
  private closed = false;

  private constructor(
    readonly pinDir: string,
    private readonly obj: unknown,
    readonly maps: CompatMaps,
    readonly programs: Readonly<Record<ProgramName, number>>,
  ) {}

  static open(pinDir: string, objectPath = compatObjectPath()): CompatState {
    if (!existsSync(objectPath)) throw new GrmError('OBJECT', `BPF object ${objectPath} not found: run 'npm run build' (make -C bpf)`);
    ensureBpffs(pinDir);
    const obj = load(objectPath, pinDir);
    try {
      const programs = {} as Record<ProgramName, number>;
      for (const name of PROGRAMS) {
        const p = bpf.findProgramByName(obj, name);
        if (!p) throw new GrmError('OBJECT', `${objectPath} has no program ${name}`);
        programs[name] = bpf.programFd(p) as number;
      }
      const maps = {} as Record<string, ReturnType<typeof compatMapFromFd>>;
      for (const name of COMPAT_MAP_NAMES) {
        const m = bpf.findMapByName(obj, name);
        if (!m) throw new GrmError('OBJECT', `${objectPath} has no map ${name}`);
        maps[name] = compatMapFromFd(name, bpf.mapFd(m) as number);
      }
      return new CompatState(pinDir, obj, maps as CompatMaps, programs);
    } catch (err) {
      bpf.objectClose(obj);
      throw err;
    }
  }

  /** Closes the object; pins, links and attached programs stay. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    bpf.objectClose(this.obj);
  }
}

function load(objectPath: string, pinDir: string): unknown {
  return loadPinnedObject(objectPath, pinDir, COMPAT_MAP_NAMES, `kernel lacks cgroup sockopt/sk_storage/ringbuf support, or ${pinDir} holds maps of another build`);
}

/** Unlinks every pin (maps, links) in a compat pin dir and removes it. Links must be detached first. */
export function unpinCompat(pinDir: string): void {
  if (!existsSync(pinDir)) return;
  for (const f of readdirSync(pinDir)) unlinkSync(join(pinDir, f));
  rmdirSync(pinDir);
}
