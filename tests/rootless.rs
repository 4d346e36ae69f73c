//! Rootless mode through real `ownfs mount --run-as ID:ID` mounts: the server
//! drops to an unprivileged id (without a passwd entry) and virtualizes
//! ownership, so what real programs (tar, cp, rsync, install, python, find,
//! stat, getfattr) see through the mount must match what they would see on a
//! native file system, while nothing on the host is ever chowned.
//!
//! Every test starts its own server with its own id, so the tests may run in
//! parallel.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{chown, lchown, symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use nix::unistd::{Uid, User};
use ownfs::platform;

/// The host xattr that holds a record.
const RECORD: &str = "user.ownfs.stat";

/// `ownfs mount --run-as ID:ID` on a SRC owned by ID:ID.
fn rootless(id: u32) -> Mount {
    let ids = format!("{id}:{id}");
    Mount::start_with(&["--run-as", &ids], |src| {
        chown(src, Some(id), Some(id)).unwrap_or_else(|e| panic!("chown {}: {e}", src.display()))
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// A command that runs as root (groups [0], umask 022).
fn cmd(program: &str) -> Command {
    Caller::root().umask(0o022).command(program)
}

/// Runs `c` and asserts that it fails; returns its stderr.
#[track_caller]
fn fails(c: &mut Command) -> String {
    let out = output_timeout(c, CHILD_TIMEOUT);
    assert!(
        !out.status.success(),
        "{c:?} must fail, but it succeeded; stdout:\n{}",
        lossy(&out.stdout)
    );
    lossy(&out.stderr)
}

/// Runs `sh -c script` as root with `args` as $1, $2, ...
#[track_caller]
fn sh(script: &str, args: &[&Path]) -> String {
    ok(cmd("/bin/sh").arg("-c").arg(script).arg("sh").args(args))
}

/// `stat -c FORMAT path` (a final symlink is not followed).
#[track_caller]
fn stat(format: &str, path: &Path) -> String {
    ok(cmd("stat").arg("-c").arg(format).arg(path))
        .trim_end()
        .to_string()
}

fn sorted_lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(str::to_string).collect();
    v.sort();
    v
}

/// `stat` of everything under `dir` (names relative to it), sorted: owner,
/// permission bits, type, device numbers and mtime.
#[track_caller]
fn tree_listing(dir: &Path) -> Vec<String> {
    let out = ok(cmd("find").current_dir(dir).args([
        ".",
        "-exec",
        "stat",
        "-c",
        "%n|%u:%g|%a|%F|%t,%T|%Y",
        "{}",
        "+",
    ]));
    sorted_lines(&out)
}

/// `tar --numeric-owner -tvf archive`, sorted.
#[track_caller]
fn tar_listing(archive: &Path) -> Vec<String> {
    sorted_lines(&ok(cmd("tar")
        .arg("--numeric-owner")
        .arg("-tvf")
        .arg(archive)))
}

/// The raw record xattr of a host path (not following symlinks), if any.
fn host_record(p: &Path) -> Option<Vec<u8>> {
    let path = cstr(p);
    let name = std::ffi::CString::new(RECORD).unwrap();
    let mut buf = [0u8; 256];
    match platform::lgetxattr_path(&path, &name, &mut buf) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(e) => {
            assert_eq!(
                e.raw_os_error(),
                Some(libc::ENODATA),
                "getxattr {} {RECORD}: {e}",
                p.display()
            );
            None
        }
    }
}

/// A record as documented: 28 bytes, version 1, flags (uid 1, gid 2, mode 4,
/// type 8), then u32 LE uid @4, gid @8, mode @12, format @16, major @20,
/// minor @24.
#[derive(Debug, PartialEq, Eq)]
struct Rec {
    uid: Option<u32>,
    gid: Option<u32>,
    mode: Option<u32>,
    kind: Option<(u32, u32, u32)>,
}

#[track_caller]
fn decode(raw: &[u8], what: &Path) -> Rec {
    assert_eq!(raw.len(), 28, "record of {}: {raw:02x?}", what.display());
    assert_eq!(
        raw[0],
        1,
        "record version of {}: {raw:02x?}",
        what.display()
    );
    let flags = raw[1];
    assert_eq!(
        flags & !0x0f,
        0,
        "record flags of {}: {raw:02x?}",
        what.display()
    );
    let word = |i: usize| u32::from_le_bytes(raw[i..i + 4].try_into().unwrap());
    Rec {
        uid: (flags & 1 != 0).then(|| word(4)),
        gid: (flags & 2 != 0).then(|| word(8)),
        mode: (flags & 4 != 0).then(|| word(12)),
        kind: (flags & 8 != 0).then(|| (word(16), word(20), word(24))),
    }
}

/// Builds, natively and as root, a tree with mixed owners, set-id and sticky
/// bits, a FIFO, device nodes and owned symlinks, with fixed mtimes.
fn build_tree(root: &Path) {
    sh(
        r#"set -e
cd "$1"
printf 'a\n' > a; chown 1001:1002 a; chmod 0644 a
printf 'bb\n' > b; chmod 0600 b
printf 'c\n' > c; chown 65534:65534 c; chmod 0640 c
printf '#!/bin/sh\n' > suid; chown 1001:1002 suid; chmod 4755 suid
printf '#!/bin/sh\n' > sgid; chown 0:1002 sgid; chmod 2755 sgid
mkdir tmp; chmod 1777 tmp
printf 'x\n' > tmp/x; chown 1001:1002 tmp/x; chmod 0664 tmp/x
mkdir sg; chown 65534:1002 sg; chmod 2775 sg
mkdir sg/deep; chown 1001:1002 sg/deep; chmod 0700 sg/deep
printf 'y\n' > sg/deep/y; chown 1234:5678 sg/deep/y; chmod 0444 sg/deep/y
mkfifo -m 0620 fifo; chown 1001:1002 fifo
mknod -m 0666 null c 1 3
mknod -m 0660 blk b 7 200; chown 0:6 blk
ln -s a link; chown -h 1001:1002 link
ln -s tmp dlink
chown 1001:1002 .; chmod 0750 .
find . -depth -exec touch -h -d @1600000000 {} +
touch -h -d @1500000000 link
"#,
        &[root],
    );
}

#[test]
fn tar_same_owner_extracts_mixed_owners() {
    let m = rootless(4101);
    let work = Scratch::new("rl-tar");
    let tree = work.dir("tree");
    build_tree(&tree);
    let archive = work.path("tree.tar");
    ok(cmd("tar")
        .args(["--numeric-owner", "-cpf"])
        .arg(&archive)
        .arg("-C")
        .arg(&tree)
        .arg("."));
    let listing = tar_listing(&archive);
    for want in [
        "-rw-r--r-- 1001/1002",
        "-rw------- 0/0",
        "-rw-r----- 65534/65534",
        "-rwsr-xr-x 1001/1002",
        "drwxrwxrwt 0/0",
        "drwxrwsr-x 65534/1002",
        "prw--w---- 1001/1002",
        "crw-rw-rw- 0/0",
        "lrwxrwxrwx 1001/1002",
    ] {
        assert!(
            listing.iter().any(|l| l.starts_with(want)),
            "the native archive must hold a '{want}' entry:\n{}",
            listing.join("\n")
        );
    }

    let x = m.mnt.join("x");
    fs::create_dir(&x).unwrap();
    ok(cmd("tar")
        .args(["--same-owner", "-xpf"])
        .arg(&archive)
        .arg("-C")
        .arg(&x));

    // tar's own comparison: mode, uid, gid, mtime, size, contents, link targets.
    ok(cmd("tar")
        .args(["--numeric-owner", "-df"])
        .arg(&archive)
        .arg("-C")
        .arg(&x));
    // Archived again from the mount, the listing is the original one.
    let back = work.path("back.tar");
    ok(cmd("tar")
        .args(["--numeric-owner", "-cpf"])
        .arg(&back)
        .arg("-C")
        .arg(&x)
        .arg("."));
    assert_eq!(tar_listing(&back), listing);
    assert_eq!(tree_listing(&x), tree_listing(&tree));

    // Nothing was chowned or made set-id on the host.
    let host_x = m.src.join("x");
    let foreign = ok(cmd("find").arg(&host_x).args(["!", "-uid", "4101"]));
    assert_eq!(foreign, "", "host objects not owned by the server");
    let setid = ok(cmd("find").arg(&host_x).args(["-perm", "/7000"]));
    assert_eq!(setid, "", "host objects with set-id or sticky bits");
}

#[test]
fn cp_p_preserves_owner_and_mode() {
    let m = rootless(4102);
    let work = Scratch::new("rl-cp");
    let f = work.path("f");
    fs::write(&f, b"data\n").unwrap();
    sh(
        "chown 1234:5678 \"$1\" && chmod 0640 \"$1\" && touch -d @1500000000 \"$1\"",
        &[&f],
    );
    let dst = m.mnt.join("f");
    ok(cmd("cp").arg("-p").arg(&f).arg(&dst));
    assert_eq!(stat("%u:%g %a %Y %s", &dst), "1234:5678 640 1500000000 5");
    assert_eq!(fs::read(&dst).unwrap(), b"data\n");
    assert_eq!(
        stat("%u:%g", &m.src.join("f")),
        "4102:4102",
        "the host file stays the server's"
    );
}

#[test]
fn cp_p_onto_a_setuid_file_matches_native() {
    let m = rootless(4103);
    let work = Scratch::new("rl-cp-over");
    let f = work.path("f");
    fs::write(&f, b"data\n").unwrap();
    sh("chown 1234:5678 \"$1\" && chmod 0640 \"$1\"", &[&f]);
    let native = work.dir("native");
    let mut seen = Vec::new();
    for dir in [&native, &m.mnt] {
        let dst = dir.join("over");
        ok(cmd("install")
            .args(["-o", "1234", "-g", "5678", "-m", "4750"])
            .arg(&f)
            .arg(&dst));
        // Same owner already: cp -p sets the mode through the ACL xattr only.
        ok(cmd("cp").arg("-p").arg(&f).arg(&dst));
        seen.push(stat("%u:%g %a", &dst));
    }
    assert_eq!(
        seen[1], seen[0],
        "cp -p onto a setuid file: mount vs native"
    );
}

#[test]
fn cp_a_copies_a_tree_with_mixed_owners() {
    let m = rootless(4104);
    let work = Scratch::new("rl-cp-a");
    let tree = work.dir("tree");
    build_tree(&tree);
    let dst = m.mnt.join("copy");
    ok(cmd("cp").arg("-a").arg(&tree).arg(&dst));
    assert_eq!(tree_listing(&dst), tree_listing(&tree));
}

#[test]
fn rsync_a_then_nothing_left_to_transfer() {
    let m = rootless(4105);
    let work = Scratch::new("rl-rsync");
    let tree = work.dir("tree");
    build_tree(&tree);
    let from = format!("{}/", tree.display());
    let to = format!("{}/", m.mnt.join("r").display());
    ok(cmd("rsync").args(["-a", "--numeric-ids", &from, &to]));
    assert_eq!(tree_listing(&m.mnt.join("r")), tree_listing(&tree));

    let again = ok(cmd("rsync").args(["-a", "--numeric-ids", "--itemize-changes", &from, &to]));
    assert_eq!(again, "", "a second rsync -a must transfer nothing");
    // Nor would anything go back the other way.
    let back = ok(cmd("rsync").args([
        "-a",
        "--numeric-ids",
        "--dry-run",
        "--itemize-changes",
        &to,
        &from,
    ]));
    assert_eq!(
        back, "",
        "rsync from the mount back to the tree must find no change"
    );
}

#[test]
fn python_shutil_chown_then_stat() {
    let m = rootless(4106);
    let script = r#"
import os, shutil, stat, sys
d = sys.argv[1]
p = os.path.join(d, "f")
open(p, "w").close()
shutil.chown(p, 1111, 2222)
st = os.stat(p)
print(st.st_uid, st.st_gid)
q = os.path.join(d, "named")
open(q, "w").close()
shutil.chown(q, user="nobody", group="nogroup")
st = os.stat(q)
print(st.st_uid, st.st_gid)
l = os.path.join(d, "link")
os.symlink("f", l)
os.lchown(l, 3333, 4444)
st = os.lstat(l)
print(st.st_uid, st.st_gid, stat.S_ISLNK(st.st_mode), os.stat(l).st_uid)
s = os.path.join(d, "dir")
os.mkdir(s)
os.chmod(s, 0o2770)
print(oct(stat.S_IMODE(os.stat(s).st_mode)))
"#;
    let out = ok(cmd("python3").arg("-c").arg(script).arg(&m.mnt));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["1111 2222", "65534 65534", "3333 4444 True 1111", "0o2770"]
    );
}

