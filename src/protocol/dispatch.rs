//! One FUSE session: decodes each request with [`super::request`], calls the
//! filesystem (fuse-backend-rs's `FileSystem` plus [`FileSystemExt`]) and encodes the
//! answer with [`super::reply`] into the worker's buffer. Transports only move bytes.
//!
//! Nothing a message holds can take the server down: a malformed one is answered with
//! EINVAL when it names a request that waits for an answer, and a panic in the
//! filesystem is answered with EIO.

use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fuse_backend_rs::abi::fuse_abi::{stat64, CreateIn as HostCreateIn};
use fuse_backend_rs::api::filesystem::{
    Context, GetxattrReply, IoctlData, ListxattrReply, ZeroCopyReader, ZeroCopyWriter,
};

use super::abi::{
    flags, init, opcode, InHeader, InitIn, InitOut, OpenOut, OutHeader, ReadIn, StatfsOut,
    StatxOut, KERNEL_MINOR_VERSION, KERNEL_VERSION, MIN_MINOR,
};
use super::host;
use super::iobuf::{SliceReader, SliceWriter};
use super::reply;
use super::request::{parse_with, Negotiated, Operation};
use super::wire::{EncodeError, Wire};
use crate::backing::BackingFiles;
use crate::extension::{FileSystemExt, RangeEnd, RangeSink};

/// Room for a 1 MiB write plus its headers: the size of every worker's buffers.
pub const BUFFER_SIZE: usize = MAX_WRITE as usize + 4096;
/// Largest READ/WRITE payload offered at INIT (256 pages of 4 KiB).
const MAX_WRITE: u32 = 1 << 20;
const MAX_PAGES: u16 = 256;
/// Backing files must sit on a non-stacked filesystem; an overlayfs may still stack on us.
const MAX_STACK_DEPTH: u32 = 1;

/// What became of one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Answered by the filesystem (or a message that takes no answer).
    Served,
    /// Malformed: answered with EINVAL when it takes an answer and names its request.
    Malformed,
    /// The filesystem panicked on it: answered with EIO.
    Panicked,
}

/// The result of [`Session::handle`]: `out[..reply]` is to be sent (nothing if 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    pub reply: usize,
    pub handled: Handled,
}

/// What a transport offers the session beyond the filesystem.
#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    /// Backing-file registration for kernel passthrough (local /dev/fuse only).
    pub passthrough: Option<Arc<dyn BackingFiles>>,
    /// Ask the kernel for the caller's supplementary groups with each create
    /// (CREATE_SUPP_GROUP, 7.38): for transports that cannot read the caller's /proc.
    pub forward_create_groups: bool,
    /// Offer FUSE_OVER_IO_URING (7.42): the transport has rings waiting for INIT.
    pub io_uring: bool,
}

pub struct Session<F> {
    fs: F,
    opts: SessionOptions,
    /// Negotiated minor; 0 until INIT.
    minor: AtomicU32,
    /// INIT flags in force.
    flags: AtomicU64,
}

impl<F: FileSystemExt + Sync> Session<F> {
    pub fn new(fs: F, opts: SessionOptions) -> Self {
        Session {
            fs,
            opts,
            minor: AtomicU32::new(0),
            flags: AtomicU64::new(0),
        }
    }

    pub fn filesystem(&self) -> &F {
        &self.fs
    }

    /// Whether INIT granted `flag` (an `abi::init` bit).
    pub fn granted(&self, flag: u64) -> bool {
        self.flags.load(Ordering::Relaxed) & flag != 0
    }

    /// The negotiated protocol minor, 0 before INIT.
    pub fn minor(&self) -> u32 {
        self.minor.load(Ordering::Relaxed)
    }

    /// Serves one whole message; `out` must hold [`BUFFER_SIZE`] bytes. `msg` is
    /// mutable only because a WRITE's payload is handed to the filesystem in place.
    pub fn handle(&self, msg: &mut [u8], out: &mut [u8]) -> Answer {
        self.handle_with(msg, out, None)
    }

