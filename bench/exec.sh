#!/usr/bin/env bash
# Exec: ctr task exec ... true into a running container, Skiff against runc (ratio).
set -euo pipefail
source "$(dirname "$0")/lib-ctr.bash"
"$root/bench/ctr-bench" exec --address "$address" --image "$image" "$@"
