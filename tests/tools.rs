//! `ownfs owners` and `ownfs export-tar`, through the library functions: a share
//! tree built on the host as a rootless server would have left it, with records
//! written by hand, then the listing and the archive (read back with GNU tar).
//!
//! Needs root (to chown the tree to the pretend server owner) and `setfattr`/`tar`.

mod common;

use std::fs;
use std::os::unix::fs::{lchown, symlink, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::UNIX_EPOCH;

use common::{chmod, Scratch};
use ownfs::tools::progress::Progress;
use ownfs::tools::{self, Options};

/// The uid:gid the pretend server ran as.
const SERVER: u32 = 4000;
const BIG_UID: u32 = 3_000_000;

const S_IFIFO: u32 = 0o010000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;

#[derive(Default, Clone, Copy)]
struct Rec {
    uid: Option<u32>,
    gid: Option<u32>,
    mode: Option<u32>,
    /// (S_IFMT format, major, minor)
    kind: Option<(u32, u32, u32)>,
}

impl Rec {
    /// The 28-byte version-1 record, laid out by hand.
    fn bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; 28];
        b[0] = 1;
        let mut put = |at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        let mut flags = 0u8;
        if let Some(u) = self.uid {
            flags |= 1;
            put(4, u);
        }
        if let Some(g) = self.gid {
            flags |= 2;
            put(8, g);
        }
        if let Some(m) = self.mode {
            flags |= 4;
            put(12, m);
        }
        if let Some((f, maj, min)) = self.kind {
            flags |= 8;
            put(16, f);
            put(20, maj);
            put(24, min);
        }
        b[1] = flags;
        b
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::from("0x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn set_record_bytes(path: &Path, value: &[u8]) {
    run(Command::new("setfattr")
        .args(["-n", "user.ownfs.stat", "-v", &hex(value)])
        .arg(path));
}

fn set_record(path: &Path, rec: Rec) {
    set_record_bytes(path, &rec.bytes());
}

fn file(path: &Path, data: &str, mode: u32) {
    fs::write(path, data).unwrap();
    chmod(path, mode);
}

/// One sidecar entry for the symlink at `path`: (dev, ino, btime) plus the record.
fn sidecar_entry(path: &Path, rec: Rec, btime_shift: i64) -> Vec<u8> {
    let md = fs::symlink_metadata(path).unwrap();
    assert!(md.file_type().is_symlink());
    let born = md
        .created()
        .expect("birth time of the symlink (statx btime)")
        .duration_since(UNIX_EPOCH)
        .unwrap();
    let mut e = Vec::new();
    e.extend_from_slice(&md.dev().to_le_bytes());
    e.extend_from_slice(&md.ino().to_le_bytes());
    e.extend_from_slice(&(born.as_secs() as i64 + btime_shift).to_le_bytes());
    e.extend_from_slice(&born.subsec_nanos().to_le_bytes());
    e.extend_from_slice(&rec.bytes());
    e
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    lchown(path, Some(uid), Some(gid)).unwrap();
    let md = fs::symlink_metadata(path).unwrap();
    if md.is_dir() {
        for e in fs::read_dir(path).unwrap() {
            chown_tree(&e.unwrap().path(), uid, gid);
        }
    }
}

fn long_name() -> String {
    format!("{}.txt", "n".repeat(120))
}

fn deep_dir() -> String {
    let d = "d".repeat(60);
    format!("p/{d}/{d}/{d}")
}

fn link_target() -> String {
    format!("/opt/{}/lib.so", "t".repeat(150))
}

/// The share as a rootless server serving as 4000:4000 would have left it.
fn build_share(s: &Scratch) -> PathBuf {
    let src = s.dir("src");
    for d in [
        "bin",
        "dev",
        "home/alice",
        "lib",
        "long",
        "run",
        &deep_dir(),
    ] {
        s.dir(&format!("src/{d}"));
    }
    file(&src.join("bin/su"), "hello\n", 0o755);
    fs::hard_link(src.join("bin/su"), src.join("bin/sudo")).unwrap();
    symlink("su", src.join("bin/sh")).unwrap();
    symlink("su", src.join("bin/stale")).unwrap();
    file(&src.join("dev/null"), "", 0o600);
    file(&src.join("dev/sda"), "", 0o600);
    chmod(&src.join("home/alice"), 0o700);
    file(&src.join("home/alice/notes"), "notes\n", 0o640);
    file(&src.join("home/bob"), "", 0o644);
    file(&src.join("home/bob.cfg"), "", 0o644);
    symlink(link_target(), src.join("lib/far")).unwrap();
    file(&src.join("long").join(long_name()), "x", 0o644);
    file(&src.join(deep_dir()).join("f"), "deep", 0o644);
    file(&src.join("run/ctl"), "", 0o600);
    file(&src.join("run/old"), "", 0o644);
    chmod(&src, 0o755);
    chown_tree(&src, SERVER, SERVER);
    for bob in ["home/bob", "home/bob.cfg"] {
        lchown(src.join(bob), Some(1500), Some(1500)).unwrap();
    }

    set_record(
        &src,
        Rec {
            mode: Some(0o750),
            ..Rec::default()
        },
    );
    set_record(
        &src.join("bin/su"),
        Rec {
            mode: Some(0o4755),
            ..Rec::default()
        },
    );
    set_record(
        &src.join("dev/null"),
        Rec {
            mode: Some(0o666),
            kind: Some((S_IFCHR, 1, 3)),
            ..Rec::default()
        },
    );
    set_record(
        &src.join("dev/sda"),
        Rec {
            gid: Some(6),
            mode: Some(0o660),
            kind: Some((S_IFBLK, 8, 0)),
            ..Rec::default()
        },
    );
    let alice = Rec {
        uid: Some(1000),
        gid: Some(1000),
        ..Rec::default()
    };
    set_record(&src.join("home/alice"), alice);
    set_record(&src.join("home/alice/notes"), alice);
    // On a host user's own file: anyone who can write it could have put this record
    // there, so it is listed but not trusted (the view is the host's).
    set_record(
        &src.join("home/bob.cfg"),
        Rec {
            gid: Some(7),
            ..Rec::default()
        },
    );
    set_record(
        &src.join("long").join(long_name()),
        Rec {
            uid: Some(BIG_UID),
            ..Rec::default()
        },
    );
    set_record(
        &src.join("run"),
        Rec {
            mode: Some(0o1777),
            ..Rec::default()
        },
    );
    set_record(
        &src.join("run/ctl"),
        Rec {
            uid: Some(1000),
            gid: Some(5),
            mode: Some(0o620),
            kind: Some((S_IFIFO, 0, 0)),
        },
    );
    // A record from a later version: shown as the host default, listed as recorded.
    let mut future = Rec {
        uid: Some(99),
        ..Rec::default()
    }
    .bytes();
    future[0] = 2;
    set_record_bytes(&src.join("run/old"), &future);

    let mut sidecar = b"OWNFSYM1".to_vec();
    sidecar.extend(sidecar_entry(
        &src.join("bin/sh"),
        Rec {
            uid: Some(1000),
            gid: Some(1001),
            ..Rec::default()
        },
        0,
    ));
    // A birth time that does not match, as after the inode number was reused: ignored.
    sidecar.extend(sidecar_entry(
        &src.join("bin/stale"),
        Rec {
            uid: Some(7),
            ..Rec::default()
        },
        1,
    ));
    fs::write(src.join(".ownfs-symlinks"), &sidecar).unwrap();
    // The server's own file: a sidecar anyone else owns or may write is ignored.
    chmod(&src.join(".ownfs-symlinks"), 0o600);
    lchown(src.join(".ownfs-symlinks"), Some(SERVER), Some(SERVER)).unwrap();
    fs::write(src.join(".ownfs-symlinks.tmp"), b"half-written").unwrap();
    src
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn owners(src: &Path, opts: &Options) -> (usize, String) {
    let mut out = Vec::new();
    let n = tools::owners::list(src, opts, &mut out, &Progress::hidden()).expect("owners listing");
    (n, String::from_utf8(out).unwrap())
}

#[test]
fn owners_lists_recorded_entries_with_their_virtual_view() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let s = Scratch::new("owners");
    let src = build_share(&s);
    let opts = Options {
        default_owner: (0, 0),
        server_owner: Some((SERVER, SERVER)),
        ..Options::default()
    };
    let (n, text) = owners(&src, &opts);
    let long = format!("long/{}", long_name());
    let expected = [
        "PATH\tHOST\tVIRTUAL\tMODE",
        ".\t4000:4000\t0:0\td 0750",
        "bin/sh\t4000:4000\t1000:1001\tl 0777",
        "bin/su\t4000:4000\t0:0\t- 4755",
        "bin/sudo\t4000:4000\t0:0\t- 4755",
        "dev/null\t4000:4000\t0:0\tc 0666 (1,3)",
        "dev/sda\t4000:4000\t0:6\tb 0660 (8,0)",
        "home/alice\t4000:4000\t1000:1000\td 0700",
        "home/alice/notes\t4000:4000\t1000:1000\t- 0640",
        "home/bob.cfg\t1500:1500\t1500:1500\t- 0644",
        &format!("{long}\t4000:4000\t3000000:0\t- 0644"),
        "run\t4000:4000\t0:0\td 1777",
        "run/ctl\t4000:4000\t1000:5\tp 0620",
        "run/old\t4000:4000\t0:0\t- 0644",
    ];
    let got: Vec<&str> = text.lines().collect();
    assert_eq!(got, expected, "full listing:\n{text}");
    assert_eq!(n, expected.len() - 1);

    // Without --server-owner the owner of SRC is the server; another default owner.
    let (n2, text2) = owners(
        &src,
        &Options {
            default_owner: (100, 200),
            server_owner: None,
            ..Options::default()
        },
    );
    assert_eq!(n2, n);
    let lines: Vec<&str> = text2.lines().collect();
    assert!(
        lines.contains(&"bin/su\t4000:4000\t100:200\t- 4755"),
        "{text2}"
    );
    assert!(
        lines.contains(&"dev/sda\t4000:4000\t100:6\tb 0660 (8,0)"),
        "{text2}"
    );
    assert!(
        lines.contains(&"home/bob.cfg\t1500:1500\t1500:1500\t- 0644"),
        "{text2}"
    );

    // A server that ran as someone else sees 4000:4000 as a foreign owner, and does not
    // trust records on files it does not own: the setuid bit of the record is not shown.
    let (_, text3) = owners(
        &src,
        &Options {
            default_owner: (0, 0),
            server_owner: Some((1, 1)),
            ..Options::default()
        },
    );
    assert!(
        text3
            .lines()
            .any(|l| l == "bin/su\t4000:4000\t4000:4000\t- 0755"),
        "{text3}"
    );
}

/// `tar --numeric-owner -tvf` reduced to (mode, owner, size or device, name...).
fn listing(archive: &Path) -> Vec<String> {
    let out = run(Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(archive));
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(f.len() >= 6, "odd tar line: {l}");
            // f[3], f[4] are the date and time.
            format!("{} {} {} {}", f[0], f[1], f[2], f[5..].join(" "))
        })
        .collect()
}

