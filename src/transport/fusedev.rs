//! Local `/dev/fuse` transport: mounting, one reader thread per cloned device fd,
//! kernel passthrough negotiation, and clean shutdown. It serves any `FileSystem`; it
//! knows nothing of the passthrough filesystem.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use fuse_backend_rs::api::filesystem::FileSystem;
use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::transport::{FuseBuf, FuseDevWriter, Reader};

use crate::backing::BackingFiles;
use crate::notify::Invalidator;
use crate::platform;

/// Room for a 1 MiB write plus its headers (MAX_PAGES with 4 KiB pages).
const BUFFER_SIZE: usize = 256 * 4096 + 4096;

#[derive(Clone, Debug)]
pub struct MountOptions {
    /// Shown as the mount source (`fsname`).
    pub source: PathBuf,
    pub mountpoint: PathBuf,
    /// Let the client kernel check permissions against the reported attributes.
    pub default_permissions: bool,
    pub allow_other: bool,
    /// Allow set-id execution and device nodes on the mount. Off by default: a share
    /// should not become a way to gain privileges or reach host devices.
    pub suid: bool,
    pub dev: bool,
    pub read_only: bool,
    pub noexec: bool,
    pub noatime: bool,
    /// uid:gid recorded as the mount's owner (`user_id`/`group_id`): the identity the
    /// server will run as, so it may unmount through fusermount3. Default: the mounter.
    pub owner: Option<(u32, u32)>,
}

impl MountOptions {
    /// A mount of `source` on `mountpoint` with the safe defaults: the client kernel
    /// checks permissions, every user may enter, no set-id or device access.
    pub fn new(source: PathBuf, mountpoint: PathBuf) -> Self {
        MountOptions {
            source,
            mountpoint,
            default_permissions: true,
            allow_other: true,
            suid: false,
            dev: false,
            read_only: false,
            noexec: false,
            noatime: false,
            owner: None,
        }
    }
}

/// A mounted FUSE connection.
pub struct FuseMount {
    device: OwnedFd,
    mountpoint: CString,
    path: PathBuf,
    /// Set before privileges are dropped: unmounts on our behalf.
    helper: Option<platform::UnmountHelper>,
    /// Kernel passthrough offered at INIT when set.
    passthrough: Option<Arc<DeviceBacking>>,
}

