/**
 * Cost of one quic_initial_sni() call (bpf/quic_sni.h: decrypt a client Initial, find the SNI)
 * under BPF_PROG_TEST_RUN, per kind of datagram: the kernel's average over `repeat` runs.
 * Root only (loads BPF).   npx tsx bench/bpf-sni.ts [repeat]
 */
import { buildHarness, runBpf } from '../test/grm/sni-harness.js';
import { buildCases } from '../test/grm/sni-vectors.js';

const REPEAT = Number(process.argv[2] ?? 2000);

// Label → case name in sni-vectors.ts.
const SAMPLES: Record<string, string> = {
  'RFC 9001 A.2': 'RFC 9001 A.2 client Initial',
  'quiche host.example': 'quiche host.example dcid 16',
  'split, SNI in 2nd (full walk)': 'split ClientHello, server_name in 2nd datagram: 1st',
  chaos: 'chaos-protected ClientHello (4 fragments, PING, PADDING)',
  'Chromium 1st datagram (fallback scan)': 'Chromium capture A, 1st datagram',
  'QUIC v2 (rejected)': 'QUIC v2 version',
};

function main(): void {
  if (process.getuid?.() !== 0) throw new Error('bpf-sni bench: needs root (BPF_PROG_TEST_RUN)');
  buildHarness(true);
  const cases = buildCases();
  const datagrams = Object.values(SAMPLES).map((name) => {
    const c = cases.find((x) => x.name === name);
    if (!c) throw new Error(`no case '${name}' in sni-vectors.ts`);
    return c.datagram;
  });
  const run = runBpf(datagrams, REPEAT);
  console.log(`quic_initial_sni, ns per call (BPF_PROG_TEST_RUN, repeat ${REPEAT})`);
  Object.keys(SAMPLES).forEach((label, i) => {
    const r = run.results[i]!;
    console.log(`  ${label.padEnd(40)} ${String(r.ns).padStart(7)}   (ret ${r.ret})`);
  });
}

main();
