//! The seccomp allow-lists, seen from outside: a real `mount`, `serve` and
//! `virtiofs` server runs in filter mode (`Seccomp: 2` in /proc/PID/status, on every
//! thread), `--seccomp none` leaves it unfiltered, a syscall outside the list kills the
//! process with SIGSYS under `kill` and is let through under `log`
//! (OWNFS_SECCOMP_SELFTEST makes the server make one right after the filter is in), and
//! the exit paths (unmount, socket removal) still work under the filter.
//! `ownfs virtiofs --print-capabilities` prints virtiofsd's JSON.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const SELFTEST: &str = "OWNFS_SECCOMP_SELFTEST";

/// `Seccomp:` and `Seccomp_filters:` of /proc/PID/status (or a task's status).
fn seccomp_of(status_path: &Path) -> (u32, u32) {
    let status = fs::read_to_string(status_path)
        .unwrap_or_else(|e| panic!("{}: {e}", status_path.display()));
    let field = |name: &str| -> u32 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {}", status_path.display()))
            .trim()
            .parse()
            .unwrap()
    };
    (field("Seccomp:"), field("Seccomp_filters:"))
}

/// Mode and filter count of every thread of `pid`, asserting they all agree.
fn seccomp_all_threads(pid: u32) -> (u32, u32, usize) {
    let main = seccomp_of(Path::new(&format!("/proc/{pid}/status")));
    let mut threads = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let t = seccomp_of(&task.unwrap().path().join("status"));
        assert_eq!(t, main, "a thread of {pid} differs from the main thread");
        threads += 1;
    }
    (main.0, main.1, threads)
}

fn assert_filtered(pid: u32, what: &str) {
    let (mode, filters, threads) = seccomp_all_threads(pid);
    assert_eq!(
        mode, 2,
        "{what}: Seccomp must be 2 (filter) on all {threads} threads"
    );
    assert!(filters >= 1, "{what}: Seccomp_filters {filters}");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status.lines().any(|l| l == "NoNewPrivs:\t1"),
        "{what}: no_new_privs not set"
    );
}

fn assert_unfiltered(pid: u32, what: &str) {
    let (mode, filters, _) = seccomp_all_threads(pid);
    assert_eq!((mode, filters), (0, 0), "{what} with --seccomp none");
}

/// Some real work through a mount: the common paths must all be on the list.
fn exercise(mnt: &Path) {
    let d = mnt.join("dir");
    fs::create_dir(&d).unwrap();
    fs::write(d.join("f"), b"hello seccomp").unwrap();
    assert_eq!(fs::read(d.join("f")).unwrap(), b"hello seccomp");
    fs::set_permissions(d.join("f"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("f", d.join("l")).unwrap();
    fs::hard_link(d.join("f"), d.join("h")).unwrap();
    fs::rename(d.join("h"), d.join("h2")).unwrap();
    let mut names: Vec<_> = fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["f", "h2", "l"]);
    assert_eq!(fs::metadata(d.join("f")).unwrap().len(), 13);
    assert_eq!(fs::read_link(d.join("l")).unwrap(), PathBuf::from("f"));
    fs::remove_file(d.join("h2")).unwrap();
}

/// A server started by a test: killed (and its mount, if any, removed) if the test
/// fails before it is stopped.
struct Server {
    child: Child,
    mnt: Option<PathBuf>,
}

impl std::ops::Deref for Server {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(m) = &self.mnt {
            force_unmount(m);
        }
    }
}

fn wait_for(what: &str, child: &mut Child, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("{what} exited early: {}", describe(&st));
        }
        assert!(Instant::now() < deadline, "{what} not ready in time");
        sleep(Duration::from_millis(20));
    }
}

fn wait_dead(child: &mut Child, what: &str) -> std::process::ExitStatus {
    wait_timeout(child, STOP_TIMEOUT).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("{what} still running after {STOP_TIMEOUT:?}")
    })
}

fn terminate(child: &mut Child, what: &str) -> std::process::ExitStatus {
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    wait_dead(child, what)
}

// ---- mount ----