fn context(e: io::Error, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl FuseMount {
    pub fn mount(opts: &MountOptions) -> io::Result<Self> {
        let mp = &opts.mountpoint;
        let meta = std::fs::metadata(mp)
            .map_err(|e| context(e, format!("mountpoint {}", mp.display())))?;
        if !meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("mountpoint {} is not a directory", mp.display()),
            ));
        }
        let mountpoint = crate::fs::path_cstr(mp)?;
        if platform::is_mount_root(&mountpoint)? {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "mountpoint {} is busy: something is already mounted there",
                    mp.display()
                ),
            ));
        }
        if platform::geteuid() != 0 {
            return Self::mount_unprivileged(opts, mountpoint);
        }
        let device = platform::open_fuse_device().map_err(|e| context(e, "open /dev/fuse"))?;
        let (uid, gid) = opts
            .owner
            .unwrap_or((platform::geteuid(), platform::getegid()));
        let mut data = format!(
            "fd={},rootmode=40000,user_id={uid},group_id={gid}",
            platform::raw(device.as_fd()),
        );
        if opts.default_permissions {
            data.push_str(",default_permissions");
        }
        if opts.allow_other {
            data.push_str(",allow_other");
        }
        let mut flags: libc::c_ulong = 0;
        if !opts.suid {
            flags |= libc::MS_NOSUID;
        }
        if !opts.dev {
            flags |= libc::MS_NODEV;
        }
        if opts.read_only {
            flags |= libc::MS_RDONLY;
        }
        if opts.noexec {
            flags |= libc::MS_NOEXEC;
        }
        if opts.noatime {
            flags |= libc::MS_NOATIME;
        }
        let source = crate::fs::path_cstr(&opts.source)?;
        let data = CString::new(data).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        platform::mount(&source, &mountpoint, c"fuse.ownfs", flags, &data)
            .map_err(|e| context(e, format!("mount on {}", mp.display())))?;
        log::info!("mounted {} on {}", opts.source.display(), mp.display());
        Ok(FuseMount {
            device,
            mountpoint,
            path: mp.clone(),
            helper: None,
            passthrough: None,
        })
    }

    /// Without root, the setuid helper fusermount3 mounts and passes the device fd
    /// back over a socket named in `_FUSE_COMMFD` (libfuse's protocol).
    fn mount_unprivileged(opts: &MountOptions, mountpoint: CString) -> io::Result<Self> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        platform::set_inheritable(theirs.as_fd())?;
        let mut o = format!(
            "fsname={},subtype=ownfs",
            opts.source.display().to_string().replace(',', "\\,")
        );
        for (on, name) in [
            (opts.default_permissions, "default_permissions"),
            (opts.allow_other, "allow_other"),
            (opts.read_only, "ro"),
            (opts.noexec, "noexec"),
            (opts.noatime, "noatime"),
        ] {
            if on {
                o.push(',');
                o.push_str(name);
            }
        }
        let status = std::process::Command::new("fusermount3")
            .arg("-o")
            .arg(&o)
            .arg("--")
            .arg(&opts.mountpoint)
            .env("_FUSE_COMMFD", platform::raw(theirs.as_fd()).to_string())
            .status()
            .map_err(|e| context(e, "running fusermount3"))?;
        drop(theirs);
        if !status.success() {
            return Err(io::Error::other(format!(
                "fusermount3 could not mount {} ({status})",
                opts.mountpoint.display()
            )));
        }
        let device = platform::recv_fd(ours.as_fd()).map_err(|e| context(e, "fusermount3"))?;
        log::info!(
            "mounted {} on {} through fusermount3",
            opts.source.display(),
            opts.mountpoint.display()
        );
        Ok(FuseMount {
            device,
            mountpoint,
            path: opts.mountpoint.clone(),
            helper: None,
            passthrough: None,
        })
    }

    /// Offers kernel passthrough at INIT. The returned registry stays disabled unless the
    /// kernel supports it, the filesystem did not take WRITEBACK_CACHE (the kernel refuses
    /// both together) and the serving thread holds CAP_SYS_ADMIN (the kernel's condition
    /// for registering backing files). Call before `serve`.
    pub fn offer_passthrough(&mut self) -> io::Result<Arc<dyn BackingFiles>> {
        let backing = Arc::new(DeviceBacking {
            device: self.device.try_clone()?,
            enabled: AtomicBool::new(false),
        });
        self.passthrough = Some(backing.clone());
        Ok(backing)
    }

    /// Invalidations written to this connection's /dev/fuse descriptor.
    pub fn invalidator(&self) -> io::Result<Arc<dyn Invalidator>> {
        Ok(Arc::new(DeviceInvalidator {
            device: self.device.try_clone()?,
        }))
    }

    pub fn mountpoint(&self) -> &Path {
        &self.path
    }

    /// Keeps a helper that can unmount after this process drops its privileges or
    /// enters seccomp: a root one, or one that runs fusermount3 for an unprivileged
    /// mount. Call while single-threaded.
    pub fn keep_unmount_helper(&mut self) -> io::Result<()> {
        self.helper = Some(if platform::geteuid() == 0 {
            platform::spawn_unmount_helper(&self.mountpoint)?
        } else {
            platform::spawn_fusermount_unmount_helper(&self.mountpoint)?
        });
        Ok(())
    }

    /// Unmounts; falls back to a lazy unmount while files are still open.
    pub fn unmount(&mut self) -> io::Result<()> {
        if let Some(helper) = self.helper.take() {
            return helper.unmount();
        }
        if platform::geteuid() != 0 {
            // Privileges were dropped after mounting: the setuid helper unmounts for us.
            let status = std::process::Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(&self.path)
                .status()?;
            return if status.success() {
                Ok(())
            } else {
                Err(io::Error::other(format!(
                    "fusermount3 -u exited with {status}"
                )))
            };
        }
        match platform::umount(&self.mountpoint, false) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                log::warn!("{} is busy; detaching it", self.path.display());
                platform::umount(&self.mountpoint, true)
            }
            // Already gone (unmounted from outside).
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Serves until a termination signal (then unmounts) or an unmount from outside.
    /// Termination signals must be blocked in every thread beforehand.
    pub fn run_until_done(&mut self, workers: Workers) -> io::Result<()> {
        loop {
            if let Some(sig) = platform::wait_termination_signal(200) {
                log::info!("signal {sig}: unmounting {}", self.path.display());
                self.unmount()
                    .map_err(|e| context(e, format!("unmount {}", self.path.display())))?;
                break;
            }
            if workers.all_stopped() {
                log::info!("{} was unmounted", self.path.display());
                break;
            }
        }
        // Workers see the connection end once the mount is gone; don't wait on stuck ones.
        for _ in 0..25 {
            if workers.all_stopped() {
                workers.join();
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(40));
        }
        Ok(())
    }

    /// One device fd per worker thread (FUSE_DEV_IOC_CLONE). Done before privileges
    /// are dropped, since opening /dev/fuse may need them.
    pub fn channels(&self, threads: usize) -> io::Result<Vec<OwnedFd>> {
        (0..threads.max(1))
            .map(|i| {
                if i == 0 {
                    self.device.try_clone()
                } else {
                    platform::clone_fuse_device(self.device.as_fd())
                        .map_err(|e| context(e, "FUSE_DEV_IOC_CLONE"))
                }
            })
            .collect()
    }

    /// Starts one worker per channel.
    pub fn serve<F>(&self, server: Arc<Server<F>>, channels: Vec<OwnedFd>) -> io::Result<Workers>
    where
        F: FileSystem + Send + Sync + 'static,
    {
        let alive = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for (i, fd) in channels.into_iter().enumerate() {
            let server = server.clone();
            let alive = alive.clone();
            let passthrough = self.passthrough.clone();
            alive.fetch_add(1, Ordering::SeqCst);
            let h = std::thread::Builder::new()
                .name(format!("ownfs-fuse-{i}"))
                .spawn(move || {
                    worker_loop(&fd, &server, passthrough.as_deref());
                    alive.fetch_sub(1, Ordering::SeqCst);
                })?;
            handles.push(h);
        }
        Ok(Workers { alive, handles })
    }
}

