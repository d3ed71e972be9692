/**
 * Loading a BPF object with its maps pinned under a directory (libbpf reuses maps already pinned
 * there): the proxy's object (manager.ts) and the udpgrm-compat object (compat/state.ts).
 */
import { join } from 'node:path';
import { EACCES, EAGAIN, EPERM, errno, errnoText } from '../sys/libc.js';
import { GrmError } from './errors.js';
import { bpf, withSignalsBlocked } from './libbpf.js';

/** The verifier gives up with EAGAIN when a signal arrives while it works: retried this often. */
const LOAD_ATTEMPTS = 5;

/**
 * Opens and loads the object with `mapNames` pinned under pinDir. Signals are blocked during the
 * load, and an EAGAIN that still happens is retried. `unsupported` says what the kernel or the
 * pinned maps may lack when the load fails for another reason.
 */
export function loadPinnedObject(objectPath: string, pinDir: string, mapNames: readonly string[], unsupported: string): unknown {
  for (let attempt = 1; ; attempt++) {
    const obj = bpf.objectOpenFile(objectPath, null);
    if (!obj) throw new GrmError('OBJECT', `cannot open BPF object ${objectPath}: ${errnoText(errno())}`);
    for (const name of mapNames) {
      const m = bpf.findMapByName(obj, name);
      if (m) bpf.mapSetPinPath(m, join(pinDir, name));
    }
    const ret = withSignalsBlocked(() => bpf.objectLoad(obj) as number);
    if (ret >= 0) return obj;
    bpf.objectClose(obj);
    const e = -ret;
    if (e === EAGAIN && attempt < LOAD_ATTEMPTS) continue;
    if (e === EPERM || e === EACCES) throw new GrmError('PERMISSION', `loading ${objectPath}: ${errnoText(e)}: needs root or CAP_BPF+CAP_NET_ADMIN`, e);
    throw new GrmError('UNSUPPORTED', `loading ${objectPath}: ${errnoText(e)}: ${unsupported}`, e);
  }
}