    /// [`Self::handle`], with READ data going to `sink` where it can: the reply in
    /// `out` is then a header whose length counts what `sink` took.
    pub fn handle_with(
        &self,
        msg: &mut [u8],
        out: &mut [u8],
        sink: Option<&mut dyn RangeSink>,
    ) -> Answer {
        let run = || self.dispatch(msg, out, sink);
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
            Ok(answer) => answer,
            Err(_) => {
                let (unique, opcode) = id(msg);
                log::error!("FUSE request {unique} (opcode {opcode}) panicked; answering EIO");
                let reply = if takes_answer(opcode) {
                    reply::error(out, unique, libc::EIO).unwrap_or(0)
                } else {
                    0
                };
                Answer {
                    reply,
                    handled: Handled::Panicked,
                }
            }
        }
    }

    fn dispatch(&self, msg: &mut [u8], out: &mut [u8], sink: Option<&mut dyn RangeSink>) -> Answer {
        let neg = Negotiated {
            minor: self.minor.load(Ordering::Relaxed),
            flags: self.flags.load(Ordering::Relaxed),
        };
        if neg.minor == 0 && !matches!(id(msg).1, opcode::INIT | opcode::CUSE_INIT) {
            return refuse(msg, out, libc::EIO, &"request before INIT");
        }
        let req = match parse_with(msg, neg) {
            Ok(r) => r,
            Err(e) => return refuse(msg, out, libc::EINVAL, &e),
        };
        let h = req.header;
        let ctx = Context {
            uid: h.uid,
            gid: h.gid,
            pid: h.pid as libc::pid_t,
        };
        // A WRITE's payload is handed over in place: note where it lies, then let the
        // parsed request (which borrows `msg`) go.
        if let Operation::Write { arg, data } = req.op {
            let start = data.as_ptr() as usize - msg.as_ptr() as usize;
            let end = start + data.len();
            let payload = &mut msg[start..end];
            let res = self
                .write(&ctx, h.nodeid, &arg, payload)
                .and_then(|n| enc(reply::write(out, h.unique, n)).map(Some));
            return self.finish(out, h.unique, res);
        }
        let res = match req.ext.groups() {
            Some(groups) if self.opts.forward_create_groups => {
                let mut list = [0u32; 64];
                let n = groups.len().min(list.len());
                for (slot, g) in list.iter_mut().zip(groups.iter()) {
                    *slot = g;
                }
                crate::creds::with_forwarded_groups(&list[..n], || {
                    self.op(&ctx, &h, req.op, out, sink)
                })
            }
            _ => self.op(&ctx, &h, req.op, out, sink),
        };
        self.finish(out, h.unique, res)
    }

    /// Turns an operation's result into the answer: `Ok(None)` sends nothing.
    fn finish(&self, out: &mut [u8], unique: u64, res: io::Result<Option<usize>>) -> Answer {
        let reply = match res {
            Ok(Some(n)) => n,
            Ok(None) => 0,
            Err(e) => reply::error(out, unique, host::errno(&e)).unwrap_or(0),
        };
        Answer {
            reply,
            handled: Handled::Served,
        }
    }

    fn write(
        &self,
        ctx: &Context,
        node: u64,
        arg: &super::abi::WriteIn,
        payload: &mut [u8],
    ) -> io::Result<u32> {
        let owner = (arg.write_flags & flags::WRITE_LOCKOWNER != 0).then_some(arg.lock_owner);
        let delayed = arg.write_flags & flags::WRITE_CACHE != 0;
        let mut r = SliceReader::new(payload);
        let n = self.fs.write(
            ctx,
            node,
            arg.fh,
            &mut r as &mut dyn ZeroCopyReader,
            arg.size,
            arg.offset,
            owner,
            delayed,
            host::open_flags(arg.flags),
            arg.write_flags,
        )?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Runs one decoded operation; `Ok(Some(n))` is a reply of `n` bytes in `out`.
    fn op(
        &self,
        ctx: &Context,
        h: &InHeader,
        op: Operation<'_>,
        out: &mut [u8],
        sink: Option<&mut dyn RangeSink>,
    ) -> io::Result<Option<usize>> {
        use Operation as O;
        let fs = &self.fs;
        let (node, unique) = (h.nodeid, h.unique);
        let minor = self.minor();
        let entry = |out: &mut [u8], e: fuse_backend_rs::api::filesystem::Entry| {
            enc(reply::entry(out, unique, minor, &host::entry_out(&e)))
        };
        let empty =
            |out: &mut [u8], r: io::Result<()>| r.and_then(|()| enc(reply::empty(out, unique)));
        let attr = |out: &mut [u8], (st, t): (stat64, Duration)| {
            enc(reply::attr(out, unique, minor, &host::attr_out(&st, t)))
        };
        Ok(Some(match op {
            O::Init(i) => return self.init(h, &i, out).map(Some),
            O::Lookup { name } => match fs.lookup(ctx, node, name) {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let timeout = fs.negative_timeout();
                    if timeout.is_zero() {
                        return Err(e);
                    }
                    enc(reply::entry(out, unique, minor, &negative_entry(timeout)))?
                }
                r => entry(out, r?)?,
            },
            O::Forget(f) => {
                fs.forget(ctx, node, f.nlookup);
                return Ok(None);
            }
            O::BatchForget(list) => {
                let forgets = list.iter().map(|f| (f.nodeid, f.nlookup)).collect();
                fs.batch_forget(ctx, forgets);
                return Ok(None);
            }
            O::Getattr(g) => {
                let fh = (g.getattr_flags & flags::GETATTR_FH != 0).then_some(g.fh);
                attr(out, fs.getattr(ctx, node, fh)?)?
            }
            O::Setattr(s) => {
                let fh = (s.valid & super::abi::fattr::FH != 0).then_some(s.fh);
                let (st, valid) = host::setattr(&s);
                attr(out, fs.setattr(ctx, node, st, fh, valid)?)?
            }
            O::Readlink => enc(reply::data(out, unique, &fs.readlink(ctx, node)?))?,
            O::Symlink { name, target } => entry(out, fs.symlink(ctx, target, node, name)?)?,
            O::Mknod { arg, name } => entry(
                out,
                fs.mknod(ctx, node, name, arg.mode, arg.rdev, arg.umask)?,
            )?,
            O::Mkdir { arg, name } => entry(out, fs.mkdir(ctx, node, name, arg.mode, arg.umask)?)?,
            O::Unlink { name } => empty(out, fs.unlink(ctx, node, name))?,
            O::Rmdir { name } => empty(out, fs.rmdir(ctx, node, name))?,
            O::Rename { arg, name, newname } => {
                empty(out, fs.rename(ctx, node, name, arg.newdir, newname, 0))?
            }
            O::Rename2 { arg, name, newname } => {
                let flags = host::rename_flags(arg.flags)?;
                empty(out, fs.rename(ctx, node, name, arg.newdir, newname, flags))?
            }
            O::Link { arg, name } => entry(out, fs.link(ctx, arg.oldnodeid, node, name)?)?,
            O::Open(o) => {
                let flags = host::open_flags(o.flags);
                let (fh, opts, backing) = fs.open(ctx, node, flags, o.open_flags)?;
                let o = open_out(fh, self.file_open_flags(opts), backing);
                enc(reply::open(out, unique, &o))?
            }
            O::Create { arg, name } => {
                let args = HostCreateIn {
                    flags: host::open_flags(arg.flags),
                    mode: arg.mode,
                    umask: arg.umask,
                    fuse_flags: arg.open_flags,
                };
                let (e, fh, opts, backing) = fs.create(ctx, node, name, args)?;
                let o = open_out(fh, self.file_open_flags(opts), backing);
                enc(reply::create(out, unique, minor, &host::entry_out(&e), &o))?
            }
            O::Tmpfile { arg, name } => {
                let (e, fh, opts, backing) = fs.tmpfile(
                    ctx,
                    node,
                    name,
                    host::open_flags(arg.flags),
                    arg.mode,
                    arg.umask,
                )?;
                let o = open_out(fh, self.file_open_flags(opts), backing);
                enc(reply::create(out, unique, minor, &host::entry_out(&e), &o))?
            }
            O::Read(r) => self.read(ctx, node, unique, &r, out, sink)?,
            // Served by `dispatch`, which hands the payload over in place.
            O::Write { .. } => return Err(io::Error::from_raw_os_error(libc::EIO)),
            O::Statfs => {
                let st = fs.statfs(ctx, node)?;
                enc(reply::statfs(
                    out,
                    unique,
                    minor,
                    &StatfsOut {
                        st: host::kstatfs(&st),
                    },
                ))?
            }
            O::Release(r) => {
                let flush = r.release_flags & flags::RELEASE_FLUSH != 0;
                let flock = r.release_flags & flags::RELEASE_FLOCK_UNLOCK != 0;
                let owner = (flush || flock).then_some(r.lock_owner);
                let flags = host::open_flags(r.flags);
                empty(out, fs.release(ctx, node, flags, r.fh, flush, flock, owner))?
            }
            O::Fsync(f) => {
                let datasync = f.fsync_flags & flags::FSYNC_FDATASYNC != 0;
                empty(out, fs.fsync(ctx, node, datasync, f.fh))?
            }
            O::Fsyncdir(f) => {
                let datasync = f.fsync_flags & flags::FSYNC_FDATASYNC != 0;
                empty(out, fs.fsyncdir(ctx, node, datasync, f.fh))?
            }
            O::Setxattr { arg, name, value } => {
                let flags = host::xattr_flags(arg.flags)?;
                empty(out, fs.setxattr(ctx, node, name, value, flags))?
            }
            O::Getxattr { arg, name } => match fs.getxattr(ctx, node, name, arg.size)? {
                GetxattrReply::Value(v) => enc(reply::data(out, unique, &v))?,
                GetxattrReply::Count(n) => enc(reply::xattr_size(out, unique, n))?,
            },
            O::Listxattr(arg) => match fs.listxattr(ctx, node, arg.size)? {
                ListxattrReply::Names(v) => enc(reply::data(out, unique, &v))?,
                ListxattrReply::Count(n) => enc(reply::xattr_size(out, unique, n))?,
            },
            O::Removexattr { name } => empty(out, fs.removexattr(ctx, node, name))?,
            O::Flush(f) => empty(out, fs.flush(ctx, node, f.fh, f.lock_owner))?,
            O::Opendir(o) => {
                let (fh, opts) = fs.opendir(ctx, node, host::open_flags(o.flags))?;
                enc(reply::open(
                    out,
                    unique,
                    &open_out(fh, host::fopen_flags(opts), None),
                ))?
            }
            O::Readdir(r) => self.readdir(ctx, node, unique, &r, false, out)?,
            O::Readdirplus(r) => self.readdir(ctx, node, unique, &r, true, out)?,
            O::Releasedir(r) => {
                let flags = host::open_flags(r.flags);
                empty(out, fs.releasedir(ctx, node, flags, r.fh))?
            }
            O::Getlk(l) => {
                let lk = fs.getlk(ctx, node, l.fh, l.owner, host::host_lock(&l.lk), l.lk_flags)?;
                let lk = super::abi::LkOut {
                    lk: host::wire_lock(&lk),
                };
                enc(reply::lk(out, unique, &lk))?
            }
            O::Setlk(l) => empty(
                out,
                fs.setlk(ctx, node, l.fh, l.owner, host::host_lock(&l.lk), l.lk_flags),
            )?,
            O::Setlkw(l) => empty(
                out,
                fs.setlkw(ctx, node, l.fh, l.owner, host::host_lock(&l.lk), l.lk_flags),
            )?,
            O::Access(a) => empty(out, fs.access(ctx, node, a.mask))?,
            O::Interrupt(_) => return Ok(None),
            O::Bmap(b) => enc(reply::bmap(
                out,
                unique,
                fs.bmap(ctx, node, b.block, b.blocksize)?,
            ))?,
            O::Destroy => {
                fs.destroy();
                enc(reply::empty(out, unique))?
            }
            O::Ioctl { arg, data } => {
                let input = IoctlData {
                    result: 0,
                    data: (!data.is_empty()).then_some(data),
                };
                let res = fs.ioctl(ctx, node, arg.fh, arg.flags, arg.cmd, input, arg.out_size)?;
                let o = super::abi::IoctlOut {
                    result: res.result,
                    ..Default::default()
                };
                enc(reply::ioctl(out, unique, &o, res.data.unwrap_or_default()))?
            }
            O::Poll(p) => {
                let revents = fs.poll(ctx, node, p.fh, p.kh, p.flags, p.events)?;
                enc(reply::poll(out, unique, revents))?
            }
            O::NotifyReply { .. } => {
                fs.notify_reply()?;
                return Ok(None);
            }
            O::Fallocate(f) => empty(
                out,
                fs.fallocate(ctx, node, f.fh, f.mode, f.offset, f.length),
            )?,
            O::Lseek(l) => {
                let at = fs.lseek(ctx, node, l.fh, l.offset, host::whence(l.whence))?;
                enc(reply::lseek(out, unique, at))?
            }
            O::CopyFileRange(c) | O::CopyFileRange64(c) => {
                let from = RangeEnd {
                    inode: node,
                    handle: c.fh_in,
                    offset: c.off_in,
                };
                let to = RangeEnd {
                    inode: c.nodeid_out,
                    handle: c.fh_out,
                    offset: c.off_out,
                };
                let copied = fs.copy_file_range(ctx, from, to, c.len, c.flags)?;
                if h.opcode == opcode::COPY_FILE_RANGE_64 {
                    enc(reply::copy_file_range_64(out, unique, copied))?
                } else {
                    enc(reply::write(
                        out,
                        unique,
                        u32::try_from(copied).unwrap_or(u32::MAX),
                    ))?
                }
            }
            O::Statx(s) => {
                let fh = (s.getattr_flags & flags::GETATTR_FH != 0).then_some(s.fh);
                let r = fs.statx(ctx, node, fh)?;
                let (attr_valid, attr_valid_nsec) = (r.timeout.as_secs(), r.timeout.subsec_nanos());
                let o = StatxOut {
                    attr_valid,
                    attr_valid_nsec,
                    flags: 0,
                    spare: [0; 2],
                    stat: host::statx(&r),
                };
                enc(reply::statx(out, unique, &o))?
            }
            O::Syncfs(_) => empty(out, fs.syncfs(ctx, node))?,
            // DAX windows and CUSE are not served.
            O::Setupmapping(_) | O::Removemapping(_) | O::CuseInit(_) | O::Unknown(_) => {
                return Err(io::Error::from_raw_os_error(libc::ENOSYS))
            }
        }))
    }

    /// FOPEN_* for a regular file's open: the filesystem's, plus NOFLUSH when its
    /// flush does nothing a closer waits for.
    fn file_open_flags(&self, opts: fuse_backend_rs::abi::fuse_abi::OpenOptions) -> u32 {
        let mut flags = host::fopen_flags(opts);
        if self.minor() >= 35 && !self.fs.needs_flush() {
            flags |= super::abi::fopen::NOFLUSH;
        }
        flags
    }

    fn read(
        &self,
        ctx: &Context,
        node: u64,
        unique: u64,
        r: &ReadIn,
        out: &mut [u8],
        sink: Option<&mut dyn RangeSink>,
    ) -> io::Result<usize> {
        let owner = (r.read_flags & flags::READ_LOCKOWNER != 0).then_some(r.lock_owner);
        let (head, body) = split_reply(out, r.size)?;
        if let Some(sink) = sink.filter(|s| r.size as usize <= s.capacity()) {
            // Any failure is left to the plain read below, which reports its own errno.
            if let Ok(n) = self
                .fs
                .read_to_sink(ctx, node, r.fh, r.offset, r.size, sink)
            {
                return enc(reply::header_for_payload(head, unique, n));
            }
        }
        let mut w = SliceWriter::new(body);
        let n = self.fs.read(
            ctx,
            node,
            r.fh,
            &mut w as &mut dyn ZeroCopyWriter,
            r.size,
            r.offset,
            owner,
            host::open_flags(r.flags),
        )?;
        let len = n.min(w.written());
        enc(reply::header_for_payload(head, unique, len)).map(|h| h + len)
    }

    fn readdir(
        &self,
        ctx: &Context,
        node: u64,
        unique: u64,
        r: &ReadIn,
        plus: bool,
        out: &mut [u8],
    ) -> io::Result<usize> {
        let (head, body) = split_reply(out, r.size)?;
        let mut used = 0;
        if plus {
            self.fs
                .readdirplus(ctx, node, r.fh, r.size, r.offset, &mut |d, e| {
                    let entry = host::entry_out(&e);
                    let room = &mut body[used..];
                    Ok(
                        reply::push_direntplus(room, &entry, d.ino, d.offset, d.type_, d.name)
                            .inspect(|&n| used += n)
                            .unwrap_or(0),
                    )
                })?;
        } else {
            self.fs
                .readdir(ctx, node, r.fh, r.size, r.offset, &mut |d| {
                    let room = &mut body[used..];
                    Ok(reply::push_dirent(room, d.ino, d.offset, d.type_, d.name)
                        .inspect(|&n| used += n)
                        .unwrap_or(0))
                })?;
        }
        enc(reply::header_for_payload(head, unique, used)).map(|h| h + used)
    }

    /// Negotiates the session: the filesystem's wishes, intersected with what the
    /// kernel offers, plus what the transport adds (passthrough, supplementary groups).
    fn init(&self, h: &InHeader, i: &InitIn, out: &mut [u8]) -> io::Result<usize> {
        if i.major < KERNEL_VERSION {
            log::error!("FUSE protocol {}.{} is too old", i.major, i.minor);
            return Err(io::Error::from_raw_os_error(libc::EPROTO));
        }
        if i.major == KERNEL_VERSION && i.minor < MIN_MINOR {
            log::error!(
                "FUSE protocol 7.{} is too old (7.{MIN_MINOR} at least)",
                i.minor
            );
            return Err(io::Error::from_raw_os_error(libc::EPROTO));
        }
        let answer = InitOut {
            major: KERNEL_VERSION,
            minor: KERNEL_MINOR_VERSION,
            ..Default::default()
        };
        if i.major > KERNEL_VERSION {
            // The kernel answers with a 7.x INIT.
            return enc(reply::init(out, h.unique, KERNEL_MINOR_VERSION, &answer));
        }
        let offered = if u64::from(i.flags) & init::INIT_EXT != 0 {
            init::join(i.flags, i.flags2)
        } else {
            u64::from(i.flags)
        };
        let want = host::linux_init_flags(self.fs.init(host::fs_options(offered))?);
        let mut grant = offered & want;
        if self.opts.forward_create_groups {
            grant |= offered & init::CREATE_SUPP_GROUP;
        }
        if self.opts.io_uring {
            grant |= offered & init::OVER_IO_URING;
            if offered & init::OVER_IO_URING == 0 {
                log::warn!("the kernel offers no FUSE over io_uring: serving /dev/fuse reads");
            }
        }
        let mut max_stack_depth = 0;
        if offered & init::PASSTHROUGH != 0 && self.passthrough_agreed(grant) {
            grant |= init::PASSTHROUGH;
            max_stack_depth = MAX_STACK_DEPTH;
        }
        if grant >> 32 != 0 {
            grant |= init::INIT_EXT;
        }
        let (flags, flags2) = init::split(grant);
        let answer = InitOut {
            max_readahead: i.max_readahead,
            flags,
            max_background: u16::MAX,
            congestion_threshold: u16::MAX / 4 * 3,
            max_write: MAX_WRITE,
            time_gran: 1,
            max_pages: MAX_PAGES,
            flags2,
            max_stack_depth,
            ..answer
        };
        let minor = i.minor.min(KERNEL_MINOR_VERSION);
        self.flags.store(grant, Ordering::Relaxed);
        self.minor.store(minor, Ordering::Relaxed);
        log::info!(
            "FUSE INIT: protocol 7.{} (kernel 7.{}), flags {grant:#x}",
            minor,
            i.minor
        );
        enc(reply::init(out, h.unique, i.minor, &answer))
    }

    /// Whether kernel passthrough can go on: a transport that registers backing files
    /// and agrees now, and no WRITEBACK_CACHE (the kernel refuses both together).
    fn passthrough_agreed(&self, grant: u64) -> bool {
        let Some(backing) = &self.opts.passthrough else {
            return false;
        };
        if grant & init::WRITEBACK_CACHE != 0 {
            log::info!("kernel passthrough off: the kernel refuses it with WRITEBACK_CACHE");
            return false;
        }
        backing.agree()
    }
}

