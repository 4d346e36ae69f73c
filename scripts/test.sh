#!/usr/bin/env bash
# The project's single test command (also what CI runs, via .ci/run):
# dependencies, formatting, lints, unit and integration tests, then the
# pjdfstest POSIX compliance suite and the fsx data-integrity exerciser on ownfs
# mounts, then pjdfstest again inside a QEMU guest (virtio-fs and vsock). Stops at the
# first failure.
# Needs root: the integration tests and pjdfstest mount FUSE file systems.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

started=$SECONDS
section_start=""
section() {
    if [[ -n $section_start ]]; then
        printf '(%ds)\n' $((SECONDS - section_start))
    fi
    section_start=$SECONDS
    printf '\n==== %s ====\n' "$*"
}

section "dependencies (scripts/test-deps.sh)"
scripts/test-deps.sh

section "cargo fmt --check"
cargo fmt --check

section "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

section "macOS host type-check (scripts/macos-check.sh)"
# aarch64-apple-darwin with Debian's rustc-web and -Zbuild-std: type errors in
# macOS-only code fail here (nothing for macOS links or runs on this machine).
scripts/macos-check.sh

section "cargo test --release -- --test-threads=1"
cargo test --release -- --test-threads=1

section "Debian package (scripts/package.sh --no-build --check)"
# Packages the release binary `cargo test --release` just built (no other build: a plain
# `cargo build --release` would rebuild it, without the features dev-dependencies add), then
# unpacks the package and checks its man pages, units, vhost-user descriptor and
# mount -t fuse.ownfs (scripts/check-package.sh).
scripts/package.sh --no-build --check

section "case-insensitive host directories (tests/casefold.rs)"
if [[ -e /sys/fs/ext4/features/casefold ]]; then
    cargo test --release --test casefold -- --ignored --test-threads=1
else
    # Never counted as a pass here: the VM stage runs the same tests in its guest, whose
    # kernel has casefold, and fails unless it prints casefold[vm].
    echo "casefold: this kernel ($(uname -r)) has no ext4 casefold; the VM stage runs it (casefold[vm])"
fi

section "pjdfstest (pjdfstest/run.sh)"
# The Rust port, then the original C suite, in each of six modes (~90 s each per suite).
# Serial: parallel modes on a 2-core machine starve the timing-sensitive tests (etxtbsy).
pjdfstest/run.sh --no-deps --serial

section "fsx data integrity (scripts/fsx.sh)"
# Defaults: 120k operations in each of root, writeback, rootless and pipe; ~2.5 min.
scripts/fsx.sh --no-deps

section "pjdfstest in a QEMU guest: virtio-fs and vsock (scripts/vm/run.sh)"
# One TCG guest, four shares (virtio-fs root/rootless, fuse-pipe over vsock root/rootless):
# the Rust pjdfstest and tests/coherence.sh on each, a sample of the C suite on two.
scripts/vm/run.sh --no-deps --no-build

printf '(%ds)\n\n==== all checks passed in %ds ====\n' $((SECONDS - section_start)) $((SECONDS - started))
