//! The raw calls of the server sandbox (`crate::sandbox` composes them): namespaces,
//! mounts, pivot_root and chroot, plus what a pivoted process can no longer open by path.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::cvt;

/// unshare(2) of a new mount namespace and, if `net`, a new (empty) network namespace.
/// In a multi-threaded process only the calling thread would move: callers check
/// `thread_count` first.
pub fn unshare_namespaces(net: bool) -> io::Result<()> {
    let mut flags = libc::CLONE_NEWNS;
    if net {
        flags |= libc::CLONE_NEWNET;
    }
    // SAFETY: no memory effects.
    cvt(unsafe { libc::unshare(flags) }).map(drop)
}

fn mount_raw(source: Option<&CStr>, target: &CStr, flags: libc::c_ulong) -> io::Result<()> {
    let source = source.map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: valid C strings or null where mount(2) allows it (no fstype, no data).
    cvt(unsafe {
        libc::mount(
            source,
            target.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    })
    .map(drop)
}

/// Makes every mount under `target` a slave: events from the host still propagate
/// in (an unmount there frees the mount here too), none of ours propagate out.
pub fn make_mounts_slave(target: &CStr) -> io::Result<()> {
    mount_raw(None, target, libc::MS_SLAVE | libc::MS_REC)
}

/// Bind-mounts `path` (with its submounts) onto itself, so it is a mount point that
/// pivot_root accepts.
pub fn bind_mount_onto_itself(path: &CStr) -> io::Result<()> {
    mount_raw(Some(path), path, libc::MS_BIND | libc::MS_REC)
}

/// pivot_root(2).
pub fn pivot_root(new_root: &CStr, put_old: &CStr) -> io::Result<()> {
    // SAFETY: valid C strings.
    cvt(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) as i32 })
        .map(drop)
}

/// umount2(path, MNT_DETACH): the mount (and its submounts) leaves this namespace now
/// and goes away once nothing uses it.
pub fn umount_detach(path: &CStr) -> io::Result<()> {
    // SAFETY: valid C string.
    cvt(unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) }).map(drop)
}

/// chroot(2).
pub fn chroot(path: &CStr) -> io::Result<()> {
    // SAFETY: valid C string.
    cvt(unsafe { libc::chroot(path.as_ptr()) }).map(drop)
}

/// fchdir(2); `O_PATH` directory descriptors are accepted.
pub fn fchdir(dir: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: no memory effects.
    cvt(unsafe { libc::fchdir(dir.as_raw_fd()) }).map(drop)
}

/// Threads of this process, from the host's `/proc/self/status`.
pub fn thread_count() -> io::Result<usize> {
    let status = super::read_proc_text(c"self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no Threads: line in /proc/self/status"))
}

/// Eight random bytes from getrandom(2): `/dev/urandom` is a client's file after a pivot.
pub fn random_u64() -> io::Result<u64> {
    let mut b = [0u8; 8];
    let mut filled = 0;
    while filled < b.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `b`.
        let n = unsafe { libc::getrandom(b[filled..].as_mut_ptr().cast(), b.len() - filled, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    Ok(u64::from_ne_bytes(b))
}
