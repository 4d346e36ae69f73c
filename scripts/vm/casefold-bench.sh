#!/usr/bin/env bash
# `ls -l` of a directory that folds case against one that does not, through an ownfs
# mount inside the QEMU guest (its kernel has ext4 casefold), side by side in one run;
# prints the medians and their ratio. Not part of CI (timing is no pass/fail matter).
#
# usage: scripts/vm/casefold-bench.sh [--reps N] [--files N] [--accel tcg|kvm|auto]
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK=/var/tmp/ownfs-vm-cfbench
LOGS="$REPO/target/ownfs-vm-cfbench"
# shellcheck source=scripts/vm/lib.sh
source "$REPO/scripts/vm/lib.sh"

reps=5 files=10000 accel=tcg
while (($#)); do
    case $1 in
    --reps) reps=$2; shift ;;
    --files) files=$2; shift ;;
    --accel) accel=$2; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "casefold-bench.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
    shift
done

"$REPO/scripts/vm/deps.sh" || vm_die "scripts/vm/deps.sh failed"
[[ -z ${OWNFS_BIN:-} ]] && (cd "$REPO" && cargo build --release --quiet)
vm_check_host
mkdir -p "$WORK" "$LOGS"
exec 7>"$WORK.lock"
flock -n 7 || vm_die "another casefold-bench.sh is running (lock $WORK.lock)"
trap vm_cleanup EXIT
rm -rf "$WORK" "$LOGS"
mkdir -p "$WORK/sock" "$WORK/results" "$LOGS"

vm_build_initramfs
accel="$(vm_accel "$accel")"
vm_virtiofs ownfs rootfs "$WORK/sock/rootfs" / --readonly --cache auto
vm_virtiofs ownfs results "$WORK/sock/results" "$WORK/results" --cache auto
devices=()
mapfile -t devices < <(
    vm_fs_dev fs0 "$WORK/sock/rootfs" rootfs
    vm_fs_dev fs1 "$WORK/sock/results" results
)
vm_log "kernel $VM_KVER, $accel; $reps reps, $files entries per directory"
vm_qemu "$accel" 3600 "ownfs_vm.run=scripts/vm/guest-casefold-bench.sh ownfs_vm.args=$OWNFS,$reps,$files" \
    "${devices[@]}" || true
vm_cleanup
cp -a "$WORK/results" "$LOGS/results"
[[ $(cat "$WORK/results/status" 2>/dev/null) == 0 ]] || vm_die "the guest's benchmark failed (see $LOGS)"
python3 - "$WORK/results/bench.txt" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    f = dict(kv.split("=") for kv in line.split()[1:])
    runs.setdefault(f["dir"], []).append(float(f["seconds"]))
fold, plain = statistics.median(runs["fold"]), statistics.median(runs["plain"])
print(f"ls -l, {len(runs['fold'])} runs each: folding {fold:.3f} s, plain {plain:.3f} s, ratio {fold / plain:.2f}")
PY
