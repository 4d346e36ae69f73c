#!/usr/bin/env bash
# getattr cost of a rootless mount with no ownership records vs with a record on every
# file: N files each, stat storm over both directories of one mount, interleaved.
# Usage: scripts/bench-records.sh [N] [ROUNDS] [REPS]   (as root)
set -euo pipefail
N=${1:-10000}
ROUNDS=${2:-5}
REPS=${3:-3}
RUN_AS=4000:4000
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
cargo build --release --quiet --bin ownfs --example statstorm
bin=$repo/target/release/ownfs
storm=$repo/target/release/examples/statstorm
base=$(mktemp -d /var/tmp/ownfs-bench-rec.XXXXXX)
src=$base/src mnt=$base/mnt
mkdir -p "$src/plain" "$src/recorded" "$mnt"
chmod 755 "$base"
cleanup() {
  if grep -q " $mnt " /proc/mounts; then umount "$mnt" || umount -l "$mnt"; fi
  [ -n "${pid:-}" ] && wait "$pid" 2>/dev/null || true
  rm -rf "$base"
}
trap cleanup EXIT
# Files made natively, owned by the server: no records.
(cd "$src/plain" && seq -f 'f%06g' "$N" | xargs touch)
(cd "$src/recorded" && seq -f 'f%06g' "$N" | xargs touch)
chown -R "$RUN_AS" "$src"
RUST_LOG=warn "$bin" mount --run-as "$RUN_AS" --cache never "$src" "$mnt" &
pid=$!
for _ in $(seq 100); do grep -q " $mnt fuse.ownfs " /proc/mounts && break; sleep 0.05; done
grep -q " $mnt fuse.ownfs " /proc/mounts || { echo "mount failed" >&2; exit 1; }
# Through the mount: a record (virtual owner) on every file of recorded/.
(cd "$mnt/recorded" && ls | xargs chown 1234:5678)
recs=$(getfattr -R --absolute-names -n user.ownfs.stat "$src/recorded" 2>/dev/null | grep -c '^user.ownfs.stat=' || true)
echo "files with a record: plain 0, recorded $recs of $N"

plain=() recorded=()
for r in $(seq "$REPS"); do
  plain+=("$("$storm" "$mnt/plain" "$ROUNDS" | cut -d' ' -f1)")
  recorded+=("$("$storm" "$mnt/recorded" "$ROUNDS" | cut -d' ' -f1)")
  echo "rep $r: no records ${plain[-1]} s, records ${recorded[-1]} s"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
fastest() { printf '%s\n' "$@" | sort -g | head -1; }
a=$(median "${plain[@]}") b=$(median "${recorded[@]}")
awk -v n="$N" -v r="$ROUNDS" -v a="$a" -v b="$b" 'BEGIN {
  s = n * r
  printf "getattr storm (%d stats, --cache never): no records %.3f s (%.1f us/stat), %d records %.3f s (%.1f us/stat), ratio %.2fx\n", s, a, a * 1e6 / s, n, b, b * 1e6 / s, b / a }'
awk -v a="$(fastest "${plain[@]}")" -v b="$(fastest "${recorded[@]}")" 'BEGIN { printf "fastest runs: plain %.3f s, recorded %.3f s, ratio %.2fx\n", a, b, b / a }'
