#!/usr/bin/env bash
# Cost of symlink ownership records on a rootless mount, side by side in one run:
# 1. symlinks made by a non-root caller (each needs a record) vs by root (none), the
#    last 1k of N per caller, interleaved; and, since the kernel sends a non-root caller's
#    creates more requests than root's, root's symlinks on a second mount whose
#    --default-owner is the user (there root's need a record) vs on the first;
# 2. tar extraction of a tree of M symlinks owned by a user (a record each) vs the
#    same tree owned by root, interleaved.
# Backing on this machine's disk (/var/tmp) unless BENCH_DIR says otherwise.
# Usage: scripts/bench-symlinks.sh [N] [M] [REPS]   (as root; OWNFS_BIN to compare builds)
set -euo pipefail
N=${1:-50000}
M=${2:-20000}
REPS=${3:-3}
RUN_AS=4000:4000
USER_ID=1000
repo=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${OWNFS_BIN:-}" ]; then
  (cd "$repo" && cargo build --release --quiet --bin ownfs)
  OWNFS_BIN=$repo/target/release/ownfs
fi
base=$(mktemp -d "${BENCH_DIR:-/var/tmp}/ownfs-bench-sym.XXXXXX")
src=$base/src mnt=$base/mnt src2=$base/src2 mnt2=$base/mnt2
mkdir -p "$src/user" "$src/root" "$mnt" "$base/tree" "$src2/root" "$mnt2"
chmod 755 "$base"
cleanup() {
  for m in "$mnt" "$mnt2"; do
    if grep -q " $m " /proc/mounts; then umount "$m" || umount -l "$m"; fi
  done
  [ -n "${pid:-}" ] && wait "$pid" 2>/dev/null || true
  [ -n "${pid2:-}" ] && wait "$pid2" 2>/dev/null || true
  rm -rf "$base"
}
trap cleanup EXIT
chmod 1777 "$src/user"
chown -R "$RUN_AS" "$src" "$src2"
RUST_LOG=warn "$OWNFS_BIN" mount --run-as "$RUN_AS" "$src" "$mnt" &
pid=$!
RUST_LOG=warn "$OWNFS_BIN" mount --run-as "$RUN_AS" --default-owner "$USER_ID:$USER_ID" "$src2" "$mnt2" &
pid2=$!
for m in "$mnt" "$mnt2"; do
  for _ in $(seq 100); do grep -q " $m fuse.ownfs " /proc/mounts && break; sleep 0.05; done
  grep -q " $m fuse.ownfs " /proc/mounts || { echo "mount $m failed" >&2; exit 1; }
done

# Makes symlinks FROM..TO-1 in DIR; prints the seconds it took.
make_links='
import os, sys, time
d, lo, hi = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t = time.perf_counter()
for i in range(lo, hi):
    os.symlink("target", f"{d}/l{i:07d}")
print(f"{time.perf_counter() - t:.4f}")
'
# The system python for both callers (a pyenv shim under /root is not the user's to run).
PY=/usr/bin/python3
as_user() { setpriv --reuid "$USER_ID" --regid "$USER_ID" --clear-groups "$@"; }
fill=$((N - REPS * 1000))
as_user $PY -c "$make_links" "$mnt/user" 0 "$fill" >/dev/null
$PY -c "$make_links" "$mnt/root" 0 "$fill" >/dev/null
$PY -c "$make_links" "$mnt2/root" 0 "$fill" >/dev/null
user_t=() root_t=() root2_t=()
for r in $(seq 0 $((REPS - 1))); do
  lo=$((fill + r * 1000)) hi=$((fill + (r + 1) * 1000))
  user_t+=("$(as_user $PY -c "$make_links" "$mnt/user" "$lo" "$hi")")
  root_t+=("$($PY -c "$make_links" "$mnt/root" "$lo" "$hi")")
  root2_t+=("$($PY -c "$make_links" "$mnt2/root" "$lo" "$hi")")
  echo "links $lo..$hi: user ${user_t[-1]} s, root ${root_t[-1]} s, root needing records ${root2_t[-1]} s"
done
stat -c 'a user link shows %u:%g' "$mnt/user/l0000000"
stat -c 'a root link on the second mount shows %u:%g' "$mnt2/root/l0000000"
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
a=$(median "${user_t[@]}") b=$(median "${root_t[@]}")
awk -v n="$N" -v a="$a" -v b="$b" 'BEGIN {
  printf "last 1k of %d symlinks: by a user (records) %.3f s, by root (none) %.3f s, ratio %.2fx\n", n, a, b, a / b }'
c=$(median "${root2_t[@]}")
awk -v n="$N" -v b="$b" -v c="$c" 'BEGIN {
  printf "last 1k of %d symlinks by root: needing records %.3f s, not %.3f s, ratio %.2fx (the records alone)\n", n, c, b, c / b }'

# The same tree of M symlinks, archived once owned by a user and once by root.
$PY -c "$make_links" "$base/tree" 0 "$M" >/dev/null
chown -h "$USER_ID:$USER_ID" "$base/tree"/*
tar -C "$base/tree" -cf "$base/user.tar" .
chown -h 0:0 "$base/tree"/*
tar -C "$base/tree" -cf "$base/root.tar" .
extract() { # TAR DIR: prints seconds
  mkdir "$2"
  $PY -c '
import subprocess, sys, time
t = time.perf_counter()
subprocess.run(["tar", "-C", sys.argv[2], "--same-owner", "-xf", sys.argv[1]], check=True)
print(f"{time.perf_counter() - t:.4f}")' "$1" "$2"
}
tu=() tr=()
for r in $(seq "$REPS"); do
  tu+=("$(extract "$base/user.tar" "$mnt/xu$r")")
  tr+=("$(extract "$base/root.tar" "$mnt/xr$r")")
  echo "tar rep $r: user-owned ${tu[-1]} s, root-owned ${tr[-1]} s"
  rm -rf "$mnt/xu$r" "$mnt/xr$r"
done
a=$(median "${tu[@]}") b=$(median "${tr[@]}")
awk -v m="$M" -v a="$a" -v b="$b" 'BEGIN {
  printf "tar -x of %d symlinks: user-owned (records) %.3f s, root-owned (none) %.3f s, ratio %.2fx\n", m, a, b, a / b }'
