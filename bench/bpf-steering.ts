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
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createCidIssuer, GenerationManager } from '../src/grm/index.js';
import { clientHello, clientInitials } from '../test/helpers/quic-initial.js';
import { BurstSender, enterPrivateNetns, nsPerRun, pinnedMapId, progStats } from './burst.js';

const PER_PHASE = Number(process.argv[2] ?? 100_000);
const SNI_COUNT = 10 * 1024; // must be a multiple of the burst size

interface Phase {
  name: string;
  make: (i: number) => Buffer;
  setup?: () => void;
  count?: number;
}
const PORT = 45999;

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
    const groupsMapId = pinnedMapId(`${pinDir}/grm_groups`);
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
      const before = progStats('grm_select', groupsMapId);
      burst.run(count, make);
      const mid = progStats('grm_select', groupsMapId);
      for (let start = 0; start < count; start += 2000) {
        const sends: Promise<void>[] = [];
        for (let i = start; i < Math.min(count, start + 2000); i++) {
          sends.push(new Promise((resolve, reject) => client.send(make(count + i), PORT, '127.0.0.1', (e) => (e ? reject(e) : resolve()))));
        }
        await Promise.all(sends);
      }
      const after = progStats('grm_select', groupsMapId);
      const per = (a: { ns: number; cnt: number }, b: { ns: number; cnt: number }): string => nsPerRun(a, b).toFixed(1).padStart(9);
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
