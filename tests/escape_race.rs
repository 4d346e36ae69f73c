//! Escape races: while client processes swap directories inside the mount for
//! symlinks that point outside SRC (and the host does the same in SRC), other client
//! processes, as root and as other users, look up, open, read, write, create, chmod,
//! setxattr, truncate, link and rename through those paths, by path and relative to
//! directory fds they hold. Nothing outside SRC may ever be read or changed.
//!
//! The canary is `base/s/canary` (SRC is `base/s/src`, MNT `base/m/mnt`) and every
//! link text is relative (`../canary`, `../../canary`): resolved by the server it
//! would reach the canary, resolved by the client kernel (the expected semantic) it
//! names the missing `base/m/canary`. The canary is world-writable, so only the
//! server's confinement protects it, also from a rootless server. An escape is any of:
//! canary content, size, mode, owner, times (atime too: it is set equal to mtime, so
//! relatime records any read), xattrs or entries changed; anything created in
//! `base/m`; a read through the mount returning canary bytes; a stat through the
//! mount reporting a canary inode; a listing through the mount showing the canary's
//! entry; any operation on a name only the canary has (`secret`) succeeding.
//!
//! `OWNFS_RACE_SECS` (default 3) sets the race duration per mode:
//! `OWNFS_RACE_SECS=60 cargo test --release --test escape_race -- --ignored` is the
//! long run. Each mode prints `escape-race[MODE]: N operations ..., 0 escapes`.

mod common;

use std::ffi::CString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{symlink, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use nix::fcntl::{renameat2, RenameFlags};
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use ownfs::platform;

const SECRET: &[u8] = b"CANARY-SECRET-7f3a91 outside SRC\n";
const CANARY_TIME: i64 = 1_000_000_000;
const CANARY_XATTR: &str = "user.canary";
/// Directories that get swapped, each with a link `lK` -> `../canary` beside it.
const DIRS: u64 = 4;
const USERS: [(u32, u32); 4] = [(0, 0), (424_911, 424_912), (0, 0), (424_913, 424_912)];

/// atime, mtime, ctime (ns), mode, uid, gid, nlink, size.
type Meta = (i64, i64, i64, u32, u32, u32, u64, i64);

#[derive(Debug, PartialEq)]
struct CanaryState {
    entries: Vec<Vec<u8>>,
    content: Vec<u8>,
    meta: Vec<Meta>,
    xattrs: Vec<u8>,
    xattr_value: Vec<u8>,
    outside_mnt: Vec<Vec<u8>>,
}

fn c(p: &Path) -> CString {
    cstr(p)
}

fn set_times(p: &Path, t: i64) {
    let ts = TimeSpec::new(t, 0);
    utimensat(None, p, &ts, &ts, UtimensatFlags::NoFollowSymlink)
        .unwrap_or_else(|e| panic!("utimensat {}: {e}", p.display()));
}

fn setxattr(p: &Path, name: &str, v: &[u8]) -> io::Result<()> {
    let n = CString::new(name).unwrap();
    platform::setxattr_path(&c(p), &n, v, 0)
}

fn getxattr(p: &Path, name: &str) -> io::Result<Vec<u8>> {
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    let len = platform::lgetxattr_path(&c(p), &n, &mut buf)?;
    buf.truncate(len);
    Ok(buf)
}

fn listxattr(p: &Path) -> Vec<u8> {
    let mut buf = vec![0u8; 65536];
    let len = platform::llistxattr_path(&c(p), &mut buf)
        .unwrap_or_else(|e| panic!("llistxattr {}: {e}", p.display()));
    buf.truncate(len);
    buf
}

/// Lists a directory without touching its atime.
fn list_noatime(p: &Path) -> Vec<Vec<u8>> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOATIME;
    let fd =
        platform::open_path(&c(p), flags).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    // Reading through /proc/self/fd would open the directory again, with atime.
    let mut names = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = platform::getdents(fd.as_fd(), &mut buf)
            .unwrap_or_else(|e| panic!("getdents64 {}: {e}", p.display()));
        if n == 0 {
            break;
        }
        let mut off = 0;
        while let Some((d, reclen)) = platform::parse_dirent(&buf[off..n]) {
            if d.name != b"." && d.name != b".." {
                names.push(d.name.to_vec());
            }
            off += reclen;
        }
        assert_eq!(off, n, "getdents64 {}: malformed record", p.display());
    }
    names.sort();
    names
}

