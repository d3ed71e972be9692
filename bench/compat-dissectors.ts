/**
 * Per-packet cost of the udpgrm-compat steering program (grmc_select) for each dissector, beside
 * the proxy's own program (grm_select) on the comparable paths: kernel.bpf_stats_enabled
 * run_time_ns / run_cnt over datagrams sent with sendmmsg (bench/burst.ts; sk_reuseport programs
 * have no BPF_PROG_TEST_RUN). Each compat group has two registered sockets (Python processes
 * using udpgrm's socket API, in a throwaway child cgroup with the hooks); the stats clock reads
 * (~70 ns on the test VM) are in every number. Root only; private netns, throwaway pin dirs.
 *   npx tsx bench/compat-dissectors.ts [packetsPerPhase]
 */
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { readFileSync, writeFileSync } from 'node:fs';
import { Agent } from '../src/grm/compat/agent.js';
import { install } from '../src/grm/compat/install.js';
import { CompatState } from '../src/grm/compat/state.js';
import { createCidIssuer, GenerationManager } from '../src/grm/index.js';
import { TAGGED_PROGRAM } from '../test/compat/cbpf-programs.js';
import { removeCompatPinDir, serve, TestCgroup, uniqueCompatPinDir, type Served } from '../test/compat/harness.js';
import { clientHello, clientInitials } from '../test/helpers/quic-initial.js';
import { BurstSender, enterPrivateNetns, nsPerRun, pinnedMapId, progStats } from './burst.js';

const PER_PHASE = Number(process.argv[2] ?? 100_000);
const INITIALS = 10 * 1024; // Initials with SNI cost ~10 µs each: fewer of them (a multiple of BURST)

interface Phase {
  readonly name: string;
  readonly port: number;
  readonly make: (i: number) => Buffer;
  readonly count?: number;
  readonly setup?: (sender: BurstSender) => Promise<void>;
}

const be = (c: number): Buffer => Buffer.from([c >> 8, c & 0xff]);
const ourCid = (cookie: number): Buffer => Buffer.concat([Buffer.from([0x01]), be(cookie), randomBytes(17)]);