#[test]
fn install_sets_owner_and_setuid_mode() {
    let m = rootless(4107);
    let work = Scratch::new("rl-install");
    let f = work.path("prog");
    fs::write(&f, b"#!/bin/sh\n").unwrap();
    let dst = m.mnt.join("prog");
    ok(cmd("install")
        .args(["-o", "1234", "-g", "5678", "-m", "4750"])
        .arg(&f)
        .arg(&dst));
    assert_eq!(stat("%u:%g %a %F", &dst), "1234:5678 4750 regular file");
    let dir = m.mnt.join("d");
    ok(cmd("install")
        .args(["-d", "-o", "1234", "-g", "5678", "-m", "2750"])
        .arg(&dir));
    assert_eq!(stat("%u:%g %a %F", &dir), "1234:5678 2750 directory");
    // The host keeps the server as owner and never gets a set-id bit.
    assert_eq!(stat("%u:%g %a", &m.src.join("prog")), "4107:4107 750");
    assert_eq!(stat("%u:%g %a", &m.src.join("d")), "4107:4107 750");
}

#[test]
fn find_uid_finds_exactly_the_chowned_files() {
    let m = rootless(4108);
    let u = m.mnt.join("u");
    fs::create_dir(&u).unwrap();
    sh(
        r#"set -e
cd "$1"
touch f1 f2 g h
chown 1234:1 f1
chown 1235:1234 f2
chown 4321:1234 h
mkdir d; chown 1234:0 d
touch d/f3; chown 1234:1234 d/f3
ln -s f1 l; chown -h 1234:0 l
mkfifo p; chown 1234 p
mknod n c 1 3
"#,
        &[&u],
    );
    let find = |args: &[&str]| -> BTreeSet<String> {
        ok(cmd("find").arg(&u).args(args))
            .lines()
            .map(|l| {
                l.strip_prefix(&*u.to_string_lossy())
                    .unwrap_or(l)
                    .to_string()
            })
            .collect()
    };
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        find(&["-uid", "1234"]),
        set(&["/f1", "/d", "/d/f3", "/l", "/p"])
    );
    assert_eq!(find(&["-gid", "1234"]), set(&["/f2", "/h", "/d/f3"]));
    assert_eq!(find(&["-user", "1234", "-type", "l"]), set(&["/l"]));
    assert_eq!(find(&["-uid", "0", "-type", "f"]), set(&["/g"]));
    // On the host nothing belongs to 1234: the server never chowns.
    assert_eq!(ok(cmd("find").arg(&m.src).args(["-uid", "1234"])), "");
}