impl FuseMount {
    /// Starts one worker per channel and serves until the mount goes away or a
    /// termination signal comes; unmounts if the workers cannot start.
    pub fn serve_until_done<F>(
        &mut self,
        server: Arc<Server<F>>,
        channels: Vec<OwnedFd>,
    ) -> io::Result<()>
    where
        F: FileSystem + Send + Sync + 'static,
    {
        let workers = self.serve(server, channels).inspect_err(|_| {
            let _ = self.unmount();
        });
        self.run_until_done(workers.map_err(|e| context(e, "starting workers"))?)
    }
}

pub struct Workers {
    alive: Arc<AtomicUsize>,
    handles: Vec<JoinHandle<()>>,
}

impl Workers {
    /// True once every worker saw the connection end (unmounted from outside).
    pub fn all_stopped(&self) -> bool {
        self.alive.load(Ordering::SeqCst) == 0
    }

    pub fn join(self) {
        for h in self.handles {
            let _ = h.join();
        }
    }
}

/// Backing files registered through the connection's /dev/fuse descriptor.
#[derive(Debug)]
pub struct DeviceBacking {
    device: OwnedFd,
    enabled: AtomicBool,
}

impl BackingFiles for DeviceBacking {
    fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    fn open(&self, file: std::os::fd::BorrowedFd<'_>) -> io::Result<u32> {
        platform::fuse_backing_open(self.device.as_fd(), file)
    }

