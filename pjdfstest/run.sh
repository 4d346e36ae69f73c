#!/usr/bin/env bash
# POSIX compliance harness: runs the pjdfstest suites on ownfs mounts, one run per
# mode: the Rust rewrite (0.2.2, 397 tests) and then, on the same mount, the original C
# suite (8798 tests on FUSE; pjdfstest/build-c.sh builds it outside the tree).
#
# usage: pjdfstest/run.sh [options] [MODE...] [-- PATTERN...]
#
# Modes (default: the four ownfs modes, run in parallel):
#   default_permissions      ownfs mount SRC /mnt/wk
#   no-default-permissions   ownfs mount SRC /mnt/wn --no-default-permissions
#   writeback                ownfs mount SRC /mnt/ww --writeback
#   rootless                 ownfs mount SRC /mnt/wr --run-as UID:GID, SRC owned by
#                            UID:GID (default 4000:4000, which has no passwd entry):
#                            ownership is virtualized; pjdfstest still runs as root
#   pipe-root                fuse-pipe: ownfs serve SRC --listen unix:SOCK (as root) and
#                            ownfs client /mnt/wp --connect unix:SOCK
#   pipe-rootless            fuse-pipe with ownfs serve SRC ... --run-as UID:GID (SRC owned
#                            by UID:GID, as in rootless), client /mnt/wq
#   native                   no FUSE: the suite runs on a host directory
#                            (baseline for comparison; not in the default set)
#   --mounted NAME=MNT       mode NAME on a file system someone else mounted at MNT
#                            and will unmount (scripts/vm/guest.sh: virtio-fs and
#                            vsock mounts inside a VM); repeatable
#
# Options:
#   --native     same as the single mode `native` (or OWNFS_PJD_NATIVE=1)
#   --serial     run the modes one after another instead of in parallel
#   --no-build   use the existing target/release/ownfs
#   --no-deps    skip scripts/test-deps.sh
#   --keep       keep the source directories for inspection
#   --suite S    rust, c or both (default both)
#   -- PATTERN   only run the pjdfstest tests whose names contain PATTERN
#
# Environment:
#   OWNFS_BIN          ownfs binary (default target/release/ownfs)
#   OWNFS_ARGS         extra arguments for `ownfs mount` in every mode (not the pipe modes)
#   OWNFS_PIPE_ARGS    extra arguments for `ownfs client` in the pipe modes
#   RUST_LOG           ownfs log level (default warn); its log is MODE.ownfs.log
#   PJDFSTEST_TIMEOUT  seconds allowed per pjdfstest pass (default 600; a pass takes ~5 s)
#   OWNFS_PJD_WORK     where the source directories go (default /var/tmp/ownfs-pjd)
#   PJDFSTEST_CONFIG   pjdfstest config (default pjdfstest/pjdfstest.toml)
#   OWNFS_PJD_LOGS     where the logs go (default target/pjdfstest)
#   OWNFS_PJD_RUN_AS   UID:GID the rootless server drops to (default 4000:4000)
#   OWNFS_PJDC_DIRS    C suite: only these test directories (e.g. "chmod open"; default all);
#                      MODE=DIR names one for that mode only
#   OWNFS_PJDC_JOBS    C suite: prove's parallel jobs (default twice the CPUs, 2 to 4)
#   OWNFS_PJDC_TIMEOUT C suite: seconds allowed per mode (default 1200; ~90 s on the host)
#
# Output: summary lines per mode, `pjdfstest[MODE]: N passed, N failed, N skipped`
# and `pjdfstest-c[MODE]: N passed, N failed` (tests, not files), each preceded by its
# wall time; full logs in target/pjdfstest/ (MODE.log, MODE.c.log). Exit status is
# nonzero when a test fails that is not listed in pjdfstest/expected-failures.txt
# (C tests are listed as c:DIR/NN.t:N), or a mount/unmount/server problem occurs.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERE="$REPO/pjdfstest"
CONFIG="${PJDFSTEST_CONFIG:-$HERE/pjdfstest.toml}"
EXPECTED="$HERE/expected-failures.txt"
RETRY_ONCE="$HERE/retry-once.txt"
PJDFSTEST="$REPO/.tools/bin/pjdfstest"
OWNFS="${OWNFS_BIN:-$REPO/target/release/ownfs}"
LOGDIR="${OWNFS_PJD_LOGS:-$REPO/target/pjdfstest}"
WORK="${OWNFS_PJD_WORK:-/var/tmp/ownfs-pjd}"
TIMEOUT="${PJDFSTEST_TIMEOUT:-600}"
ALL_MODES=(default_permissions no-default-permissions writeback rootless pipe-root pipe-rootless)
RUN_AS="${OWNFS_PJD_RUN_AS:-4000:4000}"
if [[ ! $RUN_AS =~ ^[0-9]+:[0-9]+$ ]] || [[ $RUN_AS == 0:* || $RUN_AS == *:0 ]]; then
    echo "run.sh: OWNFS_PJD_RUN_AS must be UID:GID, not root (got '$RUN_AS')" >&2
    exit 2