#[test]
fn fifos_and_device_nodes_are_emulated() {
    let m = rootless(4109);
    let d = m.mnt.join("sp");
    fs::create_dir(&d).unwrap();
    ok(cmd("mkfifo").arg(d.join("fifo")));
    ok(cmd("mknod").arg(d.join("chr")).args(["c", "1", "3"]));
    ok(cmd("mknod").arg(d.join("blk")).args(["b", "8", "1"]));
    ok(cmd("python3")
        .arg("-c")
        .arg("import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])")
        .arg(d.join("sock")));
    let expect = [
        ("fifo", "fifo/0/0"),
        ("chr", "character special file/1/3"),
        ("blk", "block special file/8/1"),
        ("sock", "socket/0/0"),
    ];
    for (name, want) in expect {
        assert_eq!(stat("%F/%t/%T", &d.join(name)), want, "{name} in the mount");
        let host = m.src.join("sp").join(name);
        assert_eq!(
            stat("%F|%u:%g", &host),
            "regular empty file|4109:4109",
            "{name} on the host"
        );
    }
    // readdir types too: find -type uses d_type.
    for (t, name) in [("p", "fifo"), ("c", "chr"), ("b", "blk"), ("s", "sock")] {
        let found = ok(cmd("find").arg(&d).args(["-type", t]));
        assert_eq!(
            found.trim_end(),
            d.join(name).to_string_lossy(),
            "find -type {t}"
        );
    }
    // The FIFO works as a pipe (the client kernel handles it).
    let out = sh(
        "echo through > \"$1\" & cat \"$1\"; wait",
        &[&d.join("fifo")],
    );
    assert_eq!(out, "through\n");
}

