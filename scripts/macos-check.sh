#!/usr/bin/env bash
# Type-checks ownfs for aarch64-apple-darwin (the macOS host side) on Linux, with
# Debian's rustc-web toolchain and its bundled std sources (-Zbuild-std). Nothing
# links: macOS-only code gets compiled, type-checked and lint-checked, never run.
# Installs the toolchain idempotently (apt, bookworm-security).
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(rustc-web cargo-web rust-web-src)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "macos-check: installing ${missing[*]}"
    apt_get=(apt-get -o DPkg::Lock::Timeout=600)
    [ "$(id -u)" = 0 ] || apt_get=(sudo "${apt_get[@]}")
    "${apt_get[@]}" update -qq
    DEBIAN_FRONTEND=noninteractive "${apt_get[@]}" install -y -qq \
        -t bookworm-security "${missing[@]}"
fi

# A target dir of its own: the std build for the target is cached there.
export CARGO_TARGET_DIR="${OWNFS_MACOS_TARGET_DIR:-$PWD/target/macos-check}"
export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1
# Warnings in macOS-only code fail the check like clippy -D warnings does on Linux.
export RUSTFLAGS="-D warnings"
start=$(date +%s)
/usr/bin/cargo check --locked -Zbuild-std=std,panic_abort \
    --target aarch64-apple-darwin "$@"
echo "macos-check: aarch64-apple-darwin type-check passed in $(($(date +%s) - start)) s"
