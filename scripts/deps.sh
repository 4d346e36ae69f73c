#!/usr/bin/env bash
# Install everything ownfs needs to build and to be tested on a fresh Debian 12
# machine that already has the Rust toolchain. Safe to run again: every step
# checks first and does nothing when its work is already done.
#
#   - Debian packages: FUSE 3 userspace, ACL/xattr libraries and tools, mount
#     and process utilities (apt-get update runs only if one is missing)
#   - the dummy users/groups pjdfstest switches to: nobody:nogroup, tests:tests
#   - user_allow_other in /etc/fuse.conf, and a usable /dev/fuse
#   - pjdfstest 0.2.2 and fsx 0.3.2 (data-integrity exerciser) under .tools/ in
#     the repository
#   - what the guest-VM harness needs (scripts/vm/deps.sh): QEMU, busybox-static,
#     vhost-device-vsock, the Debian cloud kernel
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PJDFSTEST_VERSION="0.2.2"
FSX_VERSION="0.3.2"
TOOLS="$REPO/.tools"

log() { printf 'deps: %s\n' "$*"; }

SUDO=()
if [[ $EUID -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        log "not root and no sudo: system-wide steps will fail" >&2
    fi
fi

# --- Debian packages --------------------------------------------------------
# fuse3:        fusermount3, /etc/fuse.conf
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
packages=(fuse3 libacl1-dev acl attr psmisc util-linux debianutils coreutils rsync tar python3
    autoconf automake make gcc perl fuse-overlayfs uidmap)

pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
for p in "${packages[@]}"; do
    pkg_installed "$p" || missing+=("$p")
done
if [[ ! -e /dev/fuse ]] && ! command -v modprobe >/dev/null 2>&1; then
    missing+=(kmod)
fi
if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

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
        echo "deps: user $1 has primary gid $ugid, expected group $2 ($ggid)" >&2
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

# --- FUSE -------------------------------------------------------------------
if [[ ! -f /etc/fuse.conf ]] || ! grep -Eq '^[[:space:]]*user_allow_other[[:space:]]*$' /etc/fuse.conf; then
    log "enabling user_allow_other in /etc/fuse.conf"
    echo user_allow_other | "${SUDO[@]}" tee -a /etc/fuse.conf >/dev/null
fi

if [[ ! -e /dev/fuse ]]; then
    log "loading the fuse kernel module"
    "${SUDO[@]}" modprobe fuse 2>/dev/null || true
fi
if [[ ! -e /dev/fuse ]] && grep -qw fuse /proc/filesystems; then
    # FUSE is built in but the device node was not created (minimal /dev)
    log "creating /dev/fuse"
    "${SUDO[@]}" mknod -m 0666 /dev/fuse c 10 229
fi
if [[ ! -e /dev/fuse ]]; then
    echo "deps: /dev/fuse is missing and could not be created" >&2
    exit 1
fi
# Debian's udev makes /dev/fuse 0666 so fusermount3 can serve plain users; a minimal
# /dev (containers, CI sandboxes) may leave it 0600.
if [[ $(stat -c %a /dev/fuse) != 666 ]]; then
    log "making /dev/fuse usable by plain users (0666, as udev does)"
    "${SUDO[@]}" chmod 0666 /dev/fuse
fi

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
        echo "deps: $name $version not usable at $TOOLS/bin" >&2
        exit 1
    }
}

install_tool pjdfstest "$PJDFSTEST_VERSION"
install_tool fsx "$FSX_VERSION"

# --- guest-VM harness: QEMU, busybox, vhost-device-vsock, the guest kernel -------
"$REPO/scripts/vm/deps.sh"

log "ok"
