//! Ownership records in the containers ecosystem's formats, through real programs:
//! - `ownfs convert-records` round-trips a share with every file type between the
//!   three formats, unchanged as `ownfs owners` and `ls -ln` through a mount see it;
//! - fuse-overlayfs from Debian, run rootless the way podman runs it (as a plain user
//!   in a user namespace with its subordinate ids), is a peer on one share: owners set
//!   through ownfs show through fuse-overlayfs and owners set through fuse-overlayfs
//!   show through ownfs (`--record-format fuse-overlayfs`, its `-o xattr_permissions=2`),
//!   and a `containers`-format share reads right as a fuse-overlayfs lower layer.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn root_sh(script: &str, args: &[&Path]) -> String {
    ok(Caller::root()
        .umask(0o022)
        .command("/bin/sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .args(args))
}

fn ownfs(args: &[&str], src: &Path) -> String {
    ok(Command::new(ownfs_bin()).args(args).arg(src))
}

/// Every record xattr of every entry below `src` (symlinks not followed), sorted.
fn host_attrs(src: &Path) -> String {
    let out = ok(Command::new("getfattr")
        .args(["-R", "-h", "-d", "-m", "^user\\.", "--absolute-names"])
        .arg(src));
    let mut lines: Vec<String> = Vec::new();
    let mut file = String::new();
    for l in out.lines() {
        if let Some(f) = l.strip_prefix("# file: ") {
            file = f
                .strip_prefix(src.to_str().unwrap())
                .unwrap_or(f)
                .to_string();
        } else if !l.is_empty() {
            lines.push(format!("{file} {l}"));
        }
    }
    lines.sort();
    lines.join("\n")
}

/// Name, owner, type and mode, and device number of everything in a mount, sorted.
fn listing(mnt: &Path) -> String {
    root_sh(
        "cd \"$1\" && find . -exec stat -c '%n %u:%g %A %t:%T' {} + | sort",
        &[mnt],
    )
}

/// A rootless share (server 4130) with every file type, owned and moded variously.
fn populate(mnt: &Path) {
    root_sh(
        r#"set -e; cd "$1"
        echo data > file; chown 1000:100 file; chmod 4750 file
        mkdir dir; chown 5:6 dir; chmod 2775 dir
        echo x > dir/inner; chown 7:7 dir/inner
        touch plain
        ln -s file link; chown -h 3:4 link
        mkfifo fifo; chown 8:9 fifo
        python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' sock
        mknod char c 1 3; chmod 666 char
        mknod block b 8 0; chown 0:6 block; chmod 660 block"#,
        &[mnt],
    );
}

#[test]
fn convert_records_round_trips_every_file_type() {
    let run_as = ["--run-as", "4130:4130", "--cache", "never"];
    let mut m = Mount::start_with(&run_as, |src| {
        std::os::unix::fs::chown(src, Some(4130), Some(4130)).unwrap()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    populate(&m.mnt);
    let shown = listing(&m.mnt);
    assert!(shown.contains("./char 0:0 crw-rw-rw- 1:3"), "{shown}");
    m.stop(nix::sys::signal::Signal::SIGTERM);
    let src = m.src.clone();
    let owners = ownfs(&["owners"], &src);
    assert_eq!(
        owners.lines().count(),
        9,
        "a header and a record for all but `plain`:\n{owners}"
    );
    let ownfs_attrs = host_attrs(&src);
    assert!(!ownfs_attrs.contains("override_stat"), "{ownfs_attrs}");

    for (to, name) in [
        ("containers", "user.containers.override_stat"),
        ("fuse-overlayfs", "user.fuseoverlayfs.override_stat"),
    ] {
        let said = ownfs(&["convert-records", "--to", to], &src);
        assert!(said.contains("entries without a record tagged"), "{said}");
        assert_eq!(ownfs(&["owners"], &src), owners, "owners after --to {to}");
        let attrs = host_attrs(&src);
        assert!(!attrs.contains("user.ownfs.stat"), "--to {to}:\n{attrs}");
        for entry in [
            "",
            "/file",
            "/dir",
            "/dir/inner",
            "/plain",
            "/fifo",
            "/sock",
            "/char",
            "/block",
        ] {
            let want = format!("{entry} {name}=");
            assert!(
                attrs.lines().any(|l| l.starts_with(&want)),
                "--to {to}: no {name} on {entry:?}:\n{attrs}"
            );
        }
        // A second run finds nothing left to do.
        let again = ownfs(&["convert-records", "--to", to], &src);
        assert!(again.contains(": 0 records converted"), "{again}");
        // Served in that format, the share looks as before.
        let args = [&run_as[..], &["--record-format", to]].concat();
        assert_eq!(
            serve_once(&src, &m.scratch.dir(to), &args),
            shown,
            "served as {to}"
        );
    }
    let said = ownfs(&["convert-records", "--to", "ownfs"], &src);
    assert!(said.contains(": 7 records converted"), "{said}");
    assert_eq!(ownfs(&["owners"], &src), owners, "owners after --to ownfs");
    assert_eq!(host_attrs(&src), ownfs_attrs, "back to the ownfs format");
    m.restart().unwrap();
    assert_eq!(listing(&m.mnt), shown);
}

/// `listing` of `src` served once more with `args` at `mnt`.
fn serve_once(src: &Path, mnt: &Path, args: &[&str]) -> String {
    let mut server = server_command(src, mnt, args)
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if ownfs_mounted_at(mnt) || server.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        ownfs_mounted_at(mnt),
        "a server with {args:?} did not mount"
    );
    let shown = listing(mnt);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    server.wait().unwrap();
    force_unmount(mnt);
    shown
}

/// `uid` of the user `tests` (scripts/test-deps.sh makes it, with subordinate ids).
fn tests_user() -> (u32, u32) {
    let u = nix::unistd::User::from_name("tests")
        .unwrap()
        .expect("user tests (scripts/test-deps.sh)");
    (u.uid.as_raw(), u.gid.as_raw())
}

/// Runs `script` as the user `tests` inside a user and mount namespace that maps it to
/// root and its subordinate ids to 1..65535, as rootless podman runs fuse-overlayfs.
fn as_rootless_podman(script: &str, args: &[&Path]) -> String {
    let (uid, gid) = tests_user();
    ok(Caller::new(uid, gid)
        .command("unshare")
        .args(["--mount", "--map-root-user", "--map-auto", "/bin/sh", "-c"])
        .arg(format!("set -e\n{script}"))
        .arg("sh")
        .args(args))
}

/// A rootless share served as the user `tests` in `format`, made for the containers
/// tools by `convert-records` (its root carries the attribute too), holding `a`
/// (1000:100 4750) and `d` (5:6) and whatever `more` (sh, in the mount) adds.
fn peer_share(format: &str, more: &str) -> Mount {
    let (uid, gid) = tests_user();
    let ids = format!("{uid}:{gid}");
    let args = [
        "--run-as",
        &ids,
        "--cache",
        "never",
        "--record-format",
        format,
    ];
    let m = Mount::start_with(&args, |src| {
        std::os::unix::fs::chown(src, Some(uid), Some(gid)).unwrap();
        ok(Command::new(ownfs_bin())
            .args(["convert-records", "--to", format])
            .arg(src));
    })
    .unwrap_or_else(|e| panic!("{e}"));
    root_sh(
        &format!(
            r#"set -e; cd "$1"
            echo data > a; chown 1000:100 a; chmod 4750 a
            mkdir d; chown 5:6 d; {more}"#
        ),
        &[&m.mnt],
    );
    m
}

fn dirs(base: &Path, names: &[&str], owner: (u32, u32)) -> Vec<PathBuf> {
    names
        .iter()
        .map(|n| {
            let d = base.join(n);
            fs::create_dir_all(&d).unwrap();
            std::os::unix::fs::chown(&d, Some(owner.0), Some(owner.1)).unwrap();
            d
        })
        .collect()
}

#[test]
fn fuse_overlayfs_is_a_peer_on_one_share() {
    assert!(
        Command::new("fuse-overlayfs")
            .arg("--version")
            .output()
            .is_ok(),
        "fuse-overlayfs is missing: run scripts/test-deps.sh"
    );
    let (uid, gid) = tests_user();
    let m = peer_share("fuse-overlayfs", "touch plain");
    let base = m.scratch.dir("peer");
    let [empty, work, ovl] = dirs(&base, &["empty", "work", "ovl"], (uid, gid))
        .try_into()
        .unwrap();
    // fuse-overlayfs 1.10's chmod writes back the owner it cached, so modes go first.
    let seen = as_rootless_podman(
        r#"fuse-overlayfs -o "xattr_permissions=2,lowerdir=$1,upperdir=$2,workdir=$3" "$4"
        cd "$4"
        stat -c '%n %u:%g %a' a d plain
        touch new; chmod 0640 new; chown 2000:3000 new
        mkdir nd; chmod 2750 nd; chown 9:9 nd
        chown 77:88 plain
        cd /; fusermount3 -u "$4""#,
        &[&empty, &m.src, &work, &ovl],
    );
    assert_eq!(
        seen.lines().collect::<Vec<_>>(),
        ["a 1000:100 4750", "d 5:6 755", "plain 0:0 644"],
        "ownfs's owners through fuse-overlayfs"
    );
    let back = root_sh(
        "cd \"$1\" && stat -c '%n %u:%g %a' new nd plain a",
        &[&m.mnt],
    );
    assert_eq!(
        back.lines().collect::<Vec<_>>(),
        [
            "new 2000:3000 640",
            "nd 9:9 2750",
            "plain 77:88 644",
            "a 1000:100 4750"
        ],
        "fuse-overlayfs's owners through ownfs"
    );
}

#[test]
fn a_containers_share_reads_right_as_a_fuse_overlayfs_lower_layer() {
    let (uid, gid) = tests_user();
    let m = peer_share("containers", "chmod 1777 d; touch plain; ln -s a l");
    let value = ok(Command::new("getfattr")
        .args(["-n", "user.containers.override_stat", "--only-values"])
        .arg(m.src.join("a")));
    assert_eq!(
        value.trim_end(),
        "1000:100:4750:file",
        "containers-storage's own form"
    );
    let base = m.scratch.dir("peer");
    let [up, work, ovl] = dirs(&base, &["up", "work", "ovl"], (uid, gid))
        .try_into()
        .unwrap();
    let seen = as_rootless_podman(
        r#"fuse-overlayfs -o "lowerdir=$1,upperdir=$2,workdir=$3" "$4"
        cd "$4"; stat -c '%n %u:%g %a' a d plain
        cd /; fusermount3 -u "$4""#,
        &[&m.src, &up, &work, &ovl],
    );
    assert_eq!(
        seen.lines().collect::<Vec<_>>(),
        ["a 1000:100 4750", "d 5:6 1777", "plain 0:0 644"]
    );
}
