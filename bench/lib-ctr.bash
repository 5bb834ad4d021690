# Sourced by the ctr benchmarks: builds the release shim and the guest image, starts a private
# containerd with the shim on its PATH, imports the test image, and stops it all on exit.
# Leaves $address and $image set.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
swift build -c release --static-swift-stdlib --product containerd-shim-skiff-v2 >&2
bin=$(swift build -c release --show-bin-path)
scripts/build-guest --agent "$(scripts/build-agent)" >&2
dir=$(mktemp -d /tmp/skiff-bench-XXXXXX)
trap 'scripts/containerd-private stop "$dir"' EXIT
address=$(scripts/containerd-private start "$dir" "$bin")
scripts/make-test-image "$dir/image.tar" >/dev/null
ctr --address "$address" image import "$dir/image.tar" >/dev/null
image=docker.io/library/skiff-test:latest
