#!/usr/bin/env bash
# Build the Debian package: target/debian/ownfs_<version>-1_<arch>.deb, whose path is
# the last line printed. What it holds is in docs/packaging.md.
#
#   scripts/package.sh            cargo build --release, then package
#   scripts/package.sh --no-build package the target/release/ownfs already there (as
#                                 `cargo test --release` leaves it: scripts/test.sh)
#   scripts/package.sh --check    then check it (scripts/check-package.sh)
#
# cargo-deb is installed once, at a pinned version, into .tools/ in the repository.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARGO_DEB_VERSION="3.8.0"
TOOLS="$REPO/.tools"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
cd "$REPO"

log() { printf 'package: %s\n' "$*" >&2; }

build=1 check=0
for arg in "$@"; do
    case $arg in
        --no-build) build=0 ;;
        --check) check=1 ;;
        -h | --help)
            sed -n '2,10p' "$0"
            exit 0
            ;;
        *)
            echo "package: unknown argument $arg" >&2
            exit 2
            ;;
    esac
done

# --- cargo-deb ------------------------------------------------------------------
cargo_deb_ok() {
    [[ "$("$TOOLS/bin/cargo-deb" --version 2>/dev/null)" == "cargo-deb $CARGO_DEB_VERSION" ]]
}
if ! cargo_deb_ok; then
    mkdir -p "$TOOLS"
    # Serialise with scripts/test-deps.sh's installs into the same root.
    exec 9>"$TOOLS/.install.lock"
    flock 9
    if ! cargo_deb_ok; then
        log "installing cargo-deb $CARGO_DEB_VERSION into $TOOLS (about a minute)"
        cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION" --root "$TOOLS"
    fi
    flock -u 9
    exec 9>&-
    cargo_deb_ok || {
        echo "package: cargo-deb $CARGO_DEB_VERSION not usable at $TOOLS/bin" >&2
        exit 1
    }
fi

# --- the binary and its man pages ------------------------------------------------
if ((build)); then
    cargo build --release --bin ownfs
fi
bin="$TARGET/release/ownfs"
[[ -x $bin ]] || {
    echo "package: no $bin: build it first (cargo build --release), or drop --no-build" >&2
    exit 1
}
man="$TARGET/release/man"
rm -rf "$man"
"$bin" manpage "$man"
gzip -9n "$man"/*.1

# --- the package -------------------------------------------------------------------
# --strip: the release profile keeps line tables (debug = 1) for backtraces in tests;
# the package ships a stripped binary. --fast: xz -1 keeps this step to seconds.
deb="$("$TOOLS/bin/cargo-deb" --no-build --strip --fast --quiet --output "$TARGET/debian/")"
[[ -f $deb ]] || {
    echo "package: cargo-deb did not report a package (got '$deb')" >&2
    exit 1
}
if ((check)); then
    "$REPO/scripts/check-package.sh" "$deb" >&2
fi
echo "$deb"
