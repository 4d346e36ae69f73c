#!/usr/bin/env bash
# Runs inside the guest (scripts/vm/init.sh chroots into the host's / for it), as root:
# mounts the test shares and runs pjdfstest/run.sh on each. Results go to the `results`
# virtio-fs share: pjdfstest logs, summary.txt, and `status` (guest.sh's exit status;
# the host treats a missing file as a failure).
#
# usage: guest.sh [--ownfs BIN] [--suite rust|c|both] [--c-dirs DIR] [--casefold-test BIN] [MODE...] [-- PATTERN...]
#   vm-virtiofs-root      virtio-fs tag `vroot`, served by `ownfs virtiofs` as root
#   vm-virtiofs-rootless  virtio-fs tag `vrootless`, served with --run-as
#   vm-pipe-root          ownfs client --connect vsock:2:5001 (host: ownfs serve, root)
#   vm-pipe-rootless      ownfs client --connect vsock:2:5002 (host: serve --run-as)
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OWNFS="$REPO/target/release/ownfs"
RESULTS=/tmp/ownfs-vm-results
ALL_MODES=(vm-virtiofs-root vm-virtiofs-rootless vm-pipe-root vm-pipe-rootless)
# Short mountpoints: see check_path_length in pjdfstest/run.sh.
declare -A MNT=(
    [vm-virtiofs-root]=/tmp/vr
    [vm-virtiofs-rootless]=/tmp/vl
    [vm-pipe-root]=/tmp/vp
    [vm-pipe-rootless]=/tmp/vq
)
declare -A TAG=([vm-virtiofs-root]=vroot [vm-virtiofs-rootless]=vrootless)
declare -A PORT=([vm-pipe-root]=5001 [vm-pipe-rootless]=5002)
# Where the C pjdfstest runs too, and which of its test files (see below).
declare -A C_DIRS=(
    [vm-virtiofs-rootless]="chmod/00.t chmod/01.t chmod/02.t chmod/04.t chmod/05.t chmod/06.t chmod/07.t chmod/08.t chmod/09.t chmod/10.t chmod/11.t chmod/12.t"
    [vm-pipe-root]="chown/01.t chown/02.t chown/04.t chown/05.t chown/06.t chown/07.t chown/08.t chown/09.t chown/10.t"
)

modes=()
patterns=()
suite=both
casefold_test=""
while (($#)); do
    case $1 in
    --ownfs) OWNFS=$2; shift ;;
    --suite) suite=$2; shift ;;
    --casefold-test) casefold_test=$2; shift ;;
    --c-dirs) for m in "${!C_DIRS[@]}"; do C_DIRS[$m]=$2; done; shift ;;
    --) shift; patterns=("$@"); break ;;
    vm-*) [[ -n ${MNT[$1]:-} ]] || { echo "guest.sh: unknown mode $1"; exit 2; }; modes+=("$1") ;;
    *) echo "guest.sh: unknown argument '$1'"; exit 2 ;;
    esac
    shift