#[test]
fn ownership_survives_a_server_restart() {
    let mut m = rootless(4110);
    let work = Scratch::new("rl-persist");
    let tree = work.dir("tree");
    build_tree(&tree);
    let archive = work.path("tree.tar");
    ok(cmd("tar")
        .args(["--numeric-owner", "-cpf"])
        .arg(&archive)
        .arg("-C")
        .arg(&tree)
        .arg("."));
    let p = m.mnt.join("p");
    fs::create_dir(&p).unwrap();
    ok(cmd("tar")
        .args(["--same-owner", "-xpf"])
        .arg(&archive)
        .arg("-C")
        .arg(&p));
    sh(
        r#"set -e
cd "$1"
ln -s a sl; chown -h 77:88 sl
ln a a.hard
mv c c.renamed
mv link link.renamed
chown 9:10 tmp
chmod 3751 sg/deep
touch plain
"#,
        &[&p],
    );
    let before = tree_listing(&p);
    for want in [
        "./sl|77:88|777|symbolic link|",
        "./link.renamed|1001:1002|777|symbolic link|",
        "./c.renamed|65534:65534|640|regular file|",
        "./a.hard|1001:1002|644|",
        "./tmp|9:10|1777|directory|",
        "./sg/deep|1001:1002|3751|directory|",
        "./suid|1001:1002|4755|",
        "./fifo|1001:1002|620|fifo|",
        "./null|0:0|666|character special file|1,3|",
        "./blk|0:6|660|block special file|7,c8|",
        "./plain|0:0|644|regular empty file|",
    ] {
        assert!(
            before.iter().any(|l| l.starts_with(want)),
            "expected '{want}' in:\n{}",
            before.join("\n")
        );
    }
    m.restart().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tree_listing(&p), before, "after a restart");
    m.restart().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tree_listing(&p), before, "after a second restart");
}

