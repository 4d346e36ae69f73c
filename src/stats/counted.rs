//! A `FileSystem` that counts every call it passes on.

use std::ffi::CStr;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use fuse_backend_rs::abi::fuse_abi::{
    stat64, statvfs64, CreateIn, FsOptions, OpenOptions, SetattrValid,
};
#[cfg(target_os = "linux")]
use fuse_backend_rs::abi::virtio_fs::RemovemappingOne;
use fuse_backend_rs::api::filesystem::{
    Context, DirEntry, Entry, FileLock, FileSystem, GetxattrReply, IoctlData, ListxattrReply,
    ZeroCopyReader, ZeroCopyWriter,
};
#[cfg(target_os = "linux")]
use fuse_backend_rs::transport::FsCacheReqHandler;

use super::{Op, Stats};
use crate::extension::{FileSystemExt, Opened, RangeEnd, RangeSink, StatxReply};

/// `inner`, with each call recorded in `stats`; without stats, a plain pass-through.
pub struct Counted<F> {
    inner: F,
    stats: Option<Arc<Stats>>,
}

impl<F> Counted<F> {
    pub fn new(inner: F, stats: Option<Arc<Stats>>) -> Self {
        Counted { inner, stats }
    }

    pub fn inner(&self) -> &F {
        &self.inner
    }

    #[inline]
    fn timed<'a, T>(&'a self, op: Op, call: impl FnOnce(&'a F) -> io::Result<T>) -> io::Result<T> {
        match &self.stats {
            Some(stats) => stats.measure(op, || call(&self.inner)),
            None => call(&self.inner),
        }
    }

    #[inline]
    fn counted(&self, op: Op, call: impl FnOnce(&F)) {
        let _ = self.timed(op, |fs| {
            call(fs);
            Ok(())
        });
    }
}