#[test]
fn mount_serves_under_the_filter_and_unmounts_at_exit() {
    let mut m = Mount::new(&[]);
    let pid = m.pid().unwrap().as_raw() as u32;
    exercise(&m.mnt);
    // After the work: the workers are the threads that served it.
    assert_filtered(pid, "ownfs mount");
    let st = m.stop(Signal::SIGTERM);
    assert!(st.success(), "exit under the filter: {}", describe(&st));
    assert!(
        !m.is_mounted(),
        "SIGTERM must still unmount under the filter"
    );
}

#[test]
fn rootless_mount_serves_under_the_filter_and_unmounts_at_exit() {
    let mut m = Mount::start_with(&["--run-as", "4300:4300"], |src| {
        nix::unistd::chown(src, Some(4300.into()), Some(4300.into())).unwrap();
    })
    .unwrap();
    let pid = m.pid().unwrap().as_raw() as u32;
    exercise(&m.mnt);
    assert_filtered(pid, "ownfs mount --run-as");
    let st = m.stop(Signal::SIGTERM);
    assert!(st.success(), "exit under the filter: {}", describe(&st));
    assert!(!m.is_mounted(), "the unmount helper must still work");
}

/// A plain user's mount (through the setuid fusermount3): under the filter the server
/// can no longer exec fusermount3 to unmount, so its helper, forked before the filter,
/// must do it at SIGTERM.
#[test]
fn unprivileged_mount_serves_under_the_filter_and_unmounts_at_exit() {
    use std::os::unix::process::CommandExt;
    // A passwd entry is needed: fusermount3 refuses users it cannot name
    // (scripts/test-deps.sh creates `tests`).
    let user = nix::unistd::User::from_name("tests")
        .unwrap()
        .expect("user `tests` (scripts/test-deps.sh creates it)");
    let scratch = Scratch::new("seccomp-unpriv");
    let src = scratch.dir("src");
    let mnt = scratch.dir("mnt");
    for d in [&scratch.base, &src, &mnt] {
        nix::unistd::chown(d.as_path(), Some(user.uid), Some(user.gid)).unwrap();
    }
    let child = server_command(&src, &mnt, &[])
        .uid(user.uid.as_raw())
        .gid(user.gid.as_raw())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(scratch.path("stderr")).unwrap())
        .spawn()
        .unwrap();
    let mut child = Server {
        child,
        mnt: Some(mnt.clone()),
    };
    let err = || fs::read_to_string(scratch.path("stderr")).unwrap();
    // Mounted (by fusermount3) comes before the server logs it and installs the filter.
    wait_for("ownfs mount as `tests`", &mut child, || {
        ownfs_mounted_at(&mnt) && err().contains("seccomp:")
    });
    assert!(err().contains("through fusermount3"), "{}", err());
    exercise(&mnt);
    assert_filtered(child.id(), "ownfs mount as a plain user");
    let st = terminate(&mut child, "ownfs mount as `tests`");
    let still_mounted = ownfs_mounted_at(&mnt);
    force_unmount(&mnt);
    assert!(st.success(), "{}; stderr:\n{}", describe(&st), err());
    assert!(
        !still_mounted,
        "fusermount3 -u did not run; stderr:\n{}",
        err()
    );
}

#[test]
fn mount_with_seccomp_none_has_no_filter() {
    let m = Mount::new(&["--seccomp", "none"]);
    exercise(&m.mnt);
    assert_unfiltered(m.pid().unwrap().as_raw() as u32, "ownfs mount");
}

/// Starts `ownfs mount` with the selftest variable set; returns the child once
/// mounted (or already dead).
fn mount_selftest(scratch: &Scratch, mode: &str) -> (Server, PathBuf) {
    let src = scratch.dir("src");
    let mnt = scratch.dir("mnt");
    let child = server_command(&src, &mnt, &["--seccomp", mode])
        .env(SELFTEST, "1")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(scratch.path("stderr")).unwrap())
        .spawn()
        .unwrap();
    let mut child = Server {
        child,
        mnt: Some(mnt.clone()),
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    while !ownfs_mounted_at(&mnt) && matches!(child.try_wait(), Ok(None)) {
        assert!(Instant::now() < deadline, "ownfs mount did not start");
        sleep(Duration::from_millis(20));
    }
    (child, mnt)
}

