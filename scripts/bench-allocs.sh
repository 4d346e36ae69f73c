#!/usr/bin/env bash
# Heap allocations per request in the server, side by side for one or more ownfs
# binaries (e.g. before and after a change): each binary serves its own tmpfs backing
# with --no-passthrough (so reads and writes reach it), and uprobes on glibc's malloc,
# calloc and realloc count the calls the server process makes during each workload;
# the server's own statistics count its requests. Allocation counts do not depend on
# timing, so a busy machine only slows this down. The servers run with --sandbox none:
# perf cannot attach uprobe counters to a process inside the namespace sandbox, which
# allocates nothing per request anyway.
# Usage: scripts/bench-allocs.sh [BIN...]   (as root; default target/release/ownfs)
#   N=files in the metadata storm (default 5000), MIB=size of the sequential file (256)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-5000}
MIB=${MIB:-256}
if (($# == 0)); then
  (cd "$repo" && cargo build --release --quiet --bin ownfs)
  set -- "$repo/target/release/ownfs"
fi
(cd "$repo" && cargo build --release --quiet --example metastorm --example statstorm)
STORM=$repo/target/release/examples/metastorm
STATS=$repo/target/release/examples/statstorm
command -v perf >/dev/null || { echo "bench-allocs: needs perf (linux-perf)" >&2; exit 1; }
LIBC=$(ldconfig -p | awk '/libc.so.6 .*x86-64|libc.so.6 .*AArch64/ {print $NF; exit}')
EVENTS=()
for fn in malloc calloc realloc; do
  perf probe -q -x "$LIBC" --add "ownfs_$fn=$fn" 2>/dev/null || true
  EVENTS+=(-e "probe_libc:ownfs_$fn")
done

base=$(mktemp -d /tmp/ownfs-bench-allocs.XXXXXX)
mount -t tmpfs -o size=4g tmpfs "$base"
cleanup() {
  if grep -q " $base/mnt " /proc/mounts; then umount "$base/mnt" || umount -l "$base/mnt"; fi
  wait 2>/dev/null || true
  umount "$base" && rmdir "$base"
  for fn in malloc calloc realloc; do perf probe -q --del "probe_libc:ownfs_$fn" 2>/dev/null || true; done
}
trap cleanup EXIT

requests() {
  "$1" stats --json "$base/mnt" |
    python3 -c 'import json,sys; print(sum(o["requests"] for o in json.load(sys.stdin)["ops"].values()))'
}

# Runs workload "$3..." against server pid $2 of binary $1; prints allocations per request.
measure() {
  local bin=$1 pid=$2 out="$base/perf.out"
  shift 2
  local before after
  before=$(requests "$bin")
  perf stat -x, -o "$out" "${EVENTS[@]}" -p "$pid" &
  local perf_pid=$!
  sleep 0.5
  "$@" >/dev/null
  sleep 0.2
  kill -INT "$perf_pid"
  wait "$perf_pid" || true
  after=$(requests "$bin")
  local allocs
  allocs=$(awk -F, '/probe_libc/ {s += $1} END {print s + 0}' "$out")
  awk -v a="$allocs" -v r="$((after - before))" 'BEGIN {printf "%9d allocs / %7d requests = %6.2f per request", a, r, a / (r ? r : 1)}'
}

for bin in "$@"; do
  rm -rf "${base:?}/src" "$base/mnt"
  mkdir -p "$base/src" "$base/mnt"
  RUST_LOG=warn "$bin" mount --no-passthrough --sandbox none "$base/src" "$base/mnt" &
  for _ in $(seq 100); do grep -q " $base/mnt fuse.ownfs " /proc/mounts && break; sleep 0.05; done
  pid=$(pgrep -n -f "$bin mount --no-passthrough --sandbox none $base/src")
  echo "== $bin (commit $(cd "$(dirname "$bin")" && git rev-parse --short HEAD 2>/dev/null || echo '?'))"
  "$STORM" "$base/mnt" 200 >/dev/null # warm-up: threads' first requests allocate their buffers
  printf '  metadata storm (%d files):   %s\n' "$N" "$(measure "$bin" "$pid" "$STORM" "$base/mnt" "$N")"
  mkdir -p "$base/src/s"
  for i in $(seq 1000); do : >"$base/src/s/f$i"; done
  printf '  stat storm (1000 files x 20): %s\n' "$(measure "$bin" "$pid" "$STATS" "$base/mnt/s" 20)"
  printf '  sequential write %d MiB:     %s\n' "$MIB" "$(measure "$bin" "$pid" dd if=/dev/zero of="$base/mnt/big" bs=1M count="$MIB" oflag=direct status=none)"
  printf '  sequential read %d MiB:      %s\n' "$MIB" "$(measure "$bin" "$pid" dd if="$base/mnt/big" of=/dev/null bs=1M iflag=direct status=none)"
  umount "$base/mnt"
  wait
done
