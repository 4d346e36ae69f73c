#!/usr/bin/env bash
# Guest-VM harness: boots the Debian cloud kernel under QEMU once and runs pjdfstest
# inside the guest on four ownfs shares, in sequence:
#
#   vm-virtiofs-root      virtio-fs, `ownfs virtiofs` on the host as root
#   vm-virtiofs-rootless  virtio-fs, `ownfs virtiofs --run-as UID:GID` (share owned by it)
#   vm-pipe-root          fuse-pipe over AF_VSOCK: `ownfs client --connect vsock:2:5001` in
#                         the guest, vhost-device-vsock, `ownfs serve` on the host as root
#   vm-pipe-rootless      the same on port 5002, `ownfs serve --run-as UID:GID`
#
# The guest's userland is the host's / (virtio-fs tag `rootfs`, read-only), so it runs
# this repository's pjdfstest/run.sh, pjdfstest and ownfs. Results come back on the
# `results` share (and the serial console); the exit status is the guest's.
#
# usage: scripts/vm/run.sh [options] [MODE...] [-- PATTERN...]
#
# Options:
#   --no-deps        skip scripts/vm/deps.sh
#   --no-build       use the existing target/release/ownfs
#   --accel A        tcg (default), kvm, or auto (KVM if a probe boot works, else TCG)
#   --virtiofsd      serve the virtio-fs shares with virtiofsd (.tools/bin) instead of
#                    ownfs (harness development only; virtiofsd has no rootless mode)
#   --suite S        rust, c or both (default): which pjdfstest the guest runs
#   --c-dirs D+D     the C suite's test directories in the guest (default: guest.sh's)
#   -- PATTERN       only the pjdfstest tests whose names contain PATTERN
#
# Environment: OWNFS_VM_TIMEOUT (seconds the guest may run, default 2400),
# OWNFS_VM_CPUS (2), OWNFS_VM_MEM (1G), OWNFS_VM_RUN_AS (4000:4000), RUST_LOG (warn).
# Logs: target/ownfs-vm/ (console.log, one log per daemon, results/ from the guest).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK=/var/tmp/ownfs-vm
LOGS="$REPO/target/ownfs-vm"
# shellcheck source=scripts/vm/lib.sh
source "$REPO/scripts/vm/lib.sh"

RUN_AS="${OWNFS_VM_RUN_AS:-4000:4000}"
TIMEOUT="${OWNFS_VM_TIMEOUT:-2400}"
deps=1 build=1 accel=tcg impl=ownfs
modes=()
patterns=()
guest_opts=()
suite=both
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while (($#)); do
    case $1 in
    --no-deps) deps=0 ;;
    --no-build) build=0 ;;
    --accel) accel=$2; shift ;;
    --virtiofsd) impl=virtiofsd ;;
    --suite) suite=$2; guest_opts+=(--suite "$2"); shift ;;
    --c-dirs) guest_opts+=(--c-dirs "$2"); shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; patterns=("$@"); break ;;
    vm-virtiofs-root | vm-virtiofs-rootless | vm-pipe-root | vm-pipe-rootless) modes+=("$1") ;;
    *) echo "run.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done
if [[ ! $RUN_AS =~ ^[0-9]+:[0-9]+$ ]] || [[ $RUN_AS == 0:* || $RUN_AS == *:0 ]]; then
    vm_die "OWNFS_VM_RUN_AS must be UID:GID, not root (got '$RUN_AS')"
fi

if ((deps)); then
    "$REPO/scripts/vm/deps.sh" || vm_die "scripts/vm/deps.sh failed: the VM harness cannot run"
fi
if ((build)) && [[ -z ${OWNFS_BIN:-} ]]; then
    vm_log "cargo build --release"
    (cd "$REPO" && cargo build --release --quiet) || vm_die "cargo build --release failed"
