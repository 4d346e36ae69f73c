//! The passthrough filesystem: every FUSE operation mapped onto the host directory,
//! with the caller's credentials, without ever resolving a client path on the host.

mod casefold;
mod handles;
mod inode_store;
mod kernel_io;
pub mod overlay;
pub mod override_stat;
pub mod record;
pub mod symlink_store;

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fuse_backend_rs::abi::fuse_abi::{CreateIn, FsOptions, OpenOptions, SetattrValid};
use fuse_backend_rs::api::filesystem::{
    Context, DirEntry, Entry, FileSystem, GetxattrReply, ListxattrReply, ZeroCopyReader,
    ZeroCopyWriter,
};

use crate::backing::BackingFiles;
use crate::creds::{CallerGuard, CredentialPolicy};
use crate::extension::{FileSystemExt, Opened, RangeEnd, RangeSink, StatxReply};
use crate::platform::{self, mode, stat64, statvfs64, TimeSpec};
use handles::HandleTable;
use inode_store::{CacheConfig, Found};
pub use inode_store::{FileHandles, InodeData, InodeStore, ROOT_ID};
use kernel_io::KernelIo;
use overlay::{Overlay, Rootless, SymlinkStore, Virtual};
use record::Kind;

/// How long the client kernel may cache attributes and names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CachePolicy {
    /// No caching: every stat and read reaches the server.
    Never,
    /// One-second attribute and entry timeouts.
    Auto,
    /// Long timeouts and kept page cache: only for shares nobody else changes.
    Always,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub root: PathBuf,
    pub cache: CachePolicy,
    /// Offer WRITEBACK_CACHE when the kernel supports it.
    pub writeback: bool,
    pub creds: CredentialPolicy,
    /// Ownership virtualization; `None` when the server applies owners on the host.
    pub rootless: Option<Rootless>,
    /// Offer FUSE_POSIX_ACL: the client kernel then enforces ACLs and refreshes the mode
    /// an ACL change implies. The kernel turns default_permissions on with it, so only
    /// set it on mounts that have default_permissions anyway.
    pub posix_acl: bool,
    /// Entry timeouts of zero, whatever `cache` says: with --no-default-permissions the
    /// host decides every access as the caller, and a cached dentry would let a walk
    /// skip the host's search-permission check.
    pub uncached_metadata: bool,
    /// Refuse every operation that would change the share with EROFS.
    pub read_only: bool,
    /// Lets the client kernel do reads and writes of open files itself, when the
    /// transport can (kernel passthrough). Only for servers that own host ownership:
    /// a rootless overlay must see the writes that clear set-id bits.
    pub backing: Option<Arc<dyn BackingFiles>>,
    /// How inodes evicted from the fd cache are named again.
    pub file_handles: FileHandles,
    /// Most inode fds held at once: `Some(0)` keeps every one (no eviction); `None`
    /// takes half the fd limit.
    pub max_open_fds: Option<usize>,
}

pub struct Passthrough {
    inodes: InodeStore,
    overlay: Option<Overlay>,
    handles: HandleTable,
    cfg: Config,
    attr_timeout: Duration,
    entry_timeout: Duration,
    writeback: AtomicBool,
    kernel_io: Option<KernelIo>,
}

/// Largest extended attribute value Linux stores (`XATTR_SIZE_MAX`).
const XATTR_SIZE_MAX: usize = 65536;

fn err(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

/// A client-supplied name must be exactly one path component.
fn check_name(name: &CStr) -> io::Result<()> {
    let bytes = name.to_bytes();
    if bytes.is_empty() || bytes.contains(&b'/') {
        return Err(err(libc::EINVAL));
    }
    if bytes.len() > 255 {
        return Err(err(libc::ENAMETOOLONG));
    }
    Ok(())
}

/// A name that creates or removes an entry: `.` and `..` are never valid there.
fn check_new_name(name: &CStr) -> io::Result<()> {
    check_name(name)?;
    match name.to_bytes() {
        b"." | b".." => Err(err(libc::EINVAL)),
        _ => Ok(()),
    }
}

/// Linux's RENAME_* flags, as clients send them whatever the host.
const LINUX_RENAME_NOREPLACE: u32 = 1;
const LINUX_RENAME_EXCHANGE: u32 = 1 << 1;

/// Renames `from` to `to`, another spelling of the same entry, in a folding directory.
/// The host treats that as a rename onto itself and does nothing, so the entry goes
/// through a temporary name, and is put back if the second step fails.
fn change_case(dir: &InodeData, from: &CStr, to: &CStr) -> io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = CString::new(format!(".ownfs-case.{}.{n}", std::process::id()))
        .map_err(|_| err(libc::EINVAL))?;
    let fd = dir.fd()?;
    let fd = fd.as_fd();
    platform::renameat2(fd, from, fd, &tmp, LINUX_RENAME_NOREPLACE)?;
    platform::renameat2(fd, &tmp, fd, to, LINUX_RENAME_NOREPLACE).inspect_err(|_| {
        if let Err(e) = platform::renameat2(fd, &tmp, fd, from, 0) {
            log::error!("inode {}: case change left {tmp:?}: {e}", dir.id);
        }
    })
}

/// Only regular host files are ever opened for I/O. A device node would reach a host
/// device, a FIFO would block a worker, a socket has nothing to read: kernel clients open
/// those themselves and never send OPEN for them, so only a hostile client gets EBADF.
fn openable(file_type: u32) -> io::Result<()> {
    match file_type {
        mode::S_IFREG => Ok(()),
        mode::S_IFDIR => Err(err(libc::EISDIR)),
        mode::S_IFLNK => Err(err(libc::ELOOP)),
        other => {
            log::warn!("refused to open a host special file (type {other:o})");
            Err(err(libc::EBADF))
        }
    }
}

impl Passthrough {
    pub fn new(cfg: Config) -> io::Result<Self> {
        let path = path_cstr(&cfg.root)?;
        let fd = platform::open_path(&path, platform::O_PATH | libc::O_DIRECTORY)?;
        let (st, key) = platform::statx_identity(std::os::fd::AsFd::as_fd(&fd))?;
        let attr_timeout = match cfg.cache {
            CachePolicy::Never => Duration::ZERO,
            CachePolicy::Auto => Duration::from_secs(1),
            CachePolicy::Always => Duration::from_secs(86400),
        };
        // Each walk then reaches the host, which checks search permission as the caller;
        // attributes may stay cached, as no access decision rests on them.
        let entry_timeout = if cfg.uncached_metadata {
            Duration::ZERO
        } else {
            attr_timeout
        };
        let max_open = match cfg.max_open_fds {
            Some(0) => None,
            Some(n) => Some(n),
            // The other half stays for open files, directories and the transport.
            None => Some((platform::nofile_limit()? / 2).clamp(64, usize::MAX as u64) as usize),
        };
        let cache = CacheConfig {
            max_open,
            handles: cfg.file_handles,
            creds: cfg.creds.clone(),
        };
        let inodes = InodeStore::new(fd, key, platform::st_mode(&st) & mode::S_IFMT, cache)?;
        log::info!(
            "inode fd cache: {}, evicted inodes reopen by {}",
            max_open.map_or("unbounded".to_string(), |n| format!("at most {n} fds")),
            if inodes.uses_handles() {
                "file handle"
            } else {
                "parent and name"
            }
        );
        let root = inodes.get(ROOT_ID)?;
        let overlay = match &cfg.rootless {
            Some(rl) => Some(Overlay {
                cfg: rl.clone(),
                symlinks: SymlinkStore::open(
                    &cfg.root,
                    root.fd()?.as_fd(),
                    rl.server_uid,
                    !cfg.read_only,
                )?,
            }),
            None => None,
        };
        if let Some(ov) = overlay.as_ref().filter(|_| !cfg.read_only) {
            ov.tag_store_dir(root.fd()?.as_fd())?;
        }
        let kernel_io = match (&cfg.backing, &cfg.rootless) {
            (Some(b), None) => Some(KernelIo::new(b.clone())),
            _ => None,
        };
        Ok(Passthrough {
            kernel_io,
            inodes,
            overlay,
            handles: HandleTable::default(),
            cfg,
            attr_timeout,
            entry_timeout,
            writeback: AtomicBool::new(false),
        })
    }

