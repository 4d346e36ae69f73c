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

impl<F: FileSystem> FileSystem for Counted<F> {
    type Inode = F::Inode;
    type Handle = F::Handle;

    fn init(&self, capable: FsOptions) -> io::Result<FsOptions> {
        self.timed(Op::Init, |fs| fs.init(capable))
    }

    fn destroy(&self) {
        self.counted(Op::Destroy, |fs| fs.destroy())
    }

    fn lookup(&self, ctx: &Context, parent: F::Inode, name: &CStr) -> io::Result<Entry> {
        self.timed(Op::Lookup, |fs| fs.lookup(ctx, parent, name))
    }

    fn forget(&self, ctx: &Context, inode: F::Inode, count: u64) {
        self.counted(Op::Forget, |fs| fs.forget(ctx, inode, count))
    }

    fn batch_forget(&self, ctx: &Context, requests: Vec<(F::Inode, u64)>) {
        self.counted(Op::BatchForget, |fs| fs.batch_forget(ctx, requests))
    }

    fn getattr(
        &self,
        ctx: &Context,
        inode: F::Inode,
        handle: Option<F::Handle>,
    ) -> io::Result<(stat64, Duration)> {
        self.timed(Op::Getattr, |fs| fs.getattr(ctx, inode, handle))
    }

    fn setattr(
        &self,
        ctx: &Context,
        inode: F::Inode,
        attr: stat64,
        handle: Option<F::Handle>,
        valid: SetattrValid,
    ) -> io::Result<(stat64, Duration)> {
        self.timed(Op::Setattr, |fs| {
            fs.setattr(ctx, inode, attr, handle, valid)
        })
    }

    fn readlink(&self, ctx: &Context, inode: F::Inode) -> io::Result<Vec<u8>> {
        self.timed(Op::Readlink, |fs| fs.readlink(ctx, inode))
    }

    fn symlink(
        &self,
        ctx: &Context,
        linkname: &CStr,
        parent: F::Inode,
        name: &CStr,
    ) -> io::Result<Entry> {
        self.timed(Op::Symlink, |fs| fs.symlink(ctx, linkname, parent, name))
    }

    fn mknod(
        &self,
        ctx: &Context,
        parent: F::Inode,
        name: &CStr,
        mode: u32,
        rdev: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        self.timed(Op::Mknod, |fs| {
            fs.mknod(ctx, parent, name, mode, rdev, umask)
        })
    }

    fn mkdir(
        &self,
        ctx: &Context,
        parent: F::Inode,
        name: &CStr,
        mode: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        self.timed(Op::Mkdir, |fs| fs.mkdir(ctx, parent, name, mode, umask))
    }

    fn unlink(&self, ctx: &Context, parent: F::Inode, name: &CStr) -> io::Result<()> {
        self.timed(Op::Unlink, |fs| fs.unlink(ctx, parent, name))
    }

    fn rmdir(&self, ctx: &Context, parent: F::Inode, name: &CStr) -> io::Result<()> {
        self.timed(Op::Rmdir, |fs| fs.rmdir(ctx, parent, name))
    }

    fn rename(
        &self,
        ctx: &Context,
        olddir: F::Inode,
        oldname: &CStr,
        newdir: F::Inode,
        newname: &CStr,
        flags: u32,
    ) -> io::Result<()> {
        self.timed(Op::Rename, |fs| {
            fs.rename(ctx, olddir, oldname, newdir, newname, flags)
        })
    }

    fn link(
        &self,
        ctx: &Context,
        inode: F::Inode,
        newparent: F::Inode,
        newname: &CStr,
    ) -> io::Result<Entry> {
        self.timed(Op::Link, |fs| fs.link(ctx, inode, newparent, newname))
    }

    fn open(
        &self,
        ctx: &Context,
        inode: F::Inode,
        flags: u32,
        fuse_flags: u32,
    ) -> io::Result<(Option<F::Handle>, OpenOptions, Option<u32>)> {
        self.timed(Op::Open, |fs| fs.open(ctx, inode, flags, fuse_flags))
    }

    fn create(
        &self,
        ctx: &Context,
        parent: F::Inode,
        name: &CStr,
        args: CreateIn,
    ) -> io::Result<(Entry, Option<F::Handle>, OpenOptions, Option<u32>)> {
        self.timed(Op::Create, |fs| fs.create(ctx, parent, name, args))
    }

