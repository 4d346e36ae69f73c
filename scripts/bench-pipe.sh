#!/usr/bin/env bash
# fuse-pipe vs local mount, in one run (as root):
#   1. metadata: create+stat+unlink of N files (examples/metastorm) on the native
#      directory, an `ownfs mount` of it and an `ownfs client` of `ownfs serve` of it;
#   2. sequential I/O: dd of SIZE MiB (write with conv=fsync, then read after a fresh
#      open) through the local mount and through the pipe.
# Runs are interleaved; medians of REPS runs and the pipe/local ratios are printed.
# Usage: scripts/bench-pipe.sh [N] [REPS] [SIZE_MIB] [-- extra `ownfs client` args]
set -euo pipefail
N=${1:-5000}
REPS=${2:-5}
SIZE=${3:-256}
shift $(($# < 3 ? $# : 3))
[[ ${1:-} == -- ]] && shift
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
cargo build --release --quiet --bin ownfs --example metastorm
bin=$repo/target/release/ownfs
storm=$repo/target/release/examples/metastorm
base=$(mktemp -d /var/tmp/ownfs-bench-pipe.XXXXXX)
src=$base/src local=$base/local pipe=$base/pipe sock=$base/pipe.sock
mkdir -p "$src" "$local" "$pipe"
pids=()
cleanup() {
  for m in "$pipe" "$local"; do
    if grep -q " $m " /proc/mounts; then umount "$m" 2>/dev/null || umount -l "$m"; fi
  done
  # Client first, then the servers (a client whose server is gone would reconnect).
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  rm -rf "$base"
}
trap cleanup EXIT
wait_mount() {
  for _ in $(seq 200); do grep -q " $1 fuse.ownfs " /proc/mounts && return 0; sleep 0.05; done
  echo "mount of $1 failed" >&2
  exit 1
}
RUST_LOG=warn "$bin" mount "$src" "$local" &
pids+=($!)
RUST_LOG=warn "$bin" serve "$src" --listen "unix:$sock" &
pids+=($!)
for _ in $(seq 200); do [[ -S $sock ]] && break; sleep 0.05; done
RUST_LOG=warn "$bin" client "$pipe" --connect "unix:$sock" "$@" &
pids+=($!)
wait_mount "$local"
wait_mount "$pipe"

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# MB/s of a dd run: bytes / seconds, from dd's own summary line.
ddrate() { awk '/copied/ { for (i = 1; i <= NF; i++) if ($i ~ /^copied,?$/) s = $(i+1); print $1 / s / 1e6 }'; }

native=() loc=() pip=()
for r in $(seq "$REPS"); do
  native+=("$("$storm" "$src" "$N")")
  loc+=("$("$storm" "$local" "$N")")
  pip+=("$("$storm" "$pipe" "$N")")
  echo "metadata rep $r: native ${native[-1]} s, local ${loc[-1]} s, pipe ${pip[-1]} s"
done

lw=() lr=() pw=() pr=()
for r in $(seq "$REPS"); do
  for kind in local pipe; do
    m=$local
    [[ $kind == pipe ]] && m=$pipe
    w=$(dd if=/dev/zero of="$m/seq" bs=1M count="$SIZE" conv=fsync 2>&1 | ddrate)
    rd=$(dd if="$m/seq" of=/dev/null bs=1M 2>&1 | ddrate)
    rm -f "$m/seq"
    if [[ $kind == local ]]; then lw+=("$w") lr+=("$rd"); else pw+=("$w") pr+=("$rd"); fi
  done
  echo "sequential rep $r: local write ${lw[-1]} read ${lr[-1]} MB/s, pipe write ${pw[-1]} read ${pr[-1]} MB/s"
done

mn=$(median "${native[@]}") ml=$(median "${loc[@]}") mp=$(median "${pip[@]}")
awk -v n="$N" -v a="$mn" -v b="$ml" -v c="$mp" 'BEGIN {
  printf "metadata (%d files create+stat+unlink), medians: native %.3f s, local %.3f s, pipe %.3f s; pipe/local time ratio %.2fx (pipe/native %.2fx)\n", n, a, b, c, c / b, c / a }'
awk -v s="$SIZE" -v lw="$(median "${lw[@]}")" -v lr="$(median "${lr[@]}")" \
  -v pw="$(median "${pw[@]}")" -v pr="$(median "${pr[@]}")" 'BEGIN {
  printf "sequential %d MiB, medians: write local %.0f MB/s, pipe %.0f MB/s (pipe/local %.2f); read local %.0f MB/s, pipe %.0f MB/s (pipe/local %.2f)\n", s, lw, pw, pw / lw, lr, pr, pr / lr }'
