#!/usr/bin/env bash
# Host tools for the guest-VM harness (scripts/vm/run.sh), installed idempotently on
# a fresh Debian 12 machine; scripts/deps.sh calls this. Every step checks first.
#
#   - Debian packages: qemu-system-x86 (QEMU 7.2), busybox-static (the initramfs)
#   - vhost-device-vsock 0.3.0 (vhost-user vsock backend) into .tools/
#   - the guest kernel: the Debian cloud kernel that linux-image-cloud-amd64 depends
#     on now, fetched with apt-get download and unpacked into .cache/ownfs-vm/
#
# Prints the unpacked kernel's directory on success (last line: `kernel: DIR`).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS="$REPO/.tools"
CACHE="${OWNFS_VM_CACHE:-$REPO/.cache/ownfs-vm}"
VSOCK_VERSION="0.3.0"

log() { printf 'vm-deps: %s\n' "$*"; }
die() {
    printf '\nvm-deps: ERROR: %s\n\n' "$*" >&2
    exit 1
}

SUDO=()
[[ $EUID -eq 0 ]] || SUDO=(sudo)
export DEBIAN_FRONTEND=noninteractive

pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# --- Debian packages ------------------------------------------------------------
# qemu-system-x86: the guest; busybox-static: the initramfs userland (also its cpio).
missing=()
for p in qemu-system-x86 busybox-static; do
    pkg_installed "$p" || missing+=("$p")
done
if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq
    "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found after install"
[[ -x /bin/busybox ]] || die "/bin/busybox (busybox-static) not found after install"

# --- vhost-device-vsock -----------------------------------------------------------
vsock_ok() {
    [[ -x $TOOLS/bin/vhost-device-vsock ]] &&
        [[ "$("$TOOLS/bin/vhost-device-vsock" --version 2>/dev/null)" == *" $VSOCK_VERSION" ]]
}
if ! vsock_ok; then
    mkdir -p "$TOOLS"
    exec 9>"$TOOLS/.install.lock"
    flock 9
    if ! vsock_ok; then
        log "installing vhost-device-vsock $VSOCK_VERSION into $TOOLS (a few minutes)"
        cargo install --locked --quiet vhost-device-vsock --version "$VSOCK_VERSION" \
            --root "$TOOLS"
    fi
    flock -u 9
    exec 9>&-
    vsock_ok || die "vhost-device-vsock $VSOCK_VERSION not usable at $TOOLS/bin"
fi

# --- guest kernel ---------------------------------------------------------------------
# The versioned package behind linux-image-cloud-amd64 (old ones leave the mirror,
# so never pin it here).
kernel_package() {
    apt-cache show --no-all-versions linux-image-cloud-amd64 2>/dev/null |
        sed -n 's/^Depends: .*\(linux-image-[0-9][^ ,]*-cloud-amd64\).*/\1/p' | head -n 1
}
mkdir -p "$CACHE"
exec 8>"$CACHE/.lock"
flock 8
pkg="$(kernel_package)"
if [[ -z $pkg ]]; then
    log "no linux-image-cloud-amd64 in the package lists; running apt-get update"
    "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq
    pkg="$(kernel_package)"
fi
[[ -n $pkg ]] || die "cannot find the package that linux-image-cloud-amd64 depends on"
kdir="$CACHE/$pkg"
if [[ ! -f $kdir/.complete ]]; then
    log "fetching guest kernel $pkg"
    rm -rf "$kdir" "$CACHE/download"
    mkdir -p "$CACHE/download"
    # apt drops privileges to _apt for downloads; let it write there.
    chmod 0777 "$CACHE/download"
    if ! (cd "$CACHE/download" && apt-get download -q "$pkg" >/dev/null 2>&1); then
        log "download failed; refreshing the package lists and retrying"
        "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq
        pkg="$(kernel_package)"
        kdir="$CACHE/$pkg"
        (cd "$CACHE/download" && apt-get download -q "$pkg" >/dev/null) ||
            die "apt-get download $pkg failed: no guest kernel, the VM harness cannot run"
    fi
    mkdir -p "$kdir"
    dpkg-deb -x "$CACHE/download/${pkg}"_*.deb "$kdir"
    rm -rf "$CACHE/download"
    compgen -G "$kdir/boot/vmlinuz-*" >/dev/null || die "no vmlinuz in $pkg"
    touch "$kdir/.complete"
    # Older kernels are not needed any more.
    for old in "$CACHE"/linux-image-*; do
        [[ $old == "$kdir" ]] || rm -rf "$old"
    done
fi
flock -u 8
log "kernel: $kdir"
