// Runs the bpf/sni-test harness on datagrams: sni_check (quic_sni.h built as userspace C) and
// sni_run (the BPF build under the verifier, one BPF_PROG_TEST_RUN per datagram; needs root).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// From test/grm, or from dist/test/grm when a bench runs compiled.
const here = path.dirname(fileURLToPath(import.meta.url));
export const harnessDir = [path.resolve(here, '../../bpf/sni-test'), path.resolve(here, '../../../bpf/sni-test')].find((d) =>
  existsSync(path.join(d, 'Makefile')),
)!;

/** Builds sni_check, and with `bpf` also sni_run and the BPF object. */
export function buildHarness(bpf: boolean): void {
  execFileSync('make', ['-C', harnessDir, '-s', 'sni_check', ...(bpf ? ['sni_run', 'sni_test.bpf.o'] : [])], { stdio: 'pipe' });
}

export interface Result {
  ret: number;
  sni: string | null;
  ns?: number;
}

export function runUserspace(datagrams: Buffer[]): Result[] {
  const out = execFileSync(path.join(harnessDir, 'sni_check'), {
    input: datagrams.map((d) => d.toString('hex')).join('\n') + '\n',
  }).toString();
  return out
    .trim()
    .split('\n')
    .map((line) => {
      const [ret, sni] = line.split(' ');
      return { ret: Number(ret), sni: sni === '-' ? null : sni };
    });
}

export interface BpfRun {
  results: Result[];
  kat: Record<string, string>;
  progs: Record<string, { verifiedInsns: number; jitedBytes: number }>;
}

export function runBpf(datagrams: Buffer[], repeat = 1): BpfRun {
  const out = execFileSync(path.join(harnessDir, 'sni_run'), [path.join(harnessDir, 'sni_test.bpf.o'), String(repeat)], {
    input: datagrams.map((d) => d.toString('hex')).join('\n') + '\n',
  }).toString();
  const run: BpfRun = { results: [], kat: {}, progs: {} };
  for (const line of out.trim().split('\n')) {
    const f = line.split(' ');
    if (f[0] === 'result') run.results.push({ ret: Number(f[1]), sni: f[2] === '-' ? null : f[2], ns: Number(f[3]) });
    else if (f[0] === 'kat') run.kat[f[1]] = f[2];
    else if (f[0] === 'prog') run.progs[f[1]] = { verifiedInsns: Number(f[3]), jitedBytes: Number(f[7]) };
  }
  return run;
}
