//! Child processes that run as another user: forked closures and spawned commands.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::panic::{self, AssertUnwindSafe};
use std::process::Command;

use super::{cvt, set_thread_credentials, set_umask};

/// Who a child process becomes before it runs anything else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (empty: none).
    pub groups: Vec<u32>,
    /// File mode creation mask; `None` keeps the parent's.
    pub umask: Option<u32>,
}

impl Credentials {
    /// Switches a freshly forked, single-threaded process: async-signal-safe raw syscalls only.
    fn apply_in_child(&self) -> io::Result<()> {
        set_thread_credentials(self.uid, self.gid, &self.groups)?;
        if let Some(mask) = self.umask {
            set_umask(mask);
        }
        Ok(())
    }
}

/// Makes the child of `cmd` take on `creds` between fork and exec.
pub fn command_with_credentials(cmd: &mut Command, creds: Credentials) -> &mut Command {
    let hook = move || creds.apply_in_child();
    // SAFETY: the hook makes only async-signal-safe calls and allocates nothing.
    unsafe { cmd.pre_exec(hook) }
}

/// Makes the child of `cmd` find `fd` as descriptor `target`, inherited across exec.
pub fn command_with_fd_as(cmd: &mut Command, fd: OwnedFd, target: RawFd) -> &mut Command {
    let hook = move || {
        let raw = fd.as_raw_fd();
        let rc = if raw == target {
            // dup2 onto itself would leave FD_CLOEXEC set, so clear it instead.
            // SAFETY: F_SETFD only updates descriptor flags.
            unsafe { libc::fcntl(target, libc::F_SETFD, 0) }
        } else {
            // SAFETY: in the child before exec `target` is ours to replace; `raw` is owned by `fd`.
            unsafe { libc::dup2(raw, target) }
        };
        cvt(rc).map(drop)
    };
    // SAFETY: the hook makes only async-signal-safe calls (fcntl, dup2) and allocates nothing.
    unsafe { cmd.pre_exec(hook) }
}

/// Forks a child that takes on `creds`, runs `body` with that outcome and exits with its result.
///
/// Returns the pid for the caller to reap; a panic in `body` exits with 101. The child has no
/// other threads: to `body` they look stopped for good, so a lock they held hangs it, no worse.
pub fn fork_with_credentials(
    creds: &Credentials,
    body: impl FnOnce(io::Result<()>) -> i32,
) -> io::Result<libc::pid_t> {
    // SAFETY: until `body` the child makes only async-signal-safe calls; it never returns.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid != 0 {
        return Ok(pid);
    }
    let setup = creds.apply_in_child();
    let code = panic::catch_unwind(AssertUnwindSafe(|| body(setup))).unwrap_or(101);
    // SAFETY: ends the child without unwinding into the caller or running its destructors.
    unsafe { libc::_exit(code) }
}
