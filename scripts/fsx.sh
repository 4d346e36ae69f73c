#!/usr/bin/env bash
# Data-integrity test: runs fsx (the File System eXerciser, Rust port 0.3.2,
# installed into .tools/ by scripts/test-deps.sh) on a file inside ownfs mounts.
# fsx applies a pseudorandom, seed-reproducible sequence of writes, mmap
# writes, truncates, fallocate/punch-hole, copy_file_range, ... and checks every
# read and every file size against an in-memory model of the file. The
# operation mix is scripts/fsx.toml.
#
# usage: scripts/fsx.sh [options] [MODE...]
#
# Modes (default: root root-served writeback rootless pipe); each gets a fresh,
# empty source directory and its own mount:
#   root            ownfs mount SRC MNT (kernel passthrough: the client kernel does
#                   reads, writes and mmap on the host file itself)
#   root-served     ownfs mount SRC MNT --no-passthrough (the server does the I/O)
#   writeback       ownfs mount SRC MNT --writeback
#   rootless        ownfs mount SRC MNT --run-as UID:GID, SRC owned by UID:GID
#                   (default 4000:4000)
#   pipe            fuse-pipe: ownfs serve SRC --listen unix:SOCK (as root) and
#                   ownfs client MNT --connect unix:SOCK
#   pipe-rootless   as pipe, with ownfs serve ... --run-as UID:GID (not default)
#
# Options:
#   --ops N        operations per mode, split evenly over the seeds
#                  (default 120000)
#   --seeds "S.."  fsx seeds, run one after another in each mode (default "1 2 3")
#   --jobs N       modes run at the same time (default 2)
#   --no-build     use the existing target/release/ownfs
#   --no-deps      skip scripts/test-deps.sh
#
# A longer soak, e.g. before a release (about 8x the default; 15-30 min on
# 2 cores for the 5 default modes; the default run takes about 2-3 min):
#   scripts/fsx.sh --ops 1000000 --seeds "11 12 13 14"
# Fresh seeds each time: scripts/fsx.sh --seeds "$RANDOM $RANDOM $RANDOM"
#
# Reproduce a failure: each FAILED line ends with the command that replays the
# same operation sequence, `scripts/fsx.sh --ops OPS --seeds SEED MODE` with OPS
# the operations of one fsx run.
#
# Environment:
#   OWNFS_BIN       ownfs binary (default target/release/ownfs)
#   RUST_LOG        ownfs log level (default warn)
#   OWNFS_FSX_WORK  where the source directories and mountpoints go
#                   (default /var/tmp/ownfs-fsx)
#   OWNFS_FSX_RUN_AS  UID:GID of the rootless server (default 4000:4000)
#   FSX_TIMEOUT     seconds allowed per fsx run (default 120 + 1 per 200 of its
#                   operations)
#   FSX_ARGS        extra fsx arguments, e.g. "-v"; "--inject 100" (fsx skips
#                   operation 100, a simulated lost write) checks that the
#                   harness reports a mismatch
#
# Output: one line per mode, `fsx[MODE]: N operations, M mismatches, seeds S1,S2`
# (N counts the operations of the runs that completed; M is the number of runs
# that found wrong data or a wrong file size; fsx stops at its first). On any
# failure also `fsx[MODE]: FAILED seed S: ...` with the artifact directory
# (target/fsx/MODE/seed-S: fsx's log with its operation history, the expected
# contents FILE.fsxgood, the actual contents FILE.fsxbad, the ownfs logs), and
# the exit status is 1. Mounts and servers are always cleaned up, also on
# errors and on SIGINT/SIGTERM.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
FSX="$REPO/.tools/bin/fsx"
FSX_CONFIG="$REPO/scripts/fsx.toml"
ARTIFACTS="$REPO/target/fsx"
WORK="${OWNFS_FSX_WORK:-/var/tmp/ownfs-fsx}"
ALL_MODES=(root root-served writeback rootless pipe pipe-rootless)
DEFAULT_MODES=(root root-served writeback rootless pipe)

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