    fn read(
        &self,
        ctx: &Context,
        inode: F::Inode,
        handle: F::Handle,
        w: &mut dyn ZeroCopyWriter,
        size: u32,
        offset: u64,
        lock_owner: Option<u64>,
        flags: u32,
    ) -> io::Result<usize> {
        self.timed(Op::Read, |fs| {
            fs.read(ctx, inode, handle, w, size, offset, lock_owner, flags)
        })
    }

    fn write(
        &self,
        ctx: &Context,
        inode: F::Inode,
        handle: F::Handle,
        r: &mut dyn ZeroCopyReader,
        size: u32,
        offset: u64,
        lock_owner: Option<u64>,
        delayed_write: bool,
        flags: u32,
        fuse_flags: u32,
    ) -> io::Result<usize> {
        self.timed(Op::Write, |fs| {
            fs.write(
                ctx,
                inode,
                handle,
                r,
                size,
                offset,
                lock_owner,
                delayed_write,
                flags,
                fuse_flags,
            )
        })
    }

    fn flush(
        &self,
        ctx: &Context,
        inode: F::Inode,
        handle: F::Handle,
        lock_owner: u64,
    ) -> io::Result<()> {
        self.timed(Op::Flush, |fs| fs.flush(ctx, inode, handle, lock_owner))
    }

    fn fsync(
        &self,
        ctx: &Context,
        inode: F::Inode,
        datasync: bool,
        handle: F::Handle,
    ) -> io::Result<()> {
        self.timed(Op::Fsync, |fs| fs.fsync(ctx, inode, datasync, handle))
    }

    fn fallocate(
        &self,
        ctx: &Context,
        inode: F::Inode,
        handle: F::Handle,
        mode: u32,
        offset: u64,
        length: u64,
    ) -> io::Result<()> {
        self.timed(Op::Fallocate, |fs| {
            fs.fallocate(ctx, inode, handle, mode, offset, length)
        })
    }

    fn release(
        &self,
        ctx: &Context,
        inode: F::Inode,
        flags: u32,
        handle: F::Handle,
        flush: bool,
        flock_release: bool,
        lock_owner: Option<u64>,
    ) -> io::Result<()> {
        self.timed(Op::Release, |fs| {
            fs.release(ctx, inode, flags, handle, flush, flock_release, lock_owner)
        })
    }

    fn statfs(&self, ctx: &Context, inode: F::Inode) -> io::Result<statvfs64> {
        self.timed(Op::Statfs, |fs| fs.statfs(ctx, inode))
    }

    fn setxattr(
        &self,
        ctx: &Context,
        inode: F::Inode,
        name: &CStr,
        value: &[u8],
        flags: u32,
    ) -> io::Result<()> {
        self.timed(Op::Setxattr, |fs| {
            fs.setxattr(ctx, inode, name, value, flags)
        })
    }

    fn getxattr(
        &self,
        ctx: &Context,
        inode: F::Inode,
        name: &CStr,
        size: u32,
    ) -> io::Result<GetxattrReply> {
        self.timed(Op::Getxattr, |fs| fs.getxattr(ctx, inode, name, size))
    }

    fn listxattr(&self, ctx: &Context, inode: F::Inode, size: u32) -> io::Result<ListxattrReply> {
        self.timed(Op::Listxattr, |fs| fs.listxattr(ctx, inode, size))
    }

    fn removexattr(&self, ctx: &Context, inode: F::Inode, name: &CStr) -> io::Result<()> {
        self.timed(Op::Removexattr, |fs| fs.removexattr(ctx, inode, name))
    }

    fn opendir(
        &self,
        ctx: &Context,
        inode: F::Inode,
        flags: u32,
    ) -> io::Result<(Option<F::Handle>, OpenOptions)> {
        self.timed(Op::Opendir, |fs| fs.opendir(ctx, inode, flags))
    }

