#!/usr/bin/env bash
# Builds the original C pjdfstest (an unmodified upstream snapshot shared beside the
# project, see its SOURCE.md) outside the project tree, once per source version, and
# prints the build directory (its tests/ is what `prove -r` runs).
#
# usage: pjdfstest/build-c.sh            prints the build directory, or exits 3 when no
#                                        source is found (the caller says "NOT RUN")
# Source, first found: $PJDFSTEST_C_SRC, REPO/../shared/pjdfstest-c, /work/shared/pjdfstest-c.
# Build cache: $PJDFSTEST_C_BUILD (default /var/cache/ownfs/pjdfstest-c/<source hash>).
# Needs autoconf, automake, gcc, make and perl's prove (scripts/test-deps.sh installs them).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

src=""
for cand in "${PJDFSTEST_C_SRC:-}" "$REPO/../shared/pjdfstest-c" /work/shared/pjdfstest-c; do
    if [[ -n $cand && -f $cand/pjdfstest.c && -d $cand/tests ]]; then
        src="$(cd "$cand" && pwd)"
        break
    fi
done
if [[ -z $src ]]; then
    echo "build-c.sh: no C pjdfstest source (set PJDFSTEST_C_SRC, or put it at $REPO/../shared/pjdfstest-c)" >&2
    exit 3
fi

# The cache key covers every file of the snapshot, so a changed source rebuilds.
hash="$(cd "$src" && find . -type f ! -path './.git/*' -print0 | LC_ALL=C sort -z |
    xargs -0 sha256sum | sha256sum | cut -c1-16)"
build="${PJDFSTEST_C_BUILD:-/var/cache/ownfs/pjdfstest-c/$hash}"
if [[ -x $build/pjdfstest && -f $build/.built ]]; then
    echo "$build"
    exit 0
fi

mkdir -p "$(dirname "$build")"
exec 9>"$(dirname "$build")/.lock"
flock 9
if [[ ! -f $build/.built ]]; then
    echo "build-c.sh: building the C pjdfstest from $src into $build" >&2
    rm -rf "$build"
    cp -r "$src" "$build"
    (cd "$build" && autoreconf -ifs && ./configure && make pjdfstest) >"$build.log" 2>&1 || {
        echo "build-c.sh: build failed; see $build.log" >&2
        exit 1
    }
    touch "$build/.built"
fi
echo "$build"