    pub fn inode_count(&self) -> usize {
        self.inodes.len()
    }

    /// EROFS on a read-only share, before anything is looked at or changed.
    fn check_writable(&self) -> io::Result<()> {
        if self.cfg.read_only {
            return Err(err(libc::EROFS));
        }
        Ok(())
    }

    fn caller(&self, ctx: &Context) -> io::Result<CallerGuard> {
        self.cfg.creds.enter(ctx.uid, ctx.gid, ctx.pid)
    }

    fn entry(&self, id: u64, attr: stat64) -> Entry {
        Entry {
            inode: id,
            generation: 0,
            attr,
            attr_flags: 0,
            attr_timeout: self.attr_timeout,
            entry_timeout: self.entry_timeout,
        }
    }

    /// Resolves one component below `parent` and records the lookup. Runs with
    /// whatever credentials the caller set, so search permission is the host's call.
    fn do_lookup(&self, parent: &Arc<InodeData>, name: &CStr) -> io::Result<Entry> {
        check_name(name)?;
        if self.hidden(parent.id, name.to_bytes()) {
            return Err(err(libc::ENOENT));
        }
        let fd = match name.to_bytes() {
            // `..` of the shared root is the root itself: nothing above it is reachable.
            b".." if parent.id == ROOT_ID => parent.fd()?.as_fd().try_clone_to_owned()?,
            b"." => parent.fd()?.as_fd().try_clone_to_owned()?,
            b".." => platform::openat(
                parent.fd()?.as_fd(),
                name,
                platform::O_PATH | libc::O_NOFOLLOW,
                0,
            )?,
            _ => return self.lookup_child(parent, name),
        };
        self.register(fd, None)
    }

    /// A lookup of `parent/name`: one `statx` when the inode is already known and
    /// open, else an `O_PATH` open that the table keeps.
    fn lookup_child(&self, parent: &Arc<InodeData>, name: &CStr) -> io::Result<Entry> {
        let dir = parent.fd()?;
        let (mut st, key, born) = platform::statx_identity_born_at(dir.as_fd(), name)?;
        if self.case_alias(parent, name)? {
            return Err(err(libc::ENOENT));
        }
        let found = Some((parent, name));
        if let Some(data) = self.inodes.ref_if_open(key, born, found) {
            if let Some(ov) = &self.overlay {
                ov.virtualize(&data, &mut st);
            }
            return Ok(self.entry(data.id, st));
        }
        let flags = platform::O_PATH | libc::O_NOFOLLOW;
        let fd = platform::openat(dir.as_fd(), name, flags, 0)?;
        self.register(fd, found)
    }

    /// True if `dir` folds case and does not list `name` as spelled: the host would
    /// take it for another entry. Free for directories that do not fold (cached flag).
    fn case_alias(&self, dir: &InodeData, name: &CStr) -> io::Result<bool> {
        let sensitive = match dir.case_sensitive.get() {
            Some(&s) => s,
            None => {
                let _server = self.cfg.creds.as_server()?;
                let s = platform::dir_is_case_sensitive(dir.fd()?.as_fd()).unwrap_or_else(|e| {
                    log::warn!(
                        "inode {}: case sensitivity unknown ({e}); assuming sensitive",
                        dir.id
                    );
                    true
                });
                *dir.case_sensitive.get_or_init(|| s)
            }
        };
        if sensitive || matches!(name.to_bytes(), b"." | b"..") {
            return Ok(false);
        }
        // The listing may hold names the caller cannot read; only the verdict leaves.
        let _server = self.cfg.creds.as_server()?;
        Ok(!dir.case_names.listed(dir.fd()?.as_fd(), name.to_bytes())?)
    }

    /// EEXIST where creating `name` in `dir` would alias a differently spelled entry.
    fn refuse_case_alias(&self, dir: &InodeData, name: &CStr) -> io::Result<()> {
        if self.case_alias(dir, name)? && self.open_child(dir, name).is_ok() {
            return Err(err(libc::EEXIST));
        }
        Ok(())
    }

    /// An `O_PATH` fd of `dir/name`, never following a symlink.
    fn open_child(&self, dir: &InodeData, name: &CStr) -> io::Result<OwnedFd> {
        platform::openat(
            dir.fd()?.as_fd(),
            name,
            platform::O_PATH | libc::O_NOFOLLOW,
            0,
        )
    }

    /// Host identity of `dir/name`, without following a symlink.
    fn child_key(&self, dir: &InodeData, name: &CStr) -> io::Result<platform::InodeKey> {
        let fd = self.open_child(dir, name)?;
        platform::statx_identity(fd.as_fd()).map(|(_, key)| key)
    }