    fn close(&self, id: u32) -> io::Result<()> {
        platform::fuse_backing_close(self.device.as_fd(), id)
    }
}

/// Notifications written to the connection's /dev/fuse descriptor.
#[derive(Debug)]
pub struct DeviceInvalidator {
    device: OwnedFd,
}

impl Invalidator for DeviceInvalidator {
    fn attributes(&self, inode: u64) {
        // fuse_out_header with unique 0 and the notify code as error, then
        // fuse_notify_inval_inode_out with a negative offset: attributes only, no pages.
        let mut msg = [0u8; NOTIFY_INVAL_INODE_LEN];
        msg[..4].copy_from_slice(&(NOTIFY_INVAL_INODE_LEN as u32).to_le_bytes());
        msg[4..8].copy_from_slice(&FUSE_NOTIFY_INVAL_INODE.to_le_bytes());
        msg[16..24].copy_from_slice(&inode.to_le_bytes());
        msg[24..32].copy_from_slice(&(-1i64).to_le_bytes());
        match platform::with_file(self.device.as_fd(), |f| std::io::Write::write(f, &msg)) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => log::debug!("invalidating the attributes of node {inode}: {e}"),
        }
    }
}

// The parts of the FUSE ABI (include/uapi/linux/fuse.h) that fuse-backend-rs 0.14
// (protocol 7.33) does not know: INIT's second flags word and max_stack_depth (7.40).
const FUSE_INIT: u32 = 26;
const FUSE_NOTIFY_INVAL_INODE: i32 = 2;
const NOTIFY_INVAL_INODE_LEN: usize = 40;
const IN_HEADER_LEN: usize = 40;
const OUT_HEADER_LEN: usize = 16;
const INIT_EXT: u32 = 1 << 30;
const WRITEBACK_CACHE: u32 = 1 << 16;
/// FUSE_PASSTHROUGH is bit 37: bit 5 of flags2.
const PASSTHROUGH_FLAGS2: u32 = 1 << 5;
/// fuse_init_out field offsets.
const INIT_OUT_FLAGS: usize = 12;
const INIT_OUT_FLAGS2: usize = 32;
const INIT_OUT_MAX_STACK_DEPTH: usize = 36;
/// Backing files must sit on a non-stacked filesystem; an overlayfs may still stack on us.
const MAX_STACK_DEPTH: u32 = 1;

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at + 4)?;
    Some(u32::from_ne_bytes(bytes.try_into().ok()?))
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

/// True if `req` is an INIT in which the kernel offers FUSE_PASSTHROUGH.
fn init_offers_passthrough(req: &[u8]) -> bool {
    if u32_at(req, 4) != Some(FUSE_INIT) {
        return false;
    }
    let flags = u32_at(req, IN_HEADER_LEN + 12).unwrap_or(0);
    let flags2 = u32_at(req, IN_HEADER_LEN + 16).unwrap_or(0);
    flags & INIT_EXT != 0 && flags2 & PASSTHROUGH_FLAGS2 != 0
}

