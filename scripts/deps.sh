#!/usr/bin/env bash
# Install what running ownfs needs on a fresh Debian 12 machine that already has the
# Rust toolchain: FUSE 3 userspace (fusermount3, for mounts by plain users),
# user_allow_other in /etc/fuse.conf, and a usable /dev/fuse. Nothing for the tests:
# scripts/test-deps.sh installs those (and runs this first). Safe to run again: every
# step checks first and does nothing when its work is already done.
set -euo pipefail

log() { printf 'deps: %s\n' "$*"; }

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# --- Debian packages --------------------------------------------------------
# fuse3: fusermount3 (mounts by plain users) and /etc/fuse.conf
packages=(fuse3)
if [[ ! -e /dev/fuse ]] && ! command -v modprobe >/dev/null 2>&1; then
    packages+=(kmod)
fi
install_packages "${packages[@]}"

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

log "ok"
