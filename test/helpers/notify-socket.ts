/**
 * A stand-in for systemd's notify socket: a unix datagram socket (through libc, Node has none)
 * that the test reads without blocking; receive() also takes the fds of FDSTORE=1 messages.
 */
import { rmSync } from 'node:fs';
import { AF_UNIX, errno, errnoText, libc, MSG_DONTWAIT, SOCK_CLOEXEC, SOCK_DGRAM } from '../../src/sys/libc.js';
import { recvWithFds } from '../../src/sys/scm-rights.js';

export class NotifySocket {
  private readonly fd: number;

  constructor(readonly path: string) {
    this.fd = libc.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0) as number;
    const addr = Buffer.alloc(2 + Buffer.byteLength(path) + 1);
    addr.writeUInt16LE(AF_UNIX, 0);
    addr.write(path, 2);
    if ((libc.bind(this.fd, addr, addr.length) as number) !== 0) throw new Error(`bind ${path}: ${errnoText(errno())}`);
  }

  /** Every message received so far. */
  drain(): string[] {
    const out: string[] = [];
    const buf = Buffer.alloc(4096);
    for (;;) {
      const n = libc.recv(this.fd, buf, buf.length, MSG_DONTWAIT) as number;
      if (n < 0) return out;
      out.push(buf.subarray(0, n).toString());
    }
  }

  /** Every message received so far, with the fds it carried (the caller closes them). */
  receive(): Array<{ text: string; fds: number[] }> {
    const out: Array<{ text: string; fds: number[] }> = [];
    for (;;) {
      const m = recvWithFds(this.fd, 4096, MSG_DONTWAIT);
      if (!m) return out;
      out.push({ text: m.data.toString(), fds: m.fds });
    }
  }

  close(): void {
    libc.close(this.fd);
    rmSync(this.path, { force: true });
  }
}
