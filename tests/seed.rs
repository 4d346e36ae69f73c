//! Seed regressions: the everyday things a passthrough file system must get
//! right, with the default options and with `--writeback`.

mod common;

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::stat::Mode;

const U: u32 = 424_701;
const P: u32 = 424_702;

fn host_true() -> PathBuf {
    ["/usr/bin/true", "/bin/true"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("no true(1) on this host")
}

/// Runs `make()`, retrying while exec fails with ETXTBSY: a process forked
/// by a concurrently running test may briefly hold a copy of a write
/// descriptor of the file.
fn spawn_retry_txtbsy(make: impl Fn() -> Command, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut cmd = make();
        match cmd.status() {
            Ok(st) => return st,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && Instant::now() < deadline => {
                sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

fn copy_and_exec_true(extra: &[&str]) {
    let m = Mount::new(extra);
    let src_true = host_true();
    let orig = fs::read(&src_true).unwrap();
    assert!(orig.len() > 1000, "{} looks too small", src_true.display());
    let dst = m.mnt.join("true");

    let copied = fs::copy(&src_true, &dst).expect("copy true(1) into the mount");
    assert_eq!(copied, orig.len() as u64, "bytes copied");
    fs::set_permissions(&dst, fs::Permissions::from_mode(0o755)).expect("chmod 0755");

    let md = fs::metadata(&dst).expect("stat MNT/true");
    assert!(md.is_file());
    assert_eq!(md.len(), orig.len() as u64, "size via the mount");
    assert_eq!(md.mode() & 0o7777, 0o755, "mode via the mount");
    assert_eq!(md.mode() & libc::S_IFMT, libc::S_IFREG);
    let hmd = fs::metadata(m.src.join("true")).unwrap();
    assert_eq!(hmd.len(), orig.len() as u64, "size on SRC");
    assert_eq!(hmd.mode() & 0o7777, 0o755, "mode on SRC");
    assert_eq!(md.ino(), hmd.ino(), "inode via the mount vs SRC");

    // stat(1) uses statx.
    let out = output_timeout(
        Command::new("stat")
            .arg("-c")
            .arg("%s %a %F %u %g %h")
            .arg(&dst),
        CHILD_TIMEOUT,
    );
    assert!(
        out.status.success(),
        "stat(1): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{} 755 regular file 0 0 1", orig.len()),
        "stat -c output"
    );

    assert!(
        fs::read(&dst).unwrap() == orig,
        "content via the mount differs"
    );
    assert!(
        fs::read(m.src.join("true")).unwrap() == orig,
        "content on SRC differs"
    );

    let st = spawn_retry_txtbsy(|| Command::new(&dst), "exec MNT/true as root");
    assert!(st.success(), "MNT/true as root: {}", describe(&st));

    // And as an unprivileged user (exec permission through "other" bits).
    let caller = Caller::new(U, P);
    let st = spawn_retry_txtbsy(|| caller.command(&dst), "exec MNT/true as another user");
    assert!(st.success(), "MNT/true as {U}:{P}: {}", describe(&st));

    // Without any x bit nobody may run it, root included.
    fs::set_permissions(&dst, fs::Permissions::from_mode(0o644)).unwrap();
    match Command::new(&dst).status() {
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EACCES), "exec 0644 file: {e}"),
        Ok(st) => panic!("exec of a 0644 file succeeded: {}", describe(&st)),
    }
}

#[test]
fn copy_and_exec_true_default() {
    copy_and_exec_true(&[]);
}

#[test]
fn copy_and_exec_true_writeback() {
    copy_and_exec_true(&["--writeback"]);
}

/// Deterministic pseudo-random bytes.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn data_round_trip(extra: &[&str]) {
    let m = Mount::new(extra);
    let data = pattern(3 * 1024 * 1024 + 123, 42);
    let p = m.mnt.join("blob");
    {
        let mut f = fs::File::create(&p).unwrap();
        // Odd-sized writes so page and request boundaries do not line up.
        for chunk in data.chunks(65_537) {
            f.write_all(chunk).unwrap();
        }
        f.sync_all().unwrap();
    }
    assert!(fs::read(&p).unwrap() == data, "content via the mount");
    assert!(
        fs::read(m.src.join("blob")).unwrap() == data,
        "content on SRC"
    );
    // Overwrite in the middle, then truncate.
    {
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, b"MIDDLE", 1_000_000).unwrap();
        f.set_len(2_000_001).unwrap();
    }
    let mut want = data[..2_000_001].to_vec();
    want[1_000_000..1_000_006].copy_from_slice(b"MIDDLE");
    assert!(
        fs::read(&p).unwrap() == want,
        "content via the mount after rewrite"
    );
    assert!(
        fs::read(m.src.join("blob")).unwrap() == want,
        "content on SRC after rewrite"
    );
    assert_eq!(fs::metadata(&p).unwrap().len(), 2_000_001);
}

