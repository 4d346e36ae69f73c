//! The host's `/proc`, reached only through a descriptor opened before any sandbox.
//!
//! Once a server has pivoted or chrooted into the share, an absolute `/proc/...` would
//! resolve inside the share, where a client decides what is there. So every use of
//! `/proc` (the `/proc/self/fd/N` magic links, `status` files) goes relative to this
//! descriptor, and a server makes it its working directory for the few path-only
//! syscalls that have no `*at` form (xattrs, truncate).

use std::ffi::CStr;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use super::{cvt, open_path, openat};

/// `f_type` of procfs: a directory named `proc` inside a share is never mistaken for it.
const PROC_SUPER_MAGIC: libc::c_long = 0x9fa0;

static PROC_ROOT: OnceLock<OwnedFd> = OnceLock::new();
/// Set once the working directory is the `/proc` of `PROC_ROOT` (see `enter_proc_cwd`).
static PROC_CWD: AtomicBool = AtomicBool::new(false);

fn open_proc_root() -> io::Result<OwnedFd> {
    let fd = open_path(c"/proc", libc::O_PATH | libc::O_DIRECTORY)?;
    let mut sf = MaybeUninit::<libc::statfs64>::uninit();
    // SAFETY: valid descriptor and out-pointer.
    cvt(unsafe { libc::fstatfs64(fd.as_raw_fd(), sf.as_mut_ptr()) })?;
    // SAFETY: fstatfs64 succeeded and filled the struct.
    let magic = unsafe { sf.assume_init() }.f_type;
    if magic != PROC_SUPER_MAGIC {
        return Err(io::Error::other("/proc is not a procfs mount"));
    }
    Ok(fd)
}

/// The host's `/proc` (opened on first use, which a sandboxed server makes before its
/// pivot; afterwards `/proc` would not be procfs and opening it fails).
pub fn proc_root() -> io::Result<BorrowedFd<'static>> {
    if let Some(fd) = PROC_ROOT.get() {
        return Ok(fd.as_fd());
    }
    // A racing first use opens it twice; the loser's descriptor is dropped.
    let _ = PROC_ROOT.set(open_proc_root()?);
    PROC_ROOT
        .get()
        .map(|fd| fd.as_fd())
        .ok_or_else(|| io::Error::other("/proc handle lost"))
}

/// Opens `rel` (such as `self/status` or `1234/status`) under the host's `/proc`.
pub fn open_proc_file(rel: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    openat(proc_root()?, rel, flags, 0)
}

/// Makes the host's `/proc` the process's working directory (shared by every thread),
/// so path-only syscalls reach `self/fd/N` relatively. Servers call this once, before
/// any sandbox and before starting threads; nothing else may change the cwd afterwards.
pub fn enter_proc_cwd() -> io::Result<()> {
    let fd = proc_root()?;
    // SAFETY: fchdir on a valid directory descriptor (O_PATH directories are accepted).
    cvt(unsafe { libc::fchdir(fd.as_raw_fd()) })?;
    PROC_CWD.store(true, Ordering::Release);
    Ok(())
}

/// True once `enter_proc_cwd` ran: path-only calls then use relative paths.
pub(super) fn proc_is_cwd() -> bool {
    PROC_CWD.load(Ordering::Acquire)
}