fi
vm_check_host
[[ -x $VHOST_VSOCK ]] || vm_die "$VHOST_VSOCK missing (scripts/vm/deps.sh)"
[[ -x $TOOLS/bin/pjdfstest ]] || vm_die "$TOOLS/bin/pjdfstest missing (scripts/test-deps.sh)"
# The guest runs tests/casefold.rs's binary (its kernel has ext4 casefold; this one may not).
casefold_test=""
if ((${#patterns[@]} == 0)) && [[ $suite != c ]]; then
    casefold_test="$(cd "$REPO" && cargo test --release --test casefold --no-run 2>&1 |
        sed -n 's/.*Executable tests\/casefold.rs (\(.*\))$/\1/p')"
    [[ -n $casefold_test ]] || vm_die "cannot build tests/casefold.rs"
    guest_opts+=(--casefold-test "$REPO/$casefold_test")
fi
# The guest runs the C pjdfstest from the host's build cache (its / is read-only).
c_rc=0
"$REPO/pjdfstest/build-c.sh" >/dev/null || c_rc=$?
((c_rc == 0 || c_rc == 3)) || vm_die "building the C pjdfstest failed"
if [[ $impl == virtiofsd ]]; then
    [[ -x $VIRTIOFSD ]] || vm_die "$VIRTIOFSD missing (scripts/vm/bench.sh installs it)"
elif ! "$OWNFS" virtiofs --help >/dev/null 2>&1; then
    vm_die "$OWNFS has no virtiofs command"
fi

mkdir -p "$WORK" "$LOGS"
exec 7>"$WORK.lock"
flock -n 7 || vm_die "another scripts/vm/run.sh is running (lock $WORK.lock)"

trap vm_cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT TERM

started=$SECONDS
rm -rf "$WORK" "$LOGS"
mkdir -p "$WORK/sock" "$LOGS"
for d in results vroot vrootless proot prootless; do
    mkdir -m 0755 "$WORK/$d"
done
# Rootless servers drop to RUN_AS and must own what they serve.
chown "$RUN_AS" "$WORK/vrootless" "$WORK/prootless"

vm_build_initramfs
accel="$(vm_accel "$accel")"
vm_log "kernel $VM_KVER, accelerator $accel, virtio-fs server: $impl"

# The shares. virtiofsd has no --run-as: in --virtiofsd mode it serves vrootless as root.
rootless_flags=(--run-as "$RUN_AS")
[[ $impl == virtiofsd ]] && rootless_flags=()
common=(--cache auto)
[[ $impl == virtiofsd ]] && common+=(--sandbox none)
vm_virtiofs "$impl" rootfs "$WORK/sock/rootfs" / --readonly "${common[@]}"
vm_virtiofs "$impl" results "$WORK/sock/results" "$WORK/results" "${common[@]}"
vm_virtiofs "$impl" vroot "$WORK/sock/vroot" "$WORK/vroot" "${common[@]}"
vm_virtiofs "$impl" vrootless "$WORK/sock/vrootless" "$WORK/vrootless" "${common[@]}" \
    "${rootless_flags[@]}"

# fuse-pipe over vsock: the guest's connection to host port P arrives at vsock_P.
vm_start serve-root "$OWNFS" serve "$WORK/proot" --listen "unix:$WORK/sock/vsock_5001"
vm_wait_socket serve-root "$WORK/sock/vsock_5001"
vm_start serve-rootless "$OWNFS" serve "$WORK/prootless" --listen "unix:$WORK/sock/vsock_5002" \
    --run-as "$RUN_AS"
vm_wait_socket serve-rootless "$WORK/sock/vsock_5002"
vm_start vhost-device-vsock "$VHOST_VSOCK" --guest-cid=3 --socket="$WORK/sock/vsock.ctl" \
    --uds-path="$WORK/sock/vsock"
vm_wait_socket vhost-device-vsock "$WORK/sock/vsock.ctl"

devices=()
mapfile -t -O 0 devices < <(
    vm_fs_dev fs0 "$WORK/sock/rootfs" rootfs
    vm_fs_dev fs1 "$WORK/sock/results" results
    vm_fs_dev fs2 "$WORK/sock/vroot" vroot
    vm_fs_dev fs3 "$WORK/sock/vrootless" vrootless
)
# shellcheck disable=SC2054 # the commas belong to QEMU's option syntax
devices+=(-chardev "socket,id=vsock,path=$WORK/sock/vsock.ctl"
    -device vhost-user-vsock-pci,chardev=vsock)

guest_args=(--ownfs "$OWNFS" "${guest_opts[@]}" "${modes[@]}")
((${#patterns[@]})) && guest_args+=(-- "${patterns[@]}")
args_csv="$(IFS=,; echo "${guest_args[*]}")"
[[ $args_csv != *' '* ]] || vm_die "guest arguments cannot contain spaces: $args_csv"

vm_log "booting the guest (limit ${TIMEOUT}s; console below and in ${LOGS#"$REPO"/}/console.log)"
qemu_rc=0
vm_qemu "$accel" "$TIMEOUT" "ownfs_vm.args=$args_csv" "${devices[@]}" || qemu_rc=$?
vm_cleanup

cp -a "$WORK/results" "$LOGS/results"
echo
vm_log "guest finished after $((SECONDS - started))s; results from the results share:"
status=""
[[ -f $WORK/results/status ]] && status="$(cat "$WORK/results/status")"
if [[ -f $WORK/results/summary.txt ]]; then
    grep -E '^(pjdfstest(-c)?|coherence|casefold)\[' "$WORK/results/summary.txt" || true
fi
if [[ ! $status =~ ^[0-9]+$ ]]; then
    vm_die "the guest left no exit status in the results share (qemu status $qemu_rc): see ${LOGS#"$REPO"/}/console.log"
fi
if ((qemu_rc != 0)); then
    vm_die "qemu exited with status $qemu_rc"
fi
((status == 0)) || vm_die "the guest's tests failed (status $status)"
# Every mode must have reported, and a full run that ran nothing is no pass.
((${#modes[@]})) || modes=(vm-virtiofs-root vm-virtiofs-rootless vm-pipe-root vm-pipe-rootless)
# (The guest's status already counts every failure.)
expect_line() {
    local passed
    passed="$(sed -n "s/^$1\[$2\]: \([0-9]*\) passed, .*/\1/p" "$WORK/results/summary.txt")"
    [[ -n $passed ]] || vm_die "no $1 summary line for $2"
    if ((passed == 0 && ${#patterns[@]} == 0)); then
        vm_die "$1 ran no test in $2"
    fi
}
for m in "${modes[@]}"; do
    [[ $suite == c ]] || expect_line pjdfstest "$m"
    ((${#patterns[@]})) || expect_line coherence "$m"
done
[[ -z $casefold_test ]] || expect_line casefold vm
if [[ $suite != rust ]] && ((${#patterns[@]} == 0)); then
    grep -q '^pjdfstest-c\[' "$WORK/results/summary.txt" || vm_die "no pjdfstest-c summary line"
fi
vm_log "all guest tests passed"