#[test]
fn export_tar_carries_the_virtual_owners_modes_and_types() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let s = Scratch::new("tar");
    let src = build_share(&s);
    let opts = Options {
        default_owner: (0, 0),
        server_owner: Some((SERVER, SERVER)),
        ..Options::default()
    };
    let out = s.path("layer.tar");
    let n = tools::tar::export(&src, &out, &opts, &Progress::hidden()).expect("export");

    let d = "d".repeat(60);
    let long = format!("long/{}", long_name());
    let expected: Vec<String> = [
        "drwxr-xr-x 0/0 0 bin/".to_string(),
        "lrwxrwxrwx 1000/1001 0 bin/sh -> su".into(),
        "lrwxrwxrwx 0/0 0 bin/stale -> su".into(),
        "-rwsr-xr-x 0/0 6 bin/su".into(),
        "hrwsr-xr-x 0/0 0 bin/sudo link to bin/su".into(),
        "drwxr-xr-x 0/0 0 dev/".into(),
        "crw-rw-rw- 0/0 1,3 dev/null".into(),
        "brw-rw---- 0/6 8,0 dev/sda".into(),
        "drwxr-xr-x 0/0 0 home/".into(),
        "drwx------ 1000/1000 0 home/alice/".into(),
        "-rw-r----- 1000/1000 6 home/alice/notes".into(),
        "-rw-r--r-- 1500/1500 0 home/bob".into(),
        "-rw-r--r-- 1500/1500 0 home/bob.cfg".into(),
        "drwxr-xr-x 0/0 0 lib/".into(),
        format!("lrwxrwxrwx 0/0 0 lib/far -> {}", link_target()),
        "drwxr-xr-x 0/0 0 long/".into(),
        format!("-rw-r--r-- {BIG_UID}/0 1 {long}"),
        "drwxr-xr-x 0/0 0 p/".into(),
        format!("drwxr-xr-x 0/0 0 p/{d}/"),
        format!("drwxr-xr-x 0/0 0 p/{d}/{d}/"),
        format!("drwxr-xr-x 0/0 0 p/{d}/{d}/{d}/"),
        format!("-rw-r--r-- 0/0 4 p/{d}/{d}/{d}/f"),
        "drwxrwxrwt 0/0 0 run/".into(),
        "prw--w---- 1000/5 0 run/ctl".into(),
        "-rw-r--r-- 0/0 0 run/old".into(),
    ]
    .to_vec();
    let got = listing(&out);
    assert_eq!(got, expected);
    assert_eq!(n, expected.len());
    let len = fs::metadata(&out).unwrap().len();
    assert_eq!(len % 10240, 0, "archive is padded to whole records");

    // Contents come through, long names included.
    let cat = |name: &str| run(Command::new("tar").arg("-xOf").arg(&out).arg(name));
    assert_eq!(cat("bin/su"), b"hello\n");
    assert_eq!(cat(&long), b"x");
    assert_eq!(cat(&format!("p/{d}/{d}/{d}/f")), b"deep");

    // Written into the tree itself, the archive leaves itself out and is the same
    // byte for byte: nothing in it depends on when or where it was written.
    let inside = src.join("self.tar");
    tools::tar::export(&src, &inside, &opts, &Progress::hidden()).expect("export into SRC");
    assert_eq!(fs::read(&inside).unwrap(), fs::read(&out).unwrap());
    fs::remove_file(&inside).unwrap();

    // Extracted as root, owners, modes and types become real (devices left out:
    // mknod may be refused in a container).
    let x = s.dir("x");
    run(Command::new("tar")
        .args(["--numeric-owner", "--same-owner", "-xpf"])
        .arg(&out)
        .arg("-C")
        .arg(&x)
        .args(["--exclude", "dev/*"]));
    let md = |p: &str| fs::symlink_metadata(x.join(p)).unwrap();
    let fifo = md("run/ctl");
    assert!(fifo.file_type().is_fifo());
    assert_eq!(
        (fifo.uid(), fifo.gid(), fifo.mode() & 0o7777),
        (1000, 5, 0o620)
    );
    let su = md("bin/su");
    assert_eq!((su.uid(), su.gid(), su.mode() & 0o7777), (0, 0, 0o4755));
    assert_eq!(md("bin/sudo").ino(), su.ino());
    let sh = md("bin/sh");
    assert!(sh.file_type().is_symlink());
    assert_eq!((sh.uid(), sh.gid()), (1000, 1001));
    assert_eq!(md(&long).uid(), BIG_UID);
    assert_eq!(md("run").mode() & 0o7777, 0o1777);
    // The record on a host user's own file is not trusted.
    assert_eq!(md("home/bob.cfg").gid(), 1500);
}