    /// `open_child` of an entry this request just created. Out of fds, the entry is
    /// removed again: the client is told the request failed, so it must not exist.
    fn open_created(&self, dir: &InodeData, name: &CStr, is_dir: bool) -> io::Result<OwnedFd> {
        let fd = dir.fd()?;
        platform::openat(fd.as_fd(), name, platform::O_PATH | libc::O_NOFOLLOW, 0).inspect_err(
            |e| {
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                    let _ = platform::unlinkat(fd.as_fd(), name, is_dir);
                }
            },
        )
    }

    /// CREATE without O_EXCL of a name that exists: the entry is pinned first, then
    /// opened like OPEN (regular files only), with the caller's permissions checked on
    /// the host or, rootless, against its virtual attributes.
    fn open_existing(
        &self,
        ctx: &Context,
        dir: &Arc<InodeData>,
        name: &CStr,
        flags: u32,
    ) -> io::Result<(Entry, Option<u64>, OpenOptions, Option<u32>)> {
        let entry = self.do_lookup(dir, name)?;
        let data = self.inodes.get(entry.inode)?;
        let opened = openable(data.file_type)
            .and_then(|()| match &self.overlay {
                Some(_) => self.check_virtual_open(ctx, &entry.attr, flags),
                None => Ok(()),
            })
            .and_then(|()| {
                self.open_with_fallback(flags, |f| platform::reopen(data.fd()?.as_fd(), f))
            });
        match opened {
            Ok(fd) => {
                let (h, opts, backing_id) = self.insert_file(&data, fd);
                Ok((entry, Some(h), opts, backing_id))
            }
            Err(e) => {
                self.inodes.forget(entry.inode, 1);
                Err(e)
            }
        }
    }

    /// Rootless: may the caller open a node with these virtual attributes this way?
    /// (The host would allow anything: the server owns every file it serves.)
    fn check_virtual_open(&self, ctx: &Context, attr: &stat64, flags: u32) -> io::Result<()> {
        let flags = flags as i32;
        let mut need = match flags & libc::O_ACCMODE {
            libc::O_RDONLY => 4,
            libc::O_WRONLY => 2,
            _ => 6,
        };
        if flags & libc::O_TRUNC != 0 {
            need |= 2;
        }
        if self.virtual_bits(ctx, attr)? & need == need {
            Ok(())
        } else {
            Err(err(libc::EACCES))
        }
    }

    /// The rwx bits of virtual `attr` that apply to the caller (all of them for root).
    fn virtual_bits(&self, ctx: &Context, attr: &stat64) -> io::Result<u32> {
        if ctx.uid == 0 {
            return Ok(7);
        }
        let perms = platform::st_mode(attr);
        let shift = if attr.st_uid == ctx.uid {
            6
        } else if self.caller_in_group(ctx, attr.st_gid)? {
            3
        } else {
            0
        };
        Ok((perms >> shift) & 7)
    }

    fn caller_in_group(&self, ctx: &Context, gid: u32) -> io::Result<bool> {
        self.cfg.creds.in_group(ctx.uid, ctx.gid, ctx.pid, gid)
    }

    /// Rootless: the clock before a create that must then find its node again by name.
    fn creation_clock(&self, want: &Option<Virtual>) -> Option<i64> {
        // A second early: host timestamps come from a coarser clock than SystemTime.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        want.as_ref()
            .map(|_| now.map_or(0, |d| d.as_secs() as i64 - 1))
    }

    /// Rootless: whether the node reopened by name is the one this request made, before
    /// it becomes the caller's. A node renamed over the name in between (by a host user,
    /// another server or VM) is older, or not the server's, or not of this type. Born in
    /// the same second by another creator of ours is the residue (see docs/security.md).
    fn check_made_here(&self, fd: &OwnedFd, format: u32, since: i64, same: bool) -> io::Result<()> {
        let ov = self.overlay.as_ref().ok_or_else(|| err(libc::EIO))?;
        let fd = std::os::fd::AsFd::as_fd(fd);
        let st = platform::fstat(fd)?;
        let born = platform::birth_time(fd)?;
        let fresh = born.is_none_or(|(secs, _)| secs >= since);
        if same
            && fresh
            && st.st_uid == ov.cfg.server_uid
            && platform::st_mode(&st) & mode::S_IFMT == format
        {
            return Ok(());
        }
        log::warn!("a new node was replaced before it got its owner; the request fails");
        Err(err(libc::EIO))
    }

    /// Adds the host inode behind an `O_PATH` fd to the table and builds its entry.
    fn register(&self, fd: OwnedFd, found: Found<'_>) -> io::Result<Entry> {
        let (mut st, key, born) = platform::statx_identity_born(fd.as_fd())?;
        let format = platform::st_mode(&st) & mode::S_IFMT;
        let data = self.inodes.insert_or_ref(fd, key, format, born, found);
        if let Some(ov) = &self.overlay {
            ov.virtualize(&data, &mut st);
        }
        Ok(self.entry(data.id, st))
    }

    /// Like `register`, then gives the new node its virtual owner, mode and type.
    fn register_new(
        &self,
        fd: OwnedFd,
        found: Found<'_>,
        want: Option<Virtual>,
    ) -> io::Result<Entry> {
        let entry = self.register(fd, found)?;
        if let (Some(ov), Some(want)) = (&self.overlay, want) {
            let data = self.inodes.get(entry.inode)?;
            let res = ov.init_new(&data, &want);
            if let Err(e) = res {
                self.inodes.forget(entry.inode, 1);
                return Err(e);
            }
            return Ok(self.entry(entry.inode, self.stat_inode(&data)?.0));
        }
        Ok(entry)
    }

    /// Virtual attributes for a node that (uid, gid) creates in `parent`.
    fn new_virtual(
        &self,
        ctx: &Context,
        parent: &InodeData,
        format: u32,
        perms: u32,
        rdev: u32,
    ) -> io::Result<Option<Virtual>> {
        let Some(ov) = &self.overlay else {
            return Ok(None);
        };
        let (uid, gid, parent_sgid) = ov.new_owner(parent, ctx.uid, ctx.gid)?;
        let mut perms = perms & 0o7777;
        if parent_sgid && format == mode::S_IFDIR {
            perms |= mode::S_ISGID;
        }
        let (rdev_major, rdev_minor) = overlay::split_rdev(rdev);
        Ok(Some(Virtual {
            uid,
            gid,
            perms,
            kind: Kind {
                format,
                rdev_major,
                rdev_minor,
            },
        }))
    }

    /// Extended attributes clients may not touch, with the errno a write gets:
    /// ownership records, and in rootless mode POSIX ACLs, which would bypass the
    /// virtual mode (the server owns every host file, so the host never denies).
    fn refused_xattr(&self, name: &CStr) -> Option<i32> {
        if overlay::is_record_xattr(name.to_bytes()) {
            return Some(libc::EPERM);
        }
        let acl = name.to_bytes().starts_with(b"system.posix_acl_");
        (acl && self.overlay.is_some()).then_some(libc::EOPNOTSUPP)
    }

    /// Names at the share root that belong to the server.
    fn hidden(&self, parent: u64, name: &[u8]) -> bool {
        parent == ROOT_ID && overlay::is_reserved_name(name)
    }

    fn check_new(&self, parent: u64, name: &CStr) -> io::Result<()> {
        check_new_name(name)?;
        if self.hidden(parent, name.to_bytes()) {
            return Err(err(libc::EPERM));
        }
        Ok(())
    }

    fn host_open_flags(&self, flags: u32) -> i32 {
        let mut flags = flags as i32;
        // Client buffers are not aligned for the host: the client keeps O_DIRECT semantics.
        flags &= !(platform::O_DIRECT | libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY);
        if self.writeback.load(Ordering::Relaxed) {
            // The client kernel handles appends and may read back pages it writes.
            flags &= !libc::O_APPEND;
            if flags & libc::O_ACCMODE == libc::O_WRONLY {
                flags = (flags & !libc::O_ACCMODE) | libc::O_RDWR;
            }
        }
        flags
    }

    /// Opens with the promoted flags; when the writeback promotion of O_WRONLY to
    /// O_RDWR is refused, the caller's own O_WRONLY open is the permission check.
    fn open_with_fallback(
        &self,
        requested: u32,
        open: impl Fn(i32) -> io::Result<OwnedFd>,
    ) -> io::Result<OwnedFd> {
        let flags = self.host_open_flags(requested);
        match open(flags) {
            Err(e)
                if e.raw_os_error() == Some(libc::EACCES)
                    && (requested as i32) & libc::O_ACCMODE == libc::O_WRONLY
                    && flags & libc::O_ACCMODE == libc::O_RDWR =>
            {
                let wronly = open((flags & !libc::O_ACCMODE) | libc::O_WRONLY)?;
                // The caller may write but not read. The writeback cache still reads
                // partial pages back, so the server reopens the same inode read-write;
                // the client kernel never hands those pages to a write-only opener.
                let reopen_flags = flags & !(libc::O_TRUNC | libc::O_CREAT | libc::O_EXCL);
                let _server = self.cfg.creds.as_server()?;
                match platform::reopen(std::os::fd::AsFd::as_fd(&wronly), reopen_flags) {
                    Ok(rw) => Ok(rw),
                    Err(e) => {
                        log::debug!("read-write reopen for writeback failed: {e}");
                        Ok(wronly)
                    }
                }
            }
            r => r,
        }
    }

    /// Options only Linux's FUSE ABI has (macOS's lacks these bits).
    #[cfg(target_os = "linux")]
    fn linux_options(&self, capable: FsOptions) -> FsOptions {
        let mut want = FsOptions::HAS_IOCTL_DIR;
        // Listings carry attributes, so a stat of each entry after readdir (`du`,
        // `ls -l`, `git status`) needs no LOOKUP; without cached entries that is wasted.
        if matches!(self.cfg.cache, CachePolicy::Never) || self.cfg.uncached_metadata {
            want |= FsOptions::READDIRPLUS_AUTO;
        }
        if self.cfg.posix_acl {
            want |= FsOptions::POSIX_ACL;
        }
        if self.cfg.writeback && capable.contains(FsOptions::WRITEBACK_CACHE) {
            want |= FsOptions::WRITEBACK_CACHE;
            self.writeback.store(true, Ordering::Relaxed);
        }
        want
    }

    #[cfg(not(target_os = "linux"))]
    fn linux_options(&self, _capable: FsOptions) -> FsOptions {
        FsOptions::empty()
    }

    fn open_options(&self, is_dir: bool) -> OpenOptions {
        match (self.cfg.cache, is_dir) {
            (CachePolicy::Never, false) => OpenOptions::DIRECT_IO,
            (CachePolicy::Always, false) => OpenOptions::KEEP_CACHE,
            #[cfg(target_os = "linux")]
            (CachePolicy::Always, true) => OpenOptions::CACHE_DIR,
            _ => OpenOptions::empty(),
        }
    }

    /// The kernel I/O table, when passthrough was granted on this connection.
    fn kernel_io(&self) -> Option<&KernelIo> {
        self.kernel_io.as_ref().filter(|k| k.enabled())
    }

    /// Files a just-opened host file under `inode`; with kernel passthrough the reply
    /// carries the backing id and FOPEN_PASSTHROUGH instead of the cache policy, whose
    /// page-cache flags the kernel refuses with passthrough. Call as the caller.
    fn insert_file(&self, inode: &InodeData, fd: OwnedFd) -> (u64, OpenOptions, Option<u32>) {
        inode.pin();
        let (Some(kio), Ok(path)) = (self.kernel_io(), inode.fd()) else {
            let h = self.handles.insert(inode.id, fd, false);
            return (h, self.open_options(false), None);
        };
        match kio.open(inode.id, path.as_fd()) {
            Some(id) => {
                let h = self.handles.insert_with(inode.id, fd, false, true);
                let opts = platform::with_fopen_passthrough(OpenOptions::empty());
                (h, opts, Some(id))
            }
            None => {
                let h = self.handles.insert_with(inode.id, fd, false, true);
                (h, self.open_options(false), None)
            }
        }
    }

    /// RENAME of one entry, with a case change in a folding directory done in two steps.
    fn rename_entry(
        &self,
        old: &InodeData,
        oldname: &CStr,
        new: &InodeData,
        newname: &CStr,
        flags: u32,
    ) -> io::Result<()> {
        if self.case_alias(new, newname)? {
            // Another spelling of an existing entry: only a case change of the entry
            // being renamed may proceed; anything else would replace a stranger.
            if let Ok(target) = self.child_key(new, newname) {
                if self.child_key(old, oldname).ok() != Some(target) {
                    return Err(err(libc::EEXIST));
                }
                if old.id == new.id && flags & LINUX_RENAME_EXCHANGE == 0 {
                    return change_case(old, oldname, newname);
                }
            }
        }
        platform::renameat2(
            old.fd()?.as_fd(),
            oldname,
            new.fd()?.as_fd(),
            newname,
            flags,
        )
    }

    /// A file or directory of `inode` was closed: its fd may be evicted again.
    fn unpin(&self, inode: u64) {
        if let Ok(data) = self.inodes.get(inode) {
            data.unpin();
        }
    }

    fn stat_inode(&self, inode: &InodeData) -> io::Result<(stat64, Duration)> {
        let mut st = platform::fstat(inode.fd()?.as_fd())?;
        if let Some(ov) = &self.overlay {
            ov.virtualize(inode, &mut st);
        }
        Ok((st, self.attr_timeout))
    }

    fn set_mode(&self, ctx: &Context, inode: &InodeData, mode: u32) -> io::Result<()> {
        match platform::chmod_fd(inode.fd()?.as_fd(), mode) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                // The client kernel clears SUID/SGID after a write by a non-owner with a
                // chmod in the writer's name; the host refuses that to a non-owner.
                let current = platform::st_mode(&platform::fstat(inode.fd()?.as_fd())?) & 0o7777;
                let kill_bits = mode::S_ISUID | mode::S_ISGID;
                let only_clears =
                    mode != current && mode & !current == 0 && (current & !mode) & !kill_bits == 0;
                if !only_clears
                    || platform::access_fd(inode.fd()?.as_fd(), libc::W_OK as u32).is_err()
                {
                    return Err(e);
                }
                log::debug!(
                    "clearing set-id bits of inode {} for uid {}",
                    inode.id,
                    ctx.uid
                );
                let _server = self.cfg.creds.as_server()?;
                platform::chmod_fd(inode.fd()?.as_fd(), mode)
            }
            r => r,
        }
    }

    /// Rootless chmod/chown: the virtual view changes, the host keeps the server as owner.
    fn setattr_virtual(
        &self,
        ov: &Overlay,
        data: &InodeData,
        attr: &stat64,
        valid: SetattrValid,
    ) -> io::Result<()> {
        let mode = valid.contains(SetattrValid::MODE);
        let uid = valid.contains(SetattrValid::UID).then_some(attr.st_uid);
        let gid = valid.contains(SetattrValid::GID).then_some(attr.st_gid);
        let owner = uid.is_some() || gid.is_some();
        if !mode && !owner {
            return Ok(());
        }
        ov.update(data, |v, _host| {
            if mode {
                v.perms = platform::st_mode(attr) & 0o7777;
            }
            if owner && ov.cfg.try_host_chown {
                match platform::fchown(data.fd()?.as_fd(), uid, gid) {
                    Err(e) if e.raw_os_error() != Some(libc::EPERM) => return Err(e),
                    _ => {}
                }
            }
            v.uid = uid.unwrap_or(v.uid);
            v.gid = gid.unwrap_or(v.gid);
            Ok(())
        })?;
        if owner {
            // chown changes ctime even when nothing else changed.
            let _ = platform::fchown(data.fd()?.as_fd(), None, None);
        }
        Ok(())
    }

    fn readdir_common(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        size: u32,
        offset: u64,
        mut emit: impl FnMut(&platform::RawDirent<'_>, std::os::fd::BorrowedFd<'_>) -> io::Result<usize>,
    ) -> io::Result<()> {
        if size == 0 {
            return Ok(());
        }
        let _ = ctx;
        let h = self.handles.get(handle, inode)?;
        let mut cur = h.dir_cursor()?;
        if cur.pos != Some(offset) {
            platform::lseek(h.fd(), offset as i64, libc::SEEK_SET)?;
            cur.filled = 0;
            cur.consumed = 0;
            cur.pos = Some(offset);
        }
        loop {
            if cur.consumed >= cur.filled {
                if cur.buf.len() < 32 * 1024 {
                    cur.buf.resize(32 * 1024, 0);
                }
                let n = {
                    let cur = &mut *cur;
                    platform::getdents(h.fd(), &mut cur.buf)?
                };
                cur.filled = n;
                cur.consumed = 0;
                if n == 0 {
                    return Ok(());
                }
            }
            let (dent_next, len) = {
                let slice = &cur.buf[cur.consumed..cur.filled];
                let Some((dent, len)) = platform::parse_dirent(slice) else {
                    // A short or corrupt record: drop the buffer and re-read from `pos`.
                    cur.filled = 0;
                    cur.consumed = 0;
                    cur.pos = None;
                    return Err(err(libc::EIO));
                };
                let added = if self.hidden(inode, dent.name) {
                    1 // skipped, but consumed
                } else {
                    emit(&dent, h.fd())?
                };
                if added == 0 {
                    return Ok(());
                }
                (dent.next_offset, len)
            };
            cur.consumed += len;
            cur.pos = Some(dent_next);
        }
    }
}

