//! Exhaustion: many inodes, and a server that runs out of file descriptors.
//!
//! * `many_inodes_stay_bounded`: N files (default 100 000, `OWNFS_INODES`) are looked
//!   up through the mount; the server pins each with one `O_PATH` fd, so it holds as
//!   many at once as its RLIMIT_NOFILE allows: all N when the test may raise the
//!   limit (CAP_SYS_RESOURCE), else batches of (hard limit - 1024) with the kernel
//!   forgetting them in between (`echo 2 > /proc/sys/vm/drop_caches`). The server's
//!   RSS and fd count come from /proc: fds must fall back to the baseline after each
//!   forget, and later batches must not need more memory than the first. Prints
//!   `exhaustion: N inodes ... rss X MiB per 100k, fds F per 100k ...` (the first
//!   batch, scaled to 100k).
//!   The long run (1M inodes):
//!   `cargo test --release --test exhaustion -- --ignored --nocapture`.
//! * `fd_limit_gives_emfile_and_recovers`: a server whose hard RLIMIT_NOFILE is low
//!   answers requests that need a new fd (lookup, open, opendir, create, mkdir) with
//!   EMFILE/ENFILE, leaves no half-done creation behind, stays up, and serves the same
//!   requests again once the kernel forgot inodes.

mod common;

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::*;
use nix::unistd::Pid;

fn rss_kib(pid: Pid) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn fds(pid: Pid) -> u64 {
    fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count() as u64
}

fn drop_caches() {
    fs::write("/proc/sys/vm/drop_caches", b"2").expect("drop dentry and inode caches");
}

/// Drops caches until the server's fd count is at most `target` (bounded).
fn forget_until(pid: Pid, target: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        drop_caches();
        sleep(Duration::from_millis(300));
        let n = fds(pid);
        if n <= target || Instant::now() > deadline {
            return n;
        }
    }
}

/// Creates `n` empty files on the host below `src/many`, 10 000 per directory. `many`
/// is a tmpfs, so creating and removing them costs no disk I/O; the server sees it
/// as any other directory below SRC.
fn populate(src: &Path, n: u64) -> Vec<String> {
    let many = src.join("many");
    fs::create_dir(&many).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &many,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("mode=0755"),
    )
    .expect("mount a tmpfs for the files");
    let mut rel = Vec::with_capacity(n as usize);
    for i in 0..n {
        let d = format!("many/d{:03}", i / 10_000);
        if i % 10_000 == 0 {
            fs::create_dir_all(src.join(&d)).unwrap();
        }
        let r = format!("{d}/f{i:07}");
        fs::File::create(src.join(&r)).unwrap();
        rel.push(r);
    }
    rel
}

fn lookup_all(mnt: &Path, rel: &[String]) {
    for r in rel {
        fs::symlink_metadata(mnt.join(r)).unwrap_or_else(|e| panic!("lstat MNT/{r}: {e}"));
    }
}

/// Our hard RLIMIT_NOFILE, which a server we start inherits.
fn hard_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_max
}

/// True if we may raise a hard limit (CAP_SYS_RESOURCE, bit 24).
fn can_raise_limits() -> bool {
    fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 24) != 0)
}

/// Looks up `n` files through the mount, at most as many at once as the server can
/// hold fds for, letting the kernel forget them between batches.
fn many_inodes(n: u64) {
    let nr_open: u64 = fs::read_to_string("/proc/sys/fs/nr_open")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let (nofile, hold) = if can_raise_limits() {
        let limit = (n + 4096).min(nr_open);
        (Some(limit), n.min(limit - 1024))
    } else {
        let hard = hard_nofile();
        (None, n.min(hard.saturating_sub(1024)))
    };
    assert!(hold >= 1000, "RLIMIT_NOFILE too low for this test");
    // Populated before the server starts: a sandboxed server (a private mount
    // namespace) sees mounts made inside SRC only if they were there when it started.
    let mut rel = Vec::new();
    let m = Mount::start_limited(&[], |src| rel = populate(src, n), nofile)
        .unwrap_or_else(|e| panic!("{e}"));
    let pid = m.pid().expect("server running");
    drop_caches();
    sleep(Duration::from_millis(300));
    let (rss0, fds0) = (rss_kib(pid), fds(pid));

    let t = Instant::now();
    let (mut first_peak, mut max_rss, mut max_fds, mut max_forgotten) = (None, 0, 0, 0);
    for batch in rel.chunks(hold as usize) {
        lookup_all(&m.mnt, batch);
        let (rss, fds_now) = (rss_kib(pid), fds(pid));
        first_peak.get_or_insert((rss, fds_now, batch.len() as u64));
        max_rss = max_rss.max(rss);
        max_fds = max_fds.max(fds_now);
        assert!(
            fds_now <= fds0 + batch.len() as u64 + 16,
            "{fds_now} fds for {} inodes (baseline {fds0}): more than one per inode",
            batch.len()
        );
        assert!(
            fds_now >= fds0 + batch.len() as u64 / 2,
            "only {} fds for {} looked-up inodes: the lookups did not reach the server",
            fds_now - fds0,
            batch.len()
        );
        max_forgotten = max_forgotten.max(forget_until(pid, fds0 + 16));
    }
    let took = t.elapsed();
    let rss_end = rss_kib(pid);
    let (rss1, fds1, held) = first_peak.unwrap();

    let per = 100_000.0 / held as f64;
    let mib = |kib: u64| kib as f64 / 1024.0;
    summary(&format!(
        "exhaustion: {n} inodes looked up in {:.1} s, at most {held} cached at once \
         (server RLIMIT_NOFILE {}): rss {:.1} MiB per 100k, fds {:.0} per 100k; server \
         baseline {:.1} MiB/{fds0} fds, peak {:.1} MiB/{max_fds} fds, after the last forget \
         {:.1} MiB/{max_forgotten} fds at most",
        took.as_secs_f64(),
        nofile.unwrap_or_else(hard_nofile),
        mib(rss1.saturating_sub(rss0)) * per,
        (fds1 - fds0) as f64 * per,
        mib(rss0),
        mib(max_rss),
        mib(rss_end),
    ));
    assert!(
        max_forgotten <= fds0 + 16,
        "fds not released after the kernel forgot the inodes: {max_forgotten} (baseline {fds0})"
    );
    assert!(
        max_rss <= rss1 + rss1 / 4 + 16 * 1024,
        "later batches of the same size grew RSS from {rss1} KiB to {max_rss} KiB"
    );
    assert!(m.is_mounted(), "the server stopped serving");
}