#[test]
fn record_xattr_cannot_be_seen_or_forged() {
    let m = rootless(4111);
    let (f, plain, d) = (m.mnt.join("f"), m.mnt.join("plain"), m.mnt.join("d"));
    sh(
        r#"set -e
cd "$1"
touch f plain; mkdir d
chown 1001:1002 f; chmod 4750 f
chown 1001:1002 d
setfattr -n user.other -v 1 f
"#,
        &[&m.mnt],
    );
    let hosts: Vec<PathBuf> = ["f", "plain", "d"].iter().map(|n| m.src.join(n)).collect();
    let stored: Vec<Option<Vec<u8>>> = hosts.iter().map(|h| host_record(h)).collect();
    assert!(
        stored[0].is_some() && stored[2].is_some(),
        "f and d have records"
    );
    assert_eq!(stored[1], None, "plain has no record");
    assert_eq!(
        decode(stored[0].as_ref().unwrap(), &hosts[0]),
        Rec {
            uid: Some(1001),
            gid: Some(1002),
            mode: Some(0o4750),
            kind: None
        }
    );

    for p in [&f, &plain, &d] {
        let err = fails(cmd("getfattr").args(["-n", RECORD]).arg(p));
        assert!(
            err.contains("No such attribute"),
            "getfattr {}: {err}",
            p.display()
        );
        let all = ok(cmd("getfattr").args(["-d", "-m-"]).arg(p));
        assert!(
            !all.lines().any(|l| l.starts_with(RECORD)),
            "getfattr -d -m- {} lists: {all}",
            p.display()
        );
        for args in [
            &["-n", RECORD, "-v", "0x01"][..],
            &[
                "-n",
                RECORD,
                "-v",
                "0x0103000000000000000000000000000000000000000000000000000000",
            ],
            &["-x", RECORD],
        ] {
            let err = fails(cmd("setfattr").args(args).arg(p));
            assert!(
                err.contains("Operation not permitted"),
                "setfattr {args:?} {}: {err}",
                p.display()
            );
        }
    }
    assert!(ok(cmd("getfattr").args(["-d", "-m-"]).arg(&f)).contains("user.other"));

    // The exact errnos, also for the (virtual) owner of the file.
    let probe = r#"
import errno, os, sys
names = ("user.ownfs.stat", "user.containers.override_stat", "user.fuseoverlayfs.override_stat")
for p, name in [(p, n) for p in sys.argv[1:] for n in names]:
    out = []
    for op in (lambda: os.getxattr(p, name),
               lambda: os.setxattr(p, name, b"\x01"),
               lambda: os.setxattr(p, name, b"\x01" * 28, os.XATTR_CREATE),
               lambda: os.removexattr(p, name)):
        try:
            op()
            out.append("ok")
        except OSError as e:
            out.append(errno.errorcode[e.errno])
    out.append(str(name in os.listxattr(p)))
    print(" ".join(out))
"#;
    let want = "ENODATA EPERM EPERM EPERM False";
    let out = ok(cmd("python3").arg("-c").arg(probe).args([&f, &plain, &d]));
    assert_eq!(out.lines().collect::<Vec<_>>(), [want; 9], "as root");
    let owner = Caller::new(1001, 1002).umask(0o022);
    let mut c = owner.command("python3");
    c.arg("-c").arg(probe).arg(&f).arg(&d);
    assert_eq!(
        ok(&mut c).lines().collect::<Vec<_>>(),
        [want; 6],
        "as the owner 1001"
    );

    let after: Vec<Option<Vec<u8>>> = hosts.iter().map(|h| host_record(h)).collect();
    assert_eq!(after, stored, "records on SRC after the attempts");
    let host_names = ok(cmd("getfattr").args(["-d", "-m-"]).args(&hosts));
    assert!(
        !host_names.contains("override_stat"),
        "on SRC: {host_names}"
    );
    assert_eq!(stat("%u:%g %a", &f), "1001:1002 4750");
    assert_eq!(stat("%u:%g %a", &plain), "0:0 644");
}

#[test]
fn record_store_cannot_be_reached() {
    let m = rootless(4112);
    let l = m.mnt.join("l");
    symlink("target", &l).unwrap();
    ok(cmd("chown").args(["-h", "77:88"]).arg(&l));
    let store = m.src.join(".ownfs-symlinks.d");
    assert_eq!(stat("%u:%g %a %F", &store), "4112:4112 700 directory");
    let db = store.join("records.sqlite");
    assert_eq!(stat("%u:%g %a", &db), "4112:4112 600");
    let stored = ok(Command::new(ownfs_bin()).arg("owners").arg(&m.src));
    assert!(
        stored.contains("l\t4112:4112\t77:88\tl 0777"),
        "owners: {stored}"
    );
    let shown = ok(cmd("ls").arg("-a").arg(&m.mnt));
    assert!(!shown.contains(".ownfs-symlinks"), "ls -a shows: {shown}");
    let through = m.mnt.join(".ownfs-symlinks.d");
    fails(cmd("ls").arg(&through));
    fails(cmd("cat").arg(through.join("records.sqlite")));
    fails(cmd("mkdir").arg(&through));
    fails(cmd("touch").arg(m.mnt.join(".ownfs-symlinks")));
    fails(
        cmd("ln")
            .arg("-s")
            .arg("x")
            .arg(m.mnt.join(".ownfs-symlinks.bak")),
    );
    ok(cmd("mkdir").arg(m.mnt.join("d")));
    fails(cmd("mv").arg(m.mnt.join("d")).arg(&through));
    assert_eq!(
        ok(Command::new(ownfs_bin()).arg("owners").arg(&m.src)),
        stored,
        "the records are unchanged"
    );
    assert_eq!(stat("%u:%g", &l), "77:88");
}

