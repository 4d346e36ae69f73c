//! Who is at the other end of a connected Unix socket.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Credentials of a Unix-socket peer, as the kernel recorded them at connect time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCred {
    pub uid: u32,
    pub gid: u32,
    /// `None` where the kernel does not say (or the peer is in another pid namespace).
    pub pid: Option<i32>,
}

/// SO_PEERCRED of a connected Unix stream socket.
pub fn peer_cred(fd: BorrowedFd<'_>) -> io::Result<PeerCred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a writable ucred and `len` holds its size.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != std::mem::size_of::<libc::ucred>() {
        return Err(io::Error::other("SO_PEERCRED returned a short ucred"));
    }
    Ok(PeerCred {
        uid: cred.uid,
        gid: cred.gid,
        pid: (cred.pid > 0).then_some(cred.pid),
    })
}
