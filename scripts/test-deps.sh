#!/usr/bin/env bash
# Install everything the tests need, after what running needs (scripts/deps.sh), on a
# fresh Debian 12 machine that already has the Rust toolchain. Safe to run again: every
# step checks first and does nothing when its work is already done.
#
#   - Debian packages: ACL/xattr libraries and tools, mount and process utilities, what
#     builds the original C pjdfstest, fuse-overlayfs and uidmap
#   - the dummy users/groups pjdfstest switches to: nobody:nogroup, tests:tests (with
#     subordinate ids, as a rootless podman user has)
#   - pjdfstest 0.2.2 and fsx 0.3.2 (data-integrity exerciser) under .tools/ in
#     the repository
#   - what the guest-VM harness needs (scripts/vm/deps.sh): QEMU, busybox-static,
#     vhost-device-vsock, the Debian cloud kernel
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PJDFSTEST_VERSION="0.2.2"
FSX_VERSION="0.3.2"
TOOLS="$REPO/.tools"

"$REPO/scripts/deps.sh"

log() { printf 'test-deps: %s\n' "$*"; }

source "$REPO/scripts/lib.sh"

# --- Debian packages --------------------------------------------------------
# libacl1-dev:  needed to build pjdfstest (exacl crate)
# acl, attr:    getfacl/setfacl, getfattr/setfattr for debugging and tests
# psmisc:       fuser (who holds a mount busy)
# util-linux:   mount, umount, findmnt (also used by pjdfstest's rmdir tests)
# debianutils:  which (used by pjdfstest's etxtbsy tests)
# coreutils:    timeout
# rsync, tar, python3: run through rootless mounts by tests/rootless.rs
# autoconf, automake, make, gcc, perl: build and run (prove) the original C pjdfstest
# fuse-overlayfs, uidmap: the ownership-record peer of tests/records.rs, run as rootless
#               podman runs it (newuidmap maps the user's subordinate ids)
# groff-base, systemd: render the package's man pages and `systemd-analyze verify` its
#               units (scripts/check-package.sh)
# xfsprogs: an xfs loop image whose extents show that copy_file_range through a
#               mount reflinks (tests/extensions.rs)
packages=(libacl1-dev acl attr psmisc util-linux debianutils coreutils rsync tar python3
    autoconf automake make gcc perl fuse-overlayfs uidmap groff-base systemd xfsprogs)

install_packages "${packages[@]}"

# --- dummy users and groups for pjdfstest -----------------------------------
# pjdfstest requires each user's primary group to be the named group.
ensure_group() {
    getent group "$1" >/dev/null && return 0
    local gid="${2:-}"
    [[ -n $gid ]] && getent group "$gid" >/dev/null && gid=""
    log "adding group $1"
    "${SUDO[@]}" groupadd ${gid:+-g "$gid"} "$1"
}
ensure_user() { # user group [uid]
    if ! getent passwd "$1" >/dev/null; then
        local uid="${3:-}"
        [[ -n $uid ]] && getent passwd "$uid" >/dev/null && uid=""
        log "adding user $1"
        "${SUDO[@]}" useradd ${uid:+-u "$uid"} -g "$2" -M -d / \
            -s /usr/sbin/nologin -c "pjdfstest dummy user" "$1"
    fi
    local ugid ggid
    ugid="$(id -g "$1")"
    ggid="$(getent group "$2" | cut -d: -f3)"
    if [[ $ugid != "$ggid" ]]; then
        echo "test-deps: user $1 has primary gid $ugid, expected group $2 ($ggid)" >&2
        exit 1
    fi
}
ensure_group nogroup 65534
ensure_user nobody nogroup 65534
ensure_group tests
ensure_user tests tests
# Subordinate ids for tests, as a rootless podman user has (useradd adds them only
# where /etc/subuid existed before).
for f in subuid subgid; do
    if ! grep -q '^tests:' "/etc/$f" 2>/dev/null; then
        log "adding subordinate ids of tests to /etc/$f"
        echo "tests:100000:65536" | "${SUDO[@]}" tee -a "/etc/$f" >/dev/null
    fi
done

# --- test tools: pjdfstest, fsx -----------------------------------------------
# Each is a crates.io binary installed into .tools/ at a pinned version.
tool_ok() { # name version
    [[ -x $TOOLS/bin/$1 ]] &&
        [[ "$("$TOOLS/bin/$1" --version 2>/dev/null)" == "$1 $2" ]]
}

install_tool() { # name version
    local name=$1 version=$2
    tool_ok "$name" "$version" && return 0
    mkdir -p "$TOOLS"
    # Serialise concurrent runs: one installs, the others wait and then see it.
    exec 9>"$TOOLS/.install.lock"
    flock 9
    if ! tool_ok "$name" "$version"; then
        log "installing $name $version into $TOOLS (about a minute)"
        cargo install --locked --quiet "$name" --version "$version" --root "$TOOLS"
    fi
    flock -u 9
    exec 9>&-
    tool_ok "$name" "$version" || {
        echo "test-deps: $name $version not usable at $TOOLS/bin" >&2
        exit 1
    }
}

install_tool pjdfstest "$PJDFSTEST_VERSION"
install_tool fsx "$FSX_VERSION"

# --- guest-VM harness: QEMU, busybox, vhost-device-vsock, the guest kernel -------
"$REPO/scripts/vm/deps.sh"

log "ok"