/// Starts `ownfs mount` with `args` on `src` at `mnt` (beside a `Mount` on the same SRC).
fn second_server(src: &Path, mnt: &Path, args: &[&str]) -> std::process::Child {
    let mut child = server_command(src, mnt, args)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if ownfs_mounted_at(mnt) {
            return child;
        }
        assert!(child.try_wait().unwrap().is_none(), "second server exited");
        sleep(Duration::from_millis(50));
    }
    panic!("second server did not mount {}", mnt.display());
}

/// Two servers on one share (a mount per VM, say) creating and lchowning symlinks at
/// the same time, then each changing the other's: every record survives, each server
/// shows the other's changes, and so does a fresh server afterwards.
#[test]
fn two_servers_on_one_share_keep_every_symlink_record() {
    const N: u32 = 150;
    let args = ["--run-as", "4116:4116", "--cache", "never"];
    let mut a = Mount::start_with(&args, |src| chown(src, Some(4116), Some(4116)).unwrap())
        .unwrap_or_else(|e| panic!("{e}"));
    let mnt_b = a.scratch.dir("b/mnt");
    let mut b = second_server(&a.src, &mnt_b, &args);
    // Each server makes its own links (a*, b*), both at once.
    let storm = |mnt: &Path, prefix: &str, uid_base: u32, gid: u32| {
        cmd("/bin/sh")
            .arg("-c")
            .arg(format!(
                "cd \"$1\" && i=0; while [ $i -lt {N} ]; do ln -s t {prefix}$i && \
                 chown -h $(({uid_base} + i)):{gid} {prefix}$i || exit 1; i=$((i + 1)); done"
            ))
            .arg("sh")
            .arg(mnt)
            .spawn()
            .unwrap()
    };
    let mut sa = storm(&a.mnt, "a", 1000, 7);
    let mut sb = storm(&mnt_b, "b", 2000, 8);
    assert!(sa.wait().unwrap().success() && sb.wait().unwrap().success());
    // Each changes some of the other's.
    for i in 0..N / 3 {
        lchown(mnt_b.join(format!("a{i}")), Some(5), Some(5)).unwrap();
        lchown(a.mnt.join(format!("b{i}")), Some(6), Some(6)).unwrap();
    }
    let want = |prefix: &str, i: u32| -> (u32, u32) {
        match (prefix, i < N / 3) {
            ("a", true) => (5, 5),
            ("a", false) => (1000 + i, 7),
            (_, true) => (6, 6),
            _ => (2000 + i, 8),
        }
    };
    let check = |mnt: &Path, who: &str| {
        for prefix in ["a", "b"] {
            for i in 0..N {
                let p = mnt.join(format!("{prefix}{i}"));
                let md = fs::symlink_metadata(&p).unwrap();
                assert_eq!(
                    (md.uid(), md.gid()),
                    want(prefix, i),
                    "{who}: {}",
                    p.display()
                );
            }
        }
    };
    check(&a.mnt, "server a");
    check(&mnt_b, "server b");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(b.id() as i32), Signal::SIGTERM).unwrap();
    b.wait().unwrap();
    force_unmount(&mnt_b);
    a.restart().unwrap();
    check(&a.mnt, "a fresh server");
}

#[test]
fn chown_back_to_the_default_owner_removes_the_record() {
    let m = rootless(4113);
    let (f, d) = (m.mnt.join("f"), m.mnt.join("d"));
    let (hf, hd) = (m.src.join("f"), m.src.join("d"));
    ok(cmd("touch").arg(&f));
    ok(cmd("mkdir").arg(&d));
    for (p, h) in [(&f, &hf), (&d, &hd)] {
        ok(cmd("chown").arg("5:5").arg(p));
        assert_eq!(stat("%u:%g", p), "5:5");
        assert!(host_record(h).is_some(), "{} has a record", h.display());
        ok(cmd("chown").arg("0:0").arg(p));
        ok(cmd("chown").arg("0:0").arg(p));
        assert_eq!(stat("%u:%g", p), "0:0");
        assert_eq!(host_record(h), None, "{} still has a record", h.display());
        let listed = ok(cmd("getfattr").args(["-d", "-m-"]).arg(h));
        assert!(!listed.contains(RECORD), "getfattr on the host: {listed}");
        assert_eq!(stat("%u:%g", h), "4113:4113");
    }
    // Set-id bits come and go the same way.
    ok(cmd("chmod").arg("4755").arg(&f));
    assert_eq!(stat("%a", &f), "4755");
    assert!(host_record(&hf).is_some());
    ok(cmd("chmod").arg("0644").arg(&f));
    assert_eq!(stat("%a", &f), "644");
    assert_eq!(host_record(&hf), None, "chmod back to the host's bits");
}

