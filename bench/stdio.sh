#!/usr/bin/env bash
# Stdio: 105 MB of stdout (dd) through ctr run, Skiff against runc in MB/s (ratio).
set -euo pipefail
source "$(dirname "$0")/lib-ctr.bash"
"$root/bench/ctr-bench" stdio --address "$address" --image "$image" "$@"
