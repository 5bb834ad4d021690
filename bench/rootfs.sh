#!/usr/bin/env bash
# Root filesystem: small files, a metadata walk, a sequential read and write in a container, runc against Skiff (ratios).
set -euo pipefail
source "$(dirname "$0")/lib-ctr.bash"
"$root/bench/rootfs-bench" --address "$address" --image "$image" "$@"
