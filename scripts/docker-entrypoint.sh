#!/usr/bin/env bash
# Container entrypoint: make sure bpffs is at /sys/fs/bpf (bound from the host, or mounted here
# with CAP_SYS_ADMIN), then run the proxy with the given arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(stat -f -c %T /sys/fs/bpf 2>/dev/null)" != "bpf_fs" ]; then
  if ! mount -t bpf bpf /sys/fs/bpf 2>/dev/null; then
    echo "udpgrm-proxy: /sys/fs/bpf is not a bpffs and cannot be mounted here:" >&2
    echo "  run with -v /sys/fs/bpf:/sys/fs/bpf (and --cap-add BPF --cap-add NET_ADMIN --cap-add SYS_ADMIN), or --privileged" >&2
    exit 1
  fi
fi
exec ./bin/udpgrm-proxy "$@"