#[test]
fn data_round_trip_default() {
    data_round_trip(&[]);
}

#[test]
fn data_round_trip_writeback() {
    data_round_trip(&["--writeback"]);
}

#[test]
fn data_round_trip_cache_never() {
    data_round_trip(&["--cache", "never"]);
}

#[test]
fn data_round_trip_cache_always_writeback() {
    data_round_trip(&["--cache", "always", "--writeback"]);
}

// ---------------------------------------------------------------------------
// Modes under umask
// ---------------------------------------------------------------------------

/// (umask, requested mode, expected mode)
const FILE_CASES: [(u32, u32, u32); 5] = [
    (0o022, 0o666, 0o644),
    (0o077, 0o777, 0o700),
    (0o027, 0o666, 0o640),
    (0o000, 0o666, 0o666),
    (0o022, 0o600, 0o600),
];
const DIR_CASES: [(u32, u32, u32); 4] = [
    (0o022, 0o777, 0o755),
    (0o077, 0o777, 0o700),
    (0o000, 0o750, 0o750),
    (0o022, 0o1777, 0o1755),
];

fn check_mode(m: &Mount, rel: &str, want: u32, what: &str) {
    assert_eq!(
        mode_of(&m.mnt.join(rel)),
        want,
        "{what}: mode via the mount (want {want:o}, got {:o})",
        mode_of(&m.mnt.join(rel))
    );
    assert_eq!(
        mode_of(&m.src.join(rel)),
        want,
        "{what}: mode on SRC (want {want:o}, got {:o})",
        mode_of(&m.src.join(rel))
    );
}

fn mkfifo(p: &Path, mode: u32) -> io::Result<()> {
    nix::unistd::mkfifo(p, Mode::from_bits_retain(mode)).map_err(io::Error::from)
}

fn create_modes_honour_umask(extra: &[&str]) {
    let m = Mount::new(extra);
    let world = m.mnt.join("w");
    fs::create_dir(&world).unwrap();
    chmod(&world, 0o1777);

    for (who, caller, dir) in [
        ("root", Caller::root(), m.mnt.clone()),
        ("user", Caller::new(U, P), world.clone()),
    ] {
        let prefix = if who == "root" { "" } else { "w/" };
        for (i, (um, mode, want)) in FILE_CASES.iter().copied().enumerate() {
            let name = format!("{who}-file{i}");
            let p = dir.join(&name);
            let what = format!("{who}: open(O_CREAT, {mode:o}) under umask {um:03o}");
            caller
                .clone()
                .umask(um)
                .run(|| {
                    let mut f = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(mode)
                        .open(&p)?;
                    f.write_all(b"x")
                })
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            check_mode(&m, &format!("{prefix}{name}"), want, &what);
        }
        for (i, (um, mode, want)) in DIR_CASES.iter().copied().enumerate() {
            let name = format!("{who}-dir{i}");
            let p = dir.join(&name);
            let what = format!("{who}: mkdir({mode:o}) under umask {um:03o}");
            caller
                .clone()
                .umask(um)
                .run(|| fs::DirBuilder::new().mode(mode).create(&p))
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            check_mode(&m, &format!("{prefix}{name}"), want, &what);
        }
        for (i, (um, mode, want)) in [(0o022, 0o666, 0o644), (0o077, 0o660, 0o600)]
            .iter()
            .copied()
            .enumerate()
        {
            let name = format!("{who}-fifo{i}");
            let p = dir.join(&name);
            let what = format!("{who}: mkfifo({mode:o}) under umask {um:03o}");
            caller
                .clone()
                .umask(um)
                .run(|| mkfifo(&p, mode))
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            check_mode(&m, &format!("{prefix}{name}"), want, &what);
            let ft = fs::symlink_metadata(m.src.join(format!("{prefix}{name}")))
                .unwrap()
                .mode()
                & libc::S_IFMT;
            assert_eq!(ft, libc::S_IFIFO, "{what}: type on SRC");
        }
        // O_CREAT on an existing file changes nothing.
        let name = format!("{who}-file0");
        let p = dir.join(&name);
        caller
            .clone()
            .umask(0o000)
            .run(|| {
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o777)
                    .open(&p)
                    .map(drop)
            })
            .unwrap();
        check_mode(&m, &format!("{prefix}{name}"), 0o644, "reopen with O_CREAT");
        if who == "user" {
            assert_eq!(owner(&m.src.join(format!("{prefix}{name}"))), (U, P));
        }
    }
}

