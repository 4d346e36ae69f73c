//! `--sandbox namespace|chroot|none`, seen from outside the server: what
//! `/proc/PID/root` of a running server shows, that the share still works through the
//! paths that reach `/proc/self/fd/N` (chmod, truncate, xattrs, hard links, local
//! callers' groups), and that `mount` still unmounts on the host (SIGTERM) and still
//! exits when the user unmounts it.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use common::*;

/// A host group and user for the supplementary-groups check (no /etc entry needed).
const G: u32 = 424_801;
const U: u32 = 424_802;

/// Sorted entry names of `dir`.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn proc_path(pid: u32, what: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{what}"))
}

fn root_names(pid: u32) -> Vec<String> {
    names(&proc_path(pid, "root"))
}

fn link(p: &Path) -> PathBuf {
    fs::read_link(p).unwrap_or_else(|e| panic!("readlink {}: {e}", p.display()))
}

/// Some entries in SRC before the server starts, so the listing is not trivially empty.
fn seed(src: &Path) {
    fs::write(src.join("seed-file"), b"seed").unwrap();
    fs::create_dir(src.join("seed-dir")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.join("seed-link")).unwrap();
}

/// Operations whose server side goes through the `/proc/self/fd/N` paths: create,
/// chmod of an O_PATH inode, truncate by inode, set/get/list/remove xattr, hard link.
fn exercise(mnt: &Path, src: &Path) {
    let f = mnt.join("made-here");
    fs::write(&f, b"0123456789").unwrap();
    assert_eq!(fs::read(src.join("made-here")).unwrap(), b"0123456789");

    fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(mode_of(&src.join("made-here")) & 0o7777, 0o640, "chmod");

    let out = Command::new("truncate")
        .args(["-s", "3"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(out.status.success(), "truncate: {out:?}");
    assert_eq!(fs::read(src.join("made-here")).unwrap(), b"012", "truncate");

    let out = Command::new("setfattr")
        .args(["-n", "user.sandbox", "-v", "inside"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(out.status.success(), "setfattr: {out:?}");
    let out = Command::new("getfattr")
        .args(["--only-values", "-n", "user.sandbox"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "inside",
        "getfattr: {out:?}"
    );
    let out = Command::new("getfattr")
        .args(["-d", "--absolute-names"])
        .arg(src.join("made-here"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("user.sandbox=\"inside\""),
        "xattr on the host file: {out:?}"
    );
    let out = Command::new("setfattr")
        .args(["-x", "user.sandbox"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(out.status.success(), "setfattr -x: {out:?}");
    let out = Command::new("getfattr")
        .args(["-d", "--absolute-names"])
        .arg(src.join("made-here"))
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("user.sandbox"),
        "removexattr: {out:?}"
    );

    fs::hard_link(&f, mnt.join("made-here-link")).unwrap();
    assert_eq!(
        fs::metadata(src.join("made-here-link")).unwrap().ino(),
        fs::metadata(src.join("made-here")).unwrap().ino(),
        "link"
    );
    fs::create_dir(mnt.join("made-dir")).unwrap();
    assert!(src.join("made-dir").is_dir());
}

/// A request answered through MNT: the server set up its sandbox before serving
/// (a `mount` is listed in /proc/mounts before that).
fn served(mnt: &Path) -> u32 {
    names(mnt).len() as u32
}

/// The server's root is the share: the same entries, including what was just made.
fn assert_root_is_share(pid: u32, src: &Path) {
    assert_eq!(root_names(pid), names(src), "/proc/{pid}/root vs SRC");
    assert!(root_names(pid).contains(&"seed-file".to_string()));
    // Nothing of the host's tree: no proc, etc or usr at the server's /.
    for host_dir in ["proc", "etc", "usr", "tmp"] {
        assert!(
            !proc_path(pid, "root").join(host_dir).exists(),
            "/{host_dir} visible from the sandboxed server"
        );
    }
}

fn same_ns(pid: u32, ns: &str) -> bool {
    link(&proc_path(pid, &format!("ns/{ns}"))) == link(Path::new(&format!("/proc/self/ns/{ns}")))
}

fn wait_gone(p: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while p.exists() {
        if Instant::now() > deadline {
            return false;
        }
        sleep(Duration::from_millis(20));
    }
    true
}

// ---- serve (fuse-pipe over a Unix socket) ----

#[test]
fn serve_namespace_pivots_to_the_share() {
    // Default flags: namespace, since the test runs as root.
    let mut p = Pipe::start_with(&[], &[], seed);
    let pid = p.server.as_ref().unwrap().id();
    assert_root_is_share(pid, &p.src);
    assert_eq!(link(&proc_path(pid, "root")), Path::new("/"));
    assert!(
        !same_ns(pid, "mnt"),
        "server still in the host mount namespace"
    );
    assert!(
        !same_ns(pid, "net"),
        "unix listener: network namespace expected"
    );
    assert_eq!(link(&proc_path(pid, "cwd")), Path::new("/proc"));
    exercise(&p.mnt, &p.src);
    assert_root_is_share(pid, &p.src);
    assert!(
        p.server_stderr().contains("sandbox: namespace"),
        "{}",
        p.server_stderr()
    );
    // The socket file is removed at exit through a directory opened before the pivot.
    let sock = p.sock.clone();
    let server = p.server.take().unwrap();
    kill(Pid::from_raw(server.id() as i32), Signal::SIGTERM).unwrap();
    assert!(
        wait_gone(&sock, STOP_TIMEOUT),
        "socket left behind: {}",
        p.server_stderr()
    );
    stop_child(Some(server), None);
}

#[test]
fn serve_chroot_confines_to_the_share() {
    let p = Pipe::start_with(&["--sandbox", "chroot"], &[], seed);
    let pid = p.server.as_ref().unwrap().id();
    assert_root_is_share(pid, &p.src);
    assert_eq!(link(&proc_path(pid, "root")), p.src.canonicalize().unwrap());
    assert!(same_ns(pid, "mnt"), "chroot needs no namespace");
    exercise(&p.mnt, &p.src);
    assert!(p.server_stderr().contains("sandbox: chroot"));
}

#[test]
fn serve_none_leaves_the_host_root() {
    let p = Pipe::start_with(&["--sandbox", "none"], &[], seed);
    let pid = p.server.as_ref().unwrap().id();
    // The check above is not vacuous: an unconfined server sees the host's /.
    assert_eq!(root_names(pid), names(Path::new("/")));
    assert_eq!(link(&proc_path(pid, "root")), Path::new("/"));
    assert!(same_ns(pid, "mnt"));
    // Same /proc-relative code path in every mode.
    assert_eq!(link(&proc_path(pid, "cwd")), Path::new("/proc"));
    exercise(&p.mnt, &p.src);
    assert!(p.server_stderr().contains("sandbox: none"));
}

// ---- mount (local /dev/fuse) ----

#[test]
fn mount_namespace_pivots_to_the_share() {
    let m = Mount::start_with(&[], seed).unwrap();
    let pid = m.pid().unwrap().as_raw() as u32;
    served(&m.mnt);
    assert_root_is_share(pid, &m.src);
    assert!(!same_ns(pid, "mnt"));
    // The server's namespace keeps no copy of its own FUSE mount (it would outlive an
    // unmount by the user), nor anything of the host but the share.
    let mountinfo = fs::read_to_string(proc_path(pid, "mountinfo")).unwrap();
    assert!(
        !mountinfo.contains("fuse.ownfs"),
        "the server's namespace holds a FUSE mount:\n{mountinfo}"
    );
    for line in mountinfo.lines() {
        let mountpoint = line.split(' ').nth(4).unwrap_or("");
        assert_eq!(mountpoint, "/", "mount other than the share: {line}");
    }
    exercise(&m.mnt, &m.src);
    assert_root_is_share(pid, &m.src);
}

#[test]
fn mount_none_leaves_the_host_root() {
    let m = Mount::start_with(&["--sandbox", "none"], seed).unwrap();
    let pid = m.pid().unwrap().as_raw() as u32;
    served(&m.mnt);
    assert_eq!(root_names(pid), names(Path::new("/")));
    assert!(same_ns(pid, "mnt"));
    exercise(&m.mnt, &m.src);
}

#[test]
fn mount_chroot_confines_to_the_share() {
    let m = Mount::start_with(&["--sandbox", "chroot"], seed).unwrap();
    let pid = m.pid().unwrap().as_raw() as u32;
    served(&m.mnt);
    assert_root_is_share(pid, &m.src);
    exercise(&m.mnt, &m.src);
}

#[test]
fn mount_sigterm_unmounts_on_the_host() {
    for extra in [
        &["--sandbox", "namespace"][..],
        &["--sandbox", "chroot"][..],
    ] {
        let mut m = Mount::start_with(extra, seed).unwrap();
        assert!(m.is_mounted());
        let st = m.stop(Signal::SIGTERM);
        assert!(st.success(), "{extra:?}: exit {st}: {}", m.stderr());
        assert!(
            !m.is_mounted(),
            "{extra:?}: still mounted on the host after SIGTERM"
        );
    }
}

#[test]
fn mount_exits_when_unmounted_by_the_user() {
    let mut m = Mount::start_with(&[], seed).unwrap();
    let out = Command::new("umount").arg(&m.mnt).output().unwrap();
    assert!(out.status.success(), "umount: {out:?}");
    let st = m.wait_exit(STOP_TIMEOUT);
    assert!(
        matches!(st, Some(s) if s.success()),
        "server did not exit after umount ({st:?}): {}",
        m.stderr()
    );
}

/// MNT inside SRC: the pivoted server must not keep its own mount alive.
#[test]
fn mount_inside_the_share_exits_when_unmounted() {
    let scratch = Scratch::new("sbx-inner");
    let src = scratch.dir("src");
    let mnt = scratch.dir("src/inner");
    let log = scratch.path("server.log");
    let mut child = server_command(&src, &mnt, &[])
        .stdin(Stdio::null())
        .stderr(pipe_log(&log))
        .spawn()
        .unwrap();
    wait_mounted(&mut child, &mnt, &log);
    fs::write(mnt.join("through"), b"x").unwrap();
    assert!(src.join("through").exists());
    let out = Command::new("umount").arg(&mnt).output().unwrap();
    assert!(out.status.success(), "umount: {out:?}");
    let st = wait_timeout(&mut child, STOP_TIMEOUT);
    if st.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(
        matches!(st, Some(s) if s.success()),
        "server did not exit ({st:?}): {}",
        fs::read_to_string(&log).unwrap_or_default()
    );
}

fn pipe_log(p: &Path) -> fs::File {
    log_file(p)
}

fn wait_mounted(child: &mut Child, mnt: &Path, log: &Path) {
    let deadline = Instant::now() + READY_TIMEOUT;
    while !ownfs_mounted_at(mnt) {
        if let Some(st) = child.try_wait().unwrap() {
            panic!(
                "exited {st}: {}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "not mounted");
        sleep(Duration::from_millis(20));
    }
}

/// `--run-as` drops privileges after the sandbox is set up; the root helper forked
/// before it still unmounts on the host.
#[test]
fn mount_run_as_in_the_sandbox() {
    let mut m = Mount::start_with(&["--run-as", "65534:65534"], |src| {
        seed(src);
        std::os::unix::fs::chown(src, Some(65534), Some(65534)).unwrap();
    })
    .unwrap();
    let pid = m.pid().unwrap().as_raw() as u32;
    served(&m.mnt);
    assert_root_is_share(pid, &m.src);
    fs::write(m.mnt.join("as-nobody"), b"x").unwrap();
    assert_eq!(owner(&m.src.join("as-nobody")), (65534, 65534));
    let st = m.stop(Signal::SIGTERM);
    assert!(st.success(), "exit {st}: {}", m.stderr());
    assert!(!m.is_mounted());
}

/// A local caller's supplementary groups are read from the host's /proc after the
/// pivot: a file readable only through group G opens for a caller in G.
#[test]
fn mount_reads_callers_groups_from_the_host_proc() {
    let m = Mount::start_with(&["--no-default-permissions"], |src| {
        seed(src);
        fs::write(src.join("group-only"), b"for G").unwrap();
        std::os::unix::fs::chown(src.join("group-only"), Some(0), Some(G)).unwrap();
        fs::set_permissions(src.join("group-only"), fs::Permissions::from_mode(0o640)).unwrap();
    })
    .unwrap();
    let pid = m.pid().unwrap().as_raw() as u32;
    served(&m.mnt);
    assert_root_is_share(pid, &m.src);
    let f = m.mnt.join("group-only");
    let in_g = Caller::new(U, U).groups(&[G]);
    let out = in_g.sh(&format!("cat {}", f.display()));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "for G", "{out:?}");
    let not_in_g = Caller::new(U, U).groups(&[]);
    let out = not_in_g.sh(&format!("cat {}", f.display()));
    assert!(!out.status.success(), "read without G: {out:?}");
}

// ---- virtiofs ----

/// The vhost-user device confines itself before it waits for the VMM.
#[test]
fn virtiofs_namespace_pivots_to_the_share() {
    let scratch = Scratch::new("sbx-vfs");
    let src = scratch.dir("src");
    seed(&src);
    let sock = scratch.path("vfs.sock");
    let log = scratch.path("virtiofs.log");
    let mut child = Command::new(ownfs_bin())
        .arg("virtiofs")
        .arg("--socket-path")
        .arg(&sock)
        .arg("--shared-dir")
        .arg(&src)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stderr(log_file(&log))
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + READY_TIMEOUT;
    while !fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("waiting for the VMM")
    {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("exited {st}: {}", fs::read_to_string(&log).unwrap());
        }
        assert!(Instant::now() < deadline, "virtiofs did not start");
        sleep(Duration::from_millis(20));
    }
    assert_root_is_share(pid, &src);
    assert!(!same_ns(pid, "mnt"));
    assert!(!same_ns(pid, "net"));
    assert!(sock.exists());
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
    let st = wait_timeout(&mut child, STOP_TIMEOUT);
    assert!(matches!(st, Some(s) if s.success()), "{st:?}");
    assert!(!sock.exists(), "socket left behind");
}

/// An unprivileged server cannot create a mount namespace: the default falls back to
/// `none` and says so; an explicit `--sandbox namespace` is an error, not a silent
/// downgrade.
#[test]
fn unprivileged_serve_falls_back_to_none() {
    let scratch = Scratch::new("sbx-user");
    let src = scratch.dir("src");
    let run = scratch.dir("run");
    seed(&src);
    for d in [&src, &run] {
        std::os::unix::fs::chown(d, Some(65534), Some(65534)).unwrap();
    }
    let nobody = Caller::new(65534, 65534);
    let sock = run.join("s.sock");
    let log = scratch.path("serve.log");
    let mut child = nobody
        .command(ownfs_bin())
        .arg("serve")
        .arg(&src)
        .arg("--listen")
        .arg(format!("unix:{}", sock.display()))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stderr(log_file(&log))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + READY_TIMEOUT;
    while !fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("serving")
    {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("exited {st}: {}", fs::read_to_string(&log).unwrap());
        }
        assert!(Instant::now() < deadline, "serve did not start");
        sleep(Duration::from_millis(20));
    }
    let text = fs::read_to_string(&log).unwrap();
    assert!(text.contains("sandbox: none: not root"), "{text}");
    assert_eq!(root_names(child.id()), names(Path::new("/")));
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let st = wait_timeout(&mut child, STOP_TIMEOUT);
    assert!(matches!(st, Some(s) if s.success()), "{st:?}");
    assert!(!sock.exists(), "socket left behind");

    let out = output_timeout(
        nobody
            .command(ownfs_bin())
            .arg("serve")
            .arg(&src)
            .arg("--listen")
            .arg(format!("unix:{}", sock.display()))
            .args(["--sandbox", "namespace"]),
        CHILD_TIMEOUT,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("sandbox namespace"), "{err}");
    assert!(!sock.exists(), "socket left behind after the refusal");
}