#[test]
fn export_of_an_empty_share_is_a_valid_empty_archive() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let s = Scratch::new("tar-empty");
    let src = s.dir("src");
    let out = s.path("empty.tar");
    let n = tools::tar::export(&src, &out, &Options::default(), &Progress::hidden()).unwrap();
    assert_eq!(n, 0);
    assert!(listing(&out).is_empty());
    assert_eq!(fs::metadata(&out).unwrap().len(), 10240);
    let (count, text) = owners(&src, &Options::default());
    assert_eq!((count, text.as_str()), (0, "PATH\tHOST\tVIRTUAL\tMODE\n"));
}

/// Piped stderr, as here, gets the summary lines and no spinner: no carriage returns,
/// no escape sequences; the archive on stdout is untouched by them.
#[test]
fn offline_tools_print_a_summary_and_no_progress_when_piped() {
    let s = Scratch::new("tools-summary");
    let src = s.dir("src");
    fs::write(src.join("file"), vec![7u8; 3000]).unwrap();
    fs::create_dir(src.join("dir")).unwrap();
    for (args, summary) in [
        (&["export-tar"][..], "export-tar: 2 entries, "),
        (&["owners"][..], "owners: 0 of 3 entries with a record in "),
        (&["convert-records", "--to", "ownfs"][..], ""),
    ] {
        let mut cmd = Command::new(common::ownfs_bin());
        cmd.args(args).arg(&src);
        if args[0] == "export-tar" {
            cmd.arg("-");
        }
        let out = cmd.output().expect("running ownfs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(
            !stderr.contains('\r') && !stderr.contains("\x1b["),
            "{args:?}: {stderr:?}"
        );
        let lines: Vec<&str> = stderr.lines().collect();
        if summary.is_empty() {
            // convert-records' one summary line is on stdout.
            assert!(lines.is_empty(), "{args:?}: {stderr:?}");
        } else {
            assert!(
                lines.len() == 1 && lines[0].starts_with(summary) && lines[0].ends_with(" s"),
                "{args:?}: {stderr:?}"
            );
        }
        if args[0] == "export-tar" {
            assert_eq!(
                out.stdout.len() % 10240,
                0,
                "the archive alone is on stdout"
            );
        }
    }
}

