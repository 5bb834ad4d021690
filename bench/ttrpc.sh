#!/usr/bin/env bash
# ttrpc calls/s: Go client -> Swift server, Go -> Go, Swift client -> Go server, each as a ratio to Go -> Go.
# 64-byte Echo calls over a unix socket at 1 and 16 calls in flight. Rounds are interleaved
# and each figure is the median of ROUNDS rounds of CALLS calls (defaults 5 and 20000).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${ROUNDS:-5}
calls=${CALLS:-20000}
cd "$root"
echo "building (release)..." >&2
swift build -c release --product skiff-ttrpc-peer >&2
swift_peer="$(swift build -c release --show-bin-path)/skiff-ttrpc-peer"
go_peer=$(scripts/build-ttrpc-peer)

dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
"$go_peer" serve -socket "$dir/go.sock" & pids+=($!)
"$swift_peer" serve --socket "$dir/swift.sock" & pids+=($!)
for _ in $(seq 100); do [ -S "$dir/go.sock" ] && [ -S "$dir/swift.sock" ] && break; sleep 0.05; done

rate() { sed -n 's/.*calls_per_s=\([0-9]*\).*/\1/p'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "ttrpc: 64-byte Echo calls over a unix socket; median of $rounds rounds of $calls calls"
for c in 1 16; do
    : > "$dir/gg"; : > "$dir/gs"; : > "$dir/sg"
    for _ in $(seq "$rounds"); do
        "$go_peer" bench -socket "$dir/go.sock" -calls "$calls" -concurrency "$c" | rate >> "$dir/gg"
        "$go_peer" bench -socket "$dir/swift.sock" -calls "$calls" -concurrency "$c" | rate >> "$dir/gs"
        "$swift_peer" bench --socket "$dir/go.sock" --calls "$calls" --concurrency "$c" | rate >> "$dir/sg"
    done
    gg=$(median < "$dir/gg"); gs=$(median < "$dir/gs"); sg=$(median < "$dir/sg")
    printf "in flight %2d: go client -> go server    %7d calls/s\n" "$c" "$gg"
    printf "in flight %2d: go client -> swift server %7d calls/s  ratio %.2f to go->go\n" "$c" "$gs" "$(echo "$gs / $gg" | bc -l)"
    printf "in flight %2d: swift client -> go server %7d calls/s  ratio %.2f to go->go\n" "$c" "$sg" "$(echo "$sg / $gg" | bc -l)"
done