struct Canary {
    dir: PathBuf,
    secret: PathBuf,
    /// `base/m`: the client-side resolution of every link; must hold only `mnt`.
    mnt_parent: PathBuf,
    inos: [u64; 2],
}

impl Canary {
    fn plant(base: &Path) -> Canary {
        let dir = base.join("s/canary");
        fs::create_dir(&dir).unwrap();
        chmod(&dir, 0o777);
        let secret = dir.join("secret");
        fs::write(&secret, SECRET).unwrap();
        chmod(&secret, 0o666);
        setxattr(&secret, CANARY_XATTR, b"original").unwrap();
        set_times(&secret, CANARY_TIME);
        set_times(&dir, CANARY_TIME);
        let inos = [
            fs::metadata(&dir).unwrap().ino(),
            fs::metadata(&secret).unwrap().ino(),
        ];
        Canary {
            dir,
            secret,
            mnt_parent: base.join("m"),
            inos,
        }
    }

    /// Everything a stray operation could change (a removed secret reads as empty).
    fn state(&self) -> CanaryState {
        let entries = list_noatime(&self.dir);
        let mut content = Vec::new();
        let _ = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOATIME)
            .open(&self.secret)
            .and_then(|mut f| f.read_to_end(&mut content));
        let meta = [&self.dir, &self.secret]
            .iter()
            .filter_map(|p| fs::symlink_metadata(p).ok())
            .map(|m| {
                (
                    m.atime(),
                    m.mtime(),
                    m.ctime() * 1_000_000_000 + m.ctime_nsec(),
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    m.nlink(),
                    m.size() as i64,
                )
            })
            .collect();
        CanaryState {
            entries,
            content,
            meta,
            xattrs: match fs::symlink_metadata(&self.secret) {
                Ok(_) => listxattr(&self.secret),
                Err(_) => Vec::new(),
            },
            xattr_value: getxattr(&self.secret, CANARY_XATTR).unwrap_or_default(),
            outside_mnt: list_noatime(&self.mnt_parent),
        }
    }
}

/// What one racing process saw.
#[derive(Default)]
struct Tally {
    ops: u64,
    ok: u64,
    escapes: Vec<String>,
}

impl Tally {
    /// An operation on a path whose last component exists only in the canary: it
    /// must fail, since the client resolves every link to a missing directory.
    fn must_fail<T>(&mut self, what: &str, r: io::Result<T>) {
        self.ops += 1;
        if r.is_ok() {
            self.escapes.push(format!("{what} succeeded"));
        }
    }

    fn count<T>(&mut self, r: io::Result<T>) -> Option<T> {
        self.ops += 1;
        match r {
            Ok(v) => {
                self.ok += 1;
                Some(v)
            }
            Err(_) => None,
        }
    }

    fn report(&self, path: &Path) {
        let mut s = format!("{} {}\n", self.ops, self.ok);
        for e in &self.escapes {
            s.push_str(e);
            s.push('\n');
        }
        fs::write(path, s).unwrap();
    }
}

fn read_all(p: &Path) -> io::Result<Vec<u8>> {
    fs::read(p)
}

fn contains_secret(data: &[u8]) -> bool {
    data.windows(12).any(|w| w == &SECRET[..12])
}

fn openat(dir: &OwnedFd, name: &str, flags: i32) -> io::Result<OwnedFd> {
    let n = CString::new(name).unwrap();
    platform::openat(dir.as_fd(), &n, flags | libc::O_NOFOLLOW, 0o666)
}

fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Swaps `dK` with `lK` (`../canary`) and `dK/sub` with `dK/lsub` (`../../canary`)
/// by RENAME_EXCHANGE, or by rename + symlink + unlink + rename back.
fn swapper(root: &Path, seed: u64, exchange: bool, deadline: Instant, report: &Path) {
    let mut rng = Rng::new(seed);
    let mut t = Tally::default();
    while Instant::now() < deadline {
        let k = rng.below(DIRS);
        let (a, b) = if rng.below(2) == 0 {
            (root.join(format!("d{k}")), root.join(format!("l{k}")))
        } else {
            (
                root.join(format!("d{k}/sub")),
                root.join(format!("d{k}/lsub")),
            )
        };
        if exchange {
            for _ in 0..2 {
                t.count(
                    renameat2(None, &a, None, &b, RenameFlags::RENAME_EXCHANGE)
                        .map_err(io::Error::from),
                );
            }
        } else {
            let text = if b.ends_with("lsub") {
                "../../canary"
            } else {
                "../canary"
            };
            let parked = a.with_extension(format!("x{seed}"));
            if t.count(fs::rename(&a, &parked)).is_some() {
                t.count(symlink(text, &a));
                std::thread::yield_now();
                if fs::symlink_metadata(&a).is_ok_and(|m| m.file_type().is_symlink()) {
                    t.count(fs::remove_file(&a));
                }
                t.count(fs::rename(&parked, &a));
            }
        }
    }
    t.report(report);
}

