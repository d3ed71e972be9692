/**
 * Per-packet cost of the sk_reuseport steering program (kernel.bpf_stats_enabled run_time_ns /
 * run_cnt) for short headers, new Initials, Initials of attempts in flight, and garbage.
 * Two senders: "burst" = sendmmsg of 1024 datagrams per syscall (program runs back to back, warm
 * caches); "paced" = one Node dgram send per datagram (JS runs between packets, cold caches, as
 * in a proxy whose workers run JS on the same cores). A near-empty program costs ~70 ns here
 * (the stats clock reads), which is included in every number.
 * Root only; runs in a private network namespace with a throwaway pin dir.
 *   npm run build && node dist/bench/bpf-steering.js [packetsPerPhase]
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import koffi from 'koffi';
import { createCidIssuer, GenerationManager } from '../src/grm/index.js';
import { AF_INET, CLONE_NEWNET, errno, errnoText, libc, SOCK_DGRAM } from '../src/sys/libc.js';
import { clientHello, clientInitials } from '../test/helpers/quic-initial.js';

const PER_PHASE = Number(process.argv[2] ?? 100_000);
const SNI_COUNT = 10 * 1024; // must be a multiple of the burst size

interface Phase {
  name: string;
  make: (i: number) => Buffer;
  setup?: () => void;
  count?: number;
}
const PORT = 45999;

function enterPrivateNetns(): void {
  if ((libc.unshare(CLONE_NEWNET) as number) !== 0) throw new Error(`unshare(CLONE_NEWNET): ${errnoText(errno())} (root needed)`);
  execFileSync('ip', ['link', 'set', 'lo', 'up']);
}

interface ProgInfo {
  name: string;
  map_ids?: number[];
  run_time_ns?: number;
  run_cnt?: number;
}

/** run_time_ns and run_cnt summed over the grm_select programs that use our pinned groups map. */
function progStats(groupsMapId: number): { ns: number; cnt: number } {
  const progs = JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'show'], { encoding: 'utf8' })) as ProgInfo[];
  let ns = 0;
  let cnt = 0;
  for (const p of progs) {
    if (p.name !== 'grm_select' || !p.map_ids?.includes(groupsMapId)) continue;
    ns += p.run_time_ns ?? 0;
    cnt += p.run_cnt ?? 0;
  }
  return { ns, cnt };
}

const BURST = 1024;
const SLOT = 1200;

/** sendmmsg sender: BURST datagrams per syscall from one native buffer (iovecs + mmsghdrs). */
class BurstSender {
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

  /** Fills slot i with a datagram; returns nothing, remembers its length. */
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

  close(): void {
    libc.close(this.fd);
    koffi.free(this.mem);
  }
}

async function main(): Promise<void> {
  enterPrivateNetns();
  const statsPath = '/proc/sys/kernel/bpf_stats_enabled';
  const statsBefore = readFileSync(statsPath, 'utf8').trim();
  writeFileSync(statsPath, '1');
  const pinDir = `/sys/fs/bpf/grm-bench-${process.pid}`;
  const mgr = GenerationManager.open({ pinDir, cidLength: 16 });
  const receivers: dgram.Socket[] = [];
  try {
    const group = mgr.openGroup({ host: '127.0.0.1', port: PORT });
    const old = group.addGeneration();
    const gen = group.addGeneration();
    /** Two workers' sockets in generation g, each read (and dropped) by a Node socket. */
    const addWorkers = (g: number): void => {
      for (let w = 0; w < 2; w++) {
        const fd = group.createSocket();
        group.register(g, w, fd);
        const s = dgram.createSocket('udp4');
        s.bind({ fd });
        s.on('message', () => {});
        receivers.push(s);
      }
    };
    addWorkers(old);
    addWorkers(gen);
    group.setWorking(0, gen);
    const groupsMapId = (JSON.parse(execFileSync('bpftool', ['-j', 'map', 'show', 'pinned', `${pinDir}/grm_groups`], { encoding: 'utf8' })) as { id: number }).id;
    const client = dgram.createSocket('udp4');
    client.bind(0, '127.0.0.1');
    await once(client, 'listening');

    const cids = Array.from({ length: 1024 }, (_, i) => createCidIssuer(group.cidIssuerParams(i % 2 ? old : gen, i % 2)).issue());
    const initial = (dcid: Buffer): Buffer => {
      const b = Buffer.alloc(1200);
      b[0] = 0xc0;
      b.writeUInt32BE(1, 1);
      b[5] = dcid.length;
      dcid.copy(b, 6);
      return b;
    };
    const repeatDcids = Array.from({ length: 256 }, () => randomBytes(8));
    const phases: Phase[] = [
      { name: 'short header, CID routed', make: (i) => Buffer.concat([Buffer.from([0x40]), cids[i % cids.length]!, randomBytes(24)]) },
      { name: 'Initial, new attempt (LRU insert)', make: () => initial(randomBytes(8)) },
      { name: 'Initial, attempt in flight (LRU hit)', make: (i) => initial(repeatDcids[i % repeatDcids.length]!) },
      { name: 'garbage (unparseable -> working gen)', make: () => Buffer.from([0x00, 0x01]) },
    ];
    if (existsSync('bpf/quic_sni.h')) {
      // SNI build: with server names configured every new Initial is decrypted in BPF.
      const sniGen = group.addGeneration(1);
      addWorkers(sniGen);
      group.setWorking(1, sniGen);
      // Fresh DCIDs for every datagram of both senders (a repeated DCID would be an attempt hit).
      const fresh = Array.from({ length: 2 * SNI_COUNT }, () => clientInitials(randomBytes(8), clientHello('api.example.com'))[0]!);
      phases.push({
        name: 'Initial, new attempt, SNI read+matched',
        count: SNI_COUNT,
        make: (i) => fresh[i]!,
        setup: () => group.setServerNames(1, ['api.example.com']),
      });
    }
    process.stdout.write(`sk_reuseport grm_select, ${PER_PHASE} datagrams per phase and sender, CID length 16\n`);
    process.stdout.write(`  ${'phase'.padEnd(40)} ${'burst'.padStart(9)} ${'paced'.padStart(9)}   (ns/packet)\n`);
    const burst = new BurstSender(PORT);
    for (const { name, make, setup, count = PER_PHASE } of phases) {
      setup?.();
      const before = progStats(groupsMapId);
      for (let done = 0; done < count; done += BURST) {
        for (let i = 0; i < BURST; i++) burst.set(i, make(done + i));
        burst.send();
      }
      const mid = progStats(groupsMapId);
      for (let start = 0; start < count; start += 2000) {
        const sends: Promise<void>[] = [];
        for (let i = start; i < Math.min(count, start + 2000); i++) {
          sends.push(new Promise((resolve, reject) => client.send(make(count + i), PORT, '127.0.0.1', (e) => (e ? reject(e) : resolve()))));
        }
        await Promise.all(sends);
      }
      const after = progStats(groupsMapId);
      const per = (a: { ns: number; cnt: number }, b: { ns: number; cnt: number }): string =>
        (b.cnt > a.cnt ? (b.ns - a.ns) / (b.cnt - a.cnt) : NaN).toFixed(1).padStart(9);
      process.stdout.write(`  ${name.padEnd(40)} ${per(before, mid)} ${per(mid, after)}\n`);
    }
    burst.close();
    client.close();
  } finally {
    for (const s of receivers) s.close();
    mgr.cleanup();
    writeFileSync(statsPath, statsBefore);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bpf-steering bench: ${(err as Error).message}\n`);
  process.exitCode = 1;
});