done
((${#modes[@]})) || modes=("${ALL_MODES[@]}")

say() { echo "ownfs-vm-guest: $*"; }

mkdir -p "$RESULTS"
if ! mount -t virtiofs results "$RESULTS"; then
    say "ERROR: cannot mount the results share; nothing can be reported"
    exit 1
fi

status=1
clients=()
# shellcheck disable=SC2317 # invoked by the trap
finish() {
    local p m
    for p in "${clients[@]}"; do
        kill -TERM "$p" 2>/dev/null
    done
    for p in "${clients[@]}"; do
        wait "$p" 2>/dev/null
    done
    for m in "${modes[@]}"; do
        if grep -qF " ${MNT[$m]} " /proc/self/mountinfo; then
            umount "${MNT[$m]}" || umount -l "${MNT[$m]}"
        fi
    done
    echo "$status" >"$RESULTS/status.tmp" && mv "$RESULTS/status.tmp" "$RESULTS/status"
    sync
    umount "$RESULTS"
}
trap finish EXIT

say "kernel $(uname -r), $(nproc) CPUs; modes: ${modes[*]}"
mounted=()
for m in "${modes[@]}"; do
    mnt=${MNT[$m]}
    mkdir -p "$mnt"
    if [[ -n ${TAG[$m]:-} ]]; then
        mount -t virtiofs "${TAG[$m]}" "$mnt" || { say "ERROR: $m: mount -t virtiofs ${TAG[$m]} failed"; exit 1; }
    else
        RUST_LOG="${RUST_LOG:-warn}" "$OWNFS" client "$mnt" --connect "vsock:2:${PORT[$m]}" \
            </dev/null >"$RESULTS/$m.client.log" 2>&1 &
        clients+=($!)
        for ((t = 0; t < 300; t++)); do
            grep -qF " $mnt " /proc/self/mountinfo && break
            kill -0 "$!" 2>/dev/null || break
            sleep 0.1
        done
        if ! grep -qF " $mnt " /proc/self/mountinfo; then
            say "ERROR: $m: ownfs client did not mount $mnt (vsock port ${PORT[$m]}):"
            tail -n 20 "$RESULTS/$m.client.log"
            exit 1
        fi
    fi
    mounted+=(--mounted "$m=$mnt")
done

# pjdfstest/run.sh does the rest: the two passes, the summary, expected failures.
status=0
: >"$RESULTS/summary.txt"
if [[ $suite != c ]]; then
    OWNFS_PJD_LOGS="$RESULTS/pjdfstest" OWNFS_PJD_WORK=/tmp/ownfs-vm-pjd \
        "$REPO/pjdfstest/run.sh" --no-deps --no-build --serial --suite rust "${mounted[@]}" \
        ${patterns[@]:+-- "${patterns[@]}"} 2>&1 | tee -a "$RESULTS/summary.txt"
    status=${PIPESTATUS[0]}
fi

# Attribute coherence: what each share's client shows right after cp -p, setfacl and the like.
if ((${#patterns[@]} == 0)); then
    for m in "${modes[@]}"; do
        coherence=("$REPO/tests/coherence.sh")
        [[ $m == *-rootless ]] && coherence+=(--rootless)
        "${coherence[@]}" "${MNT[$m]}" "$m" 2>&1 | tee -a "$RESULTS/summary.txt"
        ((PIPESTATUS[0] == 0)) || status=1
    done
fi

# Case-insensitive host directories: this kernel has ext4 casefold. The test binary
# loop-mounts an ext4 image with casefold under a fresh ownfs mount (root and rootless).
if [[ -n $casefold_test ]]; then
    out="$("$casefold_test" --ignored --test-threads=1 2>&1)"
    rc=$?
    echo "$out" >"$RESULTS/casefold.log"
    counts="$(sed -n 's/^test result: .* \([0-9]*\) passed; \([0-9]*\) failed;.*/\1 passed, \2 failed/p' <<<"$out")"
    if ((rc != 0)) || [[ -z $counts ]]; then
        status=1
        grep -E '^test |panicked|assert' <<<"$out" | head -n 20
    fi
    echo "casefold[vm]: ${counts:-0 passed, 1 failed (no test result; see casefold.log)}" |
        tee -a "$RESULTS/summary.txt"
fi

# The original C suite on two of the shares, sampled. Each of its tests forks a shell and
# several programs, about 0.6 s per test in the TCG guest, so all 8798 would take hours.
# The sample is the ownership and permission core that ownfs exists for: chmod on a
# rootless virtio-fs share (virtual modes, set-id rules), chown through the pipe
# (forwarded identities, EPERM for non-owners), 529 tests, side by side (the guest
# has two CPUs). Left out: chown/00.t (1280 tests alone) and the NN.t files whose
# paths of PATH_MAX bytes take the guest many minutes to generate (03.t).
c_mounted=()
for m in "${modes[@]}"; do
    [[ -n ${C_DIRS[$m]:-} ]] && c_mounted+=(--mounted "$m=${MNT[$m]}")
done
if [[ $suite != rust ]] && ((${#c_mounted[@]})) && ((${#patterns[@]} == 0)); then
    c_dirs=""
    for m in "${modes[@]}"; do
        for d in ${C_DIRS[$m]:-}; do c_dirs+="${c_dirs:+ }$m=$d"; done
    done
    OWNFS_PJDC_DIRS="$c_dirs" OWNFS_PJDC_TIMEOUT=900 OWNFS_PJD_LOGS="$RESULTS/pjdfstest" \
        OWNFS_PJD_WORK=/tmp/ownfs-vm-pjd "$REPO/pjdfstest/run.sh" --no-deps --no-build \
        --suite c "${c_mounted[@]}" 2>&1 | tee -a "$RESULTS/summary.txt"
    ((PIPESTATUS[0] == 0)) || status=1
fi
for p in "${clients[@]}"; do
    kill -0 "$p" 2>/dev/null || { say "ERROR: an ownfs client exited during the run"; status=1; }
done
say "status $status"
exit "$status"