/// Works through the swapped names: every result that is not an escape is fine.
fn user(mnt: &Path, seed: u64, deadline: Instant, report: &Path, canary_inos: [u64; 2]) {
    let mut rng = Rng::new(seed);
    let mut t = Tally::default();
    let mut held: Vec<OwnedFd> = Vec::new();
    let mut n = 0u64;
    while Instant::now() < deadline {
        n += 1;
        let k = rng.below(DIRS);
        let base = match rng.below(4) {
            0 => mnt.join(format!("d{k}")),
            1 => mnt.join(format!("d{k}/sub")),
            2 => mnt.join(format!("l{k}")),
            _ => mnt.join(format!("d{k}/lsub")),
        };
        let secret = base.join("secret");
        match rng.below(16) {
            0 => {
                for p in [base.join("f"), base.join("g")] {
                    if let Some(d) = t.count(read_all(&p)) {
                        if contains_secret(&d) {
                            t.escapes
                                .push(format!("read {} returned canary bytes", p.display()));
                        }
                    }
                }
                t.must_fail("read secret", read_all(&secret));
            }
            1 => {
                for p in [&base, &secret, &base.join("f")] {
                    if let Some(m) = t.count(fs::symlink_metadata(p)) {
                        if canary_inos.contains(&m.ino()) && !m.file_type().is_symlink() {
                            t.escapes
                                .push(format!("lstat {} reports a canary inode", p.display()));
                        }
                    }
                    if let Some(m) = t.count(fs::metadata(p)) {
                        if canary_inos.contains(&m.ino()) {
                            t.escapes
                                .push(format!("stat {} reports a canary inode", p.display()));
                        }
                    }
                }
            }
            2 => {
                if let Some(rd) = t.count(fs::read_dir(&base)) {
                    for e in rd.flatten() {
                        if e.file_name() == "secret" {
                            t.escapes.push(format!("{} lists secret", base.display()));
                        }
                    }
                }
            }
            3 => {
                let p = base.join(format!("new-{seed}-{n}"));
                if t.count(
                    fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o666)
                        .open(&p)
                        .and_then(|mut f| f.write_all(b"made inside\n")),
                )
                .is_some()
                {
                    t.count(fs::remove_file(&p));
                }
                let d = base.join(format!("nd-{seed}-{n}"));
                if t.count(fs::create_dir(&d)).is_some() {
                    t.count(fs::remove_dir(&d));
                }
            }
            4 => {
                t.count(fs::set_permissions(
                    base.join("f"),
                    std::os::unix::fs::PermissionsExt::from_mode(0o666),
                ));
                t.must_fail(
                    "chmod secret",
                    fs::set_permissions(
                        &secret,
                        std::os::unix::fs::PermissionsExt::from_mode(0o600),
                    ),
                );
                t.must_fail(
                    "chown secret",
                    std::os::unix::fs::lchown(&secret, Some(424_999), None),
                );
            }
            5 => {
                t.count(setxattr(&base.join("f"), "user.race", b"inside"));
                t.must_fail(
                    "setxattr secret",
                    setxattr(&secret, "user.race", b"escaped"),
                );
                t.must_fail(
                    "overwrite canary xattr",
                    setxattr(&secret, CANARY_XATTR, b"escaped"),
                );
                t.must_fail("getxattr secret", getxattr(&secret, CANARY_XATTR));
            }
            6 => {
                t.must_fail(
                    "append to secret",
                    fs::OpenOptions::new()
                        .append(true)
                        .open(&secret)
                        .and_then(|mut f| f.write_all(b"ESCAPED\n")),
                );
                t.must_fail(
                    "truncate secret",
                    fs::OpenOptions::new()
                        .write(true)
                        .open(&secret)
                        .and_then(|f| f.set_len(0)),
                );
                t.count(
                    fs::OpenOptions::new()
                        .append(true)
                        .open(base.join("f"))
                        .and_then(|mut f| f.write_all(b"")),
                );
            }
            7 => {
                let now = nix::sys::time::TimeSpec::new(1_500_000_000, 0);
                t.must_fail(
                    "utimensat secret",
                    nix::sys::stat::utimensat(
                        None,
                        &secret,
                        &now,
                        &now,
                        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
                    )
                    .map_err(io::Error::from),
                );
            }
            8 => {
                t.must_fail(
                    "link secret",
                    fs::hard_link(&secret, mnt.join(format!("hl-{seed}-{n}"))),
                );
                t.must_fail(
                    "rename secret",
                    fs::rename(&secret, mnt.join(format!("stolen-{seed}-{n}"))),
                );
                t.must_fail("unlink secret", fs::remove_file(&secret));
            }
            9 => {
                // Links made through the mount, then used: the client resolves them.
                let l = base.join(format!("ln-{seed}-{n}"));
                if t.count(symlink("../../canary/secret", &l)).is_some() {
                    if let Some(d) = t.count(read_all(&l)) {
                        if contains_secret(&d) {
                            t.escapes
                                .push(format!("read {} returned canary bytes", l.display()));
                        }
                    }
                    t.count(fs::remove_file(&l));
                }
            }
            10 | 11 => {
                // Directory fds held across swaps: requests then name the inode.
                if held.len() < 8 {
                    if let Some(f) = t.count(fs::File::open(&base)) {
                        held.push(f.into());
                    }
                }
            }
            _ => {
                if held.is_empty() {
                    continue;
                }
                let dir = &held[rng.below(held.len() as u64) as usize];
                t.must_fail(
                    "openat(held, secret)",
                    openat(dir, "secret", libc::O_RDONLY),
                );
                t.must_fail(
                    "openat(held, secret, write)",
                    openat(dir, "secret", libc::O_WRONLY | libc::O_APPEND),
                );
                if let Some(f) = t.count(openat(dir, "f", libc::O_RDONLY)) {
                    let mut d = Vec::new();
                    if t.count(fs::File::from(f).read_to_end(&mut d)).is_some()
                        && contains_secret(&d)
                    {
                        t.escapes
                            .push("read of held/f returned canary bytes".into());
                    }
                }
                let name = format!("at-{seed}-{n}");
                if t.count(openat(
                    dir,
                    &name,
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
                ))
                .is_some()
                {
                    let n = CString::new(name).unwrap();
                    t.count(platform::unlinkat(dir.as_fd(), &n, false));
                }
                if let Some(rd) = t.count(fs::read_dir(fd_path(dir))) {
                    for e in rd.flatten() {
                        if e.file_name() == "secret" {
                            t.escapes.push("held directory lists secret".into());
                        }
                    }
                }
                if rng.below(4) == 0 {
                    held.swap_remove(0);
                }
            }
        }
    }
    t.report(report);
}

