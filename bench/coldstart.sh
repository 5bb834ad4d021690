#!/usr/bin/env bash
# Cold start: ctr run --rm ... true under Skiff (a template copy, and a boot) and runc (ratio), and Skiff against the boot floor (ratio).
set -euo pipefail
source "$(dirname "$0")/lib-ctr.bash"
"$root/bench/ctr-bench" coldstart --address "$address" --image "$image" "$@"