/// The parts of setattr that need no ownership logic: size and timestamps.
fn set_size_and_times(
    creds: &CredentialPolicy,
    data: &InodeData,
    handle: Option<&handles::HandleData>,
    attr: &stat64,
    valid: SetattrValid,
) -> io::Result<()> {
    if valid.contains(SetattrValid::SIZE) {
        let size = u64::try_from(attr.st_size).map_err(|_| err(libc::EINVAL))?;
        match handle {
            // Permission was checked when the handle was opened.
            Some(h) => platform::ftruncate(h.fd(), size)?,
            None => platform::truncate_fd(data.fd()?.as_fd(), size)?,
        }
    }
    if valid.intersects(SetattrValid::ATIME | SetattrValid::MTIME) {
        let pick = |set: SetattrValid, now: SetattrValid, sec: i64, nsec: i64| {
            if valid.contains(now) {
                TimeSpec::Now
            } else if valid.contains(set) {
                TimeSpec::At(sec, nsec)
            } else {
                TimeSpec::Omit
            }
        };
        let atime = pick(
            SetattrValid::ATIME,
            SetattrValid::ATIME_NOW,
            attr.st_atime,
            attr.st_atime_nsec,
        );
        let mtime = pick(
            SetattrValid::MTIME,
            SetattrValid::MTIME_NOW,
            attr.st_mtime,
            attr.st_mtime_nsec,
        );
        // Only the kernel sends times with a file handle: the cmtime a writeback
        // cache kept for a write or ftruncate through that open file. Opening it for
        // writing was the permission check; explicit times would demand ownership.
        // A handle opened read-only proves nothing: that request runs as the caller.
        let _server = match handle {
            Some(h) if platform::open_for_writing(h.fd())? => Some(creds.as_server()?),
            _ => None,
        };
        platform::set_times(data.fd()?.as_fd(), atime, mtime)?;
    }
    Ok(())
}

