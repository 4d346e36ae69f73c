//! Local `/dev/fuse` transport: mounting, one reader thread per cloned device fd,
//! kernel passthrough negotiation, and clean shutdown. It serves any `FileSystem`; it
//! knows nothing of the passthrough filesystem.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::backing::BackingFiles;
use crate::extension::FileSystemExt;
use crate::notify::Invalidator;
use crate::platform;
use crate::protocol::abi::init;
use crate::protocol::dispatch::{Session, SessionOptions, BUFFER_SIZE};
use crate::protocol::reply;

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
    /// One ring per CPU queue, offered at INIT (FUSE over io_uring) when not empty.
    rings: Vec<platform::FuseRing>,
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
            rings: Vec::new(),
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
            rings: Vec::new(),
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

    /// Offers FUSE over io_uring at INIT: sets up one ring per CPU queue now (before
    /// the sandbox, which forbids io_uring_setup). Requests then arrive on the rings;
    /// FORGET, INTERRUPT and notifications stay on the device. Call before `serve`.
    pub fn offer_io_uring(&mut self) -> io::Result<()> {
        let queues = platform::fuse_uring_queues()?;
        self.rings = (0..queues)
            .map(|qid| {
                let qid = u16::try_from(qid).map_err(|_| io::Error::other("too many CPUs"))?;
                platform::FuseRing::new(self.device.as_fd(), qid, RING_DEPTH, MAX_PAYLOAD)
            })
            .collect::<io::Result<_>>()
            .map_err(|e| context(e, "setting up FUSE io_uring queues"))?;
        Ok(())
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
    pub fn serve<F>(&mut self, fs: F, channels: Vec<OwnedFd>) -> io::Result<Workers>
    where
        F: FileSystemExt + Send + Sync + 'static,
    {
        let rings = std::mem::take(&mut self.rings);
        let opts = SessionOptions {
            passthrough: self.passthrough.clone().map(|b| b as Arc<dyn BackingFiles>),
            forward_create_groups: false,
            io_uring: !rings.is_empty(),
        };
        let session = Arc::new(Session::new(fs, opts));
        let init = Arc::new(InitDone::default());
        for ring in rings {
            let (session, init) = (session.clone(), init.clone());
            std::thread::Builder::new()
                .name("ownfs-uring".into())
                .spawn(move || ring_loop(ring, &session, &init))?;
        }
        let alive = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for (i, fd) in channels.into_iter().enumerate() {
            let session = session.clone();
            let init = init.clone();
            let alive = alive.clone();
            alive.fetch_add(1, Ordering::SeqCst);
            let h = std::thread::Builder::new()
                .name(format!("ownfs-fuse-{i}"))
                .spawn(move || {
                    worker_loop(&fd, &session, &init);
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
    pub fn serve_until_done<F>(&mut self, fs: F, channels: Vec<OwnedFd>) -> io::Result<()>
    where
        F: FileSystemExt + Send + Sync + 'static,
    {
        let workers = self.serve(fs, channels).inspect_err(|_| {
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
    /// Runs `work` on `n` threads named `name-I`; all stopped once every call returned.
    pub fn spawn(
        n: usize,
        name: &str,
        work: impl Fn() + Send + Sync + 'static,
    ) -> io::Result<Workers> {
        let work = Arc::new(work);
        let alive = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for i in 0..n.max(1) {
            let (work, alive) = (work.clone(), alive.clone());
            alive.fetch_add(1, Ordering::SeqCst);
            let stopped = alive.clone();
            let h = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    work();
                    alive.fetch_sub(1, Ordering::SeqCst);
                });
            match h {
                Ok(h) => handles.push(h),
                Err(e) => {
                    stopped.fetch_sub(1, Ordering::SeqCst);
                    return Err(e);
                }
            }
        }
        Ok(Workers { alive, handles })
    }

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

    fn agree(&self) -> bool {
        if !platform::thread_has_cap_sys_admin() {
            log::info!("kernel passthrough off: registering backing files needs CAP_SYS_ADMIN");
            return false;
        }
        self.enabled.store(true, Ordering::Relaxed);
        log::info!("kernel passthrough on: reads and writes bypass the server");
        true
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
        // A negative offset: attributes only, no pages.
        let mut msg = [0u8; 64];
        let Ok(len) = reply::notify_inval_inode(&mut msg, inode, -1, 0) else {
            return;
        };
        match platform::write_fd(self.device.as_fd(), &msg[..len]) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => log::debug!("invalidating the attributes of node {inode}: {e}"),
        }
    }
}

/// Largest request payload a ring entry holds: a 1 MiB write.
const MAX_PAYLOAD: usize = 1 << 20;
/// Requests each CPU queue's ring holds at once.
const RING_DEPTH: usize = 8;

/// Set once INIT was answered: whether the rings may register now.
#[derive(Default)]
struct InitDone {
    granted: std::sync::Mutex<Option<bool>>,
    changed: std::sync::Condvar,
}

impl InitDone {
    fn set(&self, granted: bool) {
        let mut g = self.granted.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            *g = Some(granted);
            self.changed.notify_all();
        }
    }

    fn wait(&self) -> bool {
        let mut g = self.granted.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(granted) = *g {
                return granted;
            }
            g = self.changed.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Serves one CPU queue's ring once INIT granted FUSE over io_uring.
fn ring_loop<F: FileSystemExt + Sync>(
    mut ring: platform::FuseRing,
    session: &Session<F>,
    init: &InitDone,
) {
    if let Err(e) = ring.pin_to_queue_cpu() {
        log::debug!("FUSE io_uring queue thread stays unpinned: {e}");
    }
    if !init.wait() {
        return;
    }
    let mut out = vec![0u8; BUFFER_SIZE];
    let served = (|| -> io::Result<()> {
        ring.register()?;
        loop {
            let idx = ring.next_request()?;
            let msg = ring.request(idx)?;
            let mut answer = session.handle(msg, &mut out);
            if answer.reply == 0 {
                // Nothing to say, yet the entry must go back to the kernel.
                let unique = u64::from_le_bytes(msg[8..16].try_into().unwrap_or_default());
                answer.reply = reply::error(&mut out, unique, libc::EIO).unwrap_or(0);
            }
            ring.commit(idx, &out[..answer.reply])?;
        }
    })();
    if let Err(e) = served {
        log::debug!("FUSE io_uring queue stopped: {e}");
    }
}

fn worker_loop<F: FileSystemExt + Sync>(fd: &OwnedFd, session: &Session<F>, init_done: &InitDone) {
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
        let answer = session.handle(&mut rbuf[..n], &mut wbuf);
        if answer.reply > 0 {
            // A request the kernel no longer waits for is refused with ENOENT, which
            // changes nothing.
            if let Err(e) = platform::write_fd(fd.as_fd(), &wbuf[..answer.reply]) {
                log::debug!("answering a FUSE request: {e}");
            }
        }
        if session.minor() > 0 {
            // INIT is answered: the rings may register (each only the first time).
            init_done.set(session.granted(init::OVER_IO_URING));
        }
    }
}