#[test]
fn export_fails_cleanly_on_a_missing_share() {
    let s = Scratch::new("tar-missing");
    let out = s.path("none.tar");
    let err = tools::tar::export(
        &s.path("nope"),
        &out,
        &Options::default(),
        &Progress::hidden(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    assert!(!out.exists(), "a failed export leaves no file behind");
    let mut listing = Vec::new();
    let err = tools::owners::list(
        &s.path("nope"),
        &Options::default(),
        &mut listing,
        &Progress::hidden(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: No such file or directory (os error 2)",
            s.path("nope").display()
        )
    );
    assert!(listing.is_empty(), "no header without a share");
}

#[test]
fn long_names_that_are_not_utf8_survive() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let s = Scratch::new("tar-bytes");
    let src = s.dir("src");
    let mut name = vec![b'a'; 110];
    name.extend_from_slice(b"\xff\xfe-\tx");
    let name = OsStr::from_bytes(&name);
    fs::write(src.join(name), "b").unwrap();
    let out = s.path("bytes.tar");
    tools::tar::export(&src, &out, &Options::default(), &Progress::hidden()).unwrap();
    let names = run(Command::new("tar")
        .args(["--quoting-style=literal", "-tf"])
        .arg(&out));
    let mut want = name.as_bytes().to_vec();
    want.push(b'\n');
    assert_eq!(names, want);
    let x = s.dir("x");
    run(Command::new("tar").arg("-xf").arg(&out).arg("-C").arg(&x));
    assert_eq!(fs::read(x.join(name)).unwrap(), b"b");
}

#[test]
fn other_filesystems_are_not_entered() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let s = Scratch::new("tar-xdev");
    let src = s.dir("src");
    let m = s.dir("src/m");
    file(&src.join("z"), "z", 0o644);
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "mode=0755", "ownfs-test"])
        .arg(&m)
        .status()
        .is_ok_and(|st| st.success());
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    }
    file(&m.join("inner"), "inner", 0o644);
    let out = s.path("xdev.tar");
    tools::tar::export(&src, &out, &Options::default(), &Progress::hidden()).unwrap();
    let names: Vec<String> = listing(&out)
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(names, ["m/", "z"]);
    run(Command::new("umount").arg(&m));
}

