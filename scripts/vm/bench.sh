#!/usr/bin/env bash
# ownfs virtiofs vs virtiofsd 1.14, side by side in one guest (not part of CI: building
# virtiofsd takes minutes). Both serve a fresh directory on the same host file system,
# as root, with --cache auto and the same thread pool; the guest runs each workload on
# one share and then the other, alternating the order every repetition, and the host
# prints medians and ratios (ownfs time / virtiofsd time: below 1 means ownfs is faster).
#
# usage: scripts/vm/bench.sh [--reps N] [--files N] [--mib N] [--accel tcg|kvm|auto]
#   --reps N   repetitions (default 5, at least 3)
#   --files N  files created, stat'ed and unlinked per run (default 2000)
#   --mib N    MiB written and read with dd and O_DIRECT per run (default 256)
#   --threads N  --thread-pool-size of both servers (default 0, both servers' default)
# With OWNFS_BASE_BIN=PATH (another ownfs build, e.g. an older commit), a third share
# `ownfs-base` is served by it, in the same rotation, with its own column and ratio.
# Installs virtiofsd 1.14 into .tools/bin when missing. Logs: target/ownfs-vm-bench/.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK=/var/tmp/ownfs-vm-bench
LOGS="$REPO/target/ownfs-vm-bench"
# shellcheck source=scripts/vm/lib.sh
source "$REPO/scripts/vm/lib.sh"
VIRTIOFSD_VERSION="1.14"

reps=5 files=2000 mib=256 accel=tcg threads=0
while (($#)); do
    case $1 in
    --reps) reps=$2; shift ;;
    --files) files=$2; shift ;;
    --mib) mib=$2; shift ;;
    --accel) accel=$2; shift ;;
    --threads) threads=$2; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
    shift
done
((reps >= 3)) || vm_die "--reps must be at least 3"

"$REPO/scripts/vm/deps.sh" || vm_die "scripts/vm/deps.sh failed"
if [[ -z ${VIRTIOFSD_BIN:-} ]] && ! "$VIRTIOFSD" --version 2>/dev/null | grep -q " $VIRTIOFSD_VERSION\."; then
    # virtiofsd links against libseccomp and libcap-ng.
    for p in libseccomp-dev libcap-ng-dev; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
                --no-install-recommends "$p" >/dev/null
    done
    vm_log "installing virtiofsd $VIRTIOFSD_VERSION.x into $TOOLS (several minutes)"
    cargo install --locked --quiet virtiofsd --version "~$VIRTIOFSD_VERSION" --root "$TOOLS"
fi
[[ -z ${OWNFS_BIN:-} ]] && (cd "$REPO" && cargo build --release --quiet)
vm_check_host
"$OWNFS" virtiofs --help >/dev/null 2>&1 || vm_die "$OWNFS has no virtiofs command"
servers=ownfs+virtiofsd
if [[ -n ${OWNFS_BASE_BIN:-} ]]; then
    "$OWNFS_BASE_BIN" virtiofs --help >/dev/null 2>&1 || vm_die "$OWNFS_BASE_BIN has no virtiofs command"
    servers+=+ownfs-base
fi

mkdir -p "$WORK" "$LOGS"
exec 7>"$WORK.lock"
flock -n 7 || vm_die "another scripts/vm/bench.sh is running (lock $WORK.lock)"
trap vm_cleanup EXIT
trap 'exit 130' INT TERM
rm -rf "$WORK" "$LOGS"
mkdir -p "$WORK/sock" "$WORK/results" "$WORK/ownfs" "$WORK/virtiofsd" "$WORK/ownfs-base" "$LOGS"

vm_build_initramfs
accel="$(vm_accel "$accel")"
vm_virtiofs ownfs rootfs "$WORK/sock/rootfs" / --readonly --cache auto
vm_virtiofs ownfs results "$WORK/sock/results" "$WORK/results" --cache auto
vm_virtiofs ownfs bench-ownfs "$WORK/sock/ownfs" "$WORK/ownfs" --cache auto \
    --thread-pool-size "$threads"
vm_virtiofs virtiofsd bench-virtiofsd "$WORK/sock/virtiofsd" "$WORK/virtiofsd" --cache auto \
    --thread-pool-size "$threads" --sandbox none
[[ -n ${OWNFS_BASE_BIN:-} ]] &&
    vm_virtiofs ownfs-base bench-ownfs-base "$WORK/sock/ownfs-base" "$WORK/ownfs-base" \
        --cache auto --thread-pool-size "$threads"
devices=()
mapfile -t devices < <(
    vm_fs_dev fs0 "$WORK/sock/rootfs" rootfs
    vm_fs_dev fs1 "$WORK/sock/results" results
    vm_fs_dev fs2 "$WORK/sock/ownfs" bownfs
    vm_fs_dev fs3 "$WORK/sock/virtiofsd" bvirtiofsd
    [[ -z ${OWNFS_BASE_BIN:-} ]] || vm_fs_dev fs4 "$WORK/sock/ownfs-base" bownfs-base
)
vm_log "kernel $VM_KVER, $accel, $VM_CPUS vCPUs; $reps reps, $files files, $mib MiB; $("$VIRTIOFSD" --version)"
vm_qemu "$accel" 3600 "ownfs_vm.run=scripts/vm/guest-bench.sh ownfs_vm.args=$reps,$files,$mib,$servers" \
    "${devices[@]}" || true
vm_cleanup
cp -a "$WORK/results" "$LOGS/results"
[[ "$(cat "$WORK/results/status" 2>/dev/null)" == 0 ]] || vm_die "the guest benchmark failed: see ${LOGS#"$REPO"/}/console.log"

echo
awk -v servers="$servers" '
function median(list,    n, a, i, j, t) {
    n = split(list, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
$1 == "run" {
    for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
    for (k in f) if (k != "fs" && k != "rep") t[f["fs"], k] = t[f["fs"], k] " " f[k]
}
END {
    n = split("create stat unlink write read", ks, " ")
    m = split(servers, fs, "+")
    printf "%-8s", "median"
    for (j = 1; j <= m; j++) printf " %14s", fs[j]
    for (j = 1; j <= m; j++) if (fs[j] != "ownfs") printf " %18s", "ownfs/" fs[j]
    printf "\n"
    for (i = 1; i <= n; i++) {
        k = ks[i]; o = median(t["ownfs", k])
        printf "%-8s", k
        for (j = 1; j <= m; j++) printf " %13.3fs", median(t[fs[j], k])
        for (j = 1; j <= m; j++) if (fs[j] != "ownfs") { v = median(t[fs[j], k]); printf " %18.2f", (v > 0 ? o / v : 0) }
        printf "\n"
    }
}' "$WORK/results/bench.txt" | tee "$LOGS/summary.txt"
echo "(time ratios: below 1.00 means ownfs is faster; per-run lines in ${LOGS#"$REPO"/}/results/bench.txt)"