/// Lets the server answer INIT into a socket, adds FUSE_PASSTHROUGH to its reply when
/// the kernel may grant it, and sends the reply to the kernel.
fn answer_init_with_passthrough<F: FileSystem + Sync>(
    fd: &OwnedFd,
    server: &Server<F>,
    reader: Reader<'_, ()>,
    wbuf: &mut [u8],
    backing: &DeviceBacking,
) -> io::Result<()> {
    use std::io::{Read, Write};
    let (capture, mut captured) = std::os::unix::net::UnixStream::pair()?;
    let writer = FuseDevWriter::<()>::new(capture.as_raw_fd(), wbuf)
        .map_err(|e| io::Error::other(format!("INIT reply buffer: {e:?}")))?;
    server
        .handle_message(reader, writer.into(), None, None)
        .map_err(|e| io::Error::other(format!("handling INIT: {e:?}")))?;
    drop(capture);
    let mut reply = Vec::new();
    captured.read_to_end(&mut reply)?;
    let body = OUT_HEADER_LEN;
    let error = u32_at(&reply, 4).unwrap_or(u32::MAX);
    let flags = u32_at(&reply, body + INIT_OUT_FLAGS);
    let room = reply.len() >= body + INIT_OUT_MAX_STACK_DEPTH + 4;
    match flags {
        Some(flags) if error == 0 && room && flags & WRITEBACK_CACHE == 0 => {
            if platform::thread_has_cap_sys_admin() {
                put_u32(&mut reply, body + INIT_OUT_FLAGS, flags | INIT_EXT);
                let flags2 = u32_at(&reply, body + INIT_OUT_FLAGS2).unwrap_or(0);
                put_u32(
                    &mut reply,
                    body + INIT_OUT_FLAGS2,
                    flags2 | PASSTHROUGH_FLAGS2,
                );
                put_u32(&mut reply, body + INIT_OUT_MAX_STACK_DEPTH, MAX_STACK_DEPTH);
                backing.enabled.store(true, Ordering::Relaxed);
                log::info!("kernel passthrough on: reads and writes bypass the server");
            } else {
                log::info!("kernel passthrough off: registering backing files needs CAP_SYS_ADMIN");
            }
        }
        Some(flags) if flags & WRITEBACK_CACHE != 0 => {
            log::info!("kernel passthrough off: the kernel refuses it with WRITEBACK_CACHE");
        }
        _ => {}
    }
    let n = platform::with_file(fd.as_fd(), |f| f.write(&reply))?;
    if n != reply.len() {
        return Err(io::Error::other("short INIT reply write"));
    }
    Ok(())
}

fn worker_loop<F: FileSystem + Sync>(
    fd: &OwnedFd,
    server: &Server<F>,
    passthrough: Option<&DeviceBacking>,
) {
    let mut rbuf = vec![0u8; BUFFER_SIZE];
    let mut wbuf = vec![0u8; BUFFER_SIZE];
    loop {
        let n = match platform::read_fd(fd.as_fd(), &mut rbuf) {
            Ok(n) => n,
            Err(e) => match e.raw_os_error() {
                // Interrupted requests and signals: just read the next one.
                Some(libc::ENOENT) | Some(libc::EINTR) | Some(libc::EAGAIN) => continue,
                Some(libc::ENODEV) => {
                    log::debug!("FUSE connection closed");
                    return;
                }
                _ => {
                    log::error!("reading /dev/fuse: {e}");
                    return;
                }
            },
        };
        if let Some(backing) = passthrough.filter(|_| init_offers_passthrough(&rbuf[..n])) {
            match Reader::<()>::from_fuse_buffer(FuseBuf::new(&mut rbuf[..n])) {
                Ok(reader) => {
                    if let Err(e) =
                        answer_init_with_passthrough(fd, server, reader, &mut wbuf, backing)
                    {
                        log::error!("answering FUSE INIT: {e}");
                    }
                }
                Err(e) => log::error!("bad FUSE INIT buffer: {e:?}"),
            }
            continue;
        }
        serve_message(server, &mut rbuf[..n], fd.as_fd(), &mut wbuf);
    }
}

/// What became of one FUSE message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Answered by the server (or a message that takes no answer).
    Served,
    /// Malformed: answered with EINVAL when it takes an answer and names its request.
    Malformed,
    /// The server panicked on it: answered with EIO.
    Panicked,
}

/// The prefix of `fuse_in_header` that names the request.
const REQUEST_ID_END: usize = 16;

