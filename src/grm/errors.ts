/** Every failure of the generation manager is a GrmError with a code naming what is wrong. */
import { EACCES, EPERM, errno, errnoText } from '../sys/libc.js';

export type GrmErrorCode =
  | 'PERMISSION' // not root / no CAP_BPF + CAP_NET_ADMIN
  | 'BPFFS' // bpffs not mounted and cannot be mounted
  | 'UNSUPPORTED' // kernel lacks reuseport BPF / sockhash / BTF
  | 'OBJECT' // BPF object missing or failed to load
  | 'SYSCALL' // a socket or bpf() call failed
  | 'BAD_ARGUMENT'
  | 'NO_FREE_SLOT'
  | 'NO_SUCH_GENERATION'
  | 'WORKING_GENERATION'
  | 'EMPTY_GENERATION'
  | 'TOO_MANY_GROUPS';

export class GrmError extends Error {
  override readonly name = 'GrmError';
  constructor(
    readonly code: GrmErrorCode,
    message: string,
    readonly errno?: number,
  ) {
    super(message);
  }
}

/** Turns a failed libc call (-1 + errno) into a GrmError. */
export function checkLibc(ret: number, what: string): number {
  if (ret < 0) {
    const e = errno();
    throw new GrmError('SYSCALL', `${what}: ${errnoText(e)}`, e);
  }
  return ret;
}

/** Turns a failed libbpf call (-errno) into a GrmError, naming privilege problems plainly. */
export function checkBpf(ret: number, what: string): number {
  if (ret < 0) {
    const e = -ret;
    if (e === EPERM || e === EACCES) {
      throw new GrmError('PERMISSION', `${what}: ${errnoText(e)}: needs root or CAP_BPF+CAP_NET_ADMIN`, e);
    }
    throw new GrmError('SYSCALL', `${what}: ${errnoText(e)}`, e);
  }
  return ret;
}
