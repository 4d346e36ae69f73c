#!/usr/bin/env bash
# What reopening an evicted inode costs, side by side in one run (as root, idle machine).
# A tmpfs share of FILES files is mounted with --cache never (every fstat reaches the
# server) four ways: root and rootless, each with every inode fd kept (--max-open-fds 0)
# and with a cache far smaller than the files (--max-open-fds 100). The client holds an
# O_PATH fd of every file and fstats them round robin: one GETATTR each, no lookup, and
# with the small cache nearly every one reopens its inode (root: by file handle;
# rootless: by parent and name). Medians of REPS interleaved rounds; the difference
# per fstat is the reopen.
#
# usage: scripts/reopen-bench.sh [--files N] [--reps N]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
files=5000
reps=5
while [[ $# -gt 0 ]]; do
    case $1 in
        --files) files=$2; shift 2 ;;
        --reps) reps=$2; shift 2 ;;
        *) echo "usage: $0 [--files N] [--reps N]" >&2; exit 2 ;;
    esac
done
[[ $EUID -eq 0 ]] || { echo "reopen-bench: run as root" >&2; exit 2; }
cargo build --release --quiet --bin ownfs --manifest-path "$repo/Cargo.toml"
bin=$repo/target/release/ownfs
work=$(mktemp -d /var/tmp/ownfs-reopen-XXXX)
cleanup() {
    for m in "$work"/m-*; do umount -l "$m" 2>/dev/null || true; done
    umount -l "$work/src" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/src"
mount -t tmpfs -o size=1g,nr_inodes=0 tmpfs "$work/src"
python3 -c "
import os, sys
for i in range($files): open(f'$work/src/f{i}', 'w').close()"
chown -R 4200:4200 "$work/src"
configs=(root-kept root-evicting rootless-kept rootless-evicting)
for c in "${configs[@]}"; do
    mkdir -p "$work/m-$c"
    args=(--cache never)
    [[ $c == rootless-* ]] && args+=(--run-as 4200:4200)
    [[ $c == *-kept ]] && args+=(--max-open-fds 0) || args+=(--max-open-fds 100)
    "$bin" mount "$work/src" "$work/m-$c" "${args[@]}" 2>"$work/$c.log" &
done
for c in "${configs[@]}"; do
    for _ in $(seq 100); do mountpoint -q "$work/m-$c" && break; sleep 0.05; done
done
python3 - "$work" "$files" "$reps" "${configs[@]}" <<'EOF'
import os, statistics, sys, time
work, files, reps, configs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
times = {c: [] for c in configs}
for r in range(reps):
    order = configs[r % len(configs):] + configs[:r % len(configs)]
    for c in order:
        # O_PATH fds hold the client's inodes: each fstat is then one GETATTR (attribute
        # timeout 0) on an inode the server may have evicted, with no LOOKUP before it.
        fds = [os.open(f"{work}/m-{c}/f{i}", os.O_PATH) for i in range(files)]
        t = time.perf_counter()
        for fd in fds:
            os.stat(fd)
        times[c].append((time.perf_counter() - t) / files * 1e6)
        for fd in fds:
            os.close(fd)
med = {c: statistics.median(v) for c, v in times.items()}
for c in configs:
    print(f"{c:20s} {med[c]:7.2f} us per fstat (median of {reps})")
for mode in ("root", "rootless"):
    kept, ev = med[f"{mode}-kept"], med[f"{mode}-evicting"]
    print(f"reopen cost, {mode}: {ev - kept:.2f} us per fstat ({ev / kept:.2f}x)")
EOF
