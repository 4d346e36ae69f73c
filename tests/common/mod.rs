//! Shared helpers for the ownfs integration tests.
//!
//! * [`Mount`] starts `ownfs mount SRC MNT ...` on fresh directories and
//!   tears everything down again on drop (SIGTERM, then a forced lazy
//!   unmount and SIGKILL if the server does not go away in time).
//! * [`Caller`] runs a closure or a command in a child process with another
//!   uid, gid, supplementary group list and umask.
//!
//! The tests need root (to mount and to switch credentials). They are written
//! to be safe to run in parallel: every test gets its own directory tree.
//!
//! Setting `OWNFS_BIN` runs the suite against another binary that accepts the
//! same command line (handy to check the harness itself). `OWNFS_IT_LOG`
//! sets the server's RUST_LOG (default `warn`) and prints its stderr when the
//! mount is dropped (use with `--nocapture`).

#![allow(dead_code)]

pub mod pipe;
pub mod served;
#[allow(unused_imports)]
pub use pipe::*;
#[allow(unused_imports)]
pub use served::*;

use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use ownfs::platform;

/// How long the server may take to show up in /proc/mounts.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server may take to exit after SIGTERM / an external unmount.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound for any child process started by a test.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(120);

const POLL: Duration = Duration::from_millis(20);

/// The filesystem type the server must register.
pub const FSTYPE: &str = "fuse.ownfs";

/// Path of the binary under test.
pub fn ownfs_bin() -> PathBuf {
    match std::env::var_os("OWNFS_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_ownfs")),
    }
}

// ---------------------------------------------------------------------------
// Scratch directories
// ---------------------------------------------------------------------------

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory `/tmp/ownfs-it-<pid>-<n>-<tag>`, removed on drop unless
/// something is still mounted below it (then it is left alone: removing it
/// would recurse into the mount).
pub struct Scratch {
    pub base: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let base = PathBuf::from(format!(
            "/tmp/ownfs-it-{}-{}-{}",
            std::process::id(),
            n,
            tag
        ));
        if base.exists() {
            force_unmount_below(&base);
            let _ = fs::remove_dir_all(&base);
        }
        fs::create_dir_all(&base).expect("create scratch dir");
        chmod(&base, 0o755);
        Scratch { base }
    }

    /// Creates `base/rel` (and missing parents) with mode 0755.
    pub fn dir(&self, rel: &str) -> PathBuf {
        let mut p = self.base.clone();
        for comp in Path::new(rel).components() {
            p.push(comp);
            match fs::create_dir(&p) {
                Ok(()) => chmod(&p, 0o755),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => panic!("mkdir {}: {e}", p.display()),
            }
        }
        p
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.base.join(rel)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        force_unmount_below(&self.base);
        if mounts_below(&self.base).is_empty() {
            let _ = fs::remove_dir_all(&self.base);
        } else {
            eprintln!(
                "warning: leaving {} behind, something is still mounted below it",
                self.base.display()
            );
        }
    }
}

pub fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", mode, p.display()));
}

// ---------------------------------------------------------------------------
// /proc/mounts
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct MountEntry {
    pub source: String,
    pub target: PathBuf,
    pub fstype: String,
    pub options: Vec<String>,
}

fn unescape_mount_field(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// All entries of /proc/mounts (of this mount namespace).
pub fn mount_table() -> Vec<MountEntry> {
    let text = fs::read_to_string("/proc/mounts").expect("read /proc/mounts");
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            if f.len() < 4 {
                return None;
            }
            Some(MountEntry {
                source: f[0].to_string(),
                target: PathBuf::from(OsStr::from_bytes(&unescape_mount_field(f[1]))),
                fstype: f[2].to_string(),
                options: f[3].split(',').map(str::to_string).collect(),
            })
        })
        .collect()
}

/// Entries mounted exactly at `path`, oldest first.
pub fn mounts_at(path: &Path) -> Vec<MountEntry> {
    mount_table()
        .into_iter()
        .filter(|e| e.target == path)
        .collect()
}

/// Entries mounted at or below `path`.
pub fn mounts_below(path: &Path) -> Vec<MountEntry> {
    mount_table()
        .into_iter()
        .filter(|e| e.target.starts_with(path))
        .collect()
}

/// True if an ownfs mount is listed at `path`.
pub fn ownfs_mounted_at(path: &Path) -> bool {
    mounts_at(path).iter().any(|e| e.fstype == FSTYPE)
}

/// Lazily unmounts everything at `path` (bounded number of attempts).
pub fn force_unmount(path: &Path) {
    for _ in 0..16 {
        if mounts_at(path).is_empty() {
            return;
        }
        if let Err(e) = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
            eprintln!("umount -l {}: {e}", path.display());
            return;
        }
    }
}

