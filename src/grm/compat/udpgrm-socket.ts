/**
 * udpgrm's socket options from the application's side (what `activate` does to its sockets, as an
 * app would with setsockopt/getsockopt): IPPROTO_UDP 200..204 on an fd through libc. Errors carry
 * the errno, so callers can say what udpgrm's tools say for each.
 */
import { GRM, grm_compat_dissector } from '../abi.generated.js';
import { EAGAIN, errno, errnoText, libc } from '../../sys/libc.js';
import { setBytes, setU } from '../struct-view.js';

export class SockoptError extends Error {
  constructor(
    readonly option: string,
    readonly errnum: number,
  ) {
    super(`${option}: ${errnoText(errnum)}`);
  }
}

const NAMES: Record<number, string> = {
  [GRM.COMPAT_OPT_WORKING_GEN]: 'UDP_GRM_WORKING_GEN',
  [GRM.COMPAT_OPT_SOCKET_GEN]: 'UDP_GRM_SOCKET_GEN',
  [GRM.COMPAT_OPT_DISSECTOR]: 'UDP_GRM_DISSECTOR',
  [GRM.COMPAT_OPT_FLOW_ASSURE]: 'UDP_GRM_FLOW_ASSURE',
  [GRM.COMPAT_OPT_SOCKET_APP]: 'UDP_GRM_SOCKET_APP',
};

function set(fd: number, opt: number, value: Buffer): void {
  if ((libc.setsockopt(fd, GRM.COMPAT_SOL_UDP, opt, value, value.length) as number) !== 0) throw new SockoptError(NAMES[opt]!, errno());
}

function get(fd: number, opt: number, size: number): Buffer {
  const v = Buffer.alloc(size);
  if ((libc.getsockopt(fd, GRM.COMPAT_SOL_UDP, opt, v, [size]) as number) !== 0) throw new SockoptError(NAMES[opt]!, errno());
  return v;
}

const u32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
};

/** The working generation of the socket's app; -1 when its group does not exist yet. */
export const workingGen = (fd: number): number => get(fd, GRM.COMPAT_OPT_WORKING_GEN, 4).readInt32LE(0);
export const setWorkingGen = (fd: number, gen: number): void => set(fd, GRM.COMPAT_OPT_WORKING_GEN, u32(gen));
export const setSocketGen = (fd: number, gen: number): void => set(fd, GRM.COMPAT_OPT_SOCKET_GEN, u32(gen));
export const setSocketApp = (fd: number, app: number): void => set(fd, GRM.COMPAT_OPT_SOCKET_APP, u32(app));
export const socketApp = (fd: number): number => get(fd, GRM.COMPAT_OPT_SOCKET_APP, 4).readUInt32LE(0);
export const setDissector = (fd: number, dissector: Buffer): void => set(fd, GRM.COMPAT_OPT_DISSECTOR, dissector);

/** Generation and index (GRM_COMPAT_NONE until the agent registered the socket). */
export function socketGen(fd: number): { gen: number; idx: number } {
  const v = get(fd, GRM.COMPAT_OPT_SOCKET_GEN, 8);
  return { gen: v.readUInt32LE(0), idx: v.readUInt32LE(4) };
}

/** Retries `fn` while the request ring is full (EAGAIN), backing off 10 ms · 2^i, 8 tries (udpgrm's tools). */
export async function retryingOnFullRing<T>(fn: () => T): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return fn();
    } catch (e) {
      if (!(e instanceof SockoptError) || e.errnum !== EAGAIN || i >= 7) throw e;
      await new Promise((r) => setTimeout(r, 10 * 2 ** i));
    }
  }
}

export interface DissectorSpec {
  readonly type: number; // GRM.COMPAT_DISSECTOR_*, | FLAG_VERBOSE
  readonly flowTimeoutSec?: number;
  readonly maxApps?: number;
  readonly digest?: number;
  readonly label?: string;
  /** CBPF: [code, jt, jf, k] each. */
  readonly filter?: ReadonlyArray<readonly [number, number, number, number]>;
  /** BESPOKE: hostname entries. */
  readonly hostnames?: ReadonlyArray<{ readonly app: number; readonly host: string }>;
}

/** struct udp_grm_dissector (632 bytes) for UDP_GRM_DISSECTOR. */
export function encodeDissector(d: DissectorSpec): Buffer {
  const f = grm_compat_dissector.fields;
  const b = Buffer.alloc(grm_compat_dissector.size);
  setU(b, f.dissector_type, d.type);
  setU(b, f.flow_entry_timeout_sec, d.flowTimeoutSec ?? 0);
  setU(b, f.max_apps, d.maxApps ?? 0);
  setU(b, f.bespoke_digest, d.digest ?? 0);
  const label = Buffer.from(d.label ?? '', 'utf8');
  if (label.length >= GRM.COMPAT_LABEL_SZ) throw new RangeError(`label longer than ${GRM.COMPAT_LABEL_SZ - 1} bytes`);
  setBytes(b, f.label, label);
  const at = f.payload.offset;
  if (d.filter) {
    if (d.filter.length > GRM.COMPAT_MAX_INSTR) throw new RangeError(`more than ${GRM.COMPAT_MAX_INSTR} cBPF instructions`);
    setU(b, f.filter_len, d.filter.length);
    d.filter.forEach(([code, jt, jf, k], i) => {
      b.writeUInt16LE(code, at + 8 * i);
      b.writeUInt8(jt, at + 8 * i + 2);
      b.writeUInt8(jf, at + 8 * i + 3);
      b.writeUInt32LE(k >>> 0, at + 8 * i + 4);
    });
  } else if (d.hostnames) {
    const entry = 2 + GRM.COMPAT_BESPOKE_SNI_LEN; // {u8 app, u8 0, u8 hostname[62]}
    if (d.hostnames.length > GRM.COMPAT_MAX_BESPOKE_SNI) throw new RangeError(`more than ${GRM.COMPAT_MAX_BESPOKE_SNI} hostnames`);
    setU(b, f.filter_len, d.hostnames.length);
    d.hostnames.forEach(({ app, host }, i) => {
      const name = Buffer.from(host, 'latin1');
      if (name.length > entry - 2) throw new RangeError(`hostname '${host}' longer than ${entry - 2} bytes`);
      b.writeUInt8(app, at + entry * i);
      name.copy(b, at + entry * i + 2);
    });
  }
  return b;
}
