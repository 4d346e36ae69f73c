//! fuse-pipe end to end: `ownfs serve SRC --listen unix:SOCK` on the "host" side,
//! `ownfs client MNT --connect unix:SOCK` on the "guest" side, both on this machine.
//!
//! Covers plain operations, forwarded supplementary groups, a rootless server, the
//! server being killed and restarted under a running workload, and malformed input
//! on the socket while a good client keeps working. Every wait is bounded.

mod common;
mod fuse_raw;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use common::*;
use fuse_raw::{pipe_handshake, PipeFuse, Transport};
use ownfs::platform;
use ownfs::transport::pipe::wire::{self, Hello, Welcome, HELLO_LEN, WELCOME_FIXED_LEN};

/// A welcome and its message, as the server sent them.
struct Answer {
    w: Welcome,
    message: String,
}

/// A group the test caller may be in; no /etc/group entry needed.
const G: u32 = 424_401;
/// Primary group of the test caller.
const P: u32 = 424_402;
/// The test caller.
const U: u32 = 424_501;

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

#[test]
fn operations_through_the_pipe() {
    let p = Pipe::start(&[], &[]);
    let m = &p.mnt;
    let s = &p.src;

    fs::write(m.join("a"), b"hello\n").unwrap();
    assert_eq!(fs::read(s.join("a")).unwrap(), b"hello\n");
    assert_eq!(fs::read(m.join("a")).unwrap(), b"hello\n");

    // Large data both ways, across the 1 MiB request size.
    let data = pattern(5 * 1024 * 1024 + 123, 7);
    fs::write(m.join("big"), &data).unwrap();
    assert!(fs::read(s.join("big")).unwrap() == data, "SRC/big differs");
    assert!(fs::read(m.join("big")).unwrap() == data, "MNT/big differs");
    let mut f = OpenOptions::new().read(true).open(m.join("big")).unwrap();
    let mut buf = vec![0u8; 10];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, 3 * 1024 * 1024 + 5).unwrap();
    assert_eq!(buf, data[3 * 1024 * 1024 + 5..][..10]);
    f.read_exact(&mut buf).unwrap();
    assert_eq!(buf, data[..10]);

    // Namespace operations.
    fs::create_dir(m.join("d")).unwrap();
    fs::rename(m.join("a"), m.join("d/b")).unwrap();
    fs::hard_link(m.join("d/b"), m.join("c")).unwrap();
    symlink("d/b", m.join("l")).unwrap();
    assert_eq!(fs::read_link(m.join("l")).unwrap(), Path::new("d/b"));
    assert_eq!(fs::read(m.join("l")).unwrap(), b"hello\n");
    assert_eq!(fs::metadata(m.join("c")).unwrap().nlink(), 2);
    assert!(fs::symlink_metadata(s.join("l"))
        .unwrap()
        .file_type()
        .is_symlink());
    nix::unistd::mkfifo(
        &m.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    assert!(fs::symlink_metadata(s.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_errno(fs::create_dir(m.join("d")), libc::EEXIST, "mkdir over d");
    assert_errno(fs::remove_dir(m.join("d")), libc::ENOTEMPTY, "rmdir d");
    assert_errno(fs::read(m.join("nope")), libc::ENOENT, "read nope");
    fs::remove_file(m.join("c")).unwrap();
    fs::remove_file(m.join("d/b")).unwrap();
    fs::remove_dir(m.join("d")).unwrap();

    // Attributes.
    let f = File::create(m.join("t")).unwrap();
    f.set_len(12345).unwrap();
    assert_eq!(fs::metadata(s.join("t")).unwrap().len(), 12345);
    chmod(&m.join("t"), 0o4751);
    assert_eq!(mode_of(&s.join("t")), 0o4751);
    std::os::unix::fs::chown(m.join("t"), Some(U), Some(P)).unwrap();
    assert_eq!(owner(&s.join("t")), (U, P));
    assert_eq!(owner(&m.join("t")), (U, P));
    let mtime = fs::metadata(s.join("t")).unwrap().mtime();
    let t = nix::sys::time::TimeSpec::new(1_000_000, 42);
    nix::sys::stat::utimensat(
        None,
        &m.join("t"),
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
    let md = fs::metadata(m.join("t")).unwrap();
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_000_000, 42));
    assert_ne!(md.mtime(), mtime);

    // Extended attributes.
    xattr_roundtrip(&m.join("t"));

    // A directory bigger than one readdir buffer, read twice.
    fs::create_dir(m.join("many")).unwrap();
    let mut want = Vec::new();
    for i in 0..600 {
        let name = format!("entry-with-a-fairly-long-name-{i:05}");
        File::create(m.join("many").join(&name)).unwrap();
        want.push(name);
    }
    want.sort();
    for _ in 0..2 {
        let mut got: Vec<String> = fs::read_dir(m.join("many"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        got.sort();
        assert_eq!(got, want);
    }

    // statfs comes from the host file system.
    let a = nix::sys::statvfs::statvfs(m).unwrap();
    let b = nix::sys::statvfs::statvfs(s).unwrap();
    assert_eq!(a.blocks(), b.blocks());
    assert_eq!(a.fragment_size(), b.fragment_size());
}

/// READ replies above 32 KiB move by splice (file to pipe to socket on the server,
/// socket to pipe to /dev/fuse on the client); smaller ones and those above the pipe's
/// size are copied. Every size and offset, short reads at the end of the file
/// included, must return the file's bytes.
#[test]
fn direct_reads_of_every_size_return_the_files_bytes() {
    let p = Pipe::start(&[], &[]);
    let data = pattern(3 * 1024 * 1024 + 777, 11);
    fs::write(p.src.join("f"), &data).unwrap();
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(p.mnt.join("f"))
        .unwrap();
    let cases: &[(usize, u64)] = &[
        (4096, 0),
        (40 * 1024, 1),
        (128 * 1024, 4097),
        (512 * 1024 + 3, 65_537),
        (900 * 1024, 12_345),
        (1024 * 1024, 0),
        (1024 * 1024, 2 * 1024 * 1024 + 5),
        (256 * 1024, data.len() as u64 - 1000),
        (64 * 1024, data.len() as u64),
    ];
    for &(size, offset) in cases {
        let mut buf = vec![0u8; size];
        let mut got = 0;
        while got < size {
            let n = std::os::unix::fs::FileExt::read_at(&f, &mut buf[got..], offset + got as u64)
                .unwrap_or_else(|e| panic!("read of {size} at {offset}: {e}"));
            if n == 0 {
                break;
            }
            got += n;
        }
        let start = (offset as usize).min(data.len());
        let want = &data[start..(start + size).min(data.len())];
        assert_eq!(got, want.len(), "bytes read: {size} at {offset}");
        assert!(buf[..got] == *want, "data of {size} at {offset} differs");
    }
    // The host changes the file under the open handle: the next read sees it.
    let changed = pattern(200 * 1024, 12);
    OpenOptions::new()
        .write(true)
        .open(p.src.join("f"))
        .unwrap()
        .write_all(&changed)
        .unwrap();
    let mut buf = vec![0u8; changed.len()];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, 0).unwrap();
    assert!(
        buf == changed,
        "data changed on the host is not what is read"
    );
}

fn xattr_roundtrip(p: &Path) {
    let c = cstr(p);
    let name = c"user.pipe";
    platform::setxattr_path(&c, name, b"v1", 0).expect("setxattr");
    let mut buf = [0u8; 16];
    let n = platform::getxattr_path(&c, name, &mut buf).expect("getxattr");
    assert_eq!(&buf[..n], b"v1");
    // A size query.
    let n = platform::getxattr_path(&c, name, &mut []).expect("getxattr size");
    assert_eq!(n, 2);
    // XATTR_CREATE on an existing name fails.
    assert_errno(
        platform::setxattr_path(&c, name, b"v2", libc::XATTR_CREATE),
        libc::EEXIST,
        "setxattr XATTR_CREATE",
    );
    let mut list = [0u8; 256];
    let n = platform::listxattr_path(&c, &mut list).expect("listxattr");
    assert!(list[..n].split(|b| *b == 0).any(|n| n == b"user.pipe"));
    platform::removexattr_path(&c, name).expect("removexattr");
}

#[test]
fn concurrent_callers_share_one_connection() {
    let p = Pipe::start(&[], &["--threads", "8"]);
    let mnt = p.mnt.clone();
    let results = bounded(
        "8 concurrent workers",
        Duration::from_secs(120),
        move || {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let dir = mnt.join(format!("t{t}"));
                    thread::spawn(move || -> io::Result<()> {
                        fs::create_dir(&dir)?;
                        for i in 0..150 {
                            let f = dir.join(format!("f{i}"));
                            let data = pattern(100 + i * 37, (t * 1000 + i) as u64);
                            fs::write(&f, &data)?;
                            if fs::read(&f)? != data {
                                return Err(io::Error::other(format!("{} differs", f.display())));
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("worker panicked"))
                .collect::<Vec<_>>()
        },
    );
    for r in results {
        r.unwrap();
    }
    for t in 0..8 {
        assert_eq!(
            fs::read_dir(p.src.join(format!("t{t}"))).unwrap().count(),
            150
        );
    }
}

/// A request held up on the host (a lookup below a submount whose FUSE server is
/// stopped) leaves the connection to the others: a lookup elsewhere is answered
/// while the held one still waits.
#[test]
fn a_request_held_up_on_the_host_does_not_hold_up_the_others() {
    use nix::sys::signal::{kill, Signal};
    let inner = Mount::new(&[]);
    fs::write(inner.src.join("x"), b"x").unwrap();
    let submount = inner.mnt.clone();
    let p = Pipe::start_with(&[], &[], |src| {
        fs::create_dir(src.join("sub")).unwrap();
        fs::write(src.join("other"), b"other").unwrap();
        ok(Command::new("mount")
            .arg("--bind")
            .arg(&submount)
            .arg(src.join("sub")));
    });
    assert!(fs::metadata(p.mnt.join("sub")).unwrap().is_dir());
    // Whatever happens below, the inner server goes on and the bind goes before the
    // pipe's scratch directories are removed.
    struct Release(nix::unistd::Pid, PathBuf);
    impl Drop for Release {
        fn drop(&mut self) {
            let _ = kill(self.0, Signal::SIGCONT);
            let _ = Command::new("umount").arg("-l").arg(&self.1).status();
        }
    }
    let release = Release(
        inner.pid().expect("the inner server runs"),
        p.src.join("sub"),
    );
    kill(release.0, Signal::SIGSTOP).unwrap();
    let held = p.mnt.join("sub/x");
    let held_done = Arc::new(AtomicBool::new(false));
    let flag = held_done.clone();
    let holder = thread::spawn(move || {
        let r = fs::metadata(&held).map(|m| m.len());
        flag.store(true, Ordering::SeqCst);
        r
    });
    // Give the held lookup time to reach the stopped server.
    sleep(Duration::from_millis(500));
    let other = p.mnt.join("other");
    let len = bounded(
        "a lookup beside a held one",
        Duration::from_secs(20),
        move || fs::metadata(other).map(|m| m.len()),
    );
    let held_still_waiting = !held_done.load(Ordering::SeqCst);
    kill(release.0, Signal::SIGCONT).unwrap();
    let held_len = holder.join().expect("the held lookup's thread");
    drop(release);
    assert_eq!(len.unwrap(), 5, "the other lookup");
    assert!(
        held_still_waiting,
        "the held lookup did not wait: nothing was tested"
    );
    assert_eq!(
        held_len.unwrap(),
        1,
        "the held lookup, once the server goes on"
    );
}

// ---------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------

fn supplementary_group_through_the_pipe(client_args: &[&str]) {
    let p = Pipe::start(&[], client_args);
    let d = p.src.join("d");
    fs::create_dir(&d).unwrap();
    std::os::unix::fs::chown(&d, Some(0), Some(G)).unwrap();
    chmod(&d, 0o770);
    let via = p.mnt.join("d");

    let with_g = Caller::new(U, P).groups(&[G]).umask(0o022);
    let without_g = Caller::new(U, P).groups(&[P]).umask(0o022);
    with_g
        .run(|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(via.join("f"))?;
            f.write_all(b"from a supplementary group\n")
        })
        .expect("a caller in G only through its supplementary groups creates d/f");
    assert_eq!(owner(&d.join("f")), (U, P), "owner of d/f on SRC");
    assert_eq!(
        owner(&via.join("f")),
        (U, P),
        "owner of d/f through the pipe"
    );
    with_g
        .run(|| fs::create_dir(via.join("sub")))
        .expect("mkdir d/sub with G");
    assert_eq!(owner(&d.join("sub")), (U, P));

    assert_errno(
        without_g.run(|| File::create(via.join("g")).map(drop)),
        libc::EACCES,
        "a caller without G creating d/g",
    );
    assert!(
        !d.join("g").exists(),
        "d/g must not exist after a denied create"
    );
}

#[test]
fn supplementary_group_grants_access_default_permissions() {
    supplementary_group_through_the_pipe(&[]);
}

#[test]
fn supplementary_group_grants_access_no_default_permissions() {
    // Only the server decides here: the groups must have been forwarded.
    supplementary_group_through_the_pipe(&["--no-default-permissions"]);
}

#[test]
fn rootless_server_virtualizes_ownership() {
    let p = Pipe::start_with(
        &["--run-as", "4000:4000"],
        &["--no-default-permissions"],
        |src| {
            std::os::unix::fs::chown(src, Some(4000), Some(4000)).unwrap();
        },
    );
    // A rootless server makes the client check permissions itself.
    let entry = mounts_at(&p.mnt)
        .into_iter()
        .find(|e| e.fstype == FSTYPE)
        .unwrap();
    assert!(
        entry.options.iter().any(|o| o == "default_permissions"),
        "{:?}",
        entry.options
    );
    chmod(&p.mnt, 0o777);
    Caller::new(U, P)
        .umask(0o022)
        .run(|| fs::write(p.mnt.join("mine"), b"x"))
        .expect("create as U");
    assert_eq!(owner(&p.mnt.join("mine")), (U, P), "virtual owner");
    assert_eq!(owner(&p.src.join("mine")), (4000, 4000), "host owner");
}

#[test]
fn writeback_cache_through_the_pipe() {
    let p = Pipe::start(&[], &["--writeback"]);
    chmod(&p.mnt, 0o777);
    // A caller that may write but not read: the client kernel's page cache still
    // reads partial pages back, which the server must allow (it knows the mode
    // from the forwarded init).
    let f = p.mnt.join("wo");
    Caller::new(U, P)
        .run(|| {
            let mut w = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o200)
                .open(&f)?;
            w.write_all(b"hello world")?;
            std::os::unix::fs::FileExt::write_all_at(&w, b"W", 6)?;
            w.sync_all()
        })
        .expect("write-only writes under the writeback cache");
    assert_eq!(fs::read(p.src.join("wo")).unwrap(), b"hello World");
    let mut a = OpenOptions::new()
        .append(true)
        .open(p.mnt.join("wo"))
        .unwrap();
    a.write_all(b"!").unwrap();
    drop(a);
    assert_eq!(fs::read(p.mnt.join("wo")).unwrap(), b"hello World!");
    assert_eq!(fs::read(p.src.join("wo")).unwrap(), b"hello World!");
    assert!(
        p.server_stderr().contains("WRITEBACK_CACHE"),
        "the server should have been told about the writeback cache:\n{}",
        p.server_stderr()
    );
}

// ---------------------------------------------------------------------------
// Server failure and restart
// ---------------------------------------------------------------------------

#[test]
fn server_restart_during_a_workload() {
    let mut p = Pipe::start(&[], &["--timeout", "10"]);
    fs::create_dir(p.mnt.join("w")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (dir, stop2) = (p.mnt.join("w"), stop.clone());
    // Small file writes in a loop; every outcome is recorded.
    let (tx, rx) = mpsc::channel::<Vec<(usize, Result<(), i32>, Duration)>>();
    thread::spawn(move || {
        let mut log = Vec::new();
        let mut i = 0;
        while !stop2.load(Ordering::Relaxed) || i < 50 {
            let t = Instant::now();
            let r = fs::write(dir.join(format!("f{i:05}")), format!("data {i}\n"))
                .map_err(|e| e.raw_os_error().unwrap_or(-1));
            log.push((i, r, t.elapsed()));
            i += 1;
            if stop2.load(Ordering::Relaxed) && log.iter().rev().take(20).all(|l| l.1.is_ok()) {
                break;
            }
            if i > 200_000 {
                break;
            }
        }
        let _ = tx.send(log);
    });
    sleep(Duration::from_millis(700));
    p.kill_server();
    sleep(Duration::from_millis(300));
    p.start_server();
    sleep(Duration::from_millis(700));
    stop.store(true, Ordering::Relaxed);
    let log = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the workload hung after the server restart");

    let failed: Vec<_> = log.iter().filter(|l| l.1.is_err()).collect();
    eprintln!(
        "{} writes, {} failed ({:?}), slowest {:?}",
        log.len(),
        failed.len(),
        failed,
        log.iter().map(|l| l.2).max()
    );
    for (i, r, _) in &failed {
        let e = r.unwrap_err();
        assert!(
            e == libc::EIO || e == libc::ESTALE,
            "write {i} failed with errno {e}, not EIO/ESTALE"
        );
    }
    assert!(
        failed.len() <= 5,
        "{} writes failed: {failed:?}",
        failed.len()
    );
    let slowest = log.iter().map(|l| l.2).max().unwrap();
    assert!(
        slowest < Duration::from_secs(12),
        "a write took {slowest:?}"
    );
    // Writes went on after the restart, and everything that succeeded is on SRC.
    assert!(log.len() > 60, "only {} writes", log.len());
    for (i, r, _) in &log {
        if r.is_ok() {
            let got = fs::read_to_string(p.src.join(format!("w/f{i:05}"))).unwrap();
            assert_eq!(got, format!("data {i}\n"));
        }
    }
    assert!(
        p.client_stderr().contains("restarted"),
        "the client should notice the new server instance:\n{}",
        p.client_stderr()
    );
}

#[test]
fn requests_fail_with_eio_while_the_server_is_gone() {
    let mut p = Pipe::start(&[], &["--timeout", "2"]);
    fs::write(p.mnt.join("f"), b"x").unwrap();
    p.kill_server();
    let path = p.mnt.join("g");
    let t = Instant::now();
    let r = bounded(
        "a write while the server is down",
        Duration::from_secs(20),
        move || fs::write(path, b"y"),
    );
    assert_errno(r, libc::EIO, "write with the server gone");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
        "took {took:?} for a 2 s timeout"
    );
    // And it recovers once a server is back.
    p.start_server();
    let path = p.mnt.join("f");
    let r = bounded(
        "a read after the restart",
        Duration::from_secs(20),
        move || fs::read(path),
    );
    assert_eq!(r.unwrap(), b"x");
}

// ---------------------------------------------------------------------------
// Malformed input on the socket
// ---------------------------------------------------------------------------

fn raw(sock: &Path) -> UnixStream {
    let s = UnixStream::connect(sock).expect("connect to the server socket");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn hello(version: u16) -> Vec<u8> {
    wire::encode(&Hello {
        version,
        ..Hello::new(0, 0)
    })
}

/// Reads the server's welcome.
fn welcome(s: &mut UnixStream) -> Answer {
    let mut fixed = [0u8; WELCOME_FIXED_LEN];
    s.read_exact(&mut fixed).expect("welcome");
    let w: Welcome = wire::decode(&fixed).expect("welcome decodes");
    let mut msg = vec![0u8; w.message_len.into()];
    s.read_exact(&mut msg).unwrap();
    let message = String::from_utf8_lossy(&msg).into_owned();
    Answer { w, message }
}

/// The server must close the connection: reading ends (EOF or reset) in bounded time.
fn assert_closed(s: &mut UnixStream, what: &str) {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("{what}: server kept the connection open ({e})"),
        }
        assert!(Instant::now() < deadline, "{what}: still open");
    }
}

/// The start of a request frame: its length field and group count.
fn frame_head(len: u32, groups: u32) -> Vec<u8> {
    let mut v = len.to_le_bytes().to_vec();
    v.extend_from_slice(&groups.to_le_bytes());
    v
}

#[test]
fn bad_input_closes_only_that_connection() {
    let mut p = Pipe::start(&[], &[]);
    let check_good = |p: &Pipe, n: usize| {
        let f = p.mnt.join(format!("good{n}"));
        fs::write(&f, format!("{n}")).expect("the good client must keep working");
        assert_eq!(fs::read_to_string(&f).unwrap(), format!("{n}"));
    };
    check_good(&p, 0);

    // An idle half-open connection does not block anyone.
    let mut idle = raw(&p.sock);
    idle.write_all(&hello(wire::VERSION)[..10]).unwrap();

    // Wrong magic: a refusal with a reason, then the server hangs up.
    let mut s = raw(&p.sock);
    let mut h = hello(wire::VERSION);
    h[..8].copy_from_slice(b"NOTOWNFS");
    s.write_all(&h).unwrap();
    let a = welcome(&mut s);
    assert_eq!(a.w.status, wire::status::BAD_MAGIC, "{}", a.message);
    assert_closed(&mut s, "bad magic");
    check_good(&p, 1);

    // Wrong version.
    let mut s = raw(&p.sock);
    s.write_all(&hello(wire::VERSION + 1)).unwrap();
    let a = welcome(&mut s);
    assert_eq!(a.w.status, wire::status::BAD_VERSION, "{}", a.message);
    assert!(a.message.contains("version"), "{}", a.message);
    assert_closed(&mut s, "bad version");
    check_good(&p, 2);

    // A capability the server lacks.
    let mut s = raw(&p.sock);
    let h = Hello {
        required: 1 << 30,
        ..Hello::new(0, 0)
    };
    s.write_all(&wire::encode(&h)).unwrap();
    assert_eq!(welcome(&mut s).w.status, wire::status::MISSING_CAPS);
    assert_closed(&mut s, "missing capability");

    let ready = |p: &Pipe| {
        let mut s = raw(&p.sock);
        s.write_all(&hello(wire::VERSION)).unwrap();
        assert_eq!(welcome(&mut s).w.status, wire::status::OK);
        s
    };

    // Oversized frame: refused from the length field alone.
    let mut s = ready(&p);
    s.write_all(&frame_head(wire::MAX_FRAME + 1, 0)).unwrap();
    assert_closed(&mut s, "oversized frame");
    let mut s = ready(&p);
    s.write_all(&frame_head(u32::MAX, 0)).unwrap();
    assert_closed(&mut s, "4 GiB frame");
    check_good(&p, 3);

    // Truncated frame: the length promises more than ever comes.
    let mut s = ready(&p);
    let mut f = frame_head(100, 0);
    f.extend_from_slice(&[0u8; 20]);
    s.write_all(&f).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_closed(&mut s, "truncated frame");

    // More groups than the limit, and a length too short for its groups.
    let mut s = ready(&p);
    s.write_all(&frame_head(wire::MAX_FRAME, wire::MAX_GROUPS + 1))
        .unwrap();
    assert_closed(&mut s, "too many groups");
    let mut s = ready(&p);
    s.write_all(&frame_head(8, 5)).unwrap();
    assert_closed(&mut s, "groups past the frame");
    check_good(&p, 4);

    // Pure garbage, with and without a handshake, several rounds.
    let mut x = 0x1234_5678_9abc_def1u64;
    for round in 0..20 {
        let mut s = if round % 2 == 0 {
            ready(&p)
        } else {
            raw(&p.sock)
        };
        let junk: Vec<u8> = (0..64 + round * 97)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let _ = s.write_all(&junk);
        let _ = s.shutdown(std::net::Shutdown::Write);
        assert_closed(&mut s, &format!("garbage round {round}"));
    }
    check_good(&p, 5);

    // A good raw client on the same server gets real answers meanwhile; a FUSE message
    // that does not decode is answered (EINVAL), like on any transport.
    let mut c = PipeFuse::new(&p.sock);
    let r = c.call(&fuse_raw::statfs(fuse_raw::ROOT)).expect("statfs");
    assert_eq!((r.errno, r.body.len()), (0, 80), "statfs_out");
    let short = fuse_raw::Msg::new(fuse_raw::op::LOOKUP, 1, fuse_raw::Body::new().bytes(b"f"));
    assert_eq!(
        c.call(&short).expect("lookup without NUL").errno,
        libc::EINVAL
    );

    drop(idle);
    assert!(p.server_alive(), "the server must survive all of this");
    let log = p.server_stderr();
    assert!(log.contains("malformed frame"), "{log}");
    assert!(log.contains("handshake failed"), "{log}");
}

#[test]
fn oversized_frame_closes_only_that_connection() {
    let mut p = Pipe::start(&[], &[]);
    fs::write(p.mnt.join("before"), b"1").unwrap();
    let mut other = PipeFuse::new(&p.sock);
    let mut big = PipeFuse::new(&p.sock);
    // A write one byte over the largest message: the length field alone decides.
    let data = vec![7u8; wire::MAX_MESSAGE];
    let msg = fuse_raw::write(fuse_raw::ROOT, 1, 0, data.len() as u32, &data).encode(9);
    assert!(msg.len() > wire::MAX_MESSAGE);
    let _ = big.send_frame(&[], &msg);
    assert!(big.closed(), "the oversized frame's connection must close");
    // The mount's connection and another raw one carry on.
    let r = other
        .call(&fuse_raw::getattr(fuse_raw::ROOT))
        .expect("getattr");
    assert_eq!(r.errno, 0);
    fs::write(p.mnt.join("after"), b"2").unwrap();
    assert_eq!(fs::read(p.src.join("after")).unwrap(), b"2");
    assert!(p.server_alive());
    assert!(p.server_stderr().contains("malformed frame"));
}

/// An old (version 2) client and a new server refuse each other, each naming both
/// versions.
#[test]
fn version_mismatch_is_refused_by_the_server() {
    let p = Pipe::start(&[], &[]);
    for old in [2, wire::VERSION + 1] {
        let (mut s, w, message) = pipe_handshake(&p.sock, old).expect("handshake");
        assert_eq!(w.status, wire::status::BAD_VERSION, "{message}");
        assert!(
            message.contains(&format!("version {old}"))
                && message.contains(&format!("version {}", wire::VERSION)),
            "the refusal must name both versions: {message}"
        );
        assert_closed(&mut s, "mismatched version");
    }
    let log = p.server_stderr();
    assert!(log.contains("version 2"), "{log}");
}

/// After a server restart, a node id and handle the kernel kept from the old server
/// fail (ESTALE or EIO) instead of reaching whatever the new server calls by that id.
#[test]
fn a_stale_node_after_a_restart_does_not_alias() {
    let mut p = Pipe::start(&[], &["--timeout", "10"]);
    fs::write(p.mnt.join("a"), b"aaaa").unwrap();
    let old = OpenOptions::new()
        .read(true)
        .write(true)
        .open(p.mnt.join("a"))
        .unwrap();
    p.kill_server();
    p.start_server();
    // The new server hands out ids from the start again: b gets what a had.
    fs::write(p.src.join("b"), b"bbbb").unwrap();
    let b = p.mnt.join("b");
    let got = bounded("read b", Duration::from_secs(20), move || fs::read(b));
    assert_eq!(got.unwrap(), b"bbbb");
    let stale = |r: io::Result<()>, what: &str| match r {
        Err(e) if matches!(e.raw_os_error(), Some(libc::ESTALE | libc::EIO)) => {}
        other => panic!("{what} through the old descriptor: {other:?}, not ESTALE/EIO"),
    };
    stale(
        std::os::unix::fs::FileExt::write_all_at(&old, b"XX", 0),
        "write",
    );
    stale(old.set_len(1), "truncate");
    stale(old.sync_all(), "fsync");
    assert_eq!(fs::read(p.src.join("b")).unwrap(), b"bbbb", "b was reached");
    assert_eq!(fs::read(p.src.join("a")).unwrap(), b"aaaa", "a was changed");
    // The path still works: a fresh lookup gets an id of the new server.
    assert_eq!(fs::read(p.mnt.join("a")).unwrap(), b"aaaa");
}

// ---------------------------------------------------------------------------
// Handshake failures seen from the client
// ---------------------------------------------------------------------------

/// A fake server answering every hello with `welcome` and `message`.
fn fake_server(sock: PathBuf, welcome: Welcome, message: &str) -> thread::JoinHandle<()> {
    let answer = wire::welcome_bytes(&welcome, message);
    let l = UnixListener::bind(&sock).unwrap();
    thread::spawn(move || {
        for s in l.incoming().take(1) {
            let mut s = s.unwrap();
            let mut b = [0u8; HELLO_LEN];
            if s.read_exact(&mut b).is_ok() {
                let _ = s.write_all(&answer);
            }
        }
    })
}

#[test]
fn client_rejects_a_server_of_another_version() {
    let v = wire::VERSION;
    let both = format!("version {v}");
    let old = "protocol version 3 not supported (server speaks 2)";
    for (version, status, message, expect) in [
        (v + 1, wire::status::OK, "", format!("version {}", v + 1)),
        (2, wire::status::OK, "", "version 2".to_string()),
        (
            v,
            wire::status::BAD_VERSION,
            "test server says no",
            "refused".into(),
        ),
        // What a version 2 server answers this client.
        (2, wire::status::BAD_VERSION, old, "server speaks 2".into()),
    ] {
        let scratch = Scratch::new("pipe-ver");
        let sock = scratch.path("fake.sock");
        let mnt = scratch.dir("mnt");
        let server = fake_server(
            sock.clone(),
            Welcome {
                magic: u64::from_le_bytes(wire::MAGIC),
                version,
                status,
                max_frame: wire::MAX_FRAME,
                instance: 1,
                ..Default::default()
            },
            message,
        );
        let connect = format!("unix:{}", sock.display());
        let (st, err) = run_ownfs_to_exit(
            &[
                "client".as_ref(),
                mnt.as_os_str(),
                "--connect".as_ref(),
                connect.as_ref(),
                "--timeout".as_ref(),
                "20".as_ref(),
            ],
            &[&mnt],
            Duration::from_secs(15),
        );
        assert!(!st.success(), "the client must refuse: {err}");
        assert!(
            err.contains(&expect) && err.contains(&both),
            "stderr should say why ({expect}) and name this client's {both}: {err}"
        );
        assert!(!ownfs_mounted_at(&mnt));
        server.join().unwrap();
    }
}

#[test]
fn client_gives_up_when_no_server_answers() {
    let scratch = Scratch::new("pipe-none");
    let mnt = scratch.dir("mnt");
    let connect = format!("unix:{}", scratch.path("nobody.sock").display());
    let t = Instant::now();
    let (st, err) = run_ownfs_to_exit(
        &[
            "client".as_ref(),
            mnt.as_os_str(),
            "--connect".as_ref(),
            connect.as_ref(),
            "--timeout".as_ref(),
            "1".as_ref(),
        ],
        &[&mnt],
        Duration::from_secs(15),
    );
    assert!(!st.success());
    assert!(err.contains("cannot connect"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(10));
}