/// A lookup that found nothing, cached by the client for `timeout` (node id 0).
fn negative_entry(timeout: Duration) -> super::abi::EntryOut {
    super::abi::EntryOut {
        entry_valid: timeout.as_secs(),
        entry_valid_nsec: timeout.subsec_nanos(),
        ..Default::default()
    }
}

fn open_out(fh: Option<u64>, mut open_flags: u32, backing: Option<u32>) -> OpenOut {
    if backing.is_some() {
        open_flags |= super::abi::fopen::PASSTHROUGH;
    }
    OpenOut {
        fh: fh.unwrap_or(0),
        open_flags,
        backing_id: backing.map_or(0, |id| i32::try_from(id).unwrap_or(0)),
    }
}

/// Splits `out` into the out-header and a body of at most `size` bytes.
fn split_reply(out: &mut [u8], size: u32) -> io::Result<(&mut [u8], &mut [u8])> {
    if out.len() < OutHeader::SIZE {
        return Err(io::Error::from_raw_os_error(libc::ENOMEM));
    }
    let (head, body) = out.split_at_mut(OutHeader::SIZE);
    let size = usize::try_from(size).unwrap_or(usize::MAX).min(body.len());
    Ok((head, &mut body[..size]))
}

/// An answer that does not fit the worker's buffer is the server's fault: ERANGE for
/// the caller (a value larger than any buffer the kernel accepts), logged here.
fn enc(r: Result<usize, EncodeError>) -> io::Result<usize> {
    r.map_err(|e| {
        log::error!("FUSE reply does not fit: {e}");
        io::Error::from_raw_os_error(libc::ERANGE)
    })
}