/// Messages the kernel sends without waiting for an answer.
fn takes_no_answer(opcode: u32) -> bool {
    use fuse_backend_rs::abi::fuse_abi::Opcode;
    [Opcode::Forget, Opcode::BatchForget, Opcode::Interrupt]
        .iter()
        .any(|&op| op as u32 == opcode)
}

/// Whether fuse-backend-rs left a failed message unanswered. It answers a name without
/// its NUL (EINVAL) before failing, except where it splits two names (symlink, rename);
/// `EncodeMessage` means the answer itself could not be written.
fn left_unanswered(e: &fuse_backend_rs::Error, opcode: u32) -> bool {
    use fuse_backend_rs::abi::fuse_abi::Opcode;
    use fuse_backend_rs::Error;
    match e {
        Error::EncodeMessage(_) => false,
        Error::InvalidCString(_) => [Opcode::Symlink, Opcode::Rename, Opcode::Rename2]
            .iter()
            .any(|&op| op as u32 == opcode),
        _ => true,
    }
}

/// Answers request `unique` with `errno` alone.
fn answer_errno(reply: BorrowedFd<'_>, unique: u64, errno: i32) {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&16u32.to_le_bytes());
    out[4..8].copy_from_slice(&(-errno).to_le_bytes());
    out[8..].copy_from_slice(&unique.to_le_bytes());
    // A request the kernel no longer waits for (or already answered) is refused
    // with ENOENT, which changes nothing.
    if let Err(e) = platform::with_file(reply, |f| std::io::Write::write(f, &out)) {
        log::debug!("answering request {unique} with errno {errno}: {e}");
    }
}

/// Runs one message exactly as read from the device (`msg` is the whole read) and
/// writes its answer to `reply`. Nothing a message contains can take the server
/// down: a message whose length field disagrees with its size, or that fuse-backend-rs
/// cannot decode, gets EINVAL; a panic while serving it gets EIO.
pub fn serve_message<F: FileSystem + Sync>(
    server: &Server<F>,
    msg: &mut [u8],
    reply: BorrowedFd<'_>,
    wbuf: &mut [u8],
) -> Handled {
    let Some(head) = msg.get(..REQUEST_ID_END) else {
        log::error!("FUSE message of {} bytes has no header", msg.len());
        return Handled::Malformed;
    };
    let field =
        |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    let (len, opcode) = (field(0), field(4));
    let unique = (u64::from(field(12)) << 32) | u64::from(field(8));
    let malformed = |why: &dyn std::fmt::Display| {
        log::error!("malformed FUSE message (opcode {opcode}, unique {unique}): {why}");
        if !takes_no_answer(opcode) {
            answer_errno(reply, unique, libc::EINVAL);
        }
        Handled::Malformed
    };
    if len as usize != msg.len() || msg.len() < IN_HEADER_LEN {
        let why = format!("length field {len}, {} bytes read", msg.len());
        return malformed(&why);
    }
    let reader = match Reader::<()>::from_fuse_buffer(FuseBuf::new(msg)) {
        Ok(r) => r,
        Err(e) => return malformed(&e),
    };
    let writer = match FuseDevWriter::<()>::new(reply.as_raw_fd(), wbuf) {
        Ok(w) => w,
        Err(e) => {
            log::error!("FUSE reply buffer: {e:?}");
            answer_errno(reply, unique, libc::EIO);
            return Handled::Served;
        }
    };
    let run = || server.handle_message(reader, writer.into(), None, None);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(Ok(_)) => Handled::Served,
        Ok(Err(e)) if left_unanswered(&e, opcode) => malformed(&e),
        Ok(Err(e)) => {
            // Usually a reply to a request the caller already abandoned (ENOENT).
            log::debug!("handling FUSE request: {e:?}");
            Handled::Served
        }
        Err(_) => {
            log::error!("FUSE request {unique} (opcode {opcode}) panicked; answering EIO");
            if !takes_no_answer(opcode) {
                answer_errno(reply, unique, libc::EIO);
            }
            Handled::Panicked
        }
    }
}