ops=120000
seeds_arg="1 2 3"
jobs=2
build=1
deps=1
modes=()
while (($#)); do
    case $1 in
    --ops) ops=${2:-}; shift ;;
    --seeds) seeds_arg=${2:-}; shift ;;
    --jobs) jobs=${2:-}; shift ;;
    --no-build) build=0 ;;
    --no-deps) deps=0 ;;
    -h | --help) usage; exit 0 ;;
    -*) die "unknown option '$1' (try --help)" ;;
    *)
        [[ " ${ALL_MODES[*]} " == *" $1 "* ]] || die "unknown mode '$1' (try --help)"
        modes+=("$1")
        ;;
    esac
    shift
done
((${#modes[@]})) || modes=("${DEFAULT_MODES[@]}")
read -r -a seeds <<<"$seeds_arg"
[[ $ops =~ ^[1-9][0-9]*$ ]] || die "--ops needs a positive number"
[[ $jobs =~ ^[1-9][0-9]*$ ]] || die "--jobs needs a positive number"
((${#seeds[@]})) || die "--seeds needs at least one seed"
for s in "${seeds[@]}"; do
    [[ $s =~ ^[0-9]+$ ]] || die "seeds are unsigned integers (got '$s')"
done
read_run_as OWNFS_FSX_RUN_AS
[[ $EUID -eq 0 ]] || die "must run as root (it mounts FUSE file systems)"

fsx_args=()
read -r -a fsx_args <<<"${FSX_ARGS:-}"

# Operations per fsx run (rounded up, so the total is at least --ops).
per_seed=$(((ops + ${#seeds[@]} - 1) / ${#seeds[@]}))
timeout_s="${FSX_TIMEOUT:-$((120 + per_seed / 200))}"

# --- one mode (runs in a subshell, see scripts/lib.sh) -----------------------------

mnt_of() { echo "$WORK/$1/mnt"; }

write_result() { # [operations mismatches]
    {
        printf 'r_ops=%d\nr_mismatches=%d\n' "${1:-0}" "${2:-0}"
        printf 'r_failures=%q\n' "$failures"
        printf 'r_trouble=%q\n' "$trouble"
        printf 'r_wall=%d\n' $((SECONDS - mode_start))
    } >"$result.tmp"
    mv "$result.tmp" "$result"
}

run_mode() {
    mode=$1
    mode_start=$SECONDS
    local dir="$WORK/$mode" src mnt sock
    local art="$ARTIFACTS/$mode"
    src="$dir/src"
    mnt="$(mnt_of "$mode")"
    sock="$dir/pipe.sock"
    mode_log="$art/harness.log"
    result="$ARTIFACTS/$mode.result"
    failures=""
    rm -rf "$art" "$result"
    mkdir -p "$art"
    : >"$mode_log"

    trap cleanup_mode EXIT
    trap 'trouble+="interrupted; "; write_result; exit 130' INT TERM

    remove_stale_mount "$mnt"
    rm -rf --one-file-system "$dir"
    mkdir -p "$src" "$mnt"
    chmod 0755 "$dir" "$src"
    case $mode in
    rootless | pipe-rootless) chown "$RUN_AS" "$src" ;;
    esac
    mode_mnt="$mnt"
    mode_dirs=("$dir")

    case $mode in
    root-served) ownfs_flags=(--no-passthrough) ;;
    writeback) ownfs_flags=(--writeback) ;;
    rootless) ownfs_flags=(--run-as "$RUN_AS") ;;
    pipe-rootless) serve_flags=(--run-as "$RUN_AS") ;;
    esac
    export RUST_LOG="${RUST_LOG:-warn}" # ownfs's and fsx's log level
    if [[ $mode == pipe* ]]; then
        mount_ownfs "$src" "$art/ownfs.log" "$sock" "$art/ownfs-serve.log"
    else
        mount_ownfs "$src" "$art/ownfs.log"
    fi

    local seed rc done_ops=0 mismatches=0 file sart what who
    for seed in "${seeds[@]}"; do
        file="fsx-$seed"
        sart="$art/seed-$seed"
        mkdir -p "$sart"
        note "+ fsx -f $FSX_CONFIG -N $per_seed -S $seed -P $sart ${fsx_args[*]} $mnt/$file"
        rc=0
        run_test "$sart" timeout -k 10 "$timeout_s" "$FSX" -f "$FSX_CONFIG" \
            -N "$per_seed" -S "$seed" -P "$sart" "${fsx_args[@]}" "$mnt/$file" \
            >"$sart/fsx.log" 2>&1 || rc=$?
        note "fsx exit status: $rc"
        if ((rc == 0)) && grep -q 'All operations completed A-OK' "$sart/fsx.log"; then
            done_ops=$((done_ops + per_seed))
            rm -rf "$sart"
            continue
        fi
        # Keep what the file really holds, next to fsx's expected .fsxgood.
        cp "$src/$file" "$sart/$file.fsxbad" 2>/dev/null || true
        if grep -Eq 'miscompare|Size error|short read|short write|Short read' "$sart/fsx.log"; then
            mismatches=$((mismatches + 1))
            what="data mismatch"
        elif ((rc == 124 || rc == 137)); then
            what="fsx timed out after ${timeout_s}s"
        else
            what="fsx failed (exit status $rc)"
        fi
        # The first error line says what went wrong (a panic's reason is on the
        # line after it).
        what+=": $(awk '/panicked at/ { p = $0; getline; print p " " $0; exit }
                        /ERROR|error/ { print; exit }' "$sart/fsx.log" | cut -c1-300)"
        failures+="seed $seed: $what (artifacts $sart; rerun: scripts/fsx.sh --ops $per_seed --seeds $seed $mode)"$'\n'
        if who="$(dead_server)"; then
            trouble+="$who died during fsx seed $seed; "
            break
        fi
    done

    cleanup_mode
    # Each failure's artifact directory gets the server logs too.
    for sart in "$art"/seed-*/; do
        [[ -d $sart ]] || continue
        cp "$art/ownfs.log" "$sart" 2>/dev/null || true
        [[ -f $art/ownfs-serve.log ]] && cp "$art/ownfs-serve.log" "$sart"
    done
    write_result "$done_ops" "$mismatches"
}

# --- main -----------------------------------------------------------------------

if ((deps)); then
    "$REPO/scripts/test-deps.sh"
fi
if ((build)) && [[ -z ${OWNFS_BIN:-} ]]; then
    echo "== cargo build --release"
    (cd "$REPO" && cargo build --release --quiet)
fi
[[ -x $OWNFS ]] || die "$OWNFS not found"
[[ -x $FSX ]] || die "$FSX not found (run scripts/test-deps.sh)"
[[ -f $FSX_CONFIG ]] || die "$FSX_CONFIG not found"

lock_work "$WORK"
mkdir -p "$ARTIFACTS"
mounts=()
for m in "${modes[@]}"; do
    mounts+=("$(mnt_of "$m")")
done
trap_modes "${mounts[@]}"

started=$SECONDS
echo "== fsx: ${modes[*]}; $per_seed operations x seeds ${seeds[*]} per mode, $jobs at a time"
run_modes "$jobs" "${modes[@]}"

overall=0
seed_list="$(
    IFS=,
    echo "${seeds[*]}"
)"
for m in "${modes[@]}"; do
    r_ops=0 r_mismatches=0 r_failures="" r_trouble="harness error (no result file)" r_wall="?"
    # shellcheck disable=SC1090
    [[ -f $ARTIFACTS/$m.result ]] && source "$ARTIFACTS/$m.result"
    while IFS= read -r line; do
        [[ -n $line ]] || continue
        echo "fsx[$m]: FAILED $line"
        overall=1
    done <<<"$r_failures"
    if [[ -n $r_trouble ]]; then
        echo "fsx[$m]: ERROR: ${r_trouble%; } (log $ARTIFACTS/$m/harness.log)"
        overall=1
    fi
    echo "fsx[$m]: $r_ops operations, $r_mismatches mismatches, seeds $seed_list (${r_wall}s)"
done
echo "== fsx: $((SECONDS - started))s"
exit "$overall"
