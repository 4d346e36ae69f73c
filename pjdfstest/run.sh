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
#   io-uring                 ownfs mount SRC /mnt/wu --io-uring on: FUSE over io_uring
#                            (the run sets the fuse module's enable_uring and restores it;
#                            the other mount modes pass --io-uring off)
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

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
read_run_as OWNFS_PJD_RUN_AS
HERE="$REPO/pjdfstest"
CONFIG="${PJDFSTEST_CONFIG:-$HERE/pjdfstest.toml}"
EXPECTED="$HERE/expected-failures.txt"
RETRY_ONCE="$HERE/retry-once.txt"
PJDFSTEST="$REPO/.tools/bin/pjdfstest"
LOGDIR="${OWNFS_PJD_LOGS:-$REPO/target/pjdfstest}"
WORK="${OWNFS_PJD_WORK:-/var/tmp/ownfs-pjd}"
TIMEOUT="${PJDFSTEST_TIMEOUT:-600}"
ALL_MODES=(default_permissions no-default-permissions writeback io-uring rootless pipe-root pipe-rootless)

# Short mountpoints: see check_path_length.
declare -A MNT=(
    [default_permissions]=/mnt/wk
    [no-default-permissions]=/mnt/wn
    [writeback]=/mnt/ww
    [io-uring]=/mnt/wu
    [rootless]=/mnt/wr
    [pipe-root]=/mnt/wp
    [pipe-rootless]=/mnt/wq
)
declare -A FLAGS=(
    [default_permissions]="--io-uring off"
    [no-default-permissions]="--no-default-permissions --io-uring off"
    [writeback]="--writeback --io-uring off"
    [io-uring]="--io-uring on"
    [rootless]="--run-as $RUN_AS --io-uring off"
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
        [[ ${2:-} =~ ^(rust|c|both)$ ]] || die "--suite needs rust, c or both"
        suite=$2
        shift
        ;;
    -h | --help) usage; exit 0 ;;
    --mounted)
        [[ ${2:-} =~ ^([A-Za-z0-9_-]+)=(/.+)$ ]] || die "--mounted needs NAME=MNT (got '${2:-}')"
        MOUNTED[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
        MNT[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
        modes+=("${BASH_REMATCH[1]}")
        shift
        ;;
    --) shift; patterns=("$@"); break ;;
    default_permissions | no-default-permissions | writeback | io-uring | rootless | pipe-root | pipe-rootless | native) modes+=("$1") ;;
    *) die "unknown argument '$1' (try --help)" ;;
    esac
    shift
