#!/usr/bin/env bash
# Sets everything up, then runs the whole test suite (unit, BPF, integration with real clients).
set -euo pipefail
cd "$(dirname "$0")/.."

# CI gate: the checked-out src/grm/abi.generated.ts must be what make -C bpf generates. The build
# in setup.sh regenerates it in place, so compare a copy taken before it.
abi=src/grm/abi.generated.ts
before=$(mktemp -d)
cp "$abi" "$before/checked-out-abi.generated.ts"
bash scripts/setup.sh
if ! node scripts/gen-grm-abi.mjs --check bpf/grm_abi.h bpf/grm.bpf.o "$before/checked-out-abi.generated.ts" bpf/compat.bpf.o; then
  rm -rf "$before"
  echo "test: $abi was stale (the build has regenerated it; commit the new file)" >&2
  exit 1
fi
rm -rf "$before"

exec npx vitest run "$@"