#[test]
fn create_modes_honour_umask_default() {
    create_modes_honour_umask(&[]);
}

#[test]
fn create_modes_honour_umask_writeback() {
    create_modes_honour_umask(&["--writeback"]);
}

// ---------------------------------------------------------------------------
// Writes by a user who may write but does not own the file
// ---------------------------------------------------------------------------

/// fsync and an explicit close(2) whose result is checked (dropping a `File`
/// ignores close errors, and with a write-back cache that is where they show).
fn fsync_and_close(f: fs::File) -> io::Result<()> {
    use std::os::fd::IntoRawFd;
    f.sync_all()?;
    nix::unistd::close(f.into_raw_fd()).map_err(io::Error::from)
}

fn write_by_non_owner(extra: &[&str]) {
    let m = Mount::new(extra);
    let u = Caller::new(U, P).groups(&[P]);
    let mut failures = Vec::new();
    // (name, mode, how, expected content)
    let cases: [(&str, u32, &str, &[u8]); 4] = [
        ("rw-pwrite", 0o666, "pwrite", b"heXYo, world\n"),
        ("rw-append", 0o666, "append", b"hello, world\nXY"),
        ("wo-pwrite", 0o622, "pwrite", b"heXYo, world\n"),
        ("wo-append", 0o622, "append", b"hello, world\nXY"),
    ];
    for (name, mode, how, want) in cases {
        let p = m.mnt.join(name);
        fs::write(&p, b"hello, world\n").unwrap();
        chmod(&p, mode);
        let old = nix::sys::time::TimeSpec::new(1_000_000_000, 0);
        nix::sys::stat::utimensat(
            None,
            &p,
            &old,
            &old,
            nix::sys::stat::UtimensatFlags::FollowSymlink,
        )
        .unwrap();
        let what = format!("{U} writes ({how}) to root's {mode:o} file {name}");
        let r = u.run(|| {
            let f = if how == "append" {
                let mut f = OpenOptions::new().append(true).open(&p)?;
                f.write_all(b"XY")?;
                f
            } else {
                let f = OpenOptions::new().write(true).open(&p)?;
                std::os::unix::fs::FileExt::write_all_at(&f, b"XY", 2)?;
                f
            };
            fsync_and_close(f)
        });
        if let Err(e) = r {
            failures.push(format!("{what}: {e}"));
        }
        let got = fs::read(m.src.join(name)).unwrap();
        if got != want {
            failures.push(format!(
                "{what}: SRC content {:?}, want {:?}",
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(want)
            ));
        }
        let hmd = fs::metadata(m.src.join(name)).unwrap();
        if hmd.mtime() <= 1_000_000_000 {
            failures.push(format!("{what}: mtime on SRC not updated"));
        }
        if (hmd.uid(), hmd.gid(), hmd.mode() & 0o7777) != (0, 0, mode) {
            failures.push(format!(
                "{what}: owner/mode on SRC changed to {}:{} {:o}",
                hmd.uid(),
                hmd.gid(),
                hmd.mode() & 0o7777
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn write_by_non_owner_default() {
    write_by_non_owner(&[]);
}

#[test]
fn write_by_non_owner_writeback() {
    write_by_non_owner(&["--writeback"]);
}
