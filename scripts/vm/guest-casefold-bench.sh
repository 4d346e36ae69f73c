#!/usr/bin/env bash
# Runs inside the guest for scripts/vm/casefold-bench.sh: `ls -l` through an ownfs mount
# of a directory that folds case (ext4 casefold, chattr +F) and of one that does not,
# on the same volume, FILES entries each, interleaved; one line per run to the results
# share: `run dir=fold|plain rep=N seconds=S`.
#
# usage: guest-casefold-bench.sh OWNFS REPS FILES
set -uo pipefail

OWNFS=$1 REPS=${2:-5} FILES=${3:-10000}
RESULTS=/tmp/ownfs-vm-results
mkdir -p "$RESULTS"
mount -t virtiofs results "$RESULTS" || { echo "cannot mount the results share"; exit 1; }
status=1
finish() {
    umount /tmp/cfb/mnt 2>/dev/null
    umount /tmp/cfb/src 2>/dev/null
    echo "$status" >"$RESULTS/status"
    sync
    umount "$RESULTS"
}
trap finish EXIT

mkdir -p /tmp/cfb/src /tmp/cfb/mnt
truncate -s 256M /tmp/cfb/img && mkfs.ext4 -q -F -O casefold /tmp/cfb/img &&
    mount -o loop /tmp/cfb/img /tmp/cfb/src || exit 1
mkdir /tmp/cfb/src/fold /tmp/cfb/src/plain && chattr +F /tmp/cfb/src/fold || exit 1
for d in fold plain; do
    (cd "/tmp/cfb/src/$d" && seq -f "File%05g" 1 "$FILES" | xargs touch) || exit 1
done
# One fd per cached inode (issue 19): room for both directories.
ulimit -n 65536 || exit 1
sleep 1 # let the directories' timestamps settle, as in a tree at rest
"$OWNFS" mount /tmp/cfb/src /tmp/cfb/mnt </dev/null >"$RESULTS/ownfs.log" 2>&1 &
for ((t = 0; t < 100; t++)); do grep -qF " /tmp/cfb/mnt " /proc/self/mountinfo && break; sleep 0.1; done

out="$RESULTS/bench.txt"
: >"$out"
for ((r = 1; r <= REPS; r++)); do
    order=(fold plain)
    ((r % 2 == 0)) && order=(plain fold)
    for d in "${order[@]}"; do
        # A fresh client cache each time: every entry is looked up through the server.
        echo 2 >/proc/sys/vm/drop_caches
        a=$EPOCHREALTIME
        n=$(ls -l "/tmp/cfb/mnt/$d" | wc -l)
        b=$EPOCHREALTIME
        ((n == FILES + 1)) || { echo "ls -l $d listed $n lines"; exit 1; }
        awk -v d="$d" -v r="$r" -v a="$a" -v b="$b" \
            'BEGIN { printf "run dir=%s rep=%d seconds=%.4f\n", d, r, b - a }' | tee -a "$out"
    done
done
status=0