/// Lazily unmounts everything at or below `path`, deepest first.
pub fn force_unmount_below(path: &Path) {
    for _ in 0..16 {
        let mut below = mounts_below(path);
        if below.is_empty() {
            return;
        }
        below.sort_by_key(|e| std::cmp::Reverse(e.target.as_os_str().len()));
        for e in below {
            let _ = nix::mount::umount2(&e.target, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

// ---------------------------------------------------------------------------
// Child-process utilities
// ---------------------------------------------------------------------------

/// Waits for `child` for at most `timeout`.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) => {}
            Err(e) => panic!("waiting for child {}: {e}", child.id()),
        }
        if Instant::now() >= deadline {
            return None;
        }
        sleep(POLL);
    }
}

/// Runs `cmd` to completion (stdout/stderr captured), killing it after
/// `timeout`. Panics on timeout.
pub fn output_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let dir = Scratch::new("out");
    let out_path = dir.path("stdout");
    let err_path = dir.path("stderr");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("stdout file"))
        .stderr(fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let status = match wait_timeout(&mut child, timeout) {
        Some(st) => st,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
    };
    Output {
        status,
        stdout: fs::read(&out_path).unwrap_or_default(),
        stderr: fs::read(&err_path).unwrap_or_default(),
    }
}

/// Runs the binary under test with `args` and expects it to exit by itself
/// within `timeout`. Anything it mounted under one of `cleanup` paths is
/// unmounted afterwards. Returns the exit status and stderr.
pub fn run_ownfs_to_exit(
    args: &[&OsStr],
    cleanup: &[&Path],
    timeout: Duration,
) -> (ExitStatus, String) {
    let dir = Scratch::new("cli");
    let err_path = dir.path("stderr");
    let mut child = Command::new(ownfs_bin())
        .args(args)
        .env("RUST_LOG", server_log_level())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("spawn ownfs");
    let st = wait_timeout(&mut child, timeout);
    let st = match st {
        Some(st) => st,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            for p in cleanup {
                force_unmount(p);
            }
            let err = fs::read_to_string(&err_path).unwrap_or_default();
            panic!("ownfs {args:?} was still running after {timeout:?}; stderr:\n{err}");
        }
    };
    let err = fs::read_to_string(&err_path).unwrap_or_default();
    (st, err)
}

// ---------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------

/// A running `ownfs mount SRC MNT` on fresh directories.
///
/// Layout: `base/s/src` is SRC and `base/m/mnt` is MNT, so SRC and MNT have
/// different parents (`SRC/..` is `base/s`, `MNT/..` is `base/m`).
pub struct Mount {
    pub src: PathBuf,
    pub mnt: PathBuf,
    child: Option<Child>,
    stderr_path: PathBuf,
    args: Vec<String>,
    /// RLIMIT_NOFILE (soft and hard) the server starts with, if not inherited.
    nofile: Option<u64>,
    // Dropped last (fields drop in declaration order).
    pub scratch: Scratch,
}

pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `c` (bounded by CHILD_TIMEOUT) and asserts that it succeeds; returns its stdout.
#[track_caller]
pub fn ok(c: &mut Command) -> String {
    let out = output_timeout(c, CHILD_TIMEOUT);
    assert!(
        out.status.success(),
        "{c:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        describe(&out.status),
        lossy(&out.stdout),
        lossy(&out.stderr)
    );
    lossy(&out.stdout)
}

/// A `Command` for the ownfs binary; with `nofile`, it runs under `prlimit` with that
/// RLIMIT_NOFILE (soft and hard): the server raises its soft limit to the hard one, so
/// only a hard limit bounds it.
pub fn ownfs_command(nofile: Option<u64>) -> Command {
    match nofile {
        Some(n) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--nofile={n}:{n}"))
                .arg("--")
                .arg(ownfs_bin());
            c
        }
        None => Command::new(ownfs_bin()),
    }
}

/// The `Command` that starts the server.
pub fn server_command(src: &Path, mnt: &Path, extra: &[&str]) -> Command {
    server_command_limited(src, mnt, extra, None)
}

fn server_command_limited(src: &Path, mnt: &Path, extra: &[&str], nofile: Option<u64>) -> Command {
    let mut c = ownfs_command(nofile);
    c.arg("mount").arg(src).arg(mnt).args(extra);
    c.env("RUST_LOG", server_log_level());
    c
}