    fn readdir(
        &self,
        ctx: &Context,
        inode: F::Inode,
        handle: F::Handle,
        size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry) -> io::Result<usize>,
    ) -> io::Result<()> {
        self.timed(Op::Readdir, |fs| {
            fs.readdir(ctx, inode, handle, size, offset, add_entry)
        })
    }

    fn readdirplus(
        &self,
        ctx: &Context,
        inode: F::Inode,
        handle: F::Handle,
        size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry, Entry) -> io::Result<usize>,
    ) -> io::Result<()> {
        self.timed(Op::Readdirplus, |fs| {
            fs.readdirplus(ctx, inode, handle, size, offset, add_entry)
        })
    }

    fn fsyncdir(
        &self,
        ctx: &Context,
        inode: F::Inode,
        datasync: bool,
        handle: F::Handle,
    ) -> io::Result<()> {
        self.timed(Op::Fsyncdir, |fs| fs.fsyncdir(ctx, inode, datasync, handle))
    }

    fn releasedir(
        &self,
        ctx: &Context,
        inode: F::Inode,
        flags: u32,
        handle: F::Handle,
    ) -> io::Result<()> {
        self.timed(Op::Releasedir, |fs| {
            fs.releasedir(ctx, inode, flags, handle)
        })
    }

    #[cfg(target_os = "linux")]
    fn setupmapping(
        &self,
        ctx: &Context,
        inode: F::Inode,
        handle: F::Handle,
        foffset: u64,
        len: u64,
        flags: u64,
        moffset: u64,
        vu_req: &mut dyn FsCacheReqHandler,
    ) -> io::Result<()> {
        self.timed(Op::Setupmapping, |fs| {
            fs.setupmapping(ctx, inode, handle, foffset, len, flags, moffset, vu_req)
        })
    }

    #[cfg(target_os = "linux")]
    fn removemapping(
        &self,
        ctx: &Context,
        inode: F::Inode,
        requests: Vec<RemovemappingOne>,
        vu_req: &mut dyn FsCacheReqHandler,
    ) -> io::Result<()> {
        self.timed(Op::Removemapping, |fs| {
            fs.removemapping(ctx, inode, requests, vu_req)
        })
    }

    fn access(&self, ctx: &Context, inode: F::Inode, mask: u32) -> io::Result<()> {
        self.timed(Op::Access, |fs| fs.access(ctx, inode, mask))
    }

    fn lseek(
        &self,
        ctx: &Context,
        inode: F::Inode,
        handle: F::Handle,
        offset: u64,
        whence: u32,
    ) -> io::Result<u64> {
        self.timed(Op::Lseek, |fs| fs.lseek(ctx, inode, handle, offset, whence))
    }

    fn getlk(
        &self,
        ctx: &Context,
        inode: F::Inode,
        handle: F::Handle,
        owner: u64,
        lock: FileLock,
        flags: u32,
    ) -> io::Result<FileLock> {
        self.timed(Op::Getlk, |fs| {
            fs.getlk(ctx, inode, handle, owner, lock, flags)
        })
    }

    fn setlk(
        &self,
        ctx: &Context,
        inode: F::Inode,
        handle: F::Handle,
        owner: u64,
        lock: FileLock,
        flags: u32,
    ) -> io::Result<()> {
        self.timed(Op::Setlk, |fs| {
            fs.setlk(ctx, inode, handle, owner, lock, flags)
        })
    }

    fn setlkw(
        &self,
        ctx: &Context,
        inode: F::Inode,
        handle: F::Handle,
        owner: u64,
        lock: FileLock,
        flags: u32,
    ) -> io::Result<()> {
        self.timed(Op::Setlkw, |fs| {
            fs.setlkw(ctx, inode, handle, owner, lock, flags)
        })
    }

    fn ioctl(
        &self,
        ctx: &Context,
        inode: F::Inode,
        handle: F::Handle,
        flags: u32,
        cmd: u32,
        data: IoctlData,
        out_size: u32,
    ) -> io::Result<IoctlData<'_>> {
        self.timed(Op::Ioctl, |fs| {
            fs.ioctl(ctx, inode, handle, flags, cmd, data, out_size)
        })
    }

    fn bmap(&self, ctx: &Context, inode: F::Inode, block: u64, blocksize: u32) -> io::Result<u64> {
        self.timed(Op::Bmap, |fs| fs.bmap(ctx, inode, block, blocksize))
    }

    fn poll(
        &self,
        ctx: &Context,
        inode: F::Inode,
        handle: F::Handle,
        khandle: F::Handle,
        flags: u32,
        events: u32,
    ) -> io::Result<u32> {
        self.timed(Op::Poll, |fs| {
            fs.poll(ctx, inode, handle, khandle, flags, events)
        })
    }

    fn notify_reply(&self) -> io::Result<()> {
        self.inner.notify_reply()
    }

    fn id_remap(&self, ctx: &mut Context) -> io::Result<()> {
        self.inner.id_remap(ctx)
    }
}
