/**
 * koffi bindings to the few libc and libbpf.so.1 functions the generation manager calls.
 * libbpf 1.x returns -errno from its bpf_* wrappers; libc calls return -1 and set errno.
 */
import koffi from 'koffi';
import { GrmError } from './errors.js';

const libc = koffi.load('libc.so.6');
const libbpf = koffi.load('libbpf.so.1');

export const c = {
  socket: libc.func('int socket(int domain, int type, int protocol)'),
  bind: libc.func('int bind(int fd, const void *addr, uint32_t len)'),
  getsockname: libc.func('int getsockname(int fd, _Out_ void *addr, _Inout_ uint32_t *len)'),
  setsockopt: libc.func('int setsockopt(int fd, int level, int name, const void *val, uint32_t len)'),
  getsockopt: libc.func('int getsockopt(int fd, int level, int name, _Out_ void *val, _Inout_ uint32_t *len)'),
  close: libc.func('int close(int fd)'),
  mount: libc.func('int mount(const char *src, const char *target, const char *type, unsigned long flags, const void *data)'),
  strerror: libc.func('const char *strerror(int errnum)'),
  geteuid: libc.func('uint32_t geteuid()'),
  pthreadSigmask: libc.func('int pthread_sigmask(int how, const void *set, _Out_ void *oldset)'),
};

const SIG_BLOCK = 0;
const SIG_SETMASK = 2;
const SIGSET_BYTES = 128;

/**
 * Runs `fn` with every signal blocked on this thread. The BPF verifier abandons a load with
 * EAGAIN when a signal is pending (V8's profiler sends SIGPROF every millisecond); blocked
 * signals are delivered right after.
 */
export function withSignalsBlocked<T>(fn: () => T): T {
  const all = Buffer.alloc(SIGSET_BYTES, 0xff);
  const old = Buffer.alloc(SIGSET_BYTES);
  c.pthreadSigmask(SIG_BLOCK, all, old);
  try {
    return fn();
  } finally {
    c.pthreadSigmask(SIG_SETMASK, old, null);
  }
}

export const bpf = {
  objectOpenFile: libbpf.func('void *bpf_object__open_file(const char *path, const void *opts)'),
  objectLoad: libbpf.func('int bpf_object__load(void *obj)'),
  objectClose: libbpf.func('void bpf_object__close(void *obj)'),
  findMapByName: libbpf.func('void *bpf_object__find_map_by_name(void *obj, const char *name)'),
  findProgramByName: libbpf.func('void *bpf_object__find_program_by_name(void *obj, const char *name)'),
  mapSetPinPath: libbpf.func('int bpf_map__set_pin_path(void *map, const char *path)'),
  mapFd: libbpf.func('int bpf_map__fd(void *map)'),
  programFd: libbpf.func('int bpf_program__fd(void *prog)'),
  mapUpdate: libbpf.func('int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)'),
  mapLookup: libbpf.func('int bpf_map_lookup_elem(int fd, const void *key, _Out_ void *value)'),
  mapDelete: libbpf.func('int bpf_map_delete_elem(int fd, const void *key)'),
  mapNextKey: libbpf.func('int bpf_map_get_next_key(int fd, const void *key, _Out_ void *next)'),
  objGet: libbpf.func('int bpf_obj_get(const char *path)'),
  numPossibleCpus: libbpf.func('int libbpf_num_possible_cpus()'),
};

export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_DGRAM = 2;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_REUSEPORT = 15;
export const SO_SNDBUFFORCE = 32;
export const SO_RCVBUFFORCE = 33;
export const SO_ATTACH_REUSEPORT_EBPF = 52;
export const SO_COOKIE = 57;
export const SO_DETACH_REUSEPORT_BPF = 68;
export const SO_TYPE = 3;
export const IPPROTO_IPV6 = 41;
export const IPV6_V6ONLY = 26;
export const ENOENT = 2;
export const EPERM = 1;
export const EACCES = 13;

export function errnoText(errno: number): string {
  return `${c.strerror(errno) as string} (errno ${errno})`;
}

/** Turns a failed libc call (-1 + errno) into a GrmError. */
export function checkLibc(ret: number, what: string): number {
  if (ret < 0) {
    const errno = koffi.errno();
    throw new GrmError('SYSCALL', `${what}: ${errnoText(errno)}`, errno);
  }
  return ret;
}

/** Turns a failed libbpf call (-errno) into a GrmError, naming privilege problems plainly. */
export function checkBpf(ret: number, what: string): number {
  if (ret < 0) {
    const errno = -ret;
    if (errno === EPERM || errno === EACCES) {
      throw new GrmError('PERMISSION', `${what}: ${errnoText(errno)}: needs root or CAP_BPF+CAP_NET_ADMIN`, errno);
    }
    throw new GrmError('SYSCALL', `${what}: ${errnoText(errno)}`, errno);
  }
  return ret;
}

let cpus = 0;
/** Number of possible CPUs: the stride of per-CPU map values. */
export function possibleCpus(): number {
  if (cpus === 0) cpus = checkBpf(bpf.numPossibleCpus() as number, 'libbpf_num_possible_cpus');
  return cpus;
}