async function main(): Promise<void> {
  enterPrivateNetns();
  const statsPath = '/proc/sys/kernel/bpf_stats_enabled';
  const statsBefore = readFileSync(statsPath, 'utf8').trim();
  writeFileSync(statsPath, '1');
  const pinDir = uniqueCompatPinDir('bench');
  const proxyPinDir = `/sys/fs/bpf/grm-bench-compat-${process.pid}`;
  const cg = new TestCgroup('bench');
  const state = CompatState.open(pinDir);
  const agent = new Agent(state, () => {});
  const mgr = GenerationManager.open({ pinDir: proxyPinDir, cidLength: 16 });
  const proxySockets: dgram.Socket[] = [];
  try {
    install(state, cg.path);
    agent.start();
    /** Two sockets of one generation (flipped), reading and dropping what they get. */
    const group = async (port: number, spec: Record<string, unknown>): Promise<Served[]> => {
      const a = await serve(cg, port, { ...spec, quiet: true });
      const b = await serve(cg, port, { ...spec, quiet: true });
      await a.flip();
      return [a, b];
    };
    const [flow] = await group(47001, { dissector: 'flow' });
    await group(47002, { dissector: 'noop' });
    const [cbpf] = await group(47003, { dissector: 'cbpf', cbpf: TAGGED_PROGRAM });
    const [quic] = await group(47004, { dissector: 'bespoke', digest: 0xdead, max_apps: 2, sni: [[1, 'api.example.com']] });
    await serve(cg, 47004, { dissector: 'bespoke', digest: 0xdead, max_apps: 2, sni: [[1, 'api.example.com']], app: 1, quiet: true }).then((s) => s.flip());
    const initials = Array.from({ length: INITIALS }, () => clientInitials(randomBytes(8), clientHello('api.example.com'))[0]!);

    // The proxy's own path: one group, two workers, CIDs of 16 bytes, SNI names for app 1.
    const pg = mgr.openGroup({ host: '127.0.0.1', port: 47010 });
    const gen = pg.addGeneration();
    const sniGen = pg.addGeneration(1);
    for (const [g, w] of [[gen, 0], [gen, 1], [sniGen, 0]] as const) {
      const fd = pg.createSocket();
      pg.register(g, w, fd);
      const s = dgram.createSocket('udp4');
      s.bind({ fd });
      s.on('message', () => {});
      proxySockets.push(s);
    }
    pg.setWorking(0, gen);
    pg.setWorking(1, sniGen);
    pg.setServerNames(1, ['api.example.com']);
    const cids = Array.from({ length: 1024 }, (_, i) => createCidIssuer(pg.cidIssuerParams(gen, i % 2)).issue());
    const proxyInitials = Array.from({ length: INITIALS }, () => clientInitials(randomBytes(8), clientHello('api.example.com'))[0]!);

    const payload = (tag: string): Buffer => Buffer.concat([Buffer.from(tag), randomBytes(60)]);
    const compat: Phase[] = [
      { name: 'NOOP', port: 47002, make: () => payload('x') },
      { name: 'FLOW, remote without a flow', port: 47001, make: () => payload('x') },
      {
        name: 'FLOW, known flow (FLOW_ASSURE)',
        port: 47001,
        make: () => payload('x'),
        setup: async (sender) => void (await flow!.assure('127.0.0.1', sender.localPort)),
      },
      { name: 'CBPF, cookie (12-insn program)', port: 47003, make: () => Buffer.concat([Buffer.from('c'), be(cbpf!.cookie), randomBytes(60)]) },
      { name: 'CBPF, RET -1 (new flow)', port: 47003, make: () => payload('x') },
      { name: 'QUIC, short header, DCID cookie', port: 47004, make: () => Buffer.concat([Buffer.from([0x40]), ourCid(quic!.cookie), randomBytes(40)]) },
      { name: 'QUIC, Initial, SNI read+matched', port: 47004, count: INITIALS, make: (i) => initials[i]! },
      { name: 'QUIC, junk (too short)', port: 47004, make: () => randomBytes(16) },
    ];
    const proxy: Phase[] = [
      { name: 'short header, CID routed', port: 47010, make: (i) => Buffer.concat([Buffer.from([0x40]), cids[i % cids.length]!, randomBytes(24)]) },
      { name: 'Initial, new attempt, SNI read+matched', port: 47010, count: INITIALS, make: (i) => proxyInitials[i]! },
      { name: 'garbage (unparseable -> working gen)', port: 47010, make: () => Buffer.from([0x00, 0x01]) },
    ];
    const measure = async (prog: string, mapId: number, phases: Phase[]): Promise<void> => {
      for (const p of phases) {
        const sender = new BurstSender(p.port);
        try {
          await p.setup?.(sender);
          const before = progStats(prog, mapId);
          sender.run(p.count ?? PER_PHASE, p.make);
          const after = progStats(prog, mapId);
          process.stdout.write(`  ${p.name.padEnd(40)} ${nsPerRun(before, after).toFixed(1).padStart(9)}   (${after.cnt - before.cnt} runs)\n`);
        } finally {
          sender.close();
        }
      }
    };
    process.stdout.write(`ns/packet (sendmmsg bursts; ${PER_PHASE} datagrams per phase, ${INITIALS} for Initials)\n`);
    process.stdout.write(`udpgrm-compat grmc_select:\n`);
    await measure('grmc_select', pinnedMapId(`${pinDir}/grmc_groups`), compat);
    process.stdout.write(`the proxy's grm_select (bench/bpf-steering.ts has more):\n`);
    await measure('grm_select', pinnedMapId(`${proxyPinDir}/grm_groups`), proxy);
  } finally {
    for (const s of proxySockets) s.close();
    mgr.cleanup();
    await agent.stop();
    state.close();
    removeCompatPinDir(pinDir);
    await cg.remove();
    writeFileSync(statsPath, statsBefore);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`compat-dissectors bench: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
