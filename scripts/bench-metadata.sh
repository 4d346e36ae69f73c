#!/usr/bin/env bash
# Metadata ratio: create+stat+unlink of N files on the native directory and through an
# ownfs mount of that same directory, interleaved in one run. Prints medians and the ratio.
# Usage: scripts/bench-metadata.sh [N] [REPS]   (as root)
set -euo pipefail
N=${1:-10000}
REPS=${2:-5}
shift $(( $# < 2 ? $# : 2 ))
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
cargo build --release --quiet --bin ownfs --example metastorm
bin=target/release/ownfs
storm=target/release/examples/metastorm
base=$(mktemp -d /var/tmp/ownfs-bench.XXXXXX)
src=$base/src mnt=$base/mnt
mkdir -p "$src" "$mnt"
cleanup() {
  if grep -q " $mnt " /proc/mounts; then umount "$mnt" || umount -l "$mnt"; fi
  [ -n "${pid:-}" ] && wait "$pid" 2>/dev/null || true
  rm -rf "$base"
}
trap cleanup EXIT
RUST_LOG=warn "$bin" mount "$src" "$mnt" "$@" &
pid=$!
for _ in $(seq 100); do grep -q " $mnt fuse.ownfs " /proc/mounts && break; sleep 0.05; done
grep -q " $mnt fuse.ownfs " /proc/mounts || { echo "mount failed" >&2; exit 1; }

native=() ownfs=()
for r in $(seq "$REPS"); do
  native+=("$("$storm" "$src" "$N")")
  ownfs+=("$("$storm" "$mnt" "$N")")
  echo "rep $r: native ${native[-1]} s, ownfs ${ownfs[-1]} s"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
fastest() { printf '%s\n' "$@" | sort -g | head -1; }
mn=$(median "${native[@]}") mo=$(median "${ownfs[@]}")
awk -v n="$N" -v a="$mn" -v b="$mo" 'BEGIN {
  printf "metadata storm (%d files create+stat+unlink), median of runs: native %.3f s, ownfs %.3f s, ratio %.2fx\n", n, a, b, b / a }'
awk -v a="$(fastest "${native[@]}")" -v b="$(fastest "${ownfs[@]}")" 'BEGIN { printf "fastest runs: native %.3f s, ownfs %.3f s, ratio %.2fx\n", a, b, b / a }'
