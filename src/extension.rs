//! Operations newer than fuse-backend-rs's `FileSystem` trait (protocol 7.33): the seam
//! between the protocol core, which decodes them, and a filesystem that can serve them.
//! Every method defaults to ENOSYS, which the client kernel remembers and stops asking.

use std::ffi::CStr;
use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use fuse_backend_rs::abi::fuse_abi::{stat64, OpenOptions};
use fuse_backend_rs::api::filesystem::{Context, Entry, FileSystem};

fn enosys<T>() -> io::Result<T> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// What `statx` reports beyond `stat64`: the birth time, when the host knows it.
#[derive(Clone, Copy, Debug)]
pub struct StatxReply {
    pub stat: stat64,
    /// (seconds, nanoseconds) since the epoch.
    pub btime: Option<(i64, u32)>,
    pub timeout: Duration,
}

/// One end of a copy_file_range: a node, an open handle on it, an offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeEnd {
    pub inode: u64,
    pub handle: u64,
    pub offset: u64,
}

/// A new open unnamed file (O_TMPFILE): its entry, handle, open options, backing id.
pub type Opened = (Entry, Option<u64>, OpenOptions, Option<u32>);

/// Where a transport takes READ data as a range of an open file rather than as bytes
/// (fuse-pipe splices it from the file to its socket), so it never passes through
/// the server's memory.
pub trait RangeSink {
    /// The most bytes one `take` accepts.
    fn capacity(&self) -> usize;
    /// Takes up to `len` bytes of `file` from `offset`; returns how many, fewer only at
    /// the end of the file. On error it holds nothing.
    fn take(&mut self, file: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<usize>;
}

pub trait FileSystemExt: FileSystem<Inode = u64, Handle = u64> {
    /// READ of open file `handle`, handed to `sink` as a file range instead of copied.
    /// Where this fails the protocol core serves the READ with `FileSystem::read`.
    fn read_to_sink(
        &self,
        _ctx: &Context,
        _inode: u64,
        _handle: u64,
        _offset: u64,
        _size: u32,
        _sink: &mut dyn RangeSink,
    ) -> io::Result<usize> {
        enosys()
    }

    /// Copies `len` bytes between two open files on the host (so reflinks stay
    /// reflinks); returns the bytes copied.
    fn copy_file_range(
        &self,
        _ctx: &Context,
        _from: RangeEnd,
        _to: RangeEnd,
        _len: u64,
        _flags: u64,
    ) -> io::Result<u64> {
        enosys()
    }

    /// Opens an unnamed file in directory `parent` (open(2) with O_TMPFILE); the
    /// client links it in later with linkat(2), which arrives as LINK.
    fn tmpfile(
        &self,
        _ctx: &Context,
        _parent: u64,
        _name: &CStr,
        _flags: u32,
        _mode: u32,
        _umask: u32,
    ) -> io::Result<Opened> {
        enosys()
    }

    /// Attributes with the birth time.
    fn statx(&self, _ctx: &Context, _inode: u64, _handle: Option<u64>) -> io::Result<StatxReply> {
        enosys()
    }

    /// Flushes the whole filesystem behind `inode` (syncfs(2) on the mount).
    fn syncfs(&self, _ctx: &Context, _inode: u64) -> io::Result<()> {
        enosys()
    }

    /// Whether `flush` does anything the caller of close(2) must wait for. If not,
    /// opens say FOPEN_NOFLUSH (7.35) and close costs no round trip (the kernel still
    /// flushes when it holds a writeback cache).
    fn needs_flush(&self) -> bool {
        true
    }

    /// How long the client may cache that a name does not exist (a lookup that finds
    /// nothing is answered with node id 0 and this timeout). Zero: not at all.
    fn negative_timeout(&self) -> Duration {
        Duration::ZERO
    }
}

/// A filesystem shared by several sessions (one per fuse-pipe connection).
impl<F: FileSystemExt> FileSystemExt for std::sync::Arc<F> {
    fn read_to_sink(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        offset: u64,
        size: u32,
        sink: &mut dyn RangeSink,
    ) -> io::Result<usize> {
        (**self).read_to_sink(ctx, inode, handle, offset, size, sink)
    }

    fn copy_file_range(
        &self,
        ctx: &Context,
        from: RangeEnd,
        to: RangeEnd,
        len: u64,
        flags: u64,
    ) -> io::Result<u64> {
        (**self).copy_file_range(ctx, from, to, len, flags)
    }

    fn tmpfile(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        flags: u32,
        mode: u32,
        umask: u32,
    ) -> io::Result<Opened> {
        (**self).tmpfile(ctx, parent, name, flags, mode, umask)
    }

    fn statx(&self, ctx: &Context, inode: u64, handle: Option<u64>) -> io::Result<StatxReply> {
        (**self).statx(ctx, inode, handle)
    }

    fn syncfs(&self, ctx: &Context, inode: u64) -> io::Result<()> {
        (**self).syncfs(ctx, inode)
    }

    fn needs_flush(&self) -> bool {
        (**self).needs_flush()
    }

    fn negative_timeout(&self) -> Duration {
        (**self).negative_timeout()
    }
}

/// fuse-backend-rs's own passthrough (a benchmark peer) serves none of these.
#[cfg(target_os = "linux")]
impl<S: vm_memory::bitmap::BitmapSlice + Send + Sync> FileSystemExt
    for fuse_backend_rs::passthrough::PassthroughFs<S>
{
}
