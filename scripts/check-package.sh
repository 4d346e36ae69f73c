#!/usr/bin/env bash
# Check a Debian package from scripts/package.sh without installing it: unpack it
# (dpkg-deb -x) into a temporary root and check what an operator relies on.
#
#   scripts/check-package.sh target/debian/ownfs_<version>-1_<arch>.deb
#
# Each check prints `ok` or `FAIL`; a check that cannot run here prints `NOT RUN` and
# why, and never counts as passed. The last line is
# `package: N passed, N failed, N skipped` (skipped: not run); the exit status is 1 if
# any check failed.
set -uo pipefail

deb="${1:?usage: scripts/check-package.sh DEB}"
[[ -f $deb ]] || {
    echo "check-package: no such file: $deb" >&2
    exit 2
}

passed=0 failed=0 notrun=0
ok() {
    printf 'ok       %s\n' "$1"
    passed=$((passed + 1))
}
fail() {
    printf 'FAIL     %s\n' "$1"
    [[ -n ${2:-} ]] && printf '%s\n' "$2" | sed 's/^/         /'
    failed=$((failed + 1))
}
not_run() {
    printf 'NOT RUN  %s: %s\n' "$1" "$2"
    notrun=$((notrun + 1))
}
# check NAME COMMAND...: ok if COMMAND succeeds and prints nothing on stderr.
check() {
    local name=$1 out rc
    shift
    out="$("$@" 2>&1 >/dev/null)"
    rc=$?
    if ((rc == 0)) && [[ -z $out ]]; then ok "$name"; else fail "$name (status $rc)" "$out"; fi
}

work="$(mktemp -d /tmp/ownfs-check-package.XXXXXX)"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
root="$work/root"
mkdir -p "$root"

# --- the archive ---------------------------------------------------------------------
check "dpkg-deb -x unpacks $(basename "$deb")" dpkg-deb -x "$deb" "$root"
control="$(dpkg-deb -f "$deb" Package Version Depends 2>&1)"
version="$(dpkg-deb -f "$deb" Version 2>/dev/null)"
if grep -q '^Depends:.*\bfuse3\b' <<<"$control"; then
    ok "control: depends on fuse3 (mount.fuse3, fusermount3)"
else
    fail "control: depends on fuse3" "$control"
fi
mkdir -p "$work/control"
dpkg-deb -e "$deb" "$work/control"
scripts="$(cd "$work/control" && ls -- *inst *rm 2>/dev/null)"
if [[ -z $scripts ]]; then
    ok "control: no maintainer scripts (nothing enabled or started on install)"
else
    fail "control: no maintainer scripts" "$scripts"
fi

# --- the binary ----------------------------------------------------------------------
bin="$root/usr/bin/ownfs"
if [[ -x $bin ]]; then
    ok "usr/bin/ownfs is executable"
    out="$("$bin" --version 2>&1)"
    if [[ $out == "ownfs ${version%-*}" ]]; then ok "ownfs --version: $out"; else fail "ownfs --version is 'ownfs ${version%-*}'" "$out"; fi
    check "ownfs --help" "$bin" --help
else
    fail "usr/bin/ownfs is executable" "$(ls -l "$root/usr/bin" 2>&1)"
fi
# The subcommands the man pages must cover, from the binary itself.
mapfile -t subcommands < <("$bin" --help 2>/dev/null | sed -n '/^Commands:/,/^$/p' |
    awk 'NR > 1 && $1 != "help" && NF {print $1}')