/// A share written by an earlier ownfs keeps its symlink records in the flat file
/// `.ownfs-symlinks`: the first server copies them into its store and keeps the file as
/// `.ownfs-symlinks.bak`; what the tools list is the same before and after.
#[test]
fn a_server_migrates_the_legacy_symlink_file() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let s = Scratch::new("migrate");
    let src = build_share(&s);
    let opts = Options::default();
    let (n, before) = owners(&src, &opts);
    assert!(
        before.contains("bin/sh\t4000:4000\t1000:1001\tl 0777"),
        "{before}"
    );
    let mnt = s.dir("mnt");
    let ids = format!("{SERVER}:{SERVER}");
    let mut server = common::server_command(&src, &mnt, &["--run-as", &ids])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut mounted = false;
    for _ in 0..200 {
        mounted = common::ownfs_mounted_at(&mnt);
        if mounted || server.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(mounted, "the server did not mount");
    let sh = fs::symlink_metadata(mnt.join("bin/sh")).unwrap();
    let stale = fs::symlink_metadata(mnt.join("bin/stale")).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    server.wait().unwrap();
    common::force_unmount(&mnt);
    assert_eq!((sh.uid(), sh.gid()), (1000, 1001));
    assert_eq!((stale.uid(), stale.gid()), (0, 0), "a reused inode number");
    assert!(!src.join(".ownfs-symlinks").exists());
    assert!(!src.join(".ownfs-symlinks.tmp").exists());
    assert!(src.join(".ownfs-symlinks.bak").exists());
    assert!(src.join(".ownfs-symlinks.d/records.sqlite").exists());
    let (n_after, after) = owners(&src, &opts);
    assert_eq!(
        (n_after, after),
        (n, before),
        "owners before and after migration"
    );
}
