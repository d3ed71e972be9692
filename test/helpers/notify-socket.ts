/**
 * A stand-in for systemd's notify socket: a unix datagram socket (through libc, Node has none)
 * that the test reads without blocking.
 */
import { rmSync } from 'node:fs';
import koffi from 'koffi';

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const MSG_DONTWAIT = 0x40;

const libc = koffi.load('libc.so.6');
const c_socket = libc.func('int socket(int, int, int)');
const c_bind = libc.func('int bind(int, const void *, uint32_t)');
const c_recv = libc.func('intptr_t recv(int, void *, size_t, int)');
const c_close = libc.func('int close(int)');

export class NotifySocket {
  private readonly fd: number;

  constructor(readonly path: string) {
    this.fd = c_socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0) as number;
    const addr = Buffer.alloc(2 + Buffer.byteLength(path) + 1);
    addr.writeUInt16LE(AF_UNIX, 0);
    addr.write(path, 2);
    if ((c_bind(this.fd, addr, addr.length) as number) !== 0) throw new Error(`bind ${path}: errno ${koffi.errno()}`);
  }

  /** Every message received so far. */
  drain(): string[] {
    const out: string[] = [];
    const buf = Buffer.alloc(4096);
    for (;;) {
      const n = c_recv(this.fd, buf, buf.length, MSG_DONTWAIT) as number;
      if (n < 0) return out;
      out.push(buf.subarray(0, n).toString());
    }
  }

  close(): void {
    c_close(this.fd);
    rmSync(this.path, { force: true });
  }
}
