#!/usr/bin/env bash
# Density: N idle pods through ctr (default 20; --ksm: pods opt in to KSM): memory per pod (PSS by kind), start time, exec latency at N, beside runc.
set -euo pipefail
source "$(dirname "$0")/lib-ctr.bash"
"$root/bench/density-bench" --address "$address" --image "$image" "$@"