fi

# Short mountpoints: see check_path_length.
declare -A MNT=(
    [default_permissions]=/mnt/wk
    [no-default-permissions]=/mnt/wn
    [writeback]=/mnt/ww
    [rootless]=/mnt/wr
    [pipe-root]=/mnt/wp
    [pipe-rootless]=/mnt/wq
)
declare -A FLAGS=(
    [default_permissions]=""
    [no-default-permissions]="--no-default-permissions"
    [writeback]="--writeback"
    [rootless]="--run-as $RUN_AS"
    [pipe-root]=""
    [pipe-rootless]=""
)
# Pipe modes: arguments of the `ownfs serve` side (FLAGS are the client's).
declare -A SERVE_FLAGS=(
    [pipe-root]=""
    [pipe-rootless]="--run-as $RUN_AS"
)
# --mounted modes: NAME -> MNT, mounted and unmounted by the caller.
declare -A MOUNTED=()

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

modes=()
patterns=()
parallel=1
build=1
deps=1
keep=0
suite=both
[[ ${OWNFS_PJD_NATIVE:-0} == 1 ]] && modes=(native)
while (($#)); do
    case $1 in
    --native) modes=(native) ;;
    --serial) parallel=0 ;;
    --no-build) build=0 ;;
    --no-deps) deps=0 ;;
    --keep) keep=1 ;;
    --suite)
        [[ ${2:-} =~ ^(rust|c|both)$ ]] || { echo "run.sh: --suite needs rust, c or both" >&2; exit 2; }
        suite=$2
        shift
        ;;
    -h | --help) usage; exit 0 ;;
    --mounted)
        [[ ${2:-} =~ ^([A-Za-z0-9_-]+)=(/.+)$ ]] || {
            echo "run.sh: --mounted needs NAME=MNT (got '${2:-}')" >&2
            exit 2
        }
        MOUNTED[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
        MNT[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
        modes+=("${BASH_REMATCH[1]}")
        shift
        ;;
    --) shift; patterns=("$@"); break ;;
    default_permissions | no-default-permissions | writeback | rootless | pipe-root | pipe-rootless | native) modes+=("$1") ;;
    *) echo "run.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done
