#!/usr/bin/env bash
# The boot floor against StartVM-to-agent-ready (ratio), and the agent's stdio throughput.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
agent=$(scripts/build-agent)
scripts/build-guest --agent "$agent" >&2
swift build -c release --product skiff-bench >&2
"$(swift build -c release --show-bin-path)/skiff-bench" boot "$@"
