#!/usr/bin/env bash
# Pod network: TCP throughput (MB/s) and ping round trip from the veth's peer to the pod's IP, through Skiff's VM and over a plain veth (the floor), with ratios.
set -euo pipefail
source "$(dirname "$0")/lib-ctr.bash"
"$root/bench/net-bench" --address "$address" --image "$image" "$@"