fn race(mode: Mode, secs: u64) {
    // A tiny inode fd cache: evictions and reopens run under the races all the time.
    let s = Served::start_with_server_args(mode, &["--max-open-fds", "64"]);
    let canary = Canary::plant(&s.scratch().base);
    let mnt = s.mnt().to_path_buf();
    let src = s.src().to_path_buf();
    chmod(&mnt, 0o777);
    for k in 0..DIRS {
        let d = mnt.join(format!("d{k}"));
        fs::create_dir(&d).unwrap();
        fs::create_dir(d.join("sub")).unwrap();
        fs::write(d.join("f"), format!("inside d{k}\n")).unwrap();
        fs::write(d.join("sub/g"), format!("inside d{k}/sub\n")).unwrap();
        for p in [d.clone(), d.join("sub")] {
            chmod(&p, 0o777);
        }
        for p in [d.join("f"), d.join("sub/g")] {
            chmod(&p, 0o666);
        }
        symlink("../canary", mnt.join(format!("l{k}"))).unwrap();
        symlink("../../canary", d.join("lsub")).unwrap();
    }
    assert_eq!(
        fs::read(src.join("l0/secret")).unwrap(),
        SECRET,
        "fixture: resolved on the host, the links reach the canary"
    );
    let before = canary.state();
    assert_eq!(before.entries, [b"secret".to_vec()]);
    assert_eq!(before.outside_mnt, [b"mnt".to_vec()]);

    let reports = s.scratch().dir("reports");
    chmod(&reports, 0o777);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut children = Vec::new();
    let mut report_files = Vec::new();
    for (i, exchange) in [true, false].into_iter().enumerate() {
        let r = reports.join(format!("swap{i}"));
        let (root, rep) = (mnt.clone(), r.clone());
        let who = if i == 0 {
            Caller::root()
        } else {
            Caller::new(424_911, 424_912)
        };
        children.push(who.spawn(move || {
            swapper(&root, 100 + i as u64, exchange, deadline, &rep);
            Ok(())
        }));
        report_files.push(r);
    }
    // The host swaps too, under the client kernel's cached dentries.
    let r = reports.join("host-swap");
    let (host_root, rep) = (src.clone(), r.clone());
    children.push(Caller::root().spawn(move || {
        swapper(&host_root, 300, true, deadline, &rep);
        Ok(())
    }));
    report_files.push(r);
    for (i, (uid, gid)) in USERS.into_iter().enumerate() {
        let r = reports.join(format!("user{i}"));
        let (root, rep, inos) = (mnt.clone(), r.clone(), canary.inos);
        let who = Caller::new(uid, gid).groups(&[gid]).umask(0);
        children.push(who.spawn(move || {
            user(&root, 1000 + i as u64, deadline, &rep, inos);
            Ok(())
        }));
        report_files.push(r);
    }
    for ch in children {
        ch.join().expect("racing process");
    }

    let after = canary.state();
    let (mut ops, mut ok, mut escapes) = (0u64, 0u64, Vec::new());
    for r in &report_files {
        let text = fs::read_to_string(r).unwrap_or_else(|e| panic!("{}: {e}", r.display()));
        let mut lines = text.lines();
        let mut head = lines.next().unwrap().split(' ');
        ops += head.next().unwrap().parse::<u64>().unwrap();
        ok += head.next().unwrap().parse::<u64>().unwrap();
        escapes.extend(lines.map(str::to_string));
    }
    summary(&format!(
        "escape-race[{}]: {ops} operations ({ok} succeeded) in {secs} s by {} processes, inode fd cache 64, {} escapes",
        mode.name(),
        report_files.len(),
        escapes.len() + usize::from(after != before)
    ));
    assert_eq!(after, before, "the canary changed ({})", mode.name());
    assert!(
        escapes.is_empty(),
        "escapes ({}): {escapes:#?}",
        mode.name()
    );
    assert!(
        ok > 100,
        "the race did almost nothing: {ok} of {ops} operations succeeded"
    );
    let mut s = s;
    assert!(s.server_alive(), "the server died:\n{}", s.logs());
}