#[test]
fn many_inodes_stay_bounded() {
    many_inodes(env_knob("OWNFS_INODES", 100_000));
}

/// The long run: a million inodes (`OWNFS_INODES` overrides).
#[test]
#[ignore]
fn million_inodes_stay_bounded() {
    many_inodes(env_knob("OWNFS_INODES", 1_000_000));
}

fn errno(r: io::Result<impl Sized>) -> Option<i32> {
    r.err().map(|e| e.raw_os_error().unwrap_or(-1))
}

fn is_fd_exhaustion(e: Option<i32>) -> bool {
    matches!(e, Some(libc::EMFILE) | Some(libc::ENFILE))
}

#[test]
fn fd_limit_gives_emfile_and_recovers() {
    const LIMIT: u64 = 200;
    const FILES: u64 = 400;
    let mut s = Served::start_limited(Mode::Root, &[], Some(LIMIT));
    let (src, mnt) = (s.src().to_path_buf(), s.mnt().to_path_buf());
    fs::create_dir(src.join("d")).unwrap();
    for i in 0..FILES {
        fs::write(src.join(format!("d/f{i}")), format!("{i}")).unwrap();
    }
    let pid = s.server_pid();
    drop_caches();
    sleep(Duration::from_millis(300));

    // Look up until the server runs out of fds; every later lookup fails the same way.
    let mut first_fail = None;
    let mut other = Vec::new();
    for i in 0..FILES {
        let e = errno(fs::symlink_metadata(mnt.join(format!("d/f{i}"))));
        match e {
            None => {}
            e if is_fd_exhaustion(e) => {
                first_fail.get_or_insert(i);
            }
            Some(e) => other.push((i, e)),
        }
    }
    let first_fail = first_fail.unwrap_or_else(|| {
        panic!("{FILES} lookups with RLIMIT_NOFILE {LIMIT} never failed with EMFILE")
    });
    assert!(
        other.is_empty(),
        "lookups failed with other errors: {other:?}"
    );
    assert!(
        s.server_alive(),
        "the server died at the fd limit:\n{}",
        s.logs()
    );

    // Requests that need a new fd fail cleanly; nothing half-done is left behind.
    let looked_up = mnt.join("d/f0");
    let open = errno(fs::read(&looked_up));
    let list = errno(fs::read_dir(mnt.join("d")).map(|d| d.count()));
    let create = errno(fs::File::create(mnt.join("d/new-file")));
    let mkdir = errno(fs::create_dir(mnt.join("d/new-dir")));
    let symlink = errno(std::os::unix::fs::symlink("t", mnt.join("d/new-link")));
    let results = [
        ("open", open),
        ("opendir", list),
        ("create", create),
        ("mkdir", mkdir),
        ("symlink", symlink),
    ];
    for (what, e) in results {
        assert!(
            is_fd_exhaustion(e),
            "{what} at the fd limit: expected EMFILE/ENFILE, got {e:?}"
        );
    }
    for name in ["new-file", "new-dir", "new-link"] {
        assert!(
            fs::symlink_metadata(src.join("d").join(name)).is_err(),
            "{name}: the client was told it failed, but it exists on the host"
        );
    }
    // A request that needs no new fd still works.
    assert_eq!(
        fs::metadata(&looked_up).unwrap().ino(),
        fs::metadata(src.join("d/f0")).unwrap().ino()
    );
    assert!(
        s.server_alive(),
        "the server died at the fd limit:\n{}",
        s.logs()
    );
    let at_limit = fds(pid);

    // Once the kernel forgets the inodes, the same requests succeed.
    let after = forget_until(pid, 16);
    assert_eq!(fs::read_to_string(&looked_up).unwrap(), "0");
    fs::write(mnt.join("d/new-file"), b"after").unwrap();
    fs::create_dir(mnt.join("d/new-dir")).unwrap();
    std::os::unix::fs::symlink("t", mnt.join("d/new-link")).unwrap();
    // Listing with readdirplus looks up every entry: the server fills up again.
    assert_eq!(
        fs::read_dir(mnt.join("d")).unwrap().count() as u64,
        FILES + 3
    );
    forget_until(pid, 16);
    for i in 0..FILES / 4 {
        fs::symlink_metadata(mnt.join(format!("d/f{i}"))).unwrap();
    }
    assert!(s.server_alive());
    summary(&format!(
        "exhaustion[fd limit {LIMIT}]: lookup {first_fail} failed with EMFILE ({at_limit} fds \
         open), open/opendir/create/mkdir/symlink failed cleanly, {after} fds after forget, \
         server up and serving"
    ));
}
