//! Process-wide settings the seccomp sandbox relies on.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::{cvt, UnmountHelper};

/// PR_SET_NO_NEW_PRIVS: no exec can gain privileges from now on (seccomp requires it
/// without CAP_SYS_ADMIN). Inherited by threads and children.
pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    cvt(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }).map(drop)
}

/// `program` found in PATH, as an absolute path.
fn find_in_path(program: &str) -> io::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{program} not in PATH")))
}

/// Forks a helper that, when asked, runs `fusermount3 -u -z MOUNTPOINT`. An
/// unprivileged server needs the setuid fusermount3 to unmount, and once it is under
/// seccomp with no_new_privs it can neither exec nor gain privileges: the helper is
/// forked before either. Must run before any thread exists.
pub fn spawn_fusermount_unmount_helper(mountpoint: &CStr) -> io::Result<UnmountHelper> {
    let prog = CString::new(find_in_path("fusermount3")?.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // Everything the child touches is allocated before the fork.
    let argv_owned = [c"fusermount3", c"-u", c"-z", c"--", mountpoint];
    let mut argv: Vec<*const libc::c_char> = argv_owned.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid two-element array.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 returned two fresh descriptors that we now own.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: single-threaded here (documented precondition); the child only makes
    // async-signal-safe calls before exec or _exit.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid == 0 {
        // SAFETY: the child keeps only the pipe (as stdin) and stdout/stderr: no
        // /dev/fuse fd may outlive the server, or the connection would never end.
        // argv and prog are valid NUL-terminated strings built before the fork.
        unsafe {
            libc::dup2(rd.as_raw_fd(), 0);
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            let mut byte = 0u8;
            if libc::read(0, (&mut byte as *mut u8).cast(), 1) == 1 {
                libc::execv(prog.as_ptr(), argv.as_ptr());
                libc::_exit(127);
            }
            // the server went away without asking
            libc::_exit(0);
        }
    }
    drop(rd);
    Ok(UnmountHelper { pipe: wr, pid })
}
