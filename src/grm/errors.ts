/** Every failure of the generation manager is a GrmError with a code naming what is wrong. */
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
