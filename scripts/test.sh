#!/usr/bin/env bash
# Sets everything up, then runs the whole test suite (unit, BPF, integration with real clients).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec npx vitest run "$@"