#[test]
fn mount_forbidden_syscall_kills_with_sigsys() {
    let scratch = Scratch::new("seccomp-kill");
    let (mut child, mnt) = mount_selftest(&scratch, "kill");
    let st = wait_dead(&mut child, "ownfs mount");
    force_unmount(&mnt);
    let err = fs::read_to_string(scratch.path("stderr")).unwrap();
    assert_eq!(
        st.signal(),
        Some(libc::SIGSYS),
        "expected death by SIGSYS, got {}; stderr:\n{err}",
        describe(&st)
    );
    assert!(!err.contains("outside the allow-list returned"), "{err}");
}

#[test]
fn mount_forbidden_syscall_is_only_logged_with_seccomp_log() {
    let scratch = Scratch::new("seccomp-log");
    let (mut child, mnt) = mount_selftest(&scratch, "log");
    wait_for("ownfs mount --seccomp log", &mut child, || {
        ownfs_mounted_at(&mnt)
    });
    exercise(&mnt);
    assert_filtered(child.id(), "ownfs mount --seccomp log");
    let st = terminate(&mut child, "ownfs mount");
    let err = fs::read_to_string(scratch.path("stderr")).unwrap();
    assert!(st.success(), "{}; stderr:\n{err}", describe(&st));
    assert!(
        err.contains("getpgid outside the allow-list returned Ok"),
        "the forbidden call must go through: {err}"
    );
    assert!(!ownfs_mounted_at(&mnt));
}

// ---- serve ----

#[test]
fn serve_serves_under_the_filter_and_removes_its_socket_at_exit() {
    let mut p = Pipe::start(&[], &[]);
    exercise(&p.mnt);
    let pid = p.server.as_ref().unwrap().id();
    assert_filtered(pid, "ownfs serve");
    let mut server = p.server.take().unwrap();
    let st = terminate(&mut server, "ownfs serve");
    assert!(st.success(), "{}:\n{}", describe(&st), p.server_stderr());
    assert!(
        !p.sock.exists(),
        "the socket must be removed under the filter"
    );
}

#[test]
fn rootless_serve_serves_under_the_filter() {
    let p = Pipe::start_with(&["--run-as", "4301:4301"], &[], |src| {
        nix::unistd::chown(src, Some(4301.into()), Some(4301.into())).unwrap();
    });
    exercise(&p.mnt);
    assert_filtered(p.server.as_ref().unwrap().id(), "ownfs serve --run-as");
}

#[test]
fn serve_with_seccomp_none_has_no_filter() {
    let p = Pipe::start(&["--seccomp", "none"], &[]);
    exercise(&p.mnt);
    assert_unfiltered(p.server.as_ref().unwrap().id(), "ownfs serve");
}

fn serve_selftest(scratch: &Scratch, mode: &str) -> (Server, PathBuf) {
    let src = scratch.dir("src");
    let sock = scratch.path("sock");
    let child = Command::new(ownfs_bin())
        .arg("serve")
        .arg(&src)
        .arg("--listen")
        .arg(format!("unix:{}", sock.display()))
        .args(["--seccomp", mode])
        .env(SELFTEST, "1")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(scratch.path("stderr")).unwrap())
        .spawn()
        .unwrap();
    (Server { child, mnt: None }, sock)
}