#[test]
fn kill_9_mid_chown_storm_leaves_decodable_records() {
    let mut m = rootless(4114);
    let dir = m.mnt.join("storm");
    let host_dir = m.src.join("storm");
    fs::create_dir(&dir).unwrap();
    const FILES: usize = 200;
    for i in 0..FILES {
        fs::write(dir.join(format!("f{i}")), b"x").unwrap();
    }
    let mode = fs::symlink_metadata(dir.join("f0")).unwrap().mode();
    let storm = r#"cd "$1" || exit 1
while :; do
  for i in $(seq 0 199); do
    chown $((100 + RANDOM % 5)):$((100 + RANDOM % 5)) f$i 2>/dev/null || exit 0
  done
done"#;
    let mut storms: Vec<_> = (0..2)
        .map(|_| {
            cmd("bash")
                .arg("-c")
                .arg(storm)
                .arg("storm")
                .arg(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn the chown storm")
        })
        .collect();
    sleep(Duration::from_millis(1500));
    let st = m.stop(Signal::SIGKILL);
    assert_eq!(describe(&st), "signal 9");
    for s in &mut storms {
        if wait_timeout(s, Duration::from_secs(20)).is_none() {
            let _ = s.kill();
            let _ = s.wait();
            panic!("the chown storm did not stop after the server died");
        }
    }
    ok(cmd("umount").arg("-l").arg(&m.mnt));
    m.restart().unwrap_or_else(|e| panic!("{e}"));

    let storm_ids: BTreeSet<u32> = (100..105).collect();
    let mut changed = 0;
    for i in 0..FILES {
        let name = format!("f{i}");
        let h = host_dir.join(&name);
        if let Some(raw) = host_record(&h) {
            let r = decode(&raw, &h);
            assert!(
                r.mode.is_none() && r.kind.is_none(),
                "{}: {r:?}",
                h.display()
            );
            for id in [r.uid, r.gid].into_iter().flatten() {
                assert!(storm_ids.contains(&id), "{}: {r:?}", h.display());
            }
        }
        let md = fs::symlink_metadata(dir.join(&name))
            .unwrap_or_else(|e| panic!("stat {name} after the crash: {e}"));
        for id in [md.uid(), md.gid()] {
            assert!(
                id == 0 || storm_ids.contains(&id),
                "{name} shows {}:{} after the crash",
                md.uid(),
                md.gid()
            );
        }
        assert_eq!(md.mode(), mode, "mode of {name}");
        if md.uid() != 0 || md.gid() != 0 {
            changed += 1;
        }
    }
    assert!(changed > 0, "the storm chowned nothing before the kill");
    // The new server can still change them.
    ok(cmd("chown").arg("9:9").arg(dir.join("f0")));
    assert_eq!(stat("%u:%g", &dir.join("f0")), "9:9");
}

/// Creates entries in `dir` (through the mount) with `make` until one gets the
/// host inode number `ino`, at most `tries` times. Every new entry must show
/// `want` as owner. Returns the name of the entry that reused `ino`, if any.
fn hunt_reuse(
    mnt_dir: &Path,
    host_dir: &Path,
    ino: u64,
    tries: usize,
    want: (u32, u32),
    make: impl Fn(&Path),
) -> Option<String> {
    for i in 0..tries {
        let name = format!("new{i}");
        make(&mnt_dir.join(&name));
        let shown = owner(&mnt_dir.join(&name));
        assert_eq!(shown, want, "owner of new entry {name}");
        let host = fs::symlink_metadata(host_dir.join(&name)).unwrap();
        if host.ino() == ino {
            return Some(name);
        }
    }
    None
}

#[test]
fn reused_inode_numbers_never_inherit_an_owner() {
    let m = rootless(4115);
    let (d, hd) = (m.mnt.join("files"), m.src.join("files"));
    fs::create_dir(&d).unwrap();
    fs::write(d.join("victim"), b"").unwrap();
    ok(cmd("chown").arg("4242:4242").arg(d.join("victim")));
    ok(cmd("chmod").arg("4700").arg(d.join("victim")));
    let ino = fs::metadata(hd.join("victim")).unwrap().ino();
    fs::remove_file(d.join("victim")).unwrap();
    let hit = hunt_reuse(&d, &hd, ino, 2000, (0, 0), |p| {
        fs::write(p, b"").unwrap();
    });
    match &hit {
        Some(name) => {
            assert_eq!(stat("%u:%g %a", &d.join(name)), "0:0 644");
            assert_eq!(host_record(&hd.join(name)), None);
        }
        None => eprintln!("note: no file reused host inode {ino} in 2000 tries"),
    }

    let (l, hl) = (m.mnt.join("links"), m.src.join("links"));
    fs::create_dir(&l).unwrap();
    symlink("t", l.join("victim")).unwrap();
    ok(cmd("chown").args(["-h", "4343:4343"]).arg(l.join("victim")));
    let ino = fs::symlink_metadata(hl.join("victim")).unwrap().ino();
    fs::remove_file(l.join("victim")).unwrap();
    let hit = hunt_reuse(&l, &hl, ino, 2000, (0, 0), |p| symlink("t", p).unwrap());
    if hit.is_none() {
        eprintln!("note: no symlink reused host inode {ino} in 2000 tries");
    }
}

#[test]
fn stale_symlink_record_is_not_inherited_after_a_restart() {
    let mut m = rootless(4116);
    let (l, hl) = (m.mnt.join("links"), m.src.join("links"));
    fs::create_dir(&l).unwrap();
    symlink("t", l.join("victim")).unwrap();
    symlink("t", l.join("keep")).unwrap();
    ok(cmd("chown").args(["-h", "4444:4444"]).arg(l.join("victim")));
    ok(cmd("chown").args(["-h", "4545:4545"]).arg(l.join("keep")));
    let ino = fs::symlink_metadata(hl.join("victim")).unwrap().ino();
    // Removed on the host while no server runs: its record stays in the sidecar.
    m.stop(Signal::SIGTERM);
    force_unmount(&m.mnt);
    fs::remove_file(hl.join("victim")).unwrap();
    // New symlinks made on the host, owned by the server's uid as its own would be.
    let mut reused = None;
    for i in 0..2000 {
        let p = hl.join(format!("host{i}"));
        symlink("t", &p).unwrap();
        lchown(&p, Some(4116), Some(4116)).unwrap();
        if fs::symlink_metadata(&p).unwrap().ino() == ino {
            reused = Some(i);
            break;
        }
    }
    m.restart().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stat("%u:%g", &l.join("keep")), "4545:4545");
    for entry in fs::read_dir(&l).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name().unwrap() != "keep" {
            assert_eq!(owner(&p), (0, 0), "{}", p.display());
        }
    }
    if reused.is_none() {
        eprintln!("note: no host symlink reused inode {ino}");
    }
    // Through the mount too.
    let hit = hunt_reuse(&l, &hl, ino, 2000, (0, 0), |p| symlink("t", p).unwrap());
    if reused.is_none() && hit.is_none() {
        eprintln!("note: no symlink through the mount reused inode {ino} either");
    }
}

