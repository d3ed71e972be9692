/**
 * cgroup hooks: attach the compat programs to a cgroup (v2) with BPF links pinned as
 * `<cgroup inode>_<hook>` in the pin dir (udpgrm's naming), so they stay attached after the
 * installing process exits; detach them again. Hooks cover the cgroup and its descendants.
 * The daemon also pins the hook programs under the hooks' names (`setsockopt`, `getsockopt`,
 * `udp4_sendmsg`, `udp6_sendmsg`, `inet4_bind`, `inet6_bind`), as udpgrm does.
 */
import { closeSync, constants, existsSync, openSync, readdirSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { checkBpf, GrmError } from '../errors.js';
import { bpf } from '../libbpf.js';
import { libc } from '../../sys/libc.js';
import type { CompatState, ProgramName } from './state.js';

// <linux/bpf.h> enum bpf_attach_type
const BPF_CGROUP_INET4_BIND = 8;
const BPF_CGROUP_INET6_BIND = 9;
const BPF_CGROUP_UDP4_SENDMSG = 14;
const BPF_CGROUP_UDP6_SENDMSG = 15;
const BPF_CGROUP_GETSOCKOPT = 21;
const BPF_CGROUP_SETSOCKOPT = 22;

interface Hook {
  readonly name: string; // pin suffix, as udpgrm names them
  readonly program: ProgramName;
  readonly attachType: number;
  readonly sendmsg: boolean;
}

const HOOKS: readonly Hook[] = [
  { name: 'setsockopt', program: 'grmc_setsockopt', attachType: BPF_CGROUP_SETSOCKOPT, sendmsg: false },
  { name: 'getsockopt', program: 'grmc_getsockopt', attachType: BPF_CGROUP_GETSOCKOPT, sendmsg: false },
  { name: 'udp4_sendmsg', program: 'grmc_sendmsg4', attachType: BPF_CGROUP_UDP4_SENDMSG, sendmsg: true },
  { name: 'udp6_sendmsg', program: 'grmc_sendmsg6', attachType: BPF_CGROUP_UDP6_SENDMSG, sendmsg: true },
  { name: 'inet4_bind', program: 'grmc_bind4', attachType: BPF_CGROUP_INET4_BIND, sendmsg: false },
  { name: 'inet6_bind', program: 'grmc_bind6', attachType: BPF_CGROUP_INET6_BIND, sendmsg: false },
];

/** The cgroup v2 mount point, from /proc/mounts (hybrid layouts put it at /sys/fs/cgroup/unified). */
export function cgroup2Mount(mounts = readFileSync('/proc/mounts', 'utf8')): string {
  const m = mounts
    .split('\n')
    .map((l) => l.split(' '))
    .find((f) => f[2] === 'cgroup2');
  if (!m) throw new GrmError('UNSUPPORTED', 'no cgroup2 filesystem is mounted');
  return m[1]!;
}

/** This process's cgroup (v2) as a path under the mount: what --self means. */
export function selfCgroup(mount = cgroup2Mount(), procSelf = readFileSync('/proc/self/cgroup', 'utf8')): string {
  const line = procSelf.split('\n').find((l) => l.startsWith('0::'));
  if (!line) throw new GrmError('UNSUPPORTED', 'this process has no cgroup v2 path (/proc/self/cgroup has no 0:: line)');
  return join(mount, line.slice(3));
}

function linkPrefix(cgroupPath: string): string {
  return `${statSync(cgroupPath).ino}_`;
}

/** Pins the hook programs under the hooks' names (udpgrm's daemon does), replacing older pins. */
export function pinPrograms(state: CompatState, opts: { withoutSendmsg?: boolean } = {}): string[] {
  const pinned: string[] = [];
  for (const h of HOOKS) {
    const path = join(state.pinDir, h.name);
    if (existsSync(path)) unlinkSync(path);
    if (h.sendmsg && opts.withoutSendmsg) continue;
    checkBpf(bpf.objPin(state.programs[h.program], path) as number, `pinning ${path}`);
    pinned.push(path);
  }
  return pinned;
}

/** Names of the programs attached to the cgroup's setsockopt hook (the cgroup's own, not inherited). */
export function setsockoptPrograms(cgroupPath: string): string[] {
  const cg = openSync(cgroupPath, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    const ids = new Uint32Array(64);
    const cnt = [ids.length];
    const flags = [0];
    if ((bpf.progQuery(cg, BPF_CGROUP_SETSOCKOPT, 0, flags, ids, cnt) as number) < 0) return [];
    const names: string[] = [];
    for (const id of ids.subarray(0, cnt[0])) {
      const fd = bpf.progGetFdById(id) as number;
      if (fd < 0) continue;
      try {
        // struct bpf_prog_info: char name[16] at offset 64
        const info = Buffer.alloc(256);
        if ((bpf.objGetInfoByFd(fd, info, [info.length]) as number) === 0) names.push(info.subarray(64, 80).toString('latin1').replace(/\0.*$/s, ''));
      } finally {
        libc.close(fd);
      }
    }
    return names;
  } finally {
    closeSync(cg);
  }
}

/** Whether udpgrm's or our setsockopt hook is already attached to the cgroup (udpgrm warns: EUSERS). */
export function hooksAlreadyAttached(cgroupPath: string): boolean {
  // Kernel program names keep 15 characters: grmc_setsockopt (ours), udpgrm_setsocko (udpgrm's).
  return setsockoptPrograms(cgroupPath).some((n) => n === 'grmc_setsockopt' || n === 'udpgrm_setsocko');
}

/** Attaches every hook to the cgroup, replacing the links this pin dir had there. */
export function install(state: CompatState, cgroupPath: string, opts: { withoutSendmsg?: boolean } = {}): string[] {
  if (!existsSync(cgroupPath)) throw new GrmError('BAD_ARGUMENT', `cgroup ${cgroupPath} does not exist`);
  uninstall(state.pinDir, cgroupPath);
  const prefix = linkPrefix(cgroupPath);
  const cg = openSync(cgroupPath, constants.O_RDONLY | constants.O_DIRECTORY);
  const pinned: string[] = [];
  try {
    for (const h of HOOKS) {
      if (h.sendmsg && opts.withoutSendmsg) continue;
      const link = checkBpf(bpf.linkCreate(state.programs[h.program], cg, h.attachType, null) as number, `attaching ${h.name} to ${cgroupPath}`);
      try {
        const path = join(state.pinDir, prefix + h.name);
        checkBpf(bpf.objPin(link, path) as number, `pinning ${path}`);
        pinned.push(path);
      } finally {
        libc.close(link);
      }
    }
  } catch (err) {
    uninstall(state.pinDir, cgroupPath);
    throw err;
  } finally {
    closeSync(cg);
  }
  return pinned;
}

/** Detaches and unpins the links of one cgroup (all cgroups without a path). Returns how many. */
export function uninstall(pinDir: string, cgroupPath?: string): number {
  if (!existsSync(pinDir)) return 0;
  const prefix = cgroupPath && existsSync(cgroupPath) ? linkPrefix(cgroupPath) : undefined;
  let n = 0;
  for (const f of readdirSync(pinDir)) {
    if (!/^\d+_/.test(f) || (prefix && !f.startsWith(prefix))) continue;
    const fd = bpf.objGet(join(pinDir, f)) as number;
    if (fd >= 0) {
      bpf.linkDetach(fd);
      libc.close(fd);
    }
    unlinkSync(join(pinDir, f));
    n++;
  }
  return n;
}