((${#modes[@]})) || modes=("${ALL_MODES[@]}")

if [[ $EUID -ne 0 ]]; then
    echo "run.sh: must run as root (FUSE mounts, and pjdfstest switches users)" >&2
    exit 2
fi

# --- helpers ------------------------------------------------------------------

now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# pjdfstest 0.2.2 builds a path of exactly PATH_MAX-1 bytes out of NAME_MAX/2
# components; the last component's length is computed as
# (4095 - base_len) % 127 - 1, which underflows when that remainder is 0 and
# the test panics with 'capacity overflow'. Its base is
# <path>/.tmpXXXXXX/.tmpXXXXXX, i.e. len(path) + 22, so any path whose length
# is 9 modulo 127 hits it (e.g. /mnt/wk1xy). Refuse such paths up front.
check_path_length() {
    local len=${#1}
    if (((4095 - len - 22) % 127 == 0)); then
        echo "run.sh: path '$1' has length $len, which makes pjdfstest 0.2.2's" \
            "enametoolong_path tests panic; choose another length" >&2
        return 1
    fi
}

# Mount table look-ups read /proc/self/mountinfo only: stat(2) on a hung FUSE
# mount could block. (Paths here are plain, so mountinfo's escaping is moot.)
fstype_of() {
    awk -v m="$1" '{ for (i = 7; i <= NF; i++) if ($i == "-") break
                     if ($5 == m) t = $(i + 1) }
                   END { if (t == "") exit 1; print t }' /proc/self/mountinfo
}
is_mounted() { fstype_of "$1" >/dev/null; }
# Mounts strictly below $1, deepest first (left by an interrupted rmdir test).
submounts_of() {
    awk -v m="$1/" 'index($5, m) == 1 { print $5 }' /proc/self/mountinfo | sort -r
}
# Is process $1 running (not gone, not a zombie)?
alive() {
    local state
    state="$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null)" || return 1
    [[ -n $state && $state != Z ]]
}

# Abort the FUSE connection behind mountpoint $1 (for a hung or dead server),
# so that unmounting cannot block.
abort_fuse() {
    local mnt=$1 majmin minor conn=/sys/fs/fuse/connections
    majmin="$(awk -v m="$mnt" '$5 == m { v = $3 } END { print v }' /proc/self/mountinfo)"
    [[ $majmin == 0:* ]] || return 0
    minor=${majmin#0:}
    if [[ ! -e $conn/$minor ]] && ! findmnt -rn --mountpoint "$conn" >/dev/null; then
        mount -t fusectl fusectl "$conn" 2>/dev/null || true
    fi
    if [[ -w $conn/$minor/abort ]]; then
        echo 1 >"$conn/$minor/abort" 2>/dev/null || true
    fi
}

# Unmount everything at and below $1, however stuck it is.
force_unmount() {
    local mnt=$1
    is_mounted "$mnt" || return 0
    local sub
    for sub in $(submounts_of "$mnt"); do
        umount -l "$sub" 2>/dev/null || true
    done
    timeout 20 umount -R "$mnt" 2>/dev/null && return 0
    abort_fuse "$mnt"
    timeout 20 umount -R "$mnt" 2>/dev/null && return 0
    umount -R -l "$mnt" 2>/dev/null || fusermount3 -u -z "$mnt" 2>/dev/null || true
    ! is_mounted "$mnt"
}

# Failed tests of log $1 that pjdfstest/retry-once.txt allows one more run.
retry_candidates() {
    [[ -f $RETRY_ONCE ]] || return 0
    sed -nE 's/^([^[:space:]]+)[[:space:]]+FAILED$/\1/p' "$1" | sort -u |
        grep -xF -f <(sed -E 's/#.*//; s/[[:space:]]+$//; /^$/d' "$RETRY_ONCE") || true
}

# Expected failures for mode $1, one name a line.
expected_for() {
    local mode=$1 line name rest
    [[ -f $EXPECTED ]] || return 0
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line%%#*}
        read -r name rest <<<"$line" || true
        [[ -n ${name:-} ]] || continue
        if [[ -z ${rest:-} ]] || [[ " $rest " == *" $mode "* ]]; then
            echo "$name"
        fi
    done <"$EXPECTED"
}

# --- one mode -------------------------------------------------------------------

# Runs in its own subshell. Writes $LOGDIR/$mode.log, $mode.ownfs.log and
# $mode.result (shell assignments read back by the parent).
server_pid=""
pipe_pid=""
pjd_pid=""
mode_mnt=""
mode_dir=""
mode_other=""

# shellcheck disable=SC2317 # also invoked by a trap
cleanup_mode() {
    local rc=0 t
    if [[ -n $pjd_pid ]] && alive "$pjd_pid"; then
        kill -TERM "$pjd_pid" 2>/dev/null || true
        wait "$pjd_pid" 2>/dev/null || true
    fi
    pjd_pid=""
    if [[ -n $server_pid ]]; then
        if alive "$server_pid"; then
            # Mounts left inside (an interrupted rmdir EBUSY test bind-mounts)
            # would keep the mount busy.
            for t in $(submounts_of "$mode_mnt"); do
                umount -l "$t" 2>/dev/null || true
            done
            # SIGTERM rather than SIGINT: background jobs of a non-interactive
            # shell start with SIGINT ignored.
            kill -TERM "$server_pid" 2>/dev/null || true
            for ((t = 0; t < 100; t++)); do
                alive "$server_pid" || break
                sleep 0.1
            done
            if alive "$server_pid"; then
                echo "ownfs did not exit within 10 s of SIGTERM" >>"$mode_log"
                server_trouble+="no exit on SIGTERM; "
                abort_fuse "$mode_mnt"
                kill -KILL "$server_pid" 2>/dev/null || true
            fi
        fi
        wait "$server_pid" 2>/dev/null && rc=0 || rc=$?
        echo "ownfs exit status: $rc" >>"$mode_log"
        ((rc == 0)) || server_trouble+="ownfs exited with status $rc; "
        server_pid=""
    fi
    # Pipe modes: the host side goes after the client that talks to it.
    if [[ -n $pipe_pid ]]; then
        if alive "$pipe_pid"; then
            kill -TERM "$pipe_pid" 2>/dev/null || true
            for ((t = 0; t < 100; t++)); do
                alive "$pipe_pid" || break
                sleep 0.1
            done
            if alive "$pipe_pid"; then
                echo "ownfs serve did not exit within 10 s of SIGTERM" >>"$mode_log"
                server_trouble+="serve: no exit on SIGTERM; "
                kill -KILL "$pipe_pid" 2>/dev/null || true
            fi
        fi
        wait "$pipe_pid" 2>/dev/null && rc=0 || rc=$?
        echo "ownfs serve exit status: $rc" >>"$mode_log"
        ((rc == 0)) || server_trouble+="ownfs serve exited with status $rc; "
        pipe_pid=""
    fi
    if [[ -n $mode_mnt ]] && is_mounted "$mode_mnt"; then
        echo "$mode_mnt still mounted after ownfs exited; forcing unmount" >>"$mode_log"
        server_trouble+="left $mode_mnt mounted; "
        force_unmount "$mode_mnt" || server_trouble+="could not unmount $mode_mnt; "
    fi
    if [[ -n $mode_dir && $keep == 0 ]] && ! { [[ -n $mode_mnt ]] && is_mounted "$mode_mnt"; }; then
        rm -rf --one-file-system "$mode_dir"
    fi
    mode_dir=""
    if [[ -n $mode_other ]]; then
        rm -rf --one-file-system "$mode_other"
        mode_other=""
    fi
}

run_mode() {
    local mode=$1
    local start mnt dir src other
    start="$(now)"
    mode_log="$LOGDIR/$mode.log"
    local server_log="$LOGDIR/$mode.ownfs.log" result="$LOGDIR/$mode.result"
    server_trouble=""
    : >"$mode_log"
    rm -f "$result" "$server_log" "$LOGDIR/$mode.c.counts" "$LOGDIR/$mode.c.log"

    trap 'cleanup_mode' EXIT
    trap 'echo "interrupted" >>"$mode_log"; exit 130' INT TERM

    dir="$WORK/$mode"
    src="$dir/src"
    other="$dir/other"

    note() { echo "$*" >>"$mode_log"; }
    fail_setup() {
        note "SETUP FAILED: $*"
        server_trouble+="$*; "
        cleanup_mode
        finish_mode "$start" 0
        exit 1
    }

    # A stale mount from an earlier, killed run must go before its directory.
    if [[ $mode == native ]]; then
        mnt="$src"
    elif [[ -n ${MOUNTED[$mode]:-} ]]; then
        mnt="${MOUNTED[$mode]}"
        is_mounted "$mnt" || fail_setup "--mounted $mode=$mnt: nothing is mounted there"
    else
        mnt="${MNT[$mode]}"
        if is_mounted "$mnt"; then
            if [[ "$(fstype_of "$mnt")" != fuse.ownfs ]]; then
                fail_setup "$mnt is already mounted ($(fstype_of "$mnt")), not by ownfs"
            fi
            note "removing stale ownfs mount at $mnt"
            force_unmount "$mnt" || fail_setup "cannot unmount stale $mnt"
        fi
    fi
    rm -rf --one-file-system "$dir"
    mkdir -p "$src" "$other"
    chmod 0755 "$WORK" "$dir" "$src"
    if [[ $mode == rootless || $mode == pipe-rootless ]]; then
        # The server drops to RUN_AS after mounting and must own what it serves.
        chown "$RUN_AS" "$src"
    fi
    mode_dir="$dir"
    check_path_length "$mnt" 2>>"$mode_log" || fail_setup "bad path length for $mnt"

    # Pass 1 runs the whole suite with allow_remount off. The erofs tests
    # (remount read-only, try, remount read-write) run in a pass 2 of their
    # own when the config enables allow_remount: a remount to read-only fails
    # with EBUSY while any file on the mount is open for writing, and
    # posix_fallocate::affected_only_create_flags leaks two such descriptors
    # for the rest of pjdfstest's process.
    local sfs=() path="$PATH" remount=0 passes=1 retried=""
    local cfg1="$dir/pass1.toml" cfg2="$dir/pass2.toml"
    sed 's/^allow_remount *=.*/allow_remount = false/' "$CONFIG" >"$cfg1"
    sed 's/^allow_remount *=.*/allow_remount = true/' "$CONFIG" >"$cfg2"
    if [[ $mode != native ]] && grep -Eq '^allow_remount *= *true' "$CONFIG"; then
        remount=1
    fi
    if [[ $mode == native ]]; then
        # Needs another file system than the one under test.
        if [[ -d /dev/shm && "$(stat -c %d /dev/shm)" != "$(stat -c %d "$src")" ]]; then
            mode_other=/dev/shm/ownfs-pjd-other
            mkdir -p "$mode_other"
            sfs=(-s "$mode_other")
        fi
    else
        # Anything outside the FUSE mount is another file system.
        sfs=(-s "$other")
        # The erofs tests run `mount -o remount,ro MNT`; for a fuse.* type
        # mount(8) hands that to the mount.fuse3 helper, which cannot remount.
        # Give pjdfstest a `mount` that does remounts itself (-i: no helper).
        mkdir -p "$dir/bin"
        printf '%s\n' '#!/bin/sh' \
            'case " $* " in *remount*) exec /usr/bin/mount -i "$@" ;; esac' \
            'exec /usr/bin/mount "$@"' >"$dir/bin/mount"
        chmod 0755 "$dir/bin/mount"
        path="$dir/bin:$PATH"
        local flags=()
        if [[ -n ${MOUNTED[$mode]:-} ]]; then
            note "on $mnt: $(grep -F " $mnt " /proc/self/mountinfo)"
        else
            mkdir -p "$mnt"
            mode_mnt="$mnt"
            if [[ $mode == pipe-* ]]; then
                local sock="$dir/pipe.sock" serve_flags=()
                # shellcheck disable=SC2206 # word splitting of the flag strings is intended
                serve_flags=(${SERVE_FLAGS[$mode]})
                note "+ ownfs serve $src --listen unix:$sock ${serve_flags[*]}"
                RUST_LOG="${RUST_LOG:-warn}" "$OWNFS" serve "$src" --listen "unix:$sock" \
                    "${serve_flags[@]}" </dev/null >"$LOGDIR/$mode.serve.log" 2>&1 &
                pipe_pid=$!
                for ((t = 0; t < 100; t++)); do
                    [[ -S $sock ]] && break
                    alive "$pipe_pid" || break
                    sleep 0.1
                done
                if [[ ! -S $sock ]]; then
                    tail -n 20 "$LOGDIR/$mode.serve.log" >>"$mode_log" 2>/dev/null || true
                    fail_setup "ownfs serve did not listen on $sock within 10 s"
                fi
                # shellcheck disable=SC2206 # word splitting of the flag strings is intended
                flags=(${FLAGS[$mode]} ${OWNFS_PIPE_ARGS:-})
                note "+ ownfs client $mnt --connect unix:$sock ${flags[*]}"
                RUST_LOG="${RUST_LOG:-warn}" "$OWNFS" client "$mnt" --connect "unix:$sock" \
                    "${flags[@]}" </dev/null >"$server_log" 2>&1 &
            else
                # shellcheck disable=SC2206 # word splitting of the flag strings is intended
                flags=(${FLAGS[$mode]} ${OWNFS_ARGS:-})
                note "+ ownfs mount $src $mnt ${flags[*]}"
                RUST_LOG="${RUST_LOG:-warn}" "$OWNFS" mount "$src" "$mnt" "${flags[@]}" \
                    </dev/null >"$server_log" 2>&1 &
            fi
            server_pid=$!
            local t ready=0
            for ((t = 0; t < 300; t++)); do
                if [[ "$(fstype_of "$mnt")" == fuse.ownfs ]]; then
                    ready=1
                    break
                fi
                alive "$server_pid" || break
                sleep 0.1
            done
            if ((!ready)); then
                tail -n 20 "$server_log" >>"$mode_log" 2>/dev/null || true
                fail_setup "ownfs did not mount $mnt within 30 s"
            fi
            note "mounted: $(grep -F " $mnt " /proc/self/mountinfo)"
        fi
    fi

    run_pjdfstest() { # config, pjdfstest arguments...
        local cfg=$1 rc=0
        shift
        note "+ pjdfstest -c $cfg -p $mnt ${sfs[*]} $*"
        note ""
        # pjdfstest runs in the mountpoint's directory (it is its cwd too).
        (cd "$mnt" && exec env NO_COLOR=1 PATH="$path" timeout -k 10 "$TIMEOUT" \
            "$PJDFSTEST" -c "$cfg" -p "$mnt" "${sfs[@]}" "$@") \
            >>"$mode_log" 2>&1 </dev/null &
        pjd_pid=$!
        wait "$pjd_pid" || rc=$?
        pjd_pid=""
        note ""
        case $rc in
        124 | 137)
            note "pjdfstest TIMED OUT after ${TIMEOUT}s"
            server_trouble+="timeout; "
            return 1
            ;;
        esac
        if [[ -n $server_pid ]] && ! alive "$server_pid"; then
            note "ownfs died during the run"
            server_trouble+="ownfs died during the run; "
            return 1
        fi
        if [[ -n $pipe_pid ]] && ! alive "$pipe_pid"; then
            note "ownfs serve died during the run"
            server_trouble+="ownfs serve died during the run; "
            return 1
        fi
    }

    # The C suite runs from a directory on the file system under test; every .t file
    # makes its own randomly named entries there.
    run_c_suite() {
        local c_start rc=0 cwd="$mnt/pjdc" c_log="$LOGDIR/$mode.c.log" dirs=() d
        c_start="$(now)"
        for d in ${OWNFS_PJDC_DIRS:-}; do
            [[ $d == *=* && ${d%%=*} != "$mode" ]] && continue
            dirs+=("$C_BUILD/tests/${d#*=}")
        done
        ((${#dirs[@]})) || dirs=("$C_BUILD/tests")
        mkdir -p "$cwd" && chmod 0755 "$cwd"
        note "+ (cd $cwd && prove -r -j$C_JOBS ${dirs[*]#"$C_BUILD"/}) > ${c_log#"$REPO"/}"
        (cd "$cwd" && exec env PATH="$path" timeout -k 10 "${OWNFS_PJDC_TIMEOUT:-1200}" \
            prove -r -j"$C_JOBS" "${dirs[@]}") >"$c_log" 2>&1 </dev/null &
        pjd_pid=$!
        wait "$pjd_pid" || rc=$?
        pjd_pid=""
        case $rc in
        124 | 137) server_trouble+="C suite timed out; " ;;
        esac
        grep -qE '^Files=[0-9]+, Tests=[0-9]+' "$c_log" || server_trouble+="C suite did not finish; "
        if [[ -n $server_pid ]] && ! alive "$server_pid"; then server_trouble+="ownfs died during the C suite; "; fi
        if [[ -n $pipe_pid ]] && ! alive "$pipe_pid"; then server_trouble+="ownfs serve died during the C suite; "; fi
        python3 "$HERE/prove-summary.py" "$c_log" "$C_BUILD/tests" >"$LOGDIR/$mode.c.counts"
        echo "c_wall=$(elapsed "$c_start")" >>"$LOGDIR/$mode.c.counts"
        rm -rf --one-file-system "$cwd" 2>/dev/null || true
    }

    if [[ $suite == c ]]; then
        passes=0
    elif run_pjdfstest "$cfg1" "${patterns[@]}" && ((remount)); then
        local remount_tests=()
        mapfile -t remount_tests < <(awk '
            /^[^[:space:]]+[[:space:]]+skipped$/ { name = $1; next }
            /^\t/ && name != "" && /allow_remount/ { print name; name = "" }
            !/^\t/ { name = "" }' "$mode_log")
        if ((${#remount_tests[@]})); then
            passes=2
            # -e compares the full names, before pjdfstest shortens them.
            run_pjdfstest "$cfg2" -e "${remount_tests[@]/#/pjdfstest::tests::}" || true
        fi
    fi

    # Listed timing-dependent tests that failed get one more run; the last result counts.
    local retry=()
    mapfile -t retry < <(retry_candidates "$mode_log")
    if ((${#retry[@]})) && [[ -z $server_trouble ]]; then
        passes=$((passes + 1))
        retried="${retry[*]}"
        run_pjdfstest "$cfg1" -e "${retry[@]/#/pjdfstest::tests::}" || true
    fi

    if [[ $suite != rust && -n $C_BUILD && -z $server_trouble ]]; then
        run_c_suite
    fi

    cleanup_mode
    if (($(grep -cE '^Summary: ' "$mode_log" || true) < passes)); then
        server_trouble+="pjdfstest did not finish (no Summary line); "
    fi
    finish_mode "$start" 1
}

# Count results from the log and write $LOGDIR/$mode.result.
finish_mode() {
    local start=$1 ran=$2 passed=0 failed=0 skipped=0 name
    local -a failures=() unexpected=() expected_hit=() expected_list=() stale=()
    local -A result=()
    if ((ran)); then
        # A test's last result counts (pass 2 reruns tests that pass 1 skipped).
        local res
        while read -r name res; do
            result[$name]=$res
        done < <(sed -nE 's/^([^[:space:]]+)[[:space:]]+(ok|skipped|FAILED|PASSED UNEXPECTEDLY|failed as expected)$/\1 \2/p' \
            "$mode_log")
        for name in "${!result[@]}"; do
            case ${result[$name]} in
            ok) passed=$((passed + 1)) ;;
            skipped) skipped=$((skipped + 1)) ;;
            *) failures+=("$name") ;;
            esac
        done
        failed=${#failures[@]}
        if ((failed)); then
            mapfile -t failures < <(printf '%s\n' "${failures[@]}" | sort)
        fi
    fi
    mapfile -t expected_list < <(expected_for "$mode")
    local c_passed="" c_failed=0 c_failures="" c_wall="" c_unexpected=() c_expected=()
    # shellcheck disable=SC1091
    [[ -f $LOGDIR/$mode.c.counts ]] && source "$LOGDIR/$mode.c.counts"
    for name in $c_failures; do
        if printf '%s\n' "${expected_list[@]}" | grep -qxF -- "$name"; then
            c_expected+=("$name")
        else
            c_unexpected+=("$name")
        fi
    done
    for name in "${failures[@]}"; do
        if printf '%s\n' "${expected_list[@]}" | grep -qxF -- "$name"; then
            expected_hit+=("$name")
        else
            unexpected+=("$name")
        fi
    done
    if ((ran)); then
        for name in "${expected_list[@]}"; do
            [[ ${result[$name]:-} != ok ]] || stale+=("$name")
        done
    fi
    {
        printf 'r_passed=%d\nr_failed=%d\nr_skipped=%d\n' "$passed" "$failed" "$skipped"
        printf 'r_wall=%s\n' "$(elapsed "$start")"
        printf 'r_unexpected=%q\n' "${unexpected[*]}"
        printf 'r_expected=%q\n' "${expected_hit[*]}"
        printf 'r_trouble=%q\n' "${server_trouble}"
        printf 'r_stale=%q\n' "${stale[*]}"
        printf 'r_retried=%q\n' "${retried:-}"
        printf 'r_c_passed=%q\nr_c_failed=%q\nr_c_wall=%q\n' "$c_passed" "$c_failed" "$c_wall"
        printf 'r_c_unexpected=%q\nr_c_expected=%q\n' "${c_unexpected[*]}" "${c_expected[*]}"
    } >"$mode_log.result.tmp"
    mv "$mode_log.result.tmp" "$LOGDIR/$mode.result"
}

# --- main ---------------------------------------------------------------------

for m in "${modes[@]}"; do
    if [[ $m != native && -z ${MOUNTED[$m]:-} ]]; then
        need_ownfs=1
    fi
done

if ((deps)); then
    "$REPO/scripts/test-deps.sh"
fi
if ((build)) && [[ ${need_ownfs:-0} == 1 && -z ${OWNFS_BIN:-} ]]; then
    echo "== cargo build --release"
    (cd "$REPO" && cargo build --release --quiet)
fi
if [[ ${need_ownfs:-0} == 1 && ! -x $OWNFS ]]; then
    echo "run.sh: $OWNFS not found" >&2
    exit 2
fi
if [[ $suite != c && ! -x $PJDFSTEST ]]; then
    echo "run.sh: $PJDFSTEST not found (run scripts/test-deps.sh)" >&2
    exit 2
fi

C_BUILD=""
C_NOTRUN=""
if [[ $suite != rust ]]; then
    c_rc=0
    C_BUILD="$("$HERE/build-c.sh")" || c_rc=$?
    case $c_rc in
    0) ;;
    3) C_NOTRUN="no C pjdfstest source on this machine (see pjdfstest/build-c.sh)"; C_BUILD="" ;;
    *) echo "run.sh: building the C pjdfstest failed" >&2; exit 2 ;;
    esac
    if ! command -v prove >/dev/null; then
        echo "run.sh: prove (perl) not found (run scripts/test-deps.sh)" >&2
        exit 2
    fi
fi
cpus="$(nproc)"
C_JOBS="${OWNFS_PJDC_JOBS:-$((cpus * 2 < 2 ? 2 : cpus * 2 > 4 ? 4 : cpus * 2))}"

mkdir -p "$LOGDIR" "$WORK"
chmod 0755 "$WORK"
# One harness at a time: the mountpoints are fixed.
exec 8>"$WORK/.lock"
if ! flock -n 8; then
    echo "run.sh: another pjdfstest/run.sh is running (lock $WORK/.lock)" >&2
    exit 2
fi

children=()
# shellcheck disable=SC2317 # invoked by the trap
parent_cleanup() {
    local p m
    for p in "${children[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${children[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    children=()
    # Safety net: nothing of ours may stay mounted.
    for m in "${modes[@]}"; do
        [[ $m == native || -n ${MOUNTED[$m]:-} ]] && continue
        if is_mounted "${MNT[$m]}"; then
            echo "run.sh: forcing unmount of ${MNT[$m]}" >&2
            force_unmount "${MNT[$m]}" || echo "run.sh: could not unmount ${MNT[$m]}" >&2
        fi
    done
}
trap parent_cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT TERM

echo "== pjdfstest: ${modes[*]}$( ((parallel)) && ((${#modes[@]} > 1)) && echo ' (in parallel)')"
for m in "${modes[@]}"; do
    # In the background even when serial, so that the traps can stop it.
    (run_mode "$m") &
    children+=($!)
    ((parallel)) || wait "$!" || true
done
for p in "${children[@]}"; do
    wait "$p" || true
done
children=()

overall=0
for m in "${modes[@]}"; do
    r_passed=0 r_failed=0 r_skipped=0 r_wall="?" r_unexpected="" r_expected=""
    r_trouble="harness error (no result file)" r_stale="" r_retried=""
    r_c_passed="" r_c_failed=0 r_c_wall="?" r_c_unexpected="" r_c_expected=""
    # shellcheck disable=SC1090
    [[ -f $LOGDIR/$m.result ]] && source "$LOGDIR/$m.result"
    for name in $r_expected; do
        echo "pjdfstest[$m]: expected failure: $name"
    done
    for name in $r_stale; do
        echo "pjdfstest[$m]: passed, but listed in expected-failures.txt: $name"
    done
    for name in $r_retried; do
        if [[ " $r_unexpected $r_expected " == *" $name "* ]]; then
            echo "pjdfstest[$m]: failed twice (retried once): $name"
        else
            echo "pjdfstest[$m]: failed once, passed on retry: $name"
        fi
    done
    for name in $r_unexpected; do
        echo "pjdfstest[$m]: FAILED: $name"
    done
    if [[ -n $r_trouble ]]; then
        echo "pjdfstest[$m]: ERROR: ${r_trouble%; }"
        overall=1
    fi
    [[ -z $r_unexpected ]] || overall=1
    if [[ $suite != c ]]; then
        echo "pjdfstest[$m]: wall time ${r_wall}s, log ${LOGDIR#"$REPO"/}/$m.log"
        echo "pjdfstest[$m]: $r_passed passed, $r_failed failed, $r_skipped skipped"
    fi
    [[ $suite != rust ]] || continue
    if [[ -n $C_NOTRUN ]]; then
        echo "pjdfstest-c[$m]: NOT RUN: $C_NOTRUN"
        continue
    fi
    for name in $r_c_expected; do
        echo "pjdfstest-c[$m]: expected failure: $name"
    done
    for name in $r_c_unexpected; do
        echo "pjdfstest-c[$m]: FAILED: $name"
    done
    if [[ -z $r_c_passed ]]; then
        echo "pjdfstest-c[$m]: NOT RUN (see the errors above)"
        overall=1
        continue
    fi
    [[ -z $r_c_unexpected ]] || overall=1
    echo "pjdfstest-c[$m]: wall time ${r_c_wall}s, log ${LOGDIR#"$REPO"/}/$m.c.log"
    echo "pjdfstest-c[$m]: $r_c_passed passed, $r_c_failed failed"
done
exit "$overall"
