# shellcheck shell=bash
# Shared by the scripts, which `source scripts/lib.sh`:
#   - REPO and die().
#   - install helpers (scripts/deps.sh, scripts/test-deps.sh; they define log() first):
#     SUDO runs system-wide steps (empty as root); install_packages installs the
#     Debian packages that are missing, running apt-get update only then.
#   - mount harness helpers (pjdfstest/run.sh, scripts/fsx.sh; run as root): the
#     mount table, unmounting however stuck a mount is, and one test mode's ownfs
#     processes, mount and cleanup (see "one mode" below).

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

die() {
    echo "${0##*/}: $*" >&2
    exit 2
}

SUDO=()
if [[ $EUID -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    elif declare -F log >/dev/null; then # only the install scripts need SUDO
        log "not root and no sudo: system-wide steps will fail" >&2
    fi
fi

pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

install_packages() { # package...
    local missing=() p
    for p in "$@"; do
        pkg_installed "$p" || missing+=("$p")
    done
    if ((${#missing[@]})); then
        log "installing: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        "${SUDO[@]}" apt-get update -qq
        "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
}

# --- mount harnesses ------------------------------------------------------------

OWNFS="${OWNFS_BIN:-$REPO/target/release/ownfs}"

# Sets RUN_AS, the UID:GID a rootless server drops to, from environment variable
# $1 (default 4000:4000, which has no passwd entry); never root.
read_run_as() { # variable
    RUN_AS=${!1:-4000:4000}
    if [[ ! $RUN_AS =~ ^[0-9]+:[0-9]+$ ]] || [[ $RUN_AS == 0:* || $RUN_AS == *:0 ]]; then
        die "$1 must be UID:GID, not root (got '$RUN_AS')"
    fi
}

# --- mount table ----------------------------------------------------------------

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
    [[ -n $1 ]] || return 0
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
    if [[ ! -e $conn/$minor ]] && ! is_mounted "$conn"; then
        mount -t fusectl fusectl "$conn" 2>/dev/null || true
    fi
    if [[ -w $conn/$minor/abort ]]; then
        echo 1 >"$conn/$minor/abort" 2>/dev/null || true
    fi
}

# Unmount everything at and below $1, however stuck it is.
force_unmount() {
    local mnt=$1 sub
    is_mounted "$mnt" || return 0
    for sub in $(submounts_of "$mnt"); do
        umount -l "$sub" 2>/dev/null || true
    done
    timeout 20 umount -R "$mnt" 2>/dev/null && return 0
    abort_fuse "$mnt"
    timeout 20 umount -R "$mnt" 2>/dev/null && return 0
    umount -R -l "$mnt" 2>/dev/null || fusermount3 -u -z "$mnt" 2>/dev/null || true
    ! is_mounted "$mnt"
}

# --- one mode -------------------------------------------------------------------
# Each mode runs in a subshell of its own (run_modes) with this state. The script
# defines write_result (writes the mode's result file;
# called with no arguments when the setup failed).

mode_log=/dev/null # the mode's harness log
mode_mnt=""        # ownfs's mountpoint: unmounted by cleanup_mode
mode_dirs=()       # removed by cleanup_mode, once nothing is mounted at mode_mnt
ownfs_flags=()     # mount_ownfs: arguments of ownfs mount or ownfs client
serve_flags=()     # mount_ownfs: arguments of ownfs serve (pipe modes)
server_pid=""      # ownfs mount, or ownfs client in the pipe modes
serve_pid=""       # ownfs serve (pipe modes)
test_pid=""        # the test program
trouble=""         # harness problems, each ending in "; "

note() { echo "$*" >>"$mode_log"; }

fail_setup() { # message
    note "SETUP FAILED: $*"
    trouble+="$*; "
    cleanup_mode
    write_result
    exit 1
}

# A stale ownfs mount at $1, from an earlier, killed run, goes before its directory.
remove_stale_mount() {
    local mnt=$1
    is_mounted "$mnt" || return 0
    if [[ "$(fstype_of "$mnt")" != fuse.ownfs ]]; then
        fail_setup "$mnt is already mounted ($(fstype_of "$mnt")), not by ownfs"
    fi
    note "removing stale ownfs mount at $mnt"
    force_unmount "$mnt" || fail_setup "cannot unmount stale $mnt"
}

# Mounts SRC at mode_mnt and waits for it: `ownfs mount SRC MNT FLAGS...`, or with
# SOCK (fuse-pipe) `ownfs serve SRC --listen unix:SOCK SERVE_FLAGS...` and
# `ownfs client MNT --connect unix:SOCK FLAGS...`. FLAGS and SERVE_FLAGS are
# ownfs_flags and serve_flags.
mount_ownfs() { # src log [sock serve_log]
    local src=$1 log=$2 sock=${3:-} serve_log=${4:-} t
    if [[ -n $sock ]]; then
        note "+ ownfs serve $src --listen unix:$sock ${serve_flags[*]}"
        RUST_LOG="${RUST_LOG:-warn}" "$OWNFS" serve "$src" --listen "unix:$sock" \
            "${serve_flags[@]}" </dev/null >"$serve_log" 2>&1 &
        serve_pid=$!
        for ((t = 0; t < 100; t++)); do
            [[ -S $sock ]] && break
            alive "$serve_pid" || break
            sleep 0.1
        done
        if [[ ! -S $sock ]]; then
            tail -n 20 "$serve_log" >>"$mode_log" 2>/dev/null || true
            fail_setup "ownfs serve did not listen on $sock within 10 s"
        fi
        note "+ ownfs client $mode_mnt --connect unix:$sock ${ownfs_flags[*]}"
        RUST_LOG="${RUST_LOG:-warn}" "$OWNFS" client "$mode_mnt" --connect "unix:$sock" \
            "${ownfs_flags[@]}" </dev/null >"$log" 2>&1 &
    else
        note "+ ownfs mount $src $mode_mnt ${ownfs_flags[*]}"
        RUST_LOG="${RUST_LOG:-warn}" "$OWNFS" mount "$src" "$mode_mnt" "${ownfs_flags[@]}" \
            </dev/null >"$log" 2>&1 &
    fi
    server_pid=$!
    for ((t = 0; t < 300; t++)); do
        [[ "$(fstype_of "$mode_mnt")" == fuse.ownfs ]] && break
        alive "$server_pid" || break
        sleep 0.1
    done
    if [[ "$(fstype_of "$mode_mnt")" != fuse.ownfs ]]; then
        tail -n 20 "$log" >>"$mode_log" 2>/dev/null || true
        fail_setup "ownfs did not mount $mode_mnt within 30 s"
    fi
    note "mounted: $(grep -F " $mode_mnt " /proc/self/mountinfo)"
}

# Runs a command in directory $1, in the background so that the signal traps run
# at once; returns its exit status. The caller redirects its output.
run_test() { # dir command...
    local dir=$1 rc=0
    shift
    (cd "$dir" && exec "$@") </dev/null &
    test_pid=$!
    wait "$test_pid" || rc=$?
    test_pid=""
    return "$rc"
}

# Prints which ownfs process of the mode has died, if one has.
dead_server() {
    if [[ -n $server_pid ]] && ! alive "$server_pid"; then
        echo ownfs
    elif [[ -n $serve_pid ]] && ! alive "$serve_pid"; then
        echo "ownfs serve"
    else
        return 1
    fi
}

# SIGTERM to process $1 (named $2 in the log), SIGKILL after 10 s; a nonzero exit
# status is trouble.
stop_process() { # pid name
    local pid=$1 name=$2 rc=0 t
    if alive "$pid"; then
        # SIGTERM rather than SIGINT: background jobs of a non-interactive shell
        # start with SIGINT ignored.
        kill -TERM "$pid" 2>/dev/null || true
        for ((t = 0; t < 100; t++)); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            note "$name did not exit within 10 s of SIGTERM"
            trouble+="$name: no exit on SIGTERM; "
            [[ -z $mode_mnt ]] || abort_fuse "$mode_mnt"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || rc=$?
    note "$name exit status: $rc"
    ((rc == 0)) || trouble+="$name exited with status $rc; "
}

# Stops the mode's test and ownfs processes, unmounts what they left and removes
# mode_dirs. Safe to call again (it is also the mode's EXIT trap).
# shellcheck disable=SC2317 # also invoked by a trap
cleanup_mode() {
    local sub dir
    if [[ -n $test_pid ]] && alive "$test_pid"; then
        kill -TERM "$test_pid" 2>/dev/null || true
        wait "$test_pid" 2>/dev/null || true
    fi
    test_pid=""
    if [[ -n $server_pid ]]; then
        if alive "$server_pid"; then
            # Mounts left inside (an interrupted rmdir EBUSY test bind-mounts)
            # would keep the mount busy.
            for sub in $(submounts_of "$mode_mnt"); do
                umount -l "$sub" 2>/dev/null || true
            done
        fi
        stop_process "$server_pid" ownfs
        server_pid=""
    fi
    # Pipe modes: the host side goes after the client that talks to it.
    if [[ -n $serve_pid ]]; then
        stop_process "$serve_pid" "ownfs serve"
        serve_pid=""
    fi
    if [[ -n $mode_mnt ]] && is_mounted "$mode_mnt"; then
        note "$mode_mnt still mounted after ownfs exited; forcing unmount"
        trouble+="left $mode_mnt mounted; "
        force_unmount "$mode_mnt" || trouble+="could not unmount $mode_mnt; "
    fi
    if [[ -z $mode_mnt ]] || ! is_mounted "$mode_mnt"; then
        for dir in "${mode_dirs[@]}"; do
            rm -rf --one-file-system "$dir"
        done
        mode_dirs=()
    fi
}

# --- all modes ------------------------------------------------------------------

# Makes the work directory $1 and locks it: one run at a time, as the mountpoints
# are fixed.
lock_work() { # dir
    mkdir -p "$1"
    chmod 0755 "$1"
    exec 8>"$1/.lock"
    flock -n 8 || die "another $(realpath --relative-to="$REPO" "$0") is running (lock $1/.lock)"
}

children=()
harness_mounts=()

# The script's traps: on exit, stop the modes and unmount what they left at the
# mountpoints given.
trap_modes() { # mountpoint...
    harness_mounts=("$@")
    trap 'stop_modes' EXIT
    trap 'echo "${0##*/}: interrupted" >&2; exit 130' INT TERM
}

# Runs `run_mode MODE` for each mode in a subshell of its own, at most $1 at a time.
run_modes() { # jobs mode...
    local jobs=$1 running=0 m p
    shift
    for m; do
        if ((running >= jobs)); then
            wait -n || true
            running=$((running - 1))
        fi
        (run_mode "$m") &
        children+=($!)
        running=$((running + 1))
    done
    for p in "${children[@]}"; do
        wait "$p" || true
    done
    children=()
}

# Stops the modes still running and unmounts what they left at harness_mounts.
# shellcheck disable=SC2317 # invoked by a trap
stop_modes() {
    local p m
    for p in "${children[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${children[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    children=()
    # Safety net: nothing of ours may stay mounted.
    for m in "${harness_mounts[@]}"; do
        if is_mounted "$m"; then
            echo "${0##*/}: forcing unmount of $m" >&2
            force_unmount "$m" || echo "${0##*/}: could not unmount $m" >&2
        fi
    done
}