#[test]
fn serve_forbidden_syscall_kills_with_sigsys_or_is_logged() {
    let scratch = Scratch::new("seccomp-serve-kill");
    let (mut child, _) = serve_selftest(&scratch, "kill");
    let st = wait_dead(&mut child, "ownfs serve");
    let err = fs::read_to_string(scratch.path("stderr")).unwrap();
    assert_eq!(st.signal(), Some(libc::SIGSYS), "{}:\n{err}", describe(&st));

    let scratch = Scratch::new("seccomp-serve-log");
    let (mut child, sock) = serve_selftest(&scratch, "log");
    // The socket is bound before the filter goes in: wait for the serving line.
    let err = || fs::read_to_string(scratch.path("stderr")).unwrap();
    wait_for("ownfs serve --seccomp log", &mut child, || {
        fs::symlink_metadata(&sock).is_ok_and(|m| m.file_type().is_socket())
            && err().contains("serving")
    });
    assert!(
        err().contains("getpgid outside the allow-list returned Ok"),
        "{}",
        err()
    );
    assert_filtered(child.id(), "ownfs serve --seccomp log");
    assert!(terminate(&mut child, "ownfs serve").success());
}

// ---- virtiofs ----

fn virtiofs(scratch: &Scratch, extra: &[&str], selftest: bool) -> (Server, PathBuf) {
    let src = scratch.dir("shared");
    let sock = scratch.path("vfs.sock");
    let mut cmd = Command::new(ownfs_bin());
    cmd.arg("virtiofs")
        .arg("--socket-path")
        .arg(&sock)
        .arg("--shared-dir")
        .arg(&src)
        .args(extra)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(scratch.path("stderr")).unwrap());
    if selftest {
        cmd.env(SELFTEST, "1");
    }
    let child = cmd.spawn().unwrap();
    (Server { child, mnt: None }, sock)
}

#[test]
fn virtiofs_runs_under_the_filter_and_exits_cleanly() {
    let scratch = Scratch::new("seccomp-vfs");
    let (mut child, sock) = virtiofs(&scratch, &[], false);
    wait_for("ownfs virtiofs", &mut child, || {
        fs::read_to_string(scratch.path("stderr")).is_ok_and(|e| e.contains("waiting for the VMM"))
            && sock.exists()
    });
    assert_filtered(child.id(), "ownfs virtiofs");
    let st = terminate(&mut child, "ownfs virtiofs");
    assert!(st.success(), "{}", describe(&st));
    assert!(
        !sock.exists(),
        "the socket must be removed under the filter"
    );

    let scratch = Scratch::new("seccomp-vfs-none");
    let (mut child, sock) = virtiofs(&scratch, &["--seccomp", "none"], false);
    wait_for("ownfs virtiofs --seccomp none", &mut child, || {
        sock.exists()
    });
    sleep(Duration::from_millis(200));
    assert_unfiltered(child.id(), "ownfs virtiofs");
    assert!(terminate(&mut child, "ownfs virtiofs").success());
}

#[test]
fn virtiofs_forbidden_syscall_kills_with_sigsys() {
    let scratch = Scratch::new("seccomp-vfs-kill");
    let (mut child, _) = virtiofs(&scratch, &[], true);
    let st = wait_dead(&mut child, "ownfs virtiofs");
    let err = fs::read_to_string(scratch.path("stderr")).unwrap();
    assert_eq!(st.signal(), Some(libc::SIGSYS), "{}:\n{err}", describe(&st));
}

#[test]
fn print_capabilities_is_virtiofsd_json() {
    check_capabilities(Command::new(ownfs_bin()).args(["virtiofs", "--print-capabilities"]));
    // libvirt runs the binary bare: through a link named ownfs-virtiofsd it is `virtiofs`.
    let scratch = Scratch::new("seccomp-caps");
    let link = scratch.path("ownfs-virtiofsd");
    std::os::unix::fs::symlink(ownfs_bin(), &link).unwrap();
    check_capabilities(Command::new(&link).arg("--print-capabilities"));
}

fn check_capabilities(cmd: &mut Command) {
    // No --socket-path or --shared-dir.
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", describe(&out.status));
    let check = Command::new("python3")
        .args([
            "-c",
            "import json,sys; d=json.load(sys.stdin); \
             assert d['type']=='fs', d; assert isinstance(d['features'], list), d; \
             assert 'migrate-precopy' not in d['features'], d; \
             print(','.join(d['features']))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&out.stdout)?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(
        check.status.success(),
        "not virtiofsd JSON: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        String::from_utf8_lossy(&check.stdout).trim(),
        "separate-options"
    );
}