pub fn path_cstr(path: &Path) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| err(libc::EINVAL))
}

impl FileSystemExt for Passthrough {
    fn read_to_sink(
        &self,
        _ctx: &Context,
        inode: u64,
        handle: u64,
        offset: u64,
        size: u32,
        sink: &mut dyn RangeSink,
    ) -> io::Result<usize> {
        let h = self.handles.get(handle, inode)?;
        sink.take(h.fd(), offset, size as usize)
    }

    fn copy_file_range(
        &self,
        ctx: &Context,
        from: RangeEnd,
        to: RangeEnd,
        len: u64,
        flags: u64,
    ) -> io::Result<u64> {
        self.check_writable()?;
        let flags = u32::try_from(flags).map_err(|_| err(libc::EINVAL))?;
        let src = self.handles.get(from.handle, from.inode)?;
        let dst = self.handles.get(to.handle, to.inode)?;
        // As the writer, so the host clears set-id bits exactly when the kernel would.
        let _c = self.caller(ctx)?;
        platform::copy_file_range(src.fd(), from.offset, dst.fd(), to.offset, len, flags)
    }

    fn tmpfile(
        &self,
        ctx: &Context,
        parent: u64,
        _name: &CStr,
        flags: u32,
        perms: u32,
        _umask: u32,
    ) -> io::Result<Opened> {
        self.check_writable()?;
        let dir = self.inodes.get(parent)?;
        let _c = self.caller(ctx)?;
        let want = self.new_virtual(ctx, &dir, mode::S_IFREG, perms, 0)?;
        let host_mode = match want {
            Some(_) => overlay::host_perms(perms, mode::S_IFREG),
            None => perms,
        };
        let fd = self.open_with_fallback(flags, |f| {
            platform::open_tmpfile(dir.fd()?.as_fd(), f & !libc::O_NOFOLLOW, host_mode)
        })?;
        let path_fd = platform::reopen(std::os::fd::AsFd::as_fd(&fd), platform::O_PATH)?;
        let entry = self.register_new(path_fd, None, want)?;
        let data = self.inodes.get(entry.inode)?;
        let (h, opts, backing_id) = self.insert_file(&data, fd);
        Ok((entry, Some(h), opts, backing_id))
    }

    fn statx(&self, _ctx: &Context, inode: u64, _handle: Option<u64>) -> io::Result<StatxReply> {
        let data = self.inodes.get(inode)?;
        let (stat, timeout) = self.stat_inode(&data)?;
        let btime = platform::birth_time(data.fd()?.as_fd())?;
        Ok(StatxReply {
            stat,
            btime,
            timeout,
        })
    }

    fn needs_flush(&self) -> bool {
        // The client kernel keeps all locks; closing a duplicate descriptor only
        // reports errors a local host filesystem never has at close.
        false
    }

    fn negative_timeout(&self) -> Duration {
        self.entry_timeout
    }

    fn syncfs(&self, _ctx: &Context, _inode: u64) -> io::Result<()> {
        // The share is one host filesystem (or several under it; syncfs of the root's
        // covers the one that matters most). O_PATH fds cannot be synced: reopen.
        let root = self.inodes.get(ROOT_ID)?;
        let dir = platform::reopen(root.fd()?.as_fd(), libc::O_RDONLY | libc::O_DIRECTORY)?;
        platform::syncfs(std::os::fd::AsFd::as_fd(&dir))
    }
}

impl FileSystem for Passthrough {
    type Inode = u64;
    type Handle = u64;

