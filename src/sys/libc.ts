/**
 * The one binding to libc (koffi): the calls Node has no API for (raw sockets by fd, unix
 * datagrams, sendmmsg, mount, unshare, signal masks, flock), the constants they take, and errno helpers.
 * The bottom layer: src/grm, src/proxy, tests and benches import it; it imports nothing of ours.
 * Calls return -1 and set errno (read it with errno() right after the call).
 */
import koffi from 'koffi';

const lib = koffi.load('libc.so.6');

export const libc = {
  socket: lib.func('int socket(int domain, int type, int protocol)'),
  bind: lib.func('int bind(int fd, const void *addr, uint32_t len)'),
  listen: lib.func('int listen(int fd, int backlog)'),
  connect: lib.func('int connect(int fd, const void *addr, uint32_t len)'),
  getsockname: lib.func('int getsockname(int fd, _Out_ void *addr, _Inout_ uint32_t *len)'),
  setsockopt: lib.func('int setsockopt(int fd, int level, int name, const void *val, uint32_t len)'),
  getsockopt: lib.func('int getsockopt(int fd, int level, int name, _Out_ void *val, _Inout_ uint32_t *len)'),
  sendto: lib.func('intptr_t sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)'),
  sendmmsg: lib.func('int sendmmsg(int fd, void *msgvec, unsigned int vlen, int flags)'),
  recv: lib.func('intptr_t recv(int fd, void *buf, size_t len, int flags)'),
  recvmmsg: lib.func('int recvmmsg(int fd, void *msgvec, unsigned int vlen, int flags, void *timeout)'),
  /** The msghdr and everything it points to are caller-built (scm-rights.ts). */
  sendmsg: lib.func('intptr_t sendmsg(int fd, const void *msg, int flags)'),
  recvmsg: lib.func('intptr_t recvmsg(int fd, void *msg, int flags)'),
  dup2: lib.func('int dup2(int oldfd, int newfd)'),
  /** Replaces this process (argv NULL-terminated); returns only on failure. */
  execvp: lib.func('int execvp(const char *file, const char **argv)'),
  close: lib.func('int close(int fd)'),
  /** Variadic: pass the third argument as ('int', value). */
  fcntl: lib.func('int fcntl(int fd, int cmd, ...)'),
  inet_pton: lib.func('int inet_pton(int af, const char *src, void *dst)'),
  /** Returns the text written into dst, or null. */
  inet_ntop: lib.func('const char *inet_ntop(int af, const void *src, void *dst, uint32_t size)'),
  mount: lib.func('int mount(const char *src, const char *target, const char *type, unsigned long flags, const void *data)'),
  unshare: lib.func('int unshare(int flags)'),
  pthread_sigmask: lib.func('int pthread_sigmask(int how, const void *set, _Out_ void *oldset)'),
  strerror: lib.func('const char *strerror(int errnum)'),
  flock: lib.func('int flock(int fd, int operation)'),
  /** A pidfd for a process (glibc 2.36+), and a copy of one of its fds (needs ptrace rights over it). */
  pidfd_open: lib.func('int pidfd_open(int pid, unsigned int flags)'),
  pidfd_getfd: lib.func('int pidfd_getfd(int pidfd, int targetfd, unsigned int flags)'),
  /** Call with .async: blocks a libuv threadpool thread, not the event loop. */
  epoll_wait: lib.func('int epoll_wait(int epfd, _Out_ void *events, int maxevents, int timeout)'),
  /** glibc's malloc tuning; returns 1 on success, 0 on error (no errno). */
  mallopt: lib.func('int mallopt(int param, int value)'),
};

// <malloc.h> (glibc)
export const M_TRIM_THRESHOLD = -1;
export const M_MMAP_THRESHOLD = -3;

// <sys/socket.h>, <netinet/in.h> (Linux values)
export const AF_UNIX = 1;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const MSG_TRUNC = 0x20;
export const MSG_DONTWAIT = 0x40;
export const SOL_SOCKET = 1;
export const SO_REUSEADDR = 2;
export const SO_TYPE = 3;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_REUSEPORT = 15;
export const SO_ACCEPTCONN = 30;
export const SO_SNDBUFFORCE = 32;
export const SO_RCVBUFFORCE = 33;
export const SO_ATTACH_REUSEPORT_EBPF = 52;
export const SO_COOKIE = 57;
export const SCM_RIGHTS = 1;
export const SO_DETACH_REUSEPORT_BPF = 68;
export const IPPROTO_IPV6 = 41;
export const IPV6_V6ONLY = 26;
/** SO_NO_CHECK: no UDP checksums on send (IPv4); the kernel then refuses GSO sends (EINVAL). */
export const SO_NO_CHECK = 11;

// <netinet/udp.h>
export const SOL_UDP = 17;
/** UDP GSO (Linux 4.18+): a u16 segment size, as a socket option or per send in a cmsg. */
export const UDP_SEGMENT = 103;

// <fcntl.h>
export const F_GETFD = 1;
export const F_SETFD = 2;
export const FD_CLOEXEC = 1;

// <sched.h>, <signal.h>
export const CLONE_NEWNET = 0x40000000;
export const SIG_BLOCK = 0;
export const SIG_SETMASK = 2;
/** sizeof(sigset_t) in glibc. */
export const SIGSET_BYTES = 128;

// <sys/file.h>
export const LOCK_EX = 2;
export const LOCK_UN = 8;

// <errno.h>
export const EPERM = 1;
export const ENOENT = 2;
export const ESRCH = 3;
export const EINTR = 4;
export const EIO = 5;
export const EAGAIN = 11;
export const EBADF = 9;
export const EACCES = 13;
export const EEXIST = 17;
export const EINVAL = 22;
export const ENOBUFS = 105;
/** sizeof(struct epoll_event) on x86-64 (packed: u32 events + u64 data). */
export const EPOLL_EVENT_BYTES = 12;

/** errno of the last libc call on this thread. */
export function errno(): number {
  return koffi.errno();
}

/** "Operation not permitted (errno 1)". */
export function errnoText(errnum: number): string {
  return `${libc.strerror(errnum) as string} (errno ${errnum})`;
}
