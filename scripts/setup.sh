#!/usr/bin/env bash
# Installs everything udpgrm-proxy needs on Debian 12 (as root) and builds it.
# Idempotent: a second run only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

need_node_major=20
if ! command -v node >/dev/null 2>&1; then
  echo "setup: node is not installed; udpgrm-proxy needs Node.js >= ${need_node_major}" >&2
  exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt "$need_node_major" ]; then
  echo "setup: node $(node -v) is too old; udpgrm-proxy needs Node.js >= ${need_node_major}" >&2
  exit 1
fi

# Debian packages: compiler + libbpf for bpf/, bpftool for vmlinux.h, real HTTP/3 clients for tests.
apt_pkgs=(clang llvm libbpf-dev bpftool ngtcp2-client chromium openssl iproute2 make util-linux)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages (${missing[*]}); run this script as root" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

npm run -s build
echo "setup: ok"
