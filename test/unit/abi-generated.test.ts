// src/grm/abi.generated.ts must be what scripts/gen-grm-abi.mjs makes of bpf/grm_abi.h and the
// built bpf/grm.bpf.o and bpf/compat.bpf.o (no root needed: bpftool only reads the object's BTF). scripts/test.sh
// also checks the checked-out file, before the build regenerates it.
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { expect, test } from 'vitest';

const root = resolve(__dirname, '../..');

test('abi.generated.ts matches bpf/grm_abi.h and grm.bpf.o', () => {
  const r = spawnSync(
    process.execPath,
    ['scripts/gen-grm-abi.mjs', '--check', 'bpf/grm_abi.h', 'bpf/grm.bpf.o', 'src/grm/abi.generated.ts', 'bpf/compat.bpf.o'],
    { cwd: root, encoding: 'utf8' },
  );
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
});
