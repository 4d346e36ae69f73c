# shellcheck shell=bash disable=SC2034 # the callers use the settings
# Shared by scripts/vm/run.sh and scripts/vm/bench.sh (sourced, not run): the
# initramfs, the host-side daemons (virtio-fs servers, vhost-device-vsock, ownfs serve)
# and the QEMU command line. Every daemon started here is recorded and stopped by
# vm_cleanup, which the callers run from their EXIT trap.
#
# Callers set: REPO, WORK (a directory of their own, with ownfs-vm in its name), LOGS.

TOOLS="$REPO/.tools"
VM_CACHE="${OWNFS_VM_CACHE:-$REPO/.cache/ownfs-vm}"
OWNFS="${OWNFS_BIN:-$REPO/target/release/ownfs}"
VIRTIOFSD="${VIRTIOFSD_BIN:-$TOOLS/bin/virtiofsd}"
VHOST_VSOCK="$TOOLS/bin/vhost-device-vsock"
# Guest memory: vhost-user backends map it, so it must be shared (memfd).
VM_MEM="${OWNFS_VM_MEM:-1G}"
VM_CPUS="${OWNFS_VM_CPUS:-2}"
# Loaded in this order from the initramfs (all are modules in the Debian cloud kernel).
VM_MODULES=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
    fuse virtiofs vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport loop)

vm_die() {
    printf '\n%s\n!!! %s: ERROR: %s\n%s\n\n' "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" \
        "${0##*/}" "$*" "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
    exit 1
}
vm_log() { printf '%s: %s\n' "${0##*/}" "$*"; }

# Is process $1 running (not gone, not a zombie)?
vm_alive() {
    local state
    state="$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null)" || return 1
    [[ -n $state && $state != Z ]]
}

# The kernel unpacked by scripts/vm/deps.sh: sets VM_KDIR, VM_KVER, VM_VMLINUZ.
vm_find_kernel() {
    local d
    VM_KDIR=""
    for d in "$VM_CACHE"/linux-image-*; do
        [[ -f $d/.complete ]] && VM_KDIR=$d
    done
    [[ -n $VM_KDIR ]] || vm_die "no guest kernel under $VM_CACHE (scripts/vm/deps.sh fetches it)"
    VM_VMLINUZ="$(compgen -G "$VM_KDIR/boot/vmlinuz-*" | head -n 1)"
    VM_KVER=${VM_VMLINUZ##*/vmlinuz-}
    [[ -d $VM_KDIR/lib/modules/$VM_KVER ]] || vm_die "no modules for $VM_KVER in $VM_KDIR"
}

# Checks that the host can run a guest at all; dies loudly otherwise.
vm_check_host() {
    [[ $EUID -eq 0 ]] || vm_die "must run as root (shares are served as root, and pjdfstest needs it)"
    command -v qemu-system-x86_64 >/dev/null || vm_die "qemu-system-x86_64 missing (scripts/vm/deps.sh)"
    [[ -x /bin/busybox ]] || vm_die "/bin/busybox missing (busybox-static; scripts/vm/deps.sh)"
    [[ -x $OWNFS ]] || vm_die "$OWNFS missing (cargo build --release)"
    vm_find_kernel
}

# Builds $WORK/initramfs.gz: busybox, the modules (decompressed), init.sh as /init.
vm_build_initramfs() {
    local tree="$WORK/initramfs" m ko
    rm -rf "$tree"
    mkdir -p "$tree/bin" "$tree/modules"
    cp /bin/busybox "$tree/bin/busybox"
    install -m 0755 "$REPO/scripts/vm/init.sh" "$tree/init"
    for m in "${VM_MODULES[@]}"; do
        ko="$(find "$VM_KDIR/lib/modules/$VM_KVER" -name "$m.ko" -o -name "$m.ko.*" | head -n 1)"
        [[ -n $ko ]] || vm_die "module $m not found in kernel $VM_KVER"
        case $ko in
        *.ko) cp "$ko" "$tree/modules/$m.ko" ;;
        *.ko.xz) xz -dc "$ko" >"$tree/modules/$m.ko" ;;
        *.ko.zst) zstd -qdc "$ko" >"$tree/modules/$m.ko" ;;
        *.ko.gz) gzip -dc "$ko" >"$tree/modules/$m.ko" ;;
        *) vm_die "unknown module compression: $ko" ;;
        esac
        echo "$m" >>"$tree/modules/order"
    done
    (cd "$tree" && find . | LC_ALL=C sort | /bin/busybox cpio -o -H newc -R 0:0 2>/dev/null) |
        gzip -1 >"$WORK/initramfs.gz"
}

# Daemons, each recorded: vm_start NAME CMD... (log in $LOGS/NAME.log).
VM_PIDS=()
VM_NAMES=()
vm_start() {
    local name=$1
    shift
    RUST_LOG="${RUST_LOG:-warn}" "$@" </dev/null >"$LOGS/$name.log" 2>&1 &
    VM_PIDS+=($!)
    VM_NAMES+=("$name")
}

