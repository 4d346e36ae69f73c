#!/usr/bin/env bash
# Runs inside the guest for scripts/vm/bench.sh: the same workloads on the virtio-fs
# share served by ownfs (tag `bownfs`) and by virtiofsd (tag `bvirtiofsd`), interleaved
# (the order alternates every repetition), writing one line per run to the results
# share: `run fs=NAME rep=N create=S stat=S unlink=S write=S read=S` (seconds).
#
# usage: guest-bench.sh REPS FILES MIB [SERVERS]
#   FILES    files in the metadata workload (create, then stat, then unlink each)
#   MIB      size of the sequential dd write and read, with O_DIRECT
#   SERVERS  share names joined by '+' (default ownfs+virtiofsd); share tag b<NAME>
set -uo pipefail

REPS=${1:-3} FILES=${2:-2000} MIB=${3:-256}
IFS=+ read -r -a SERVERS <<<"${4:-ownfs+virtiofsd}"
RESULTS=/tmp/ownfs-vm-results
say() { echo "ownfs-vm-bench: $*"; }

mkdir -p "$RESULTS"
mount -t virtiofs results "$RESULTS" || { say "ERROR: cannot mount the results share"; exit 1; }
status=1
out="$RESULTS/bench.txt"
: >"$out"
finish() {
    for fs in "${SERVERS[@]}"; do umount "/tmp/b-$fs" 2>/dev/null; done
    echo "$status" >"$RESULTS/status"
    sync
    umount "$RESULTS"
}
trap finish EXIT

for fs in "${SERVERS[@]}"; do
    mkdir -p "/tmp/b-$fs"
    mount -t virtiofs "b$fs" "/tmp/b-$fs" || { say "ERROR: cannot mount the $fs share"; exit 1; }
done

# Seconds for the command (wall clock inside the guest).
timed() {
    local a b
    a=$EPOCHREALTIME
    "$@" >/dev/null 2>&1 || return 1
    b=$EPOCHREALTIME
    awk -v a="$a" -v b="$b" 'BEGIN { printf "%.4f", b - a }'
}
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# Metadata: FILES creates, then (with the guest's dentry and inode caches dropped, so
# each stat is a LOOKUP) FILES stats, then FILES unlinks. Prints the three times.
meta() {
    python3 - "$1" "$FILES" <<'EOF'
import os, sys, time
d, n = sys.argv[1], int(sys.argv[2])
os.mkdir(d)
names = [f"{d}/f{i}" for i in range(n)]
t0 = time.perf_counter()
for p in names:
    os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644))
t1 = time.perf_counter()
os.sync()
with open("/proc/sys/vm/drop_caches", "w") as f:
    f.write("3")
t2 = time.perf_counter()
for p in names:
    os.stat(p)
t3 = time.perf_counter()
for p in names:
    os.unlink(p)
t4 = time.perf_counter()
os.rmdir(d)
print(f"{t1 - t0:.4f} {t3 - t2:.4f} {t4 - t3:.4f}")
EOF
}

run_one() { # fs rep
    local fs=$1 rep=$2 dir="/tmp/b-$1" m w r
    m="$(meta "$dir/meta")" || { say "ERROR: metadata workload failed on $fs"; return 1; }
    drop_caches
    w="$(timed dd if=/dev/zero of="$dir/seq" bs=1M count="$MIB" oflag=direct conv=fsync)" ||
        { say "ERROR: dd write failed on $fs"; return 1; }
    drop_caches
    r="$(timed dd if="$dir/seq" of=/dev/null bs=1M iflag=direct)" ||
        { say "ERROR: dd read failed on $fs"; return 1; }
    rm -f "$dir/seq"
    read -r c s u <<<"$m"
    echo "run fs=$fs rep=$rep create=$c stat=$s unlink=$u write=$w read=$r" | tee -a "$out"
}

say "reps $REPS, $FILES files, $MIB MiB; kernel $(uname -r), $(nproc) CPUs"
for ((rep = 1; rep <= REPS; rep++)); do
    # Rotate who goes first, so each server meets every position equally often.
    n=${#SERVERS[@]} order=()
    for ((i = 0; i < n; i++)); do order+=("${SERVERS[(rep + i) % n]}"); done
    for fs in "${order[@]}"; do
        run_one "$fs" "$rep" || exit 1
    done
done
status=0