done
((${#modes[@]})) || modes=("${ALL_MODES[@]}")

[[ $EUID -eq 0 ]] || die "must run as root (FUSE mounts, and pjdfstest switches users)"

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

# --- one mode (runs in a subshell, see scripts/lib.sh) ---------------------------
# Writes $LOGDIR/$mode.log, $mode.ownfs.log and $mode.result (shell assignments read
# back by the parent).

run_mode() {
    mode=$1
    mode_start="$(now)"
    mode_log="$LOGDIR/$mode.log"
    local server_log="$LOGDIR/$mode.ownfs.log" result="$LOGDIR/$mode.result" mnt dir src other
    : >"$mode_log"
    rm -f "$result" "$server_log" "$LOGDIR/$mode.c.counts" "$LOGDIR/$mode.c.log"

    trap 'cleanup_mode' EXIT
    trap 'echo "interrupted" >>"$mode_log"; exit 130' INT TERM

    dir="$WORK/$mode"
    src="$dir/src"
    other="$dir/other"

    # A stale mount from an earlier, killed run must go before its directory.
    if [[ $mode == native ]]; then
        mnt="$src"
    elif [[ -n ${MOUNTED[$mode]:-} ]]; then
        mnt="${MOUNTED[$mode]}"
        is_mounted "$mnt" || fail_setup "--mounted $mode=$mnt: nothing is mounted there"
    else
        mnt="${MNT[$mode]}"
        remove_stale_mount "$mnt"
    fi
    rm -rf --one-file-system "$dir"
    mkdir -p "$src" "$other"
    chmod 0755 "$WORK" "$dir" "$src"
    if [[ $mode == rootless || $mode == pipe-rootless ]]; then
        # The server drops to RUN_AS after mounting and must own what it serves.
        chown "$RUN_AS" "$src"
    fi
    ((keep)) || mode_dirs=("$dir")
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
            other=/dev/shm/ownfs-pjd-other
            mkdir -p "$other"
            mode_dirs+=("$other")
            sfs=(-s "$other")
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
        if [[ -n ${MOUNTED[$mode]:-} ]]; then
            note "on $mnt: $(grep -F " $mnt " /proc/self/mountinfo)"
        else
            mkdir -p "$mnt"
            mode_mnt="$mnt"
            # shellcheck disable=SC2206 # word splitting of the flag strings is intended
            ownfs_flags=(${FLAGS[$mode]}) serve_flags=(${SERVE_FLAGS[$mode]:-})
            if [[ $mode == pipe-* ]]; then
                # shellcheck disable=SC2206
                ownfs_flags+=(${OWNFS_PIPE_ARGS:-})
                mount_ownfs "$src" "$server_log" "$dir/pipe.sock" "$LOGDIR/$mode.serve.log"
            else
                # shellcheck disable=SC2206
                ownfs_flags+=(${OWNFS_ARGS:-})
                mount_ownfs "$src" "$server_log"
            fi
        fi
    fi

    run_pjdfstest() { # config, pjdfstest arguments...
        local cfg=$1 rc=0 who
        shift
        note "+ pjdfstest -c $cfg -p $mnt ${sfs[*]} $*"
        note ""
        # pjdfstest runs in the mountpoint's directory (it is its cwd too).
        run_test "$mnt" env NO_COLOR=1 PATH="$path" timeout -k 10 "$TIMEOUT" \
            "$PJDFSTEST" -c "$cfg" -p "$mnt" "${sfs[@]}" "$@" >>"$mode_log" 2>&1 || rc=$?
        note ""
        case $rc in
        124 | 137)
            note "pjdfstest TIMED OUT after ${TIMEOUT}s"
            trouble+="timeout; "
            return 1
            ;;
        esac
        if who="$(dead_server)"; then
            note "$who died during the run"
            trouble+="$who died during the run; "
            return 1
        fi
    }

    # The C suite runs from a directory on the file system under test; every .t file
    # makes its own randomly named entries there.
    run_c_suite() {
        local c_start rc=0 who cwd="$mnt/pjdc" c_log="$LOGDIR/$mode.c.log" dirs=() d
        c_start="$(now)"
        for d in ${OWNFS_PJDC_DIRS:-}; do
            [[ $d == *=* && ${d%%=*} != "$mode" ]] && continue
            dirs+=("$C_BUILD/tests/${d#*=}")
        done
        ((${#dirs[@]})) || dirs=("$C_BUILD/tests")
        mkdir -p "$cwd" && chmod 0755 "$cwd"
        note "+ (cd $cwd && prove -r -j$C_JOBS ${dirs[*]#"$C_BUILD"/}) > ${c_log#"$REPO"/}"
        run_test "$cwd" env PATH="$path" timeout -k 10 "${OWNFS_PJDC_TIMEOUT:-1200}" \
            prove -r -j"$C_JOBS" "${dirs[@]}" >"$c_log" 2>&1 || rc=$?
        case $rc in
        124 | 137) trouble+="C suite timed out; " ;;
        esac
        grep -qE '^Files=[0-9]+, Tests=[0-9]+' "$c_log" || trouble+="C suite did not finish; "
        if who="$(dead_server)"; then trouble+="$who died during the C suite; "; fi
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
    if ((${#retry[@]})) && [[ -z $trouble ]]; then
        passes=$((passes + 1))
        retried="${retry[*]}"
        run_pjdfstest "$cfg1" -e "${retry[@]/#/pjdfstest::tests::}" || true
    fi

    if [[ $suite != rust && -n $C_BUILD && -z $trouble ]]; then
        run_c_suite
    fi

    cleanup_mode
    if (($(grep -cE '^Summary: ' "$mode_log" || true) < passes)); then
        trouble+="pjdfstest did not finish (no Summary line); "
    fi
    write_result 1
}

# Count results from the log (if the tests ran) and write $LOGDIR/$mode.result.
write_result() { # [ran]
    local ran=${1:-0} passed=0 failed=0 skipped=0 name
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
    # shellcheck disable=SC1090
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
        printf 'r_wall=%s\n' "$(elapsed "$mode_start")"
        printf 'r_unexpected=%q\n' "${unexpected[*]}"
        printf 'r_expected=%q\n' "${expected_hit[*]}"
        printf 'r_trouble=%q\n' "${trouble}"
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
    die "$OWNFS not found"
fi
if [[ $suite != c && ! -x $PJDFSTEST ]]; then
    die "$PJDFSTEST not found (run scripts/test-deps.sh)"
fi

C_BUILD=""
C_NOTRUN=""
if [[ $suite != rust ]]; then
    c_rc=0
    C_BUILD="$("$HERE/build-c.sh")" || c_rc=$?
    case $c_rc in
    0) ;;
    3) C_NOTRUN="no C pjdfstest source on this machine (see pjdfstest/build-c.sh)"; C_BUILD="" ;;
    *) die "building the C pjdfstest failed" ;;
    esac
    command -v prove >/dev/null || die "prove (perl) not found (run scripts/test-deps.sh)"
fi
cpus="$(nproc)"
C_JOBS="${OWNFS_PJDC_JOBS:-$((cpus * 2 < 2 ? 2 : cpus * 2 > 4 ? 4 : cpus * 2))}"

lock_work "$WORK"
mkdir -p "$LOGDIR"
mounts=()
for m in "${modes[@]}"; do
    [[ $m == native || -n ${MOUNTED[$m]:-} ]] || mounts+=("${MNT[$m]}")
done
trap_modes "${mounts[@]}"
if [[ " ${modes[*]} " == *" io-uring "* ]]; then
    uring_param=/sys/module/fuse/parameters/enable_uring
    [[ -w $uring_param ]] ||
        die "mode io-uring needs $uring_param writable (Linux 6.14+ with CONFIG_FUSE_IO_URING, as root)"
    uring_was=$(cat "$uring_param")
    echo 1 >"$uring_param"
    trap 'stop_modes; [[ $uring_was == Y ]] || echo 0 >"$uring_param"' EXIT
fi

echo "== pjdfstest: ${modes[*]}$( ((parallel)) && ((${#modes[@]} > 1)) && echo ' (in parallel)')"
run_modes $((parallel ? ${#modes[@]} : 1)) "${modes[@]}"

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