#[test]
fn sigterm_unmounts_a_run_as_server_without_a_passwd_entry() {
    let id = 4117;
    assert!(
        User::from_uid(Uid::from_raw(id)).unwrap().is_none(),
        "uid {id} must have no passwd entry for this test"
    );
    let mut m = rootless(id);
    ok(cmd("touch").arg(m.mnt.join("f")));
    let st = m.stop(Signal::SIGTERM);
    let mounted = m.is_mounted();
    let err = m.stderr();
    assert!(
        !mounted,
        "{} is still mounted after the server exited ({}); stderr:\n{err}",
        m.mnt.display(),
        describe(&st)
    );
    assert!(
        st.success(),
        "ownfs exited with {}; stderr:\n{err}",
        describe(&st)
    );
}

#[test]
fn root_can_still_write_a_read_only_file_copied_with_cp_a() {
    let m = rootless(4118);
    let work = Scratch::new("rl-ro");
    let f = work.path("ro");
    fs::write(&f, b"one\n").unwrap();
    sh("chown 1234:5678 \"$1\" && chmod 0444 \"$1\"", &[&f]);
    let dst = m.mnt.join("ro");
    ok(cmd("cp").arg("-a").arg(&f).arg(&dst));
    // Root may write a 0444 file (CAP_DAC_OVERRIDE), natively and here.
    sh("echo two >> \"$1\"", &[&dst]);
    assert_eq!(fs::read(&dst).unwrap(), b"one\ntwo\n");
    assert_eq!(stat("%u:%g %a", &dst), "1234:5678 444");
}

#[test]
fn posix_acl_entries_are_enforced_or_refused() {
    let m = rootless(4119);
    let f = m.mnt.join("f");
    sh("echo secret > \"$1\"", &[&f]);
    assert_eq!(stat("%u:%g %a", &f), "0:0 644");
    let other = Caller::new(1001, 1001);
    let read = |p: &Path| {
        let p = p.to_path_buf();
        other.run(move || fs::read(&p).map(drop))
    };
    read(&f).expect("1001 may read a 0644 file");
    let out = output_timeout(
        cmd("setfacl").args(["-m", "u:1001:---"]).arg(&f),
        CHILD_TIMEOUT,
    );
    if out.status.success() {
        // Accepted: then it must hold, as it does natively.
        assert_errno(
            read(&f),
            libc::EACCES,
            "read by 1001 after setfacl u:1001:---",
        );
    } else {
        eprintln!(
            "note: setfacl refused ({}): {}",
            describe(&out.status),
            lossy(&out.stderr)
        );
        read(&f).expect("1001 may still read");
    }
}
