#!/usr/bin/env bash
# Attribute coherence through a mount: after each program below, an immediate `stat`
# through MNT must show what the server did, not what the client kernel had cached.
# Every check first stats its files (so the client holds their attributes), then runs
# the program, then stats at once: no sleep between the change and the check.
#
# usage: tests/coherence.sh [--rootless] MNT [LABEL]
#   --rootless  the share is served rootless, which refuses ACLs beyond the mode
#               (EOPNOTSUPP, docs/security.md): check that refusal instead
# Runs as root; uses the user nobody for the non-owner write. Prints one line per failed
# check and `coherence[LABEL]: N passed, N failed`; exits 1 when any check failed.
# Run it on a native directory to see that the expectations are plain POSIX.
set -uo pipefail

rootless=0
[[ ${1:-} == --rootless ]] && { rootless=1; shift; }
mnt=${1:?usage: coherence.sh [--rootless] MNT [LABEL]}
label=${2:-$mnt}
[[ -d $mnt ]] || { echo "coherence.sh: $mnt is not a directory" >&2; exit 2; }
for tool in cp rsync setfacl install stat setpriv; do
    command -v "$tool" >/dev/null || { echo "coherence.sh: $tool missing" >&2; exit 2; }
done
nobody_uid=$(id -u nobody)

work=$(mktemp -d "$mnt/coherence.XXXXXX") || exit 2
chmod 0755 "$work"
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 2

passed=0
failed=0
# check NAME WANT GOT
check() {
    if [[ $2 == "$3" ]]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "coherence[$label]: FAIL $1: want '$2', stat shows '$3'"
    fi
}
# A file with content, mode and owner, whose attributes the client then holds.
make() {
    echo data >"$1" && chmod "$2" "$1" && chown "${3:-0:0}" "$1" && stat "$1" >/dev/null
}
ctime() { stat -c %.9Z "$1"; }
# Coarse kernel timestamps move once per jiffy: let one pass so a change shows.
tick() { sleep 0.02; }

# cp -p sets the copy's mode with a mode-only POSIX ACL (system.posix_acl_access).
make a 0644
cp -p a b
check "cp -p: mode" 644 "$(stat -c %a b)"
make c 0640 "$nobody_uid:0"
cp -p c d
check "cp -p: mode and owner" "640 $nobody_uid" "$(stat -c '%a %u' d)"

# cp -a of a tree: modes and owners of a directory and the file inside.
mkdir -m 0750 t && make t/f 0604 "$nobody_uid:0" && chown "$nobody_uid:0" t && stat t >/dev/null
cp -a t u
check "cp -a: directory" "750 $nobody_uid" "$(stat -c '%a %u' u)"
check "cp -a: file" "604 $nobody_uid" "$(stat -c '%a %u' u/f)"

# rsync -a sets the mode after writing a temporary file and renaming it.
make r 0604
rsync -a r r2
check "rsync -a: mode" 604 "$(stat -c %a r2)"
make r3 0600 && stat r3 >/dev/null
rsync -a r r3
check "rsync -a over an existing file: mode" 604 "$(stat -c %a r3)"

# setfacl: a named entry raises the group class to the mask; -b takes it away again.
make s 0640
if ((rootless)); then
    err=$(setfacl -m "u:$nobody_uid:rw" s 2>&1)
    [[ $err == *"Operation not supported"* ]] && got=refused || got="not refused: $err"
    check "setfacl -m of a named entry, rootless" refused "$got"
    check "setfacl -m refused: mode unchanged" 640 "$(stat -c %a s)"
else
    setfacl -m "u:$nobody_uid:rw" s
    check "setfacl -m: mode shows the mask" 660 "$(stat -c %a s)"
    setfacl -b s
    check "setfacl -b: mode" 640 "$(stat -c %a s)"
fi
make s2 0644
setfacl -m u::rwx,g::---,o::--- s2
check "setfacl of a mode-only ACL: mode" 700 "$(stat -c %a s2)"

# install -m creates, then sets the mode; -o sets the owner.
make i 0644
install -m 0640 -o "$nobody_uid" i i2
check "install -m -o: mode and owner" "640 $nobody_uid" "$(stat -c '%a %u' i2)"

# A write by a non-owner clears set-user-ID and set-group-ID (the host does it).
make w 06777
setpriv --reuid "$nobody_uid" --regid "$nobody_uid" --clear-groups sh -c 'echo more >>w'
check "non-owner write: set-id bits cleared" 777 "$(stat -c %a w)"
make w2 02777
setpriv --reuid "$nobody_uid" --regid "$nobody_uid" --clear-groups \
    dd if=/dev/zero of=w2 bs=1 count=1 conv=notrunc status=none
check "non-owner write at offset 0: set-group-ID cleared" 777 "$(stat -c %a w2)"

# chown clears set-user-ID on a regular file.
make o 04755
chown "$nobody_uid" o
check "chown: set-user-ID cleared" "755 $nobody_uid" "$(stat -c '%a %u' o)"

# link and unlink move the file's ctime and link count.
make l 0644
before=$(ctime l)
tick
ln l l2
check "ln: link count" 2 "$(stat -c %h l)"
[[ $(ctime l) != "$before" ]] && got=moved || got=unchanged
check "ln: ctime" moved "$got"
before=$(ctime l)
tick
rm l2
check "rm of a second link: link count" 1 "$(stat -c %h l)"
[[ $(ctime l) != "$before" ]] && got=moved || got=unchanged
check "rm of a second link: ctime" moved "$got"

# mkdir and rmdir change the parent's link count.
mkdir p && stat p >/dev/null
mkdir p/q
check "mkdir: parent link count" 3 "$(stat -c %h p)"
rmdir p/q
check "rmdir: parent link count" 2 "$(stat -c %h p)"

# mv onto an existing name: the old target's last link goes.
make m1 0600 && make m2 0644
exec 9<m2
mv m1 m2
check "mv over a file: replaced" 600 "$(stat -c %a m2)"
check "mv over a file: old target unlinked" 0 "$(stat -L -c %h /proc/self/fd/9)"
exec 9<&-

echo "coherence[$label]: $passed passed, $failed failed"
((failed == 0))