    fn init(&self, capable: FsOptions) -> io::Result<FsOptions> {
        let want = crate::negotiate::base_options() | self.linux_options(capable);
        let granted = capable & want;
        log::info!("negotiated {granted:?}");
        Ok(granted)
    }

    fn lookup(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<Entry> {
        let dir = self.inodes.get(parent)?;
        let _c = self.caller(ctx)?;
        self.do_lookup(&dir, name)
    }

    fn forget(&self, _ctx: &Context, inode: u64, count: u64) {
        self.inodes.forget(inode, count);
    }

    fn batch_forget(&self, _ctx: &Context, requests: Vec<(u64, u64)>) {
        self.inodes.forget_many(&requests);
    }

    fn getattr(
        &self,
        _ctx: &Context,
        inode: u64,
        _handle: Option<u64>,
    ) -> io::Result<(stat64, Duration)> {
        // Hot path: a reference taken under a brief read lock, then one fstat with no
        // lock held; no allocation, no credential switch.
        let data = self.inodes.get(inode)?;
        self.stat_inode(&data)
    }

    fn setattr(
        &self,
        ctx: &Context,
        inode: u64,
        attr: stat64,
        handle: Option<u64>,
        valid: SetattrValid,
    ) -> io::Result<(stat64, Duration)> {
        self.check_writable()?;
        let data = self.inodes.get(inode)?;
        let handle = match handle {
            Some(h) => Some(self.handles.get(h, inode)?),
            None => None,
        };
        let _c = self.caller(ctx)?;
        if let Some(ov) = &self.overlay {
            self.setattr_virtual(ov, &data, &attr, valid)?;
        } else {
            if valid.contains(SetattrValid::MODE) {
                self.set_mode(ctx, &data, platform::st_mode(&attr) & 0o7777)?;
            }
            if valid.intersects(SetattrValid::UID | SetattrValid::GID) {
                let uid = valid.contains(SetattrValid::UID).then_some(attr.st_uid);
                let gid = valid.contains(SetattrValid::GID).then_some(attr.st_gid);
                platform::fchown(data.fd()?.as_fd(), uid, gid)?;
            }
        }
        set_size_and_times(&self.cfg.creds, &data, handle.as_deref(), &attr, valid)?;
        self.stat_inode(&data)
    }

    fn readlink(&self, _ctx: &Context, inode: u64) -> io::Result<Vec<u8>> {
        let data = self.inodes.get(inode)?;
        // readlink(2) of anything but a symlink is EINVAL (the host says ENOENT).
        if !data.is_symlink() {
            return Err(err(libc::EINVAL));
        }
        platform::readlink_fd(data.fd()?.as_fd())
    }

    fn symlink(
        &self,
        ctx: &Context,
        linkname: &CStr,
        parent: u64,
        name: &CStr,
    ) -> io::Result<Entry> {
        self.check_writable()?;
        self.check_new(parent, name)?;
        let dir = self.inodes.get(parent)?;
        let _c = self.caller(ctx)?;
        let want = self.new_virtual(ctx, &dir, mode::S_IFLNK, 0o777, 0)?;
        let since = self.creation_clock(&want);
        platform::symlinkat(linkname, dir.fd()?.as_fd(), name)?;
        let fd = self.open_created(&dir, name, false)?;
        if let Some(since) = since {
            let same_target = platform::readlink_fd(std::os::fd::AsFd::as_fd(&fd))
                .is_ok_and(|t| t == linkname.to_bytes());
            self.check_made_here(&fd, mode::S_IFLNK, since, same_target)?;
        }
        self.register_new(fd, Some((&dir, name)), want)
    }

    fn mknod(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        mode: u32,
        rdev: u32,
        _umask: u32,
    ) -> io::Result<Entry> {
        self.check_writable()?;
        self.check_new(parent, name)?;
        let dir = self.inodes.get(parent)?;
        let _c = self.caller(ctx)?;
        let format = match mode & mode::S_IFMT {
            0 => mode::S_IFREG,
            f => f,
        };
        let want = self.new_virtual(ctx, &dir, format, mode, rdev)?;
        if want.is_some() {
            // Rootless: every special file is a host regular file with its type in the record.
            let host_mode = overlay::host_perms(mode, mode::S_IFREG);
            let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
            let made = platform::openat(dir.fd()?.as_fd(), name, flags, host_mode)?;
            // Pinned through the creating fd: a rename of the name cannot swap it.
            let fd = platform::reopen(std::os::fd::AsFd::as_fd(&made), platform::O_PATH)?;
            return self.register_new(fd, Some((&dir, name)), want);
        }
        platform::mknodat(dir.fd()?.as_fd(), name, mode, u64::from(rdev))?;
        self.register_new(
            self.open_created(&dir, name, false)?,
            Some((&dir, name)),
            want,
        )
    }

    fn mkdir(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        mode: u32,
        _umask: u32,
    ) -> io::Result<Entry> {
        self.check_writable()?;
        self.check_new(parent, name)?;
        let dir = self.inodes.get(parent)?;
        let _c = self.caller(ctx)?;
        let want = self.new_virtual(ctx, &dir, mode::S_IFDIR, mode, 0)?;
        let host_mode = match want {
            Some(_) => overlay::host_perms(mode, mode::S_IFDIR),
            None => mode,
        };
        let since = self.creation_clock(&want);
        platform::mkdirat(dir.fd()?.as_fd(), name, host_mode)?;
        let fd = self.open_created(&dir, name, true)?;
        if let Some(since) = since {
            self.check_made_here(&fd, mode::S_IFDIR, since, true)?;
        }
        self.register_new(fd, Some((&dir, name)), want)
    }

    fn unlink(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<()> {
        self.check_writable()?;
        self.check_new(parent, name)?;
        let dir = self.inodes.get(parent)?;
        let _c = self.caller(ctx)?;
        if self.case_alias(&dir, name)? {
            return Err(err(libc::ENOENT));
        }
        let Some(ov) = self.overlay.as_ref().filter(|o| !o.symlinks.is_empty()) else {
            return platform::unlinkat(dir.fd()?.as_fd(), name, false);
        };
        // The last name of a symlink with a stored record takes the record with it.
        let victim = self
            .open_child(&dir, name)
            .and_then(|fd| platform::statx_identity(std::os::fd::AsFd::as_fd(&fd)))
            .ok()
            .filter(|(st, _)| {
                platform::st_mode(st) & mode::S_IFMT == mode::S_IFLNK && st.st_nlink == 1
            });
        platform::unlinkat(dir.fd()?.as_fd(), name, false)?;
        if let Some((_, key)) = victim {
            ov.symlinks.forget(key.dev, key.ino)?;
        }
        Ok(())
    }

    fn rmdir(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<()> {
        self.check_writable()?;
        self.check_new(parent, name)?;
        let dir = self.inodes.get(parent)?;
        let _c = self.caller(ctx)?;
        if self.case_alias(&dir, name)? {
            return Err(err(libc::ENOENT));
        }
        platform::unlinkat(dir.fd()?.as_fd(), name, true)
    }

    fn rename(
        &self,
        ctx: &Context,
        olddir: u64,
        oldname: &CStr,
        newdir: u64,
        newname: &CStr,
        flags: u32,
    ) -> io::Result<()> {
        self.check_writable()?;
        self.check_new(olddir, oldname)?;
        self.check_new(newdir, newname)?;
        let old = self.inodes.get(olddir)?;
        let new = self.inodes.get(newdir)?;
        let _c = self.caller(ctx)?;
        if self.case_alias(&old, oldname)? {
            return Err(err(libc::ENOENT));
        }
        // Reopening by place needs to know where renamed inodes went.
        let track = self.inodes.tracks_places();
        let moving = track.then(|| self.child_key(&old, oldname).ok()).flatten();
        let swapped = (track && flags & LINUX_RENAME_EXCHANGE != 0)
            .then(|| self.child_key(&new, newname).ok())
            .flatten();
        self.rename_entry(&old, oldname, &new, newname, flags)?;
        if let Some(key) = moving {
            self.inodes.moved(key, &new, newname);
        }
        if let Some(key) = swapped {
            self.inodes.moved(key, &old, oldname);
        }
        Ok(())
    }

    fn link(&self, ctx: &Context, inode: u64, newparent: u64, newname: &CStr) -> io::Result<Entry> {
        self.check_writable()?;
        self.check_new(newparent, newname)?;
        let data = self.inodes.get(inode)?;
        let dir = self.inodes.get(newparent)?;
        let _c = self.caller(ctx)?;
        platform::link_fd(data.fd()?.as_fd(), dir.fd()?.as_fd(), newname)?;
        self.do_lookup(&dir, newname)
    }

    fn open(
        &self,
        ctx: &Context,
        inode: u64,
        flags: u32,
        _fuse_flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions, Option<u32>)> {
        let data = self.inodes.get(inode)?;
        openable(data.file_type)?;
        let modifying = flags as i32 & (libc::O_ACCMODE | libc::O_TRUNC) != libc::O_RDONLY;
        if modifying {
            self.check_writable()?;
        }
        let _c = self.caller(ctx)?;
        let fd = self.open_with_fallback(flags, |f| platform::reopen(data.fd()?.as_fd(), f))?;
        let (h, opts, backing_id) = self.insert_file(&data, fd);
        Ok((Some(h), opts, backing_id))
    }

    fn create(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        args: CreateIn,
    ) -> io::Result<(Entry, Option<u64>, OpenOptions, Option<u32>)> {
        self.check_writable()?;
        self.check_new(parent, name)?;
        let dir = self.inodes.get(parent)?;
        let _c = self.caller(ctx)?;
        self.refuse_case_alias(&dir, name)?;
        let want = self.new_virtual(ctx, &dir, mode::S_IFREG, args.mode, 0)?;
        let host_mode = match want {
            Some(_) => overlay::host_perms(args.mode, mode::S_IFREG),
            None => args.mode,
        };
        // Holds the fd slot the O_PATH reopen below needs: out of fds, fail before
        // creating anything rather than after.
        let slot = dir.fd()?.as_fd().try_clone_to_owned()?;
        // Always O_EXCL: only an entry this call creates is new; any other is opened as
        // OPEN would open it, by its pinned inode, with its type and permissions checked.
        let created = self.open_with_fallback(args.flags, |f| {
            let flags = f | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
            platform::openat(dir.fd()?.as_fd(), name, flags, host_mode)
        });
        drop(slot);
        let fd = match created {
            Err(e)
                if e.raw_os_error() == Some(libc::EEXIST)
                    && args.flags as i32 & libc::O_EXCL == 0 =>
            {
                return self.open_existing(ctx, &dir, name, args.flags);
            }
            r => r?,
        };
        // Pin the very inode we created, not whatever the name points to by now.
        let path_fd = platform::reopen(std::os::fd::AsFd::as_fd(&fd), platform::O_PATH)?;
        let entry = self.register_new(path_fd, Some((&dir, name)), want)?;
        let data = self.inodes.get(entry.inode)?;
        let (h, opts, backing_id) = self.insert_file(&data, fd);
        Ok((entry, Some(h), opts, backing_id))
    }

    fn read(
        &self,
        _ctx: &Context,
        inode: u64,
        handle: u64,
        w: &mut dyn ZeroCopyWriter,
        size: u32,
        offset: u64,
        _lock_owner: Option<u64>,
        _flags: u32,
    ) -> io::Result<usize> {
        let h = self.handles.get(handle, inode)?;
        // A size beyond the reply buffer is a short read, as POSIX allows, not an error.
        let size = (size as usize).min(w.available_bytes());
        platform::with_file(h.fd(), |f| w.write_from(f, size, offset))
    }

    fn write(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        r: &mut dyn ZeroCopyReader,
        size: u32,
        offset: u64,
        _lock_owner: Option<u64>,
        _delayed_write: bool,
        _flags: u32,
        _fuse_flags: u32,
    ) -> io::Result<usize> {
        self.check_writable()?;
        let h = self.handles.get(handle, inode)?;
        // As the writer, so the host clears set-id bits exactly when the kernel would.
        let _c = self.caller(ctx)?;
        platform::with_file(h.fd(), |f| r.read_to(f, size as usize, offset))
    }

    fn flush(&self, _ctx: &Context, inode: u64, handle: u64, _lock_owner: u64) -> io::Result<()> {
        let h = self.handles.get(handle, inode)?;
        platform::close_dup(h.fd())
    }

    fn fsync(&self, _ctx: &Context, inode: u64, datasync: bool, handle: u64) -> io::Result<()> {
        let h = self.handles.get(handle, inode)?;
        platform::fsync(h.fd(), datasync)
    }

    fn fallocate(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        mode: u32,
        offset: u64,
        length: u64,
    ) -> io::Result<()> {
        self.check_writable()?;
        let h = self.handles.get(handle, inode)?;
        let _c = self.caller(ctx)?;
        platform::fallocate(h.fd(), mode, offset, length)
    }

    fn release(
        &self,
        _ctx: &Context,
        inode: u64,
        _flags: u32,
        handle: u64,
        _flush: bool,
        _flock_release: bool,
        _lock_owner: Option<u64>,
    ) -> io::Result<()> {
        let h = self.handles.remove(handle, inode)?;
        if let (true, Some(kio)) = (h.kernel_io, &self.kernel_io) {
            kio.release(inode);
        }
        self.unpin(inode);
        Ok(())
    }

    fn statfs(&self, _ctx: &Context, inode: u64) -> io::Result<statvfs64> {
        let data = self.inodes.get(inode)?;
        let mut st = platform::fstatvfs(data.fd()?.as_fd())?;
        if self.cfg.read_only {
            st.f_flag |= libc::ST_RDONLY;
        }
        Ok(st)
    }

    fn setxattr(
        &self,
        ctx: &Context,
        inode: u64,
        name: &CStr,
        value: &[u8],
        flags: u32,
    ) -> io::Result<()> {
        self.check_writable()?;
        if let Some(ov) = &self.overlay {
            if name == c"system.posix_acl_access" {
                // An ACL that only restates the mode (cp -p, tar) becomes a chmod of the
                // virtual mode; richer ACLs cannot be enforced here and are refused.
                let bits = overlay::acl_mode_bits(value).ok_or_else(|| err(libc::EOPNOTSUPP))?;
                let data = self.inodes.get(inode)?;
                return ov.update(&data, |v, _| {
                    // As chmod: only the owner (or root) sets it, and a caller outside
                    // the group loses the setgid bit (older guest kernels check neither).
                    if ctx.uid != 0 && ctx.uid != v.uid {
                        return Err(err(libc::EPERM));
                    }
                    let mut special = v.perms & 0o7000;
                    if ctx.uid != 0 && !self.caller_in_group(ctx, v.gid)? {
                        special &= !mode::S_ISGID;
                    }
                    v.perms = special | bits;
                    Ok(())
                });
            }
        }
        if let Some(errno) = self.refused_xattr(name) {
            return Err(err(errno));
        }
        let data = self.inodes.get(inode)?;
        let _c = self.caller(ctx)?;
        platform::setxattr(data.fd()?.as_fd(), name, value, flags as i32)
    }

    fn getxattr(
        &self,
        ctx: &Context,
        inode: u64,
        name: &CStr,
        size: u32,
    ) -> io::Result<GetxattrReply> {
        if self.refused_xattr(name).is_some() {
            return Err(err(libc::ENODATA));
        }
        let data = self.inodes.get(inode)?;
        let _c = self.caller(ctx)?;
        if size == 0 {
            let n = platform::getxattr(data.fd()?.as_fd(), name, &mut [])?;
            return Ok(GetxattrReply::Count(n as u32));
        }
        // No value is larger than the host's limit: never allocate what a client names.
        let mut buf = vec![0u8; (size as usize).min(XATTR_SIZE_MAX)];
        let n = platform::getxattr(data.fd()?.as_fd(), name, &mut buf)?;
        buf.truncate(n);
        Ok(GetxattrReply::Value(buf))
    }

    fn listxattr(&self, ctx: &Context, inode: u64, size: u32) -> io::Result<ListxattrReply> {
        let data = self.inodes.get(inode)?;
        let _c = self.caller(ctx)?;
        // Read the whole list so the record's name can be left out, sizes included.
        let mut buf = Vec::new();
        loop {
            let need = platform::listxattr(data.fd()?.as_fd(), &mut [])?;
            buf.resize(need, 0);
            match platform::listxattr(data.fd()?.as_fd(), &mut buf) {
                Ok(n) => {
                    buf.truncate(n);
                    break;
                }
                // The list grew in between: ask again.
                Err(e) if e.raw_os_error() == Some(libc::ERANGE) => continue,
                Err(e) => return Err(e),
            }
        }
        let names: Vec<u8> = buf
            .split_inclusive(|&b| b == 0)
            .filter(|n| {
                let name = CStr::from_bytes_with_nul(n).unwrap_or(c"");
                self.refused_xattr(name).is_none()
            })
            .flatten()
            .copied()
            .collect();
        if size == 0 {
            Ok(ListxattrReply::Count(names.len() as u32))
        } else if names.len() > size as usize {
            Err(err(libc::ERANGE))
        } else {
            Ok(ListxattrReply::Names(names))
        }
    }

    fn removexattr(&self, ctx: &Context, inode: u64, name: &CStr) -> io::Result<()> {
        self.check_writable()?;
        match self.refused_xattr(name) {
            // Rootless shares hold no ACLs, so there is none to remove.
            Some(libc::EOPNOTSUPP) => return Err(err(libc::ENODATA)),
            Some(errno) => return Err(err(errno)),
            None => {}
        }
        let data = self.inodes.get(inode)?;
        let _c = self.caller(ctx)?;
        platform::removexattr(data.fd()?.as_fd(), name)
    }

    fn opendir(
        &self,
        ctx: &Context,
        inode: u64,
        _flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions)> {
        let data = self.inodes.get(inode)?;
        if !data.is_dir() {
            return Err(err(libc::ENOTDIR));
        }
        let _c = self.caller(ctx)?;
        let fd = platform::reopen(data.fd()?.as_fd(), libc::O_RDONLY | libc::O_DIRECTORY)?;
        data.pin();
        let h = self.handles.insert(inode, fd, true);
        Ok((Some(h), self.open_options(true)))
    }

    fn readdir(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry) -> io::Result<usize>,
    ) -> io::Result<()> {
        self.readdir_common(ctx, inode, handle, size, offset, |d, dirfd| {
            let dtype = match &self.overlay {
                Some(ov) => ov.dtype(dirfd, d.name, d.dtype),
                None => d.dtype,
            };
            add_entry(DirEntry {
                ino: d.ino,
                offset: d.next_offset,
                type_: u32::from(dtype),
                name: d.name,
            })
        })
    }

    fn readdirplus(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry, Entry) -> io::Result<usize>,
    ) -> io::Result<()> {
        let dir = self.inodes.get(inode)?;
        // Attributes of entries need search permission on the directory: look up as the caller.
        let _c = self.caller(ctx)?;
        self.readdir_common(ctx, inode, handle, size, offset, |d, dirfd| {
            let dtype = match &self.overlay {
                Some(ov) => ov.dtype(dirfd, d.name, d.dtype),
                None => d.dtype,
            };
            let dirent = DirEntry {
                ino: d.ino,
                offset: d.next_offset,
                type_: u32::from(dtype),
                name: d.name,
            };
            let entry = match d.name {
                b"." | b".." => None,
                name => std::ffi::CString::new(name)
                    .ok()
                    .and_then(|n| self.do_lookup(&dir, &n).ok()),
            };
            match entry {
                Some(entry) => {
                    let id = entry.inode;
                    let added = add_entry(dirent, entry)?;
                    if added == 0 {
                        self.inodes.forget(id, 1);
                    }
                    Ok(added)
                }
                // No attributes for this name: the kernel will look it up itself.
                None => add_entry(dirent, self.entry(0, platform::zeroed_stat())),
            }
        })
    }

    fn fsyncdir(&self, ctx: &Context, inode: u64, datasync: bool, handle: u64) -> io::Result<()> {
        self.fsync(ctx, inode, datasync, handle)
    }

    fn releasedir(&self, _ctx: &Context, inode: u64, _flags: u32, handle: u64) -> io::Result<()> {
        self.handles.remove(handle, inode)?;
        self.unpin(inode);
        Ok(())
    }

    fn access(&self, ctx: &Context, inode: u64, mask: u32) -> io::Result<()> {
        let data = self.inodes.get(inode)?;
        if mask & libc::W_OK as u32 != 0 {
            self.check_writable()?;
        }
        let _c = self.caller(ctx)?;
        platform::access_fd(data.fd()?.as_fd(), mask)
    }

    fn lseek(
        &self,
        _ctx: &Context,
        inode: u64,
        handle: u64,
        offset: u64,
        whence: u32,
    ) -> io::Result<u64> {
        let h = self.handles.get(handle, inode)?;
        platform::lseek(h.fd(), offset as i64, whence as i32)
    }
}

impl Drop for Passthrough {
    fn drop(&mut self) {
        log::debug!("passthrough dropped with {} inodes", self.inodes.len());
    }
}

/// The passthrough, shareable across worker threads.
pub type SharedPassthrough = Arc<Passthrough>;