/// The prefix of `fuse_in_header` that names the request (len, opcode, unique).
const REQUEST_ID_END: usize = 16;

/// Answers a message that cannot be served with `errno`, if it names a request that
/// waits for an answer.
fn refuse(msg: &[u8], out: &mut [u8], errno: i32, why: &dyn std::fmt::Display) -> Answer {
    let (unique, opcode) = id(msg);
    log::error!("malformed FUSE message (opcode {opcode}, unique {unique}): {why}");
    let reply = if takes_answer(opcode) && msg.len() >= REQUEST_ID_END {
        reply::error(out, unique, errno).unwrap_or(0)
    } else {
        0
    };
    Answer {
        reply,
        handled: Handled::Malformed,
    }
}

/// (unique, opcode) of a message, zero where the header is cut short.
fn id(msg: &[u8]) -> (u64, u32) {
    let u32_at = |at: usize| {
        msg.get(at..at + 4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    (
        (u64::from(u32_at(12)) << 32) | u64::from(u32_at(8)),
        u32_at(4),
    )
}

/// Requests that move data or wait for the disk: others should not queue behind them
/// in a transport that serves requests one after another.
pub fn may_take_long(code: u32) -> bool {
    use opcode::*;
    matches!(
        code,
        READ | WRITE
            | FSYNC
            | FSYNCDIR
            | SYNCFS
            | READDIR
            | READDIRPLUS
            | FALLOCATE
            | COPY_FILE_RANGE
            | COPY_FILE_RANGE_64
            | LSEEK
            | IOCTL
            | POLL
            | GETLK
            | SETLK
            | SETLKW
            | SETUPMAPPING
            | REMOVEMAPPING
    )
}

/// Requests whose outcome depends on the caller's supplementary groups: a transport
/// that must look the groups up (the fuse-pipe client reads `/proc`) does it for these.
pub fn checks_caller_groups(code: u32) -> bool {
    use opcode::*;
    matches!(
        code,
        LOOKUP
            | SETATTR
            | SYMLINK
            | MKNOD
            | MKDIR
            | UNLINK
            | RMDIR
            | RENAME
            | RENAME2
            | LINK
            | OPEN
            | CREATE
            | TMPFILE
            | WRITE
            | FALLOCATE
            | COPY_FILE_RANGE
            | COPY_FILE_RANGE_64
            | SETXATTR
            | GETXATTR
            | LISTXATTR
            | REMOVEXATTR
            | OPENDIR
            | READDIRPLUS
            | ACCESS
    )
}

/// FORGET, BATCH_FORGET, INTERRUPT and NOTIFY_REPLY are never answered.
pub fn takes_answer(code: u32) -> bool {
    !matches!(
        code,
        opcode::FORGET | opcode::BATCH_FORGET | opcode::INTERRUPT | opcode::NOTIFY_REPLY
    )
}