/// Methods that pass their arguments on unchanged, each timed as one operation.
macro_rules! timed {
    ($($(#[$attr:meta])* $op:ident => fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        $(
            $(#[$attr])*
            fn $name(&self, $($arg: $ty),*) -> $ret {
                self.timed(Op::$op, |fs| fs.$name($($arg),*))
            }
        )*
    };
}

impl<F: FileSystem> FileSystem for Counted<F> {
    type Inode = F::Inode;
    type Handle = F::Handle;

    fn destroy(&self) {
        self.counted(Op::Destroy, |fs| fs.destroy())
    }

    fn forget(&self, ctx: &Context, inode: F::Inode, count: u64) {
        self.counted(Op::Forget, |fs| fs.forget(ctx, inode, count))
    }

    fn batch_forget(&self, ctx: &Context, requests: Vec<(F::Inode, u64)>) {
        self.counted(Op::BatchForget, |fs| fs.batch_forget(ctx, requests))
    }

    fn notify_reply(&self) -> io::Result<()> {
        self.inner.notify_reply()
    }

    fn id_remap(&self, ctx: &mut Context) -> io::Result<()> {
        self.inner.id_remap(ctx)
    }

    timed! {
        Init => fn init(capable: FsOptions) -> io::Result<FsOptions>;
        Lookup => fn lookup(ctx: &Context, parent: F::Inode, name: &CStr) -> io::Result<Entry>;
        Getattr => fn getattr(ctx: &Context, inode: F::Inode, handle: Option<F::Handle>)
            -> io::Result<(stat64, Duration)>;
        Setattr => fn setattr(ctx: &Context, inode: F::Inode, attr: stat64,
            handle: Option<F::Handle>, valid: SetattrValid) -> io::Result<(stat64, Duration)>;
        Readlink => fn readlink(ctx: &Context, inode: F::Inode) -> io::Result<Vec<u8>>;
        Symlink => fn symlink(ctx: &Context, linkname: &CStr, parent: F::Inode, name: &CStr)
            -> io::Result<Entry>;
        Mknod => fn mknod(ctx: &Context, parent: F::Inode, name: &CStr, mode: u32, rdev: u32,
            umask: u32) -> io::Result<Entry>;
        Mkdir => fn mkdir(ctx: &Context, parent: F::Inode, name: &CStr, mode: u32, umask: u32)
            -> io::Result<Entry>;
        Unlink => fn unlink(ctx: &Context, parent: F::Inode, name: &CStr) -> io::Result<()>;
        Rmdir => fn rmdir(ctx: &Context, parent: F::Inode, name: &CStr) -> io::Result<()>;
        Rename => fn rename(ctx: &Context, olddir: F::Inode, oldname: &CStr, newdir: F::Inode,
            newname: &CStr, flags: u32) -> io::Result<()>;
        Link => fn link(ctx: &Context, inode: F::Inode, newparent: F::Inode, newname: &CStr)
            -> io::Result<Entry>;
        Open => fn open(ctx: &Context, inode: F::Inode, flags: u32, fuse_flags: u32)
            -> io::Result<(Option<F::Handle>, OpenOptions, Option<u32>)>;
        Create => fn create(ctx: &Context, parent: F::Inode, name: &CStr, args: CreateIn)
            -> io::Result<(Entry, Option<F::Handle>, OpenOptions, Option<u32>)>;
        Read => fn read(ctx: &Context, inode: F::Inode, handle: F::Handle,
            w: &mut dyn ZeroCopyWriter, size: u32, offset: u64, lock_owner: Option<u64>,
            flags: u32) -> io::Result<usize>;
        Write => fn write(ctx: &Context, inode: F::Inode, handle: F::Handle,
            r: &mut dyn ZeroCopyReader, size: u32, offset: u64, lock_owner: Option<u64>,
            delayed_write: bool, flags: u32, fuse_flags: u32) -> io::Result<usize>;
        Flush => fn flush(ctx: &Context, inode: F::Inode, handle: F::Handle, lock_owner: u64)
            -> io::Result<()>;
        Fsync => fn fsync(ctx: &Context, inode: F::Inode, datasync: bool, handle: F::Handle)
            -> io::Result<()>;
        Fallocate => fn fallocate(ctx: &Context, inode: F::Inode, handle: F::Handle, mode: u32,
            offset: u64, length: u64) -> io::Result<()>;
        Release => fn release(ctx: &Context, inode: F::Inode, flags: u32, handle: F::Handle,
            flush: bool, flock_release: bool, lock_owner: Option<u64>) -> io::Result<()>;
        Statfs => fn statfs(ctx: &Context, inode: F::Inode) -> io::Result<statvfs64>;
        Setxattr => fn setxattr(ctx: &Context, inode: F::Inode, name: &CStr, value: &[u8],
            flags: u32) -> io::Result<()>;
        Getxattr => fn getxattr(ctx: &Context, inode: F::Inode, name: &CStr, size: u32)
            -> io::Result<GetxattrReply>;
        Listxattr => fn listxattr(ctx: &Context, inode: F::Inode, size: u32)
            -> io::Result<ListxattrReply>;
        Removexattr => fn removexattr(ctx: &Context, inode: F::Inode, name: &CStr)
            -> io::Result<()>;
        Opendir => fn opendir(ctx: &Context, inode: F::Inode, flags: u32)
            -> io::Result<(Option<F::Handle>, OpenOptions)>;
        Readdir => fn readdir(ctx: &Context, inode: F::Inode, handle: F::Handle, size: u32,
            offset: u64, add_entry: &mut dyn FnMut(DirEntry) -> io::Result<usize>)
            -> io::Result<()>;
        Readdirplus => fn readdirplus(ctx: &Context, inode: F::Inode, handle: F::Handle,
            size: u32, offset: u64,
            add_entry: &mut dyn FnMut(DirEntry, Entry) -> io::Result<usize>) -> io::Result<()>;
        Fsyncdir => fn fsyncdir(ctx: &Context, inode: F::Inode, datasync: bool,
            handle: F::Handle) -> io::Result<()>;
        Releasedir => fn releasedir(ctx: &Context, inode: F::Inode, flags: u32,
            handle: F::Handle) -> io::Result<()>;
        #[cfg(target_os = "linux")]
        Setupmapping => fn setupmapping(ctx: &Context, inode: F::Inode, handle: F::Handle,
            foffset: u64, len: u64, flags: u64, moffset: u64,
            vu_req: &mut dyn FsCacheReqHandler) -> io::Result<()>;
        #[cfg(target_os = "linux")]
        Removemapping => fn removemapping(ctx: &Context, inode: F::Inode,
            requests: Vec<RemovemappingOne>, vu_req: &mut dyn FsCacheReqHandler)
            -> io::Result<()>;
        Access => fn access(ctx: &Context, inode: F::Inode, mask: u32) -> io::Result<()>;
        Lseek => fn lseek(ctx: &Context, inode: F::Inode, handle: F::Handle, offset: u64,
            whence: u32) -> io::Result<u64>;
        Getlk => fn getlk(ctx: &Context, inode: F::Inode, handle: F::Handle, owner: u64,
            lock: FileLock, flags: u32) -> io::Result<FileLock>;
        Setlk => fn setlk(ctx: &Context, inode: F::Inode, handle: F::Handle, owner: u64,
            lock: FileLock, flags: u32) -> io::Result<()>;
        Setlkw => fn setlkw(ctx: &Context, inode: F::Inode, handle: F::Handle, owner: u64,
            lock: FileLock, flags: u32) -> io::Result<()>;
        Ioctl => fn ioctl(ctx: &Context, inode: F::Inode, handle: F::Handle, flags: u32,
            cmd: u32, data: IoctlData, out_size: u32) -> io::Result<IoctlData<'_>>;
        Bmap => fn bmap(ctx: &Context, inode: F::Inode, block: u64, blocksize: u32)
            -> io::Result<u64>;
        Poll => fn poll(ctx: &Context, inode: F::Inode, handle: F::Handle, khandle: F::Handle,
            flags: u32, events: u32) -> io::Result<u32>;
    }
}

impl<F: FileSystemExt> FileSystemExt for Counted<F> {
    timed! {
        CopyFileRange => fn copy_file_range(ctx: &Context, from: RangeEnd, to: RangeEnd,
            len: u64, flags: u64) -> io::Result<u64>;
        Tmpfile => fn tmpfile(ctx: &Context, parent: u64, name: &CStr, flags: u32, mode: u32,
            umask: u32) -> io::Result<Opened>;
        Statx => fn statx(ctx: &Context, inode: u64, handle: Option<u64>)
            -> io::Result<StatxReply>;
        Syncfs => fn syncfs(ctx: &Context, inode: u64) -> io::Result<()>;
        Read => fn read_to_sink(ctx: &Context, inode: u64, handle: u64, offset: u64, size: u32,
            sink: &mut dyn RangeSink) -> io::Result<usize>;
    }

    fn needs_flush(&self) -> bool {
        self.inner.needs_flush()
    }

    fn negative_timeout(&self) -> Duration {
        self.inner.negative_timeout()
    }
}
