#!/usr/bin/env bash
# Tools the side-by-side benchmark needs (scripts/bench.sh calls this; idempotent):
# fio for data workloads, gnuplot for the chart, libfuse3-dev for the passthrough_ll
# example peer, gcc and pkg-config to build it, tar and coreutils for the tree workloads.
set -euo pipefail
need=()
for pkg in fio gnuplot-nox libfuse3-dev fuse3 gcc pkg-config python3; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
    echo "bench-deps: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
