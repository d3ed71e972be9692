/**
 * Shared by the BPF steering benches (bpf-steering.ts, compat-dissectors.ts): a private netns, a
 * sendmmsg sender, and a program's kernel-measured cost. sk_reuseport programs have no
 * BPF_PROG_TEST_RUN (the kernel gives them no test_run op), so the cost is read from
 * kernel.bpf_stats_enabled's run_time_ns / run_cnt while real datagrams go through loopback.
 */
import { execFileSync } from 'node:child_process';
import koffi from 'koffi';
import { AF_INET, CLONE_NEWNET, errno, errnoText, libc, SOCK_DGRAM } from '../src/sys/libc.js';

export function enterPrivateNetns(): void {
  if ((libc.unshare(CLONE_NEWNET) as number) !== 0) throw new Error(`unshare(CLONE_NEWNET): ${errnoText(errno())} (root needed)`);
  execFileSync('ip', ['link', 'set', 'lo', 'up']);
}

interface ProgInfo {
  name: string;
  map_ids?: number[];
  run_time_ns?: number;
  run_cnt?: number;
}

/** The id of the map pinned at `path`. */
export function pinnedMapId(path: string): number {
  return (JSON.parse(execFileSync('bpftool', ['-j', 'map', 'show', 'pinned', path], { encoding: 'utf8' })) as { id: number }).id;
}

/** run_time_ns and run_cnt summed over the programs called `name` that use the map `mapId`. */
export function progStats(name: string, mapId: number): { ns: number; cnt: number } {
  const progs = JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'show'], { encoding: 'utf8' })) as ProgInfo[];
  let ns = 0;
  let cnt = 0;
  for (const p of progs) {
    if (p.name !== name || !p.map_ids?.includes(mapId)) continue;
    ns += p.run_time_ns ?? 0;
    cnt += p.run_cnt ?? 0;
  }
  return { ns, cnt };
}

/** Nanoseconds per run between two progStats readings. */
export function nsPerRun(a: { ns: number; cnt: number }, b: { ns: number; cnt: number }): number {
  return b.cnt > a.cnt ? (b.ns - a.ns) / (b.cnt - a.cnt) : NaN;
}

export const BURST = 1024;
const SLOT = 1200;

/** sendmmsg sender: BURST datagrams per syscall from one native buffer (iovecs + mmsghdrs). */
export class BurstSender {
  private readonly mem: unknown;
  private readonly base: bigint;
  readonly view: Buffer;
  private readonly fd: number;
  private readonly hdrOff = BURST * SLOT;
  private readonly iovOff = BURST * SLOT + BURST * 64;

  constructor(port: number) {
    const total = BURST * SLOT + BURST * 64 + BURST * 16;
    this.mem = koffi.alloc('uint8_t', total);
    this.base = koffi.address(this.mem);
    this.view = Buffer.from(koffi.view(this.mem, total));
    this.fd = libc.socket(AF_INET, SOCK_DGRAM, 0) as number;
    const sa = Buffer.alloc(16);
    sa.writeUInt16LE(AF_INET, 0);
    sa.writeUInt16BE(port, 2);
    sa.set([127, 0, 0, 1], 4);
    if (this.fd < 0 || (libc.connect(this.fd, sa, 16) as number) < 0) throw new Error(`burst sender socket: ${errnoText(errno())}`);
  }

  /** The sender's own port (its datagrams' source). */
  get localPort(): number {
    const sa = Buffer.alloc(16);
    libc.getsockname(this.fd, sa, [16]);
    return sa.readUInt16BE(2);
  }

  /** Fills slot i with a datagram. */
  set(i: number, dgram: Buffer): void {
    dgram.copy(this.view, i * SLOT);
    const iov = this.iovOff + i * 16;
    this.view.writeBigUInt64LE(this.base + BigInt(i * SLOT), iov);
    this.view.writeBigUInt64LE(BigInt(dgram.length), iov + 8);
    const h = this.hdrOff + i * 64; // struct mmsghdr { struct msghdr (56 B); unsigned msg_len; }
    this.view.fill(0, h, h + 64);
    this.view.writeBigUInt64LE(this.base + BigInt(iov), h + 16); // msg_iov
    this.view.writeBigUInt64LE(1n, h + 24); // msg_iovlen
  }

  send(): number {
    let sent = 0;
    while (sent < BURST) {
      // view shares the koffi-allocated memory that the iovecs point into.
      const n = libc.sendmmsg(this.fd, this.view.subarray(this.hdrOff + sent * 64), BURST - sent, 0) as number;
      if (n <= 0) throw new Error(`sendmmsg: ${errnoText(errno())}`);
      sent += n;
    }
    return sent;
  }

  /** Sends `count` datagrams made by `make(i)`, BURST per syscall. */
  run(count: number, make: (i: number) => Buffer): void {
    for (let done = 0; done < count; done += BURST) {
      for (let i = 0; i < BURST; i++) this.set(i, make(done + i));
      this.send();
    }
  }

  close(): void {
    libc.close(this.fd);
    koffi.free(this.mem);
  }
}
