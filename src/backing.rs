//! Kernel passthrough of open files (FUSE_PASSTHROUGH, Linux 6.9+): the seam between a
//! filesystem, which decides which host file backs an open, and a transport, which may
//! be able to hand that file to the client kernel so reads, writes and mmap bypass the
//! server. Transports that cannot (pipe, virtio-fs, older kernels) provide none.

use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;

pub trait BackingFiles: Send + Sync + fmt::Debug {
    /// True once the kernel agreed to passthrough on this connection.
    fn enabled(&self) -> bool;
    /// The kernel offers passthrough at INIT: returns whether this transport can
    /// register backing files from now on (and is then `enabled`).
    fn agree(&self) -> bool;
    /// Registers the host file behind `file` with the kernel and returns its backing
    /// id. The kernel does the I/O on it with the calling thread's credentials.
    fn open(&self, file: BorrowedFd<'_>) -> io::Result<u32>;
    /// Forgets a backing id; opens the kernel already made through it keep working.
    fn close(&self, id: u32) -> io::Result<()>;
}
