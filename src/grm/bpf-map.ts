/** One BPF map by fd: typed-buffer lookups, updates, deletes and key iteration. */
import { ENOENT, libc } from '../sys/libc.js';
import { checkBpf } from './errors.js';
import { bpf, possibleCpus } from './libbpf.js';

export class BpfMap {
  constructor(
    readonly name: string,
    readonly fd: number,
    readonly keySize: number,
    readonly valueSize: number,
    readonly perCpu = false,
  ) {}

  /** Bytes one lookup returns: per-CPU maps return one 8-byte-aligned value per possible CPU. */
  get lookupSize(): number {
    return this.perCpu ? Math.ceil(this.valueSize / 8) * 8 * possibleCpus() : this.valueSize;
  }

  lookup(key: Buffer): Buffer | null {
    const value = Buffer.alloc(this.lookupSize);
    const ret = bpf.mapLookup(this.fd, key, value) as number;
    if (ret === -ENOENT) return null;
    checkBpf(ret, `lookup in ${this.name}`);
    return value;
  }

  update(key: Buffer, value: Buffer, flags = 0n): void {
    checkBpf(bpf.mapUpdate(this.fd, key, value, flags) as number, `update of ${this.name}`);
  }

  /** Deletes a key; returns false if it was not there. */
  delete(key: Buffer): boolean {
    const ret = bpf.mapDelete(this.fd, key) as number;
    if (ret === -ENOENT) return false;
    checkBpf(ret, `delete from ${this.name}`);
    return true;
  }

  keys(): Buffer[] {
    const out: Buffer[] = [];
    let prev: Buffer | null = null;
    for (;;) {
      const next = Buffer.alloc(this.keySize);
      const ret = bpf.mapNextKey(this.fd, prev, next) as number;
      if (ret === -ENOENT) return out;
      checkBpf(ret, `iteration of ${this.name}`);
      out.push(next);
      prev = next;
    }
  }

  close(): void {
    libc.close(this.fd);
  }
}