((${#subcommands[@]})) || fail "ownfs --help lists subcommands"

# --- man pages -----------------------------------------------------------------------
mandir="$root/usr/share/man/man1"
if command -v groff >/dev/null; then
    for page in ownfs "${subcommands[@]/#/ownfs-}"; do
        f="$mandir/$page.1.gz"
        if [[ ! -f $f ]]; then
            fail "man page $page(1)" "missing: ${f#"$root"}"
            continue
        fi
        # -ww: every groff warning; -z: format, print nothing. Then the text must have
        # its title, NAME and SYNOPSIS.
        warnings="$(zcat "$f" | groff -man -Tutf8 -ww -z 2>&1)"
        text="$(zcat "$f" | groff -man -Tutf8 2>/dev/null | sed 's/.\x08//g')"
        if [[ -z $warnings ]] && grep -q '^NAME' <<<"$text" && grep -q '^SYNOPSIS' <<<"$text" &&
            grep -qF "$page(1)" <<<"$(head -1 <<<"$text")"; then
            ok "man page $page(1) renders ($(wc -l <<<"$text") lines)"
        else
            fail "man page $page(1) renders" "$warnings$(head -5 <<<"$text")"
        fi
    done
else
    not_run "man pages render" "no groff here (Debian: groff-base, scripts/test-deps.sh)"
fi

# --- the vhost-user backend descriptor -------------------------------------------------
desc="$root/usr/share/qemu/vhost-user/60-ownfs.json"
if [[ ! -f $desc ]]; then
    fail "vhost-user descriptor" "missing: ${desc#"$root"}"
else
    # QEMU's docs/interop/vhost-user.json, VhostUserBackend: description, type and an
    # absolute binary; tags optional; nothing else.
    if out="$(python3 - "$desc" 2>&1 <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert isinstance(d, dict), "not an object"
extra = set(d) - {"description", "type", "binary", "tags"}
assert not extra, f"unknown members {sorted(extra)}"
assert isinstance(d.get("description"), str) and d["description"], "no description"
assert d.get("type") == "fs", f"type is {d.get('type')!r}, not 'fs'"
assert isinstance(d.get("binary"), str) and d["binary"].startswith("/"), "binary is not an absolute path"
assert all(isinstance(t, str) for t in d.get("tags", [])), "tags are not strings"
print(d["binary"])
EOF
    )"; then
        backend="$out"
        ok "vhost-user descriptor parses: type fs, binary $backend"
        # The binary, resolved inside the package (a link to usr/bin/ownfs).
        target="$(cd "$root" && readlink -f "${backend#/}" 2>/dev/null)"
        if [[ -x $root$backend && $target == "$(readlink -f "$bin")" ]]; then
            ok "descriptor binary $backend is in the package (-> /usr/bin/ownfs)"
        else
            fail "descriptor binary $backend is in the package" "$(ls -l "$root$backend" 2>&1)"
        fi
        caps="$("$root$backend" --print-capabilities 2>&1)"
        if out="$(python3 -c '
import json, sys
d = json.loads(sys.argv[1])
assert d.get("type") == "fs", "type is not fs"
assert isinstance(d.get("features", []), list), "features is not a list"
' "$caps" 2>&1)"; then
            ok "$backend --print-capabilities is vhost-user fs JSON: $(tr -d ' \n' <<<"$caps")"
        else
            fail "$backend --print-capabilities is vhost-user fs JSON" "$out"$'\n'"$caps"
        fi
        # It is `ownfs virtiofs`, with the options a vhost-user fs backend takes.
        help="$("$root$backend" --help 2>&1)"
        missing=""
        for opt in --socket-path --fd --shared-dir --print-capabilities; do
            grep -q -- "^ *$opt\b" <<<"$help" || missing+=" $opt"
        done
        if [[ -z $missing ]]; then
            ok "$backend --help: --socket-path, --fd, --shared-dir, --print-capabilities"
        else
            fail "$backend --help lists the vhost-user fs options" "missing:$missing"
        fi
    else
        fail "vhost-user descriptor parses" "$out"
    fi
fi

# --- systemd units -------------------------------------------------------------------
units=(ownfs-virtiofs@.service ownfs-serve@.service)
for u in "${units[@]}"; do
    if [[ -f $root/lib/systemd/system/$u ]]; then ok "unit $u"; else fail "unit $u" "missing"; fi
done
if command -v systemd-analyze >/dev/null; then
    # With --root, the units and their ExecStart binary are looked up in the package;
    # the host's own units (sysinit.target...) are copied in beside them. MANPATH: the
    # Documentation= man pages are the package's.
    vroot="$work/verify"
    mkdir -p "$vroot/usr/lib/systemd"
    cp -a "$root/." "$vroot/"
    for d in /lib/systemd/system /usr/lib/systemd/system; do
        [[ -d $d ]] && cp -an "$d" "$vroot/usr/lib/systemd/" 2>/dev/null
    done
    for u in "${units[@]}"; do
        check "systemd-analyze verify $u" env MANPATH="$vroot/usr/share/man" \
            systemd-analyze verify --root="$vroot" "$vroot/lib/systemd/system/$u"
    done
else
    not_run "systemd-analyze verify" "no systemd-analyze on this machine"
fi

# --- mount -t fuse.ownfs ---------------------------------------------------------------
# mount(8) runs fuse3's mount.fuse3 with no PATH in its environment, which runs
# `ownfs SRC MNT -o OPTS` through /bin/sh, so from the shell's default PATH:
# /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin. The package's /usr/bin
# is on it; here, in a mount namespace of its own, the package's usr/bin is bound over
# /usr/local/bin to come first, and the whole mount(8) path runs as an fstab line would.
if [[ $EUID -ne 0 ]]; then
    not_run "mount -t fuse.ownfs" "needs root"
elif [[ ! -c /dev/fuse ]] || ! command -v mount.fuse3 >/dev/null || ! command -v unshare >/dev/null; then
    not_run "mount -t fuse.ownfs" "no /dev/fuse, mount.fuse3 or unshare here"
else
    src="$work/src"
    mkdir -p "$src" "$work/mnt"
    echo hello >"$src/file"
    # shellcheck disable=SC2016 # expanded by the inner shell
    out="$(timeout 60 unshare --mount --propagation private sh -c '
        mount --bind "$1/usr/bin" /usr/local/bin || exit 1
        timeout 30 mount -t fuse.ownfs "$2" "$3" -o noatime || exit 1
        findmnt -n -o FSTYPE --mountpoint "$3"; cat "$3/file"
        umount "$3" || umount -l "$3"' sh "$root" "$src" "$work/mnt" 2>"$work/mount.log")"
    if [[ $out == $'fuse.ownfs\nhello' ]]; then
        ok "mount -t fuse.ownfs SRC MNT, then umount (mount.fuse3 runs the package's ownfs)"
    else
        fail "mount -t fuse.ownfs SRC MNT" "$out"$'\n'"$(tail -20 "$work/mount.log")"
    fi
fi

echo "package: $passed passed, $failed failed, $notrun skipped"
((failed == 0))