# Waits until the socket $2 of daemon $1 (the last one started) exists.
vm_wait_socket() {
    local name=$1 sock=$2 pid=${VM_PIDS[-1]} t
    for ((t = 0; t < 300; t++)); do
        [[ -S $sock ]] && return 0
        vm_alive "$pid" || break
        sleep 0.1
    done
    tail -n 20 "$LOGS/$name.log" >&2
    vm_die "$name did not create $sock"
}

# A virtio-fs server: vm_virtiofs IMPL NAME SOCKET DIR [extra flags...]
# IMPL is ownfs (ownfs virtiofs) or virtiofsd.
vm_virtiofs() {
    local impl=$1 name=$2 sock=$3 dir=$4
    shift 4
    rm -f "$sock"
    case $impl in
    ownfs) vm_start "$name" "$OWNFS" virtiofs --socket-path "$sock" --shared-dir "$dir" "$@" ;;
    ownfs-base) vm_start "$name" "$OWNFS_BASE_BIN" virtiofs --socket-path "$sock" --shared-dir "$dir" "$@" ;;
    virtiofsd) vm_start "$name" "$VIRTIOFSD" --socket-path "$sock" --shared-dir "$dir" "$@" ;;
    *) vm_die "unknown virtio-fs server $impl" ;;
    esac
    vm_wait_socket "$name" "$sock"
}

# Stops every recorded daemon: SIGTERM, up to 10 s, then SIGKILL.
vm_cleanup() {
    local i pid t
    for pid in "${VM_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for i in "${!VM_PIDS[@]}"; do
        pid=${VM_PIDS[$i]}
        for ((t = 0; t < 100; t++)); do
            vm_alive "$pid" || break
            sleep 0.1
        done
        if vm_alive "$pid"; then
            echo "${0##*/}: ${VM_NAMES[$i]} ($pid) ignored SIGTERM; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    VM_PIDS=()
    VM_NAMES=()
}

# Chooses the accelerator for $1 = tcg|kvm|auto: auto boots the kernel once under KVM
# (the probe prints a marker and powers off) and uses KVM only if that worked.
vm_accel() {
    local want=$1
    case $want in
    tcg | kvm) echo "$want" ;;
    auto)
        if [[ -w /dev/kvm ]] && timeout 60 qemu-system-x86_64 -accel kvm -machine q35 -cpu host \
            -m 256M -nodefaults -display none -serial stdio -no-reboot \
            -kernel "$VM_VMLINUZ" -initrd "$WORK/initramfs.gz" \
            -append "console=ttyS0 panic=-1 ownfs_vm.probe=1" </dev/null 2>&1 |
            grep -q 'ownfs-vm-init: probe: booted'; then
            echo kvm
        else
            echo tcg
        fi
        ;;
    *) vm_die "unknown accelerator '$want' (tcg, kvm or auto)" ;;
    esac
}

# Runs the guest in the foreground; its serial console goes to stdout and to
# $LOGS/console.log. vm_qemu ACCEL TIMEOUT CMDLINE-EXTRA DEVICE-ARGS...
vm_qemu() {
    local accel=$1 limit=$2 append=$3 cpu=max rc=0
    shift 3
    [[ $accel == kvm ]] && cpu=host
    rm -f "$WORK/qemu.rc"
    {
        timeout -k 10 "$limit" qemu-system-x86_64 -accel "$accel" -machine q35 -cpu "$cpu" \
            -smp "$VM_CPUS" -m "$VM_MEM" \
            -object "memory-backend-memfd,id=mem,size=$VM_MEM,share=on" -numa node,memdev=mem \
            -nodefaults -display none -serial stdio -no-reboot \
            -kernel "$VM_VMLINUZ" -initrd "$WORK/initramfs.gz" \
            -append "console=ttyS0 panic=-1 loglevel=4 ownfs_vm.repo=$REPO $append" \
            "$@" </dev/null 2>&1 || rc=$?
        echo "$rc" >"$WORK/qemu.rc"
    } | tee "$LOGS/console.log"
    rc="$(cat "$WORK/qemu.rc" 2>/dev/null || echo 1)"
    if ((rc == 124 || rc == 137)); then
        vm_log "the guest did not power off within ${limit}s: stopped it"
    elif ((rc != 0)); then
        vm_log "qemu exited with status $rc"
    fi
    return "$rc"
}

# QEMU arguments for a vhost-user-fs device: vm_fs_dev ID SOCKET TAG
vm_fs_dev() {
    printf '%s\n' -chardev "socket,id=$1,path=$2" \
        -device "vhost-user-fs-pci,chardev=$1,tag=$3,queue-size=1024"
}
