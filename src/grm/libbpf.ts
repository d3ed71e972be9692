/**
 * The koffi binding to libbpf.so.1: the generation manager's own library (libc is src/sys/libc.ts).
 * libbpf 1.x returns -errno from its bpf_* wrappers (checkBpf in errors.ts).
 */
import koffi from 'koffi';
import { libc, SIG_BLOCK, SIG_SETMASK, SIGSET_BYTES } from '../sys/libc.js';
import { checkBpf } from './errors.js';

const libbpf = koffi.load('libbpf.so.1');

/** int (*ring_buffer_sample_fn)(void *ctx, void *data, size_t size): a registered JS callback. */
export const RingSampleFn = koffi.proto('int grm_ring_sample_fn(void *ctx, void *data, size_t size)');

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
  objPin: libbpf.func('int bpf_obj_pin(int fd, const char *path)'),
  linkCreate: libbpf.func('int bpf_link_create(int prog_fd, int target_fd, int attach_type, const void *opts)'),
  linkDetach: libbpf.func('int bpf_link_detach(int link_fd)'),
  progQuery: libbpf.func('int bpf_prog_query(int target_fd, int type, uint32_t query_flags, _Out_ uint32_t *attach_flags, _Out_ uint32_t *prog_ids, _Inout_ uint32_t *prog_cnt)'),
  progGetFdById: libbpf.func('int bpf_prog_get_fd_by_id(uint32_t id)'),
  objGetInfoByFd: libbpf.func('int bpf_obj_get_info_by_fd(int fd, _Inout_ void *info, _Inout_ uint32_t *info_len)'),
  ringBufferNew: libbpf.func('void *ring_buffer__new(int map_fd, grm_ring_sample_fn *cb, void *ctx, const void *opts)'),
  ringBufferConsume: libbpf.func('int ring_buffer__consume(void *rb)'),
  ringBufferEpollFd: libbpf.func('int ring_buffer__epoll_fd(void *rb)'),
  ringBufferFree: libbpf.func('void ring_buffer__free(void *rb)'),
};

/**
 * Runs `fn` with every signal blocked on this thread. The BPF verifier abandons a load with
 * EAGAIN when a signal is pending (V8's profiler sends SIGPROF every millisecond); blocked
 * signals are delivered right after.
 */
export function withSignalsBlocked<T>(fn: () => T): T {
  const all = Buffer.alloc(SIGSET_BYTES, 0xff);
  const old = Buffer.alloc(SIGSET_BYTES);
  libc.pthread_sigmask(SIG_BLOCK, all, old);
  try {
    return fn();
  } finally {
    libc.pthread_sigmask(SIG_SETMASK, old, null);
  }
}

let cpus = 0;
/** Number of possible CPUs: the stride of per-CPU map values. */
export function possibleCpus(): number {
  if (cpus === 0) cpus = checkBpf(bpf.numPossibleCpus() as number, 'libbpf_num_possible_cpus');
  return cpus;
}
