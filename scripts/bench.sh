#!/usr/bin/env bash
# One side-by-side benchmark of ownfs and its peers (as root):
#   native directory; ownfs mount as root (kernel passthrough on); ownfs mount as root
#   with --no-passthrough; ownfs rootless (--run-as, a record on every file); ownfs
#   through the fuse-pipe over a Unix socket; libfuse3's passthrough_ll example (built
#   from Debian's libfuse3-dev examples into target/bench-peers); fuse-backend-rs's own
#   PassthroughFs (examples/crate_passthrough.rs).
# Workloads: metadata storms (1 dir and a tree), stat storm, readdir, untar of a mixed
# ~20k-file tree then du, fio sequential write/read (buffered and O_DIRECT) and random
# 4k reads. Every workload runs on every configuration, interleaved, the order rotated
# per repetition; medians, speed relative to native and ownfs relative to the best peer.
#
# usage: scripts/bench.sh [--backing tmpfs|disk] [--quiet-check] [--scale F] [--reps N]
#                         [--configs a,b] [--workloads x,y] [--out DIR] [--base DIR]
#   --backing tmpfs (default): every backing directory on one tmpfs, so only the file
#     system path is measured; disk: under --base (default /var/tmp).
#   --quiet-check: refuse to run when the 1-minute load is above 1.5 (otherwise the
#     table says the figures are not a result).
#   --scale 0.1 for a quick run (1000 files, 102 MiB); default 1 (10k files, 1 GiB).
# Output (default target/bench/): table.md (with the backing and the load before and
# after), results.csv (every run), speed.png. Paths: a tmpfs mounted under /tmp, or
# BASE/ownfs-bench-PID (removed afterwards). Installs its tools through
# scripts/bench-deps.sh (fio, gnuplot, libfuse3-dev).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
[[ $EUID -eq 0 ]] || { echo "bench.sh: run as root (it mounts FUSE file systems)" >&2; exit 2; }
bash scripts/bench-deps.sh
cargo build --release --quiet --bin ownfs --example metastorm --example statstorm \
    --example crate_passthrough
peers=target/bench-peers
mkdir -p "$peers"
src=/usr/share/doc/libfuse3-dev/examples/passthrough_ll.c
if [[ ! -x $peers/passthrough_ll || $src -nt $peers/passthrough_ll ]]; then
    # shellcheck disable=SC2046
    gcc -O2 -Wall -o "$peers/passthrough_ll" "$src" $(pkg-config --cflags --libs fuse3)
fi
exec python3 scripts/bench.py "$@"