/// RUST_LOG for the server: `OWNFS_IT_LOG` if set, else `warn`.
pub fn server_log_level() -> String {
    std::env::var("OWNFS_IT_LOG").unwrap_or_else(|_| "warn".to_string())
}

impl Mount {
    /// Starts the server with `extra` arguments and waits until it is mounted.
    pub fn new(extra: &[&str]) -> Mount {
        Self::start(extra).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Mount::new`] but returns the reason instead of panicking.
    pub fn start(extra: &[&str]) -> Result<Mount, String> {
        Self::start_with(extra, |_| {})
    }

    /// Like [`Mount::start`], but calls `prepare(SRC)` before the server starts
    /// (e.g. to give SRC to the uid of `--run-as`).
    pub fn start_with(extra: &[&str], prepare: impl FnOnce(&Path)) -> Result<Mount, String> {
        Self::start_limited(extra, prepare, None)
    }

    /// Like [`Mount::start_with`], with the server's RLIMIT_NOFILE set to `nofile`
    /// ([`ownfs_command`]). Restarts keep the limit.
    pub fn start_limited(
        extra: &[&str],
        prepare: impl FnOnce(&Path),
        nofile: Option<u64>,
    ) -> Result<Mount, String> {
        let scratch = Scratch::new("mnt");
        let src = scratch.dir("s/src");
        let mnt = scratch.dir("m/mnt");
        prepare(&src);
        let mut m = Mount {
            src,
            mnt,
            child: None,
            stderr_path: scratch.path("server.stderr"),
            args: extra.iter().map(|s| s.to_string()).collect(),
            nofile,
            scratch,
        };
        m.spawn_server()?;
        Ok(m)
    }

    /// Starts the server on `src` and `mnt` and waits until it is mounted. Its
    /// output is appended to the files of earlier servers of this `Mount`.
    fn spawn_server(&mut self) -> Result<(), String> {
        let append = |p: PathBuf| {
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
        };
        let stdout = append(self.scratch.path("server.stdout"));
        let stderr = append(self.stderr_path.clone());
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let child = server_command_limited(&self.src, &self.mnt, &args, self.nofile)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", ownfs_bin().display()))?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Stops the server (as on drop: SIGTERM, then a forced lazy unmount of
    /// whatever is left, e.g. after the server was killed) and starts a new
    /// one with the same arguments on the same SRC and MNT.
    pub fn restart(&mut self) -> Result<(), String> {
        self.shutdown();
        self.spawn_server()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if ownfs_mounted_at(&self.mnt) {
                return Ok(());
            }
            let child = self.child.as_mut().expect("server child");
            if let Some(st) = child.try_wait().expect("try_wait") {
                self.child = None;
                return Err(format!(
                    "ownfs mount {:?} exited before mounting ({st}); stderr:\n{}",
                    self.args,
                    self.stderr()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} not listed as {FSTYPE} in /proc/mounts after {READY_TIMEOUT:?} \
                     (args {:?}); stderr:\n{}",
                    self.mnt.display(),
                    self.args,
                    self.stderr()
                ));
            }
            sleep(POLL);
        }
    }

    /// What the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<Pid> {
        self.child.as_ref().map(|c| Pid::from_raw(c.id() as i32))
    }

    pub fn is_mounted(&self) -> bool {
        ownfs_mounted_at(&self.mnt)
    }

    /// The /proc/mounts entry of this mount.
    pub fn entry(&self) -> MountEntry {
        mounts_at(&self.mnt)
            .into_iter()
            .find(|e| e.fstype == FSTYPE)
            .unwrap_or_else(|| panic!("{} is not mounted", self.mnt.display()))
    }

    /// Sends `sig` to the server.
    pub fn signal(&self, sig: Signal) {
        let pid = self.pid().expect("server already reaped");
        kill(pid, sig).unwrap_or_else(|e| panic!("kill({pid}, {sig}): {e}"));
    }

    /// Waits up to `timeout` for the server to exit; reaps it if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut().expect("server already reaped");
        let st = wait_timeout(child, timeout);
        if st.is_some() {
            self.child = None;
        }
        st
    }

    /// Sends `sig` and waits for the server to exit. Panics on timeout.
    pub fn stop(&mut self, sig: Signal) -> ExitStatus {
        self.signal(sig);
        match self.wait_exit(STOP_TIMEOUT) {
            Some(st) => st,
            None => panic!(
                "ownfs did not exit within {STOP_TIMEOUT:?} after {sig}; stderr:\n{}",
                self.stderr()
            ),
        }
    }

    fn shutdown(&mut self) {
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            }
            if wait_timeout(&mut child, STOP_TIMEOUT).is_none() {
                eprintln!(
                    "ownfs (pid {}) ignored SIGTERM for {STOP_TIMEOUT:?}; \
                     unmounting lazily and killing it",
                    child.id()
                );
                force_unmount(&self.mnt);
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        force_unmount(&self.mnt);
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.shutdown();
        if std::thread::panicking() || std::env::var_os("OWNFS_IT_LOG").is_some() {
            let err = self.stderr();
            if !err.is_empty() {
                eprintln!("---- ownfs stderr ({:?}) ----\n{err}", self.args);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Running things as another user
// ---------------------------------------------------------------------------

/// Credentials (and umask) for a child process.
#[derive(Clone, Debug)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, set verbatim (may be empty).
    pub groups: Vec<u32>,
    pub umask: Option<u32>,
}

impl Caller {
    /// uid/gid with an empty supplementary group list.
    pub fn new(uid: u32, gid: u32) -> Caller {
        Caller {
            uid,
            gid,
            groups: Vec::new(),
            umask: None,
        }
    }

    pub fn root() -> Caller {
        Caller::new(0, 0).groups(&[0])
    }

    pub fn groups(mut self, groups: &[u32]) -> Caller {
        self.groups = groups.to_vec();
        self
    }

    pub fn umask(mut self, umask: u32) -> Caller {
        self.umask = Some(umask);
        self
    }

    fn credentials(&self) -> platform::Credentials {
        platform::Credentials {
            uid: self.uid,
            gid: self.gid,
            groups: self.groups.clone(),
            umask: self.umask,
        }
    }

    /// A `Command` that runs `program` with these credentials.
    pub fn command<S: AsRef<OsStr>>(&self, program: S) -> Command {
        let mut c = Command::new(program);
        platform::command_with_credentials(&mut c, self.credentials());
        c
    }

    /// Runs `sh -c script` with these credentials (bounded by CHILD_TIMEOUT).
    pub fn sh(&self, script: &str) -> Output {
        let mut c = self.command("/bin/sh");
        c.arg("-c").arg(script);
        output_timeout(&mut c, CHILD_TIMEOUT)
    }

    /// Runs `f` in a forked child process with these credentials and returns
    /// its result. A panic in `f` is re-raised here with its message.
    pub fn run<F: FnOnce() -> io::Result<()>>(&self, f: F) -> io::Result<()> {
        self.spawn(f).join()
    }

    /// Forks a child that runs `f` with these credentials.
    pub fn spawn<F: FnOnce() -> io::Result<()>>(&self, f: F) -> AsChild {
        let (rd, wr) = nix::unistd::pipe().expect("pipe");
        // The closure only borrows the pipe: the parent keeps its ends when it drops the
        // closure unrun. The child reports through `wr` and the library then _exits it.
        let child = platform::fork_with_credentials(&self.credentials(), |setup| {
            let msg = match setup {
                Err(e) => child_msg(CODE_SETUP, &format!("{e}")),
                Ok(()) => match panic::catch_unwind(AssertUnwindSafe(f)) {
                    Ok(Ok(())) => child_msg(0, ""),
                    Ok(Err(e)) => match e.raw_os_error() {
                        Some(errno) if errno > 0 => child_msg(errno, &format!("{e}")),
                        _ => child_msg(CODE_OTHER, &format!("{e}")),
                    },
                    Err(p) => child_msg(CODE_PANIC, &panic_text(&*p)),
                },
            };
            let mut off = 0;
            while off < msg.len() {
                match nix::unistd::write(&wr, &msg[off..]) {
                    Ok(n) if n > 0 => off += n,
                    _ => break,
                }
            }
            0
        })
        .expect("fork");
        drop(wr);
        AsChild {
            pid: Pid::from_raw(child),
            rd,
            caller: self.clone(),
            reaped: false,
        }
    }
}

const CODE_OTHER: i32 = -1;
const CODE_PANIC: i32 = -2;
const CODE_SETUP: i32 = -3;

fn child_msg(code: i32, text: &str) -> Vec<u8> {
    let mut v = code.to_ne_bytes().to_vec();
    v.extend_from_slice(text.as_bytes());
    v
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// A child forked by [`Caller::spawn`]. Dropping it without `join` kills it.
pub struct AsChild {
    pid: Pid,
    rd: OwnedFd,
    caller: Caller,
    reaped: bool,
}

impl Drop for AsChild {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

impl AsChild {
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Waits (bounded by CHILD_TIMEOUT) and returns the closure's result.
    pub fn join(mut self) -> io::Result<()> {
        let deadline = Instant::now() + CHILD_TIMEOUT;
        let status = loop {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(st) => break st,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => panic!("waitpid({}): {e}", self.pid),
            }
            if Instant::now() >= deadline {
                let _ = kill(self.pid, Signal::SIGKILL);
                let _ = waitpid(self.pid, None);
                self.reaped = true;
                panic!(
                    "child running as {:?} did not finish within {CHILD_TIMEOUT:?}",
                    self.caller
                );
            }
            sleep(Duration::from_millis(5));
        };
        self.reaped = true;
        // The child has exited, so everything it wrote is in the pipe. Read
        // without blocking: a concurrently forked child of another test may
        // hold a copy of the write end.
        let raw = self.rd.as_raw_fd();
        if let Ok(fl) = fcntl(raw, FcntlArg::F_GETFL) {
            let _ = fcntl(
                raw,
                FcntlArg::F_SETFL(OFlag::from_bits_retain(fl) | OFlag::O_NONBLOCK),
            );
        }
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match nix::unistd::read(raw, &mut chunk) {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        if buf.len() < 4 {
            panic!(
                "child running as {:?} died without reporting ({status:?})",
                self.caller
            );
        }
        let code = i32::from_ne_bytes(buf[..4].try_into().unwrap());
        let text = String::from_utf8_lossy(&buf[4..]).into_owned();
        match code {
            0 => Ok(()),
            CODE_PANIC => panic!("child running as {:?} panicked: {text}", self.caller),
            CODE_SETUP => panic!("could not switch to {:?}: {text}", self.caller),
            CODE_OTHER => Err(io::Error::other(text)),
            errno => Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

// ---------------------------------------------------------------------------
// Small filesystem helpers
// ---------------------------------------------------------------------------

pub fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

/// The errno of an `io::Result`, panicking if it succeeded.
#[track_caller]
pub fn errno_of<T: std::fmt::Debug>(r: io::Result<T>) -> i32 {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e
            .raw_os_error()
            .unwrap_or_else(|| panic!("expected an OS error, got {e}")),
    }
}

/// Asserts that `r` failed with `errno`.
#[track_caller]
pub fn assert_errno<T: std::fmt::Debug>(r: io::Result<T>, errno: i32, what: &str) {
    match r {
        Ok(v) => panic!(
            "{what}: expected {}, but it succeeded ({v:?})",
            io::Error::from_raw_os_error(errno)
        ),
        Err(e) => assert_eq!(
            e.raw_os_error(),
            Some(errno),
            "{what}: expected {}, got {e}",
            io::Error::from_raw_os_error(errno)
        ),
    }
}

/// `(uid, gid)` of `p` without following a final symlink.
pub fn owner(p: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let md = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
    (md.uid(), md.gid())
}

/// Mode bits (`& 0o7777`) of `p` without following a final symlink.
pub fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    let md = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
    md.mode() & 0o7777
}

/// Converts a path to an `OsString` argument.
pub fn os(p: &Path) -> OsString {
    p.as_os_str().to_os_string()
}

/// Describes an exit status for messages.
pub fn describe(st: &ExitStatus) -> String {
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => format!("{st:?}"),
    }
}

// ---------------------------------------------------------------------------
// Start gate for concurrent children
// ---------------------------------------------------------------------------

/// Lets forked children start at the same moment. Children call
/// [`Gate::wait`]; the parent calls [`Gate::open`]. If the parent drops the
/// gate without opening it (e.g. it panicked), waiting children get an error
/// instead of blocking forever.
pub struct Gate {
    rd: OwnedFd,
    wr: Option<OwnedFd>,
}

impl Gate {
    pub fn new() -> Gate {
        let (rd, wr) = nix::unistd::pipe().expect("pipe");
        Gate { rd, wr: Some(wr) }
    }

    /// In a child: closes the child's copy of the write end, then blocks
    /// until the parent opens the gate.
    pub fn wait(&self) -> io::Result<()> {
        if let Some(wr) = &self.wr {
            // The child ends in _exit and never drops `wr`, so this close is its only one.
            let _ = nix::unistd::close(wr.as_raw_fd());
        }
        let mut b = [0u8; 1];
        loop {
            match nix::unistd::read(self.rd.as_raw_fd(), &mut b) {
                Ok(1) => return Ok(()),
                Ok(_) => return Err(io::Error::other("start gate closed without opening")),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// In the parent: releases `n` waiting children.
    pub fn open(&mut self, n: usize) {
        let wr = self.wr.take().expect("gate opened twice");
        let go = vec![b'g'; n];
        let mut off = 0;
        while off < n {
            off += nix::unistd::write(&wr, &go[off..]).expect("open gate");
        }
    }
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}
