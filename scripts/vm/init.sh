#!/bin/busybox sh
# shellcheck shell=dash
# /init of the guest initramfs built by scripts/vm/run.sh (busybox userland).
# Loads the virtio, virtio-fs and vsock modules, mounts the host's / (virtio-fs tag
# `rootfs`, read-only) and runs scripts/vm/guest.sh (or ownfs_vm.run) chrooted into it. Then powers off;
# the result travels back in the `results` share (guest.sh writes it).
#
# Kernel command line: ownfs_vm.repo=DIR (the repository on the host),
# ownfs_vm.run=SCRIPT (relative to it; default scripts/vm/guest.sh),
# ownfs_vm.probe=1 (only show that the kernel boots: print a marker, power off),
# ownfs_vm.args=A,B,... (the script's arguments, comma-separated).
/bin/busybox mkdir -p /proc /sys /dev /bin /sbin /usr/bin /usr/sbin /newroot
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

say() { echo "ownfs-vm-init: $*" >/dev/console; }
halt() {
    sync
    poweroff -f
    sleep 5
    echo o >/proc/sysrq-trigger
}

repo="" run=scripts/vm/guest.sh probe=0 args=""
read -r cmdline </proc/cmdline
for word in $cmdline; do
    case $word in
    ownfs_vm.repo=*) repo=${word#ownfs_vm.repo=} ;;
    ownfs_vm.run=*) run=${word#ownfs_vm.run=} ;;
    ownfs_vm.probe=1) probe=1 ;;
    ownfs_vm.args=*) args=$(echo "${word#ownfs_vm.args=}" | tr , ' ') ;;
    esac
done

if [ $probe = 1 ]; then
    say "probe: booted"
    halt
fi

while read -r m; do
    insmod "/modules/$m.ko" || { say "insmod $m failed"; halt; }
done </modules/order

mount -t virtiofs -o ro rootfs /newroot || { say "cannot mount the rootfs share"; halt; }
for d in proc sys dev tmp run; do
    [ -d /newroot/$d ] || { say "/$d missing on the host's /"; halt; }
done
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t devtmpfs devtmpfs /newroot/dev
# What udev/systemd would add to /dev (bash's process substitution needs /dev/fd).
ln -s /proc/self/fd /newroot/dev/fd
ln -s /proc/self/fd/0 /newroot/dev/stdin
ln -s /proc/self/fd/1 /newroot/dev/stdout
ln -s /proc/self/fd/2 /newroot/dev/stderr
mkdir -p /newroot/dev/shm
# A repository under the host's /tmp or /run would vanish under the guest's tmpfs:
# hold it aside and put it back at the same path on top.
held=0
case "$repo" in /tmp/* | /run/*)
    mkdir -p /held
    mount -o bind "/newroot$repo" /held || { say "cannot hold $repo aside"; halt; }
    held=1
    ;;
esac
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp
mount -t tmpfs -o mode=0755 tmpfs /newroot/run
mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm
if [ "$held" = 1 ]; then
    mkdir -p "/newroot$repo"
    mount -o move /held "/newroot$repo" || { say "cannot put $repo back"; halt; }
fi

say "booted in $(cut -d' ' -f1 /proc/uptime) s; running $repo/$run $args"
# shellcheck disable=SC2086 # args is a list
chroot /newroot /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root TERM=dumb /bin/bash "$repo/$run" $args </dev/console >/dev/console 2>&1
say "$run exited with status $?; powering off"
halt
