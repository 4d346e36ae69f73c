#!/usr/bin/env bash
# What live statistics cost per request, side by side in one run. First without FUSE:
# examples/stats_cost calls a filesystem that answers at once, bare and through the
# counting wrapper with and without statistics. Then through FUSE: two root mounts of
# one tmpfs, one with statistics (the default) and one with --no-stats (the counting
# code is skipped), a metadata storm (create, stat, unlink of N files: every step a
# request to the server) on each, interleaved, REPS times. Prints the medians, their
# ratio, and the difference per request, with the request count taken from the
# statistics themselves.
# Usage: scripts/bench-stats.sh [N] [REPS]   (as root, on an idle machine; OWNFS_BIN)
set -euo pipefail
N=${1:-10000}
REPS=${2:-7}
repo=$(cd "$(dirname "$0")/.." && pwd)
(cd "$repo" && cargo build --release --quiet --bin ownfs --example metastorm --example stats_cost)
OWNFS_BIN=${OWNFS_BIN:-$repo/target/release/ownfs}
STORM=$repo/target/release/examples/metastorm

read -r load1 _ </proc/loadavg
echo "load average (1 min) before: $load1"
if awk -v l="$load1" 'BEGIN { exit !(l > 1.5) }'; then
  echo "WARNING: the machine is busy (load $load1 > 1.5): these figures are not a result" >&2
fi

"$repo/target/release/examples/stats_cost"

base=$(mktemp -d /tmp/ownfs-bench-stats.XXXXXX)
mount -t tmpfs -o size=2g tmpfs "$base"
mkdir -p "$base/on" "$base/off" "$base/mnt-on" "$base/mnt-off"
cleanup() {
  for m in "$base/mnt-on" "$base/mnt-off"; do
    if grep -q " $m " /proc/mounts; then umount "$m" || umount -l "$m"; fi
  done
  wait 2>/dev/null || true
  umount "$base" && rmdir "$base"
}
trap cleanup EXIT
RUST_LOG=warn "$OWNFS_BIN" mount "$base/on" "$base/mnt-on" &
RUST_LOG=warn "$OWNFS_BIN" mount --no-stats "$base/off" "$base/mnt-off" &
for m in "$base/mnt-on" "$base/mnt-off"; do
  for _ in $(seq 100); do grep -q " $m fuse.ownfs " /proc/mounts && break; sleep 0.05; done
  grep -q " $m fuse.ownfs " /proc/mounts || { echo "mount $m failed" >&2; exit 1; }
done

requests() { # total requests the statistics counted on the mount with them
  "$OWNFS_BIN" stats --json "$base/mnt-on" |
    python3 -c 'import json,sys; print(sum(o["requests"] for o in json.load(sys.stdin)["ops"].values()))'
}
# One warm-up storm each, not counted.
"$STORM" "$base/mnt-on" "$N" >/dev/null
"$STORM" "$base/mnt-off" "$N" >/dev/null
before=$(requests)
on_t=() off_t=()
for r in $(seq "$REPS"); do
  # Alternate which goes first, so neither always runs on a warmer machine.
  if ((r % 2)); then
    on_t+=("$("$STORM" "$base/mnt-on" "$N")")
    off_t+=("$("$STORM" "$base/mnt-off" "$N")")
  else
    off_t+=("$("$STORM" "$base/mnt-off" "$N")")
    on_t+=("$("$STORM" "$base/mnt-on" "$N")")
  fi
  echo "rep $r: statistics ${on_t[-1]} s, --no-stats ${off_t[-1]} s"
done
per_storm=$((($(requests) - before) / REPS)) # the query itself goes through the socket, not the mount
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
a=$(median "${on_t[@]}") b=$(median "${off_t[@]}")
read -r load1 _ </proc/loadavg
awk -v n="$N" -v a="$a" -v b="$b" -v q="$per_storm" -v l="$load1" 'BEGIN {
  printf "metadata storm of %d files (%d requests): statistics %.4f s, --no-stats %.4f s\n", n, q, a, b
  printf "ratio %.3fx; difference %.0f ns per request (medians of the interleaved reps)\n", a / b, (a - b) * 1e9 / q
  printf "load average (1 min) after: %s\n", l }'