fn secs() -> u64 {
    env_knob("OWNFS_RACE_SECS", 3)
}

#[test]
fn escape_race_root() {
    race(Mode::Root, secs());
}

#[test]
fn escape_race_rootless() {
    race(Mode::Rootless, secs());
}

#[test]
fn escape_race_pipe() {
    race(Mode::Pipe, secs());
}

/// The detector itself: the same workload on SRC, where the links resolve the way an
/// escaping server would resolve them, must report escapes and change the canary.
#[test]
fn escape_race_detector_catches_host_resolution() {
    let s = Scratch::new("race-detector");
    let src = s.dir("s/src");
    s.dir("m/mnt");
    let canary = Canary::plant(&s.base);
    for k in 0..DIRS {
        let d = src.join(format!("d{k}"));
        fs::create_dir_all(d.join("sub")).unwrap();
        fs::write(d.join("f"), b"inside").unwrap();
        symlink("../canary", src.join(format!("l{k}"))).unwrap();
        symlink("../../canary", d.join("lsub")).unwrap();
    }
    let before = canary.state();
    let report = s.path("report");
    user(
        &src,
        7,
        Instant::now() + Duration::from_millis(500),
        &report,
        canary.inos,
    );
    let text = fs::read_to_string(&report).unwrap();
    assert!(
        text.lines().count() > 1,
        "no escape reported on the host paths:\n{text}"
    );
    assert_ne!(
        canary.state(),
        before,
        "the canary should have been changed"
    );
}

/// The long run: every mode, `OWNFS_RACE_SECS` (default 60) each.
#[test]
#[ignore]
fn escape_race_long() {
    let secs = env_knob("OWNFS_RACE_SECS", 60);
    for mode in [Mode::Root, Mode::Rootless, Mode::Pipe, Mode::PipeRootless] {
        race(mode, secs);
    }
}
