//! The inode table: client node ids mapped to host inodes, and the fd cache that keeps
//! a bounded number of them open.
//!
//! Host inodes are deduplicated by (dev, ino, mnt_id). Node ids are handed out
//! sequentially and never reused while the server runs, so an id the client holds
//! stays valid until the client forgets it.
//!
//! An inode holds an `O_PATH` fd only while it is in the fd cache, which keeps at most
//! `max_open` of them (CLOCK: a use sets a bit, the evictor gives a set bit a second
//! chance). An evicted inode reopens on its next use, by one of two means chosen when
//! the server starts:
//! * its file handle (`open_by_handle_at`, which needs CAP_DAC_READ_SEARCH), made from
//!   the fd at eviction, so nothing is paid while nothing is evicted;
//! * its parent (itself reopened the same way) and the name it was last seen under,
//!   one component with `O_NOFOLLOW`, verified against (dev, ino, mount, birth time):
//!   ESTALE when the object is gone or replaced, never another file.
//!
//! The root, inodes with open files or directories, and inodes that cannot be named
//! again (no handle, no known place) are never evicted.

use std::collections::{HashMap, VecDeque};
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, Weak};

use super::record::Record;
use crate::creds::CredentialPolicy;
use crate::platform::{self, mode, BirthTime, FileHandle, InodeKey};

pub const ROOT_ID: u64 = 1;

/// An inode's `O_PATH` fd, held open for as long as the caller keeps it.
pub type InodeFd = Arc<OwnedFd>;

/// The ownership record of an inode as last read, valid while the host ctime is unchanged.
#[derive(Default)]
pub struct OverlayCache {
    pub ctime: Option<(i64, i64)>,
    pub record: Option<Record>,
    /// A record of a version we do not know: shown as absent, never overwritten.
    pub foreign: bool,
    /// The xattr of the format the server does not write may be present too.
    pub other: bool,
}

/// How an evicted inode is opened again.
enum Reopen {
    /// Never evicted: the root, or an inode that cannot be named again.
    Pinned,
    /// By file handle, made when the inode is first evicted.
    Handle(Option<FileHandle>),
    /// Through its parent and the name it was last seen under.
    Place { parent: Arc<InodeData>, spot: Spot },
}

/// Name and birth time in one small allocation (an inode in every rootless share
/// carries one): a flag byte, seconds, nanoseconds, then the name and its NUL.
struct Spot(Box<[u8]>);

impl Spot {
    const HEAD: usize = 13;

    fn new(name: &CStr, born: Option<BirthTime>) -> Spot {
        let (secs, nsec) = born.unwrap_or((0, 0));
        let mut v = Vec::with_capacity(Self::HEAD + name.to_bytes_with_nul().len());
        v.push(u8::from(born.is_some()));
        v.extend_from_slice(&secs.to_ne_bytes());
        v.extend_from_slice(&nsec.to_ne_bytes());
        v.extend_from_slice(name.to_bytes_with_nul());
        Spot(v.into_boxed_slice())
    }

    fn name(&self) -> &CStr {
        CStr::from_bytes_with_nul(&self.0[Self::HEAD..]).unwrap_or(c"")
    }

    fn born(&self) -> Option<BirthTime> {
        let mut secs = [0; 8];
        let mut nsec = [0; 4];
        secs.copy_from_slice(&self.0[1..9]);
        nsec.copy_from_slice(&self.0[9..Self::HEAD]);
        (self.0[0] != 0).then(|| (i64::from_ne_bytes(secs), u32::from_ne_bytes(nsec)))
    }
}

struct Slot {
    fd: Option<InodeFd>,
    /// Set by each use, cleared by the evictor's first look.
    used: bool,
    reopen: Reopen,
}

pub struct InodeData {
    pub id: u64,
    /// Serialises record read-modify-write and caches the record (rootless mode only,
    /// so boxed on first use: a root server's inodes stay small).
    overlay: OnceLock<Box<Mutex<OverlayCache>>>,
    pub key: InodeKey,
    /// `S_IFMT` bits of the host inode.
    pub file_type: u32,
    /// For a directory: whether the host compares names in it case-sensitively,
    /// once known (see `casefold`).
    pub case_sensitive: OnceLock<bool>,
    /// For a folding directory: its names as last listed.
    pub case_names: super::casefold::Names,
    slot: Mutex<Slot>,
    /// Open files and directories of this inode: it is not evicted while any exist.
    pins: AtomicU32,
    lookups: AtomicU64,
    me: Weak<InodeData>,
    cache: Arc<FdCache>,
}

fn estale() -> io::Error {
    io::Error::from_raw_os_error(libc::ESTALE)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl InodeData {
    /// The record cache, locked.
    pub fn overlay_cache(&self) -> MutexGuard<'_, OverlayCache> {
        lock(self.overlay.get_or_init(Box::default))
    }

    /// The inode's `O_PATH` fd, reopened if it was evicted.
    pub fn fd(&self) -> io::Result<InodeFd> {
        let handle = {
            let mut slot = lock(&self.slot);
            slot.used = true;
            match (&slot.fd, &slot.reopen) {
                (Some(fd), _) => return Ok(fd.clone()),
                (None, Reopen::Handle(Some(handle))) => Some(handle.clone()),
                (None, Reopen::Place { .. }) => None,
                (None, _) => return Err(estale()),
            }
        };
        let Some(handle) = handle else {
            return self.reopen_by_place();
        };
        let mount = self.cache.mount_fd(self.key.mnt_id)?;
        let fd =
            platform::open_file_handle(mount.as_fd(), &handle, platform::O_PATH).map_err(|e| {
                match e.raw_os_error() {
                    Some(libc::ENOENT) => estale(),
                    _ => e,
                }
            })?;
        Ok(self.install(self.verify(fd, None)?))
    }

    /// The cached fd, if any, marked used.
    fn cached(&self) -> Option<InodeFd> {
        let mut slot = lock(&self.slot);
        slot.used = true;
        slot.fd.clone()
    }

    /// Puts a reopened fd in the slot, unless another thread was quicker.
    fn install(&self, fd: OwnedFd) -> InodeFd {
        let mut slot = lock(&self.slot);
        if let Some(fd) = &slot.fd {
            return fd.clone();
        }
        let fd = Arc::new(fd);
        slot.fd = Some(fd.clone());
        drop(slot);
        self.cache.admit(self.me.clone());
        fd
    }

    /// Where this inode was last seen: (parent, name, birth time).
    fn place(&self) -> io::Result<(Arc<InodeData>, CString, Option<BirthTime>)> {
        match &lock(&self.slot).reopen {
            Reopen::Place { parent, spot } => {
                Ok((parent.clone(), spot.name().to_owned(), spot.born()))
            }
            _ => Err(estale()),
        }
    }

    /// Reopens through the nearest ancestor that still has its fd, one component at a
    /// time downwards. Iterative and bounded: places are only hints, and a host user can
    /// make them form a cycle.
    fn reopen_by_place(&self) -> io::Result<InodeFd> {
        const MAX_DEPTH: usize = 4096;
        let mut chain = Vec::new();
        let mut node = self.me.upgrade().ok_or_else(estale)?;
        let mut dir = loop {
            if let Some(fd) = node.cached() {
                break fd;
            }
            let (parent, name, born) = node.place()?;
            if chain.len() == MAX_DEPTH {
                log::warn!(
                    "inode {}: no ancestor with an fd within {MAX_DEPTH} levels",
                    self.id
                );
                return Err(estale());
            }
            chain.push((node, name, born));
            node = parent;
        };
        for (node, name, born) in chain.into_iter().rev() {
            let fd = node.open_in(dir.as_fd(), &name)?;
            dir = node.install(node.verify(fd, Some(born))?);
        }
        Ok(dir)
    }

    /// `name` in `dir`, as an `O_PATH` fd, never following a symlink.
    fn open_in(&self, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
        let open = || platform::openat(dir, name, platform::O_PATH | libc::O_NOFOLLOW, 0);
        // The caller may lack search permission where the client already resolved the
        // node; reopening what was resolved before is the server's business.
        match open() {
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
                let _server = self.cache.creds.as_server()?;
                open()
            }
            r => r,
        }
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP) => estale(),
            _ => e,
        })
    }

    /// `fd` if it is still this inode (and born at `born`, where given), else ESTALE.
    fn verify(&self, fd: OwnedFd, born: Option<Option<BirthTime>>) -> io::Result<OwnedFd> {
        let (_, key, now_born) = platform::statx_identity_born(fd.as_fd())?;
        if key != self.key || born.is_some_and(|b| b != now_born) {
            log::debug!("inode {}: reopened another object; ESTALE", self.id);
            return Err(estale());
        }
        Ok(fd)
    }

    /// Whether the inode's fd is open (the evictor counts this as a use).
    fn holds_fd(&self) -> bool {
        let mut slot = lock(&self.slot);
        slot.used = true;
        slot.fd.is_some()
    }

    /// A lookup just opened this inode again: an evicted inode takes that fd, a reopen
    /// for free (it is this inode: the caller found it by its key).
    fn adopt(&self, fd: OwnedFd) {
        let mut slot = lock(&self.slot);
        slot.used = true;
        if slot.fd.is_some() {
            return;
        }
        slot.fd = Some(Arc::new(fd));
        drop(slot);
        self.cache.admit(self.me.clone());
    }

    /// Keeps the inode's fd cached while a file or directory of it is open.
    pub fn pin(&self) {
        self.pins.fetch_add(1, Ordering::Relaxed);
    }

    pub fn unpin(&self) {
        let _ = self
            .pins
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Remembers `parent`/`name` as where to reopen this inode from (reopen by place).
    fn place_at(&self, parent: &Arc<InodeData>, name: &CStr, born: Option<BirthTime>) {
        let mut slot = lock(&self.slot);
        match &mut slot.reopen {
            Reopen::Place { parent: p, spot } if p.id == parent.id && spot.name() == name => {}
            Reopen::Place { parent: p, spot } => {
                *p = parent.clone();
                *spot = Spot::new(name, spot.born());
            }
            Reopen::Handle(_) => {}
            Reopen::Pinned => {
                if self.id != ROOT_ID && self.cache.max_open != usize::MAX {
                    slot.reopen = Reopen::Place {
                        parent: parent.clone(),
                        spot: Spot::new(name, born),
                    };
                }
            }
        }
    }

    /// Closes the cached fd if nobody uses it and it may be reopened.
    fn try_evict(&self) -> Eviction {
        let Ok(mut slot) = self.slot.try_lock() else {
            return Eviction::Later;
        };
        let slot = &mut *slot;
        let Some(fd) = &slot.fd else {
            return Eviction::Never;
        };
        if self.pins.load(Ordering::Relaxed) > 0 || Arc::strong_count(fd) > 1 {
            return Eviction::Later;
        }
        if std::mem::take(&mut slot.used) {
            return Eviction::Later;
        }
        if let Reopen::Handle(None) = slot.reopen {
            match platform::file_handle(fd.as_fd()) {
                Ok(handle) if self.cache.know_mount(self.key.mnt_id, fd, self.is_dir()) => {
                    slot.reopen = Reopen::Handle(Some(handle));
                }
                Ok(_) => {
                    log::debug!(
                        "inode {}: no directory of its mount known; kept open",
                        self.id
                    );
                    slot.reopen = Reopen::Pinned;
                }
                Err(e) => {
                    log::debug!("inode {}: no file handle ({e}); kept open", self.id);
                    slot.reopen = Reopen::Pinned;
                }
            }
        }
        if let Reopen::Pinned = slot.reopen {
            return Eviction::Never;
        }
        slot.fd = None;
        self.cache.open.fetch_sub(1, Ordering::Relaxed);
        Eviction::Done
    }

    pub fn is_dir(&self) -> bool {
        self.file_type == mode::S_IFDIR
    }

    pub fn is_symlink(&self) -> bool {
        self.file_type == mode::S_IFLNK
    }
}

impl Drop for InodeData {
    fn drop(&mut self) {
        let slot = self.slot.get_mut().unwrap_or_else(|e| e.into_inner());
        if slot.fd.is_some() {
            self.cache.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

enum Eviction {
    Done,
    /// In use or recently used: looked at again on the next round.
    Later,
    /// Out of the ring for good (pinned, or already closed).
    Never,
}

/// How inodes are named once their fd is evicted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FileHandles {
    /// Always by parent and name.
    Never,
    /// By file handle where the server may open handles, else by parent and name.
    Prefer,
    /// By file handle; the server refuses to start where it cannot open them.
    Mandatory,
}

/// The fd cache shared by every inode of one table.
struct FdCache {
    /// `usize::MAX`: every inode keeps its fd (no eviction).
    max_open: usize,
    open: AtomicUsize,
    /// Inodes with an fd, in CLOCK order.
    ring: Mutex<VecDeque<Weak<InodeData>>>,
    handles: bool,
    /// One fd per mount, for `open_by_handle_at`.
    mounts: Mutex<HashMap<u64, InodeFd>>,
    creds: CredentialPolicy,
}

impl FdCache {
    /// Counts a newly opened inode fd and evicts others beyond the budget.
    fn admit(&self, inode: Weak<InodeData>) {
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        if self.max_open == usize::MAX {
            return;
        }
        let mut ring = lock(&self.ring);
        ring.push_back(inode);
        if open > self.max_open {
            // Bounded: with everything pinned or busy the cache runs over rather than stall.
            let mut want = open - self.max_open;
            let mut scans = 64 + 4 * want;
            while want > 0 && scans > 0 {
                scans -= 1;
                let Some(weak) = ring.pop_front() else { break };
                let Some(data) = weak.upgrade() else { continue };
                match data.try_evict() {
                    Eviction::Done => want -= 1,
                    Eviction::Later => ring.push_back(weak),
                    Eviction::Never => {}
                }
            }
        }
        // Forgotten inodes leave dead entries behind; sweep them now and then.
        if ring.len() > 2 * open + 1024 {
            ring.retain(|w| w.strong_count() > 0);
        }
    }

    /// Makes sure handles of mount `mnt_id` can be opened: `open_by_handle_at` needs a
    /// real (not `O_PATH`) fd on the mount, which `fd` gives if it is a directory.
    fn know_mount(&self, mnt_id: u64, fd: &InodeFd, is_dir: bool) -> bool {
        let mut mounts = lock(&self.mounts);
        if mounts.contains_key(&mnt_id) {
            return true;
        }
        if !is_dir {
            return false;
        }
        let _server = self.creds.as_server();
        match platform::reopen(fd.as_fd(), libc::O_RDONLY | libc::O_DIRECTORY) {
            Ok(dir) => {
                mounts.insert(mnt_id, Arc::new(dir));
                true
            }
            Err(_) => false,
        }
    }

    fn mount_fd(&self, mnt_id: u64) -> io::Result<InodeFd> {
        lock(&self.mounts).get(&mnt_id).cloned().ok_or_else(estale)
    }
}

#[derive(Default)]
struct Maps {
    by_id: HashMap<u64, Arc<InodeData>>,
    by_key: HashMap<InodeKey, u64>,
}

pub struct InodeStore {
    maps: RwLock<Maps>,
    next_id: AtomicU64,
    cache: Arc<FdCache>,
}

fn ebadf() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}

/// Where a new inode was found: its parent and name, for reopening it by place.
pub type Found<'a> = Option<(&'a Arc<InodeData>, &'a CStr)>;

/// How the fd cache is sized and how it reopens.
pub struct CacheConfig {
    /// Most inode fds held at once; `None`: no limit (no eviction).
    pub max_open: Option<usize>,
    pub handles: FileHandles,
    pub creds: CredentialPolicy,
}

impl InodeStore {
    pub fn new(
        root_fd: OwnedFd,
        root_key: InodeKey,
        file_type: u32,
        cfg: CacheConfig,
    ) -> io::Result<Self> {
        let handles = match cfg.handles {
            FileHandles::Never => false,
            FileHandles::Prefer => match handles_work(&root_fd) {
                Ok(()) => true,
                Err(e) => {
                    log::info!("inode file handles unusable ({e}): evicted inodes reopen by name");
                    false
                }
            },
            FileHandles::Mandatory => {
                handles_work(&root_fd).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("--inode-file-handles mandatory: {e} (needs CAP_DAC_READ_SEARCH and a filesystem that exports handles)"),
                    )
                })?;
                true
            }
        };
        let mut mounts = HashMap::new();
        if handles {
            let dir = platform::reopen(root_fd.as_fd(), libc::O_RDONLY | libc::O_DIRECTORY)?;
            mounts.insert(root_key.mnt_id, Arc::new(dir));
        }
        let root_fd = Arc::new(root_fd);
        let cache = Arc::new(FdCache {
            max_open: cfg.max_open.unwrap_or(usize::MAX).max(1),
            open: AtomicUsize::new(1),
            ring: Mutex::default(),
            handles,
            mounts: Mutex::new(mounts),
            creds: cfg.creds,
        });
        let root = Arc::new_cyclic(|me| InodeData {
            id: ROOT_ID,
            overlay: OnceLock::new(),
            key: root_key,
            file_type,
            case_sensitive: OnceLock::new(),
            case_names: Default::default(),
            slot: Mutex::new(Slot {
                fd: Some(root_fd),
                used: true,
                reopen: Reopen::Pinned,
            }),
            pins: AtomicU32::new(0),
            // The root is never forgotten: it holds one lookup of its own.
            lookups: AtomicU64::new(1),
            me: me.clone(),
            cache: cache.clone(),
        });
        let mut maps = Maps::default();
        maps.by_key.insert(root_key, ROOT_ID);
        maps.by_id.insert(ROOT_ID, root);
        Ok(InodeStore {
            maps: RwLock::new(maps),
            next_id: AtomicU64::new(ROOT_ID + 1),
            cache,
        })
    }

    /// True if evicted inodes reopen by file handle.
    pub fn uses_handles(&self) -> bool {
        self.cache.handles
    }

    /// True if inodes must know their parent and name (reopen by place).
    pub fn tracks_places(&self) -> bool {
        !self.cache.handles && self.cache.max_open != usize::MAX
    }

    /// Inode fds held open now.
    pub fn open_fds(&self) -> usize {
        self.cache.open.load(Ordering::Relaxed)
    }

    pub fn get(&self, id: u64) -> io::Result<Arc<InodeData>> {
        let maps = self.maps.read().unwrap_or_else(|e| e.into_inner());
        maps.by_id.get(&id).cloned().ok_or_else(ebadf)
    }

    /// Records one client lookup of the host inode behind `fd`, found as `found`.
    /// Returns the node, reusing the existing one (and dropping `fd`) when the inode
    /// is already known.
    pub fn insert_or_ref(
        &self,
        fd: OwnedFd,
        key: InodeKey,
        file_type: u32,
        born: Option<BirthTime>,
        found: Found<'_>,
    ) -> Arc<InodeData> {
        // A known inode needs only the read lock: forgets, which alone lower the count,
        // hold the write lock.
        let known = |maps: &Maps| {
            let data = maps.by_key.get(&key).and_then(|id| maps.by_id.get(id))?;
            data.lookups.fetch_add(1, Ordering::Relaxed);
            Some(data.clone())
        };
        if let Some(data) = known(&self.maps.read().unwrap_or_else(|e| e.into_inner())) {
            return self.found_again(data, fd, born, found);
        }
        let mut maps = self.maps.write().unwrap_or_else(|e| e.into_inner());
        if let Some(data) = known(&maps) {
            drop(maps);
            return self.found_again(data, fd, born, found);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let reopen = match found {
            _ if self.cache.handles => Reopen::Handle(None),
            Some((parent, name)) if self.tracks_places() => Reopen::Place {
                parent: parent.clone(),
                spot: Spot::new(name, born),
            },
            _ => Reopen::Pinned,
        };
        let data = Arc::new_cyclic(|me| InodeData {
            id,
            overlay: OnceLock::new(),
            key,
            file_type,
            case_sensitive: OnceLock::new(),
            case_names: Default::default(),
            slot: Mutex::new(Slot {
                fd: Some(Arc::new(fd)),
                used: true,
                reopen,
            }),
            pins: AtomicU32::new(0),
            lookups: AtomicU64::new(1),
            me: me.clone(),
            cache: self.cache.clone(),
        });
        maps.by_key.insert(key, id);
        maps.by_id.insert(id, data.clone());
        drop(maps);
        self.cache.admit(Arc::downgrade(&data));
        data
    }

    /// Records one client lookup of inode `key` if the table holds it with an open fd,
    /// found as `found`. The fd keeps the inode alive, so `key` cannot name a reused
    /// inode number; a node without one is looked up the long way (`insert_or_ref`).
    pub fn ref_if_open(
        &self,
        key: InodeKey,
        born: Option<BirthTime>,
        found: Found<'_>,
    ) -> Option<Arc<InodeData>> {
        let data = {
            let maps = self.maps.read().unwrap_or_else(|e| e.into_inner());
            let data = maps.by_key.get(&key).and_then(|id| maps.by_id.get(id))?;
            if !data.holds_fd() {
                return None;
            }
            data.lookups.fetch_add(1, Ordering::Relaxed);
            data.clone()
        };
        self.note_place(&data, born, found);
        Some(data)
    }

    /// Where a lookup found a known inode, for inodes reopened by their place.
    fn note_place(&self, data: &InodeData, born: Option<BirthTime>, found: Found<'_>) {
        if let (true, Some((parent, name))) = (self.tracks_places(), found) {
            data.place_at(parent, name, born);
        }
    }

    /// A lookup met an inode already in the table: note where, keep the fresh fd if
    /// the node has none.
    fn found_again(
        &self,
        data: Arc<InodeData>,
        fd: OwnedFd,
        born: Option<BirthTime>,
        found: Found<'_>,
    ) -> Arc<InodeData> {
        self.note_place(&data, born, found);
        data.adopt(fd);
        data
    }

    /// After a rename: the inode `key` (if known) now lives at `parent`/`name`.
    pub fn moved(&self, key: InodeKey, parent: &Arc<InodeData>, name: &CStr) {
        if !self.tracks_places() {
            return;
        }
        let data = {
            let maps = self.maps.read().unwrap_or_else(|e| e.into_inner());
            maps.by_key
                .get(&key)
                .and_then(|id| maps.by_id.get(id))
                .cloned()
        };
        if let Some(data) = data {
            data.place_at(parent, name, None);
        }
    }

    /// Drops `count` client references; the inode leaves the table at zero.
    pub fn forget(&self, id: u64, count: u64) {
        self.forget_many(&[(id, count)]);
    }

    /// Counts drop under the read lock; only inodes that reach zero take the write lock.
    pub fn forget_many(&self, requests: &[(u64, u64)]) {
        let mut unused = false;
        {
            let maps = self.maps.read().unwrap_or_else(|e| e.into_inner());
            for &(id, count) in requests {
                if let Some(data) = maps.by_id.get(&id).filter(|_| id != ROOT_ID) {
                    let drop_count = |n: u64| Some(n.saturating_sub(count));
                    let before =
                        data.lookups
                            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, drop_count);
                    unused |= before.is_ok_and(|n| n <= count);
                }
            }
        }
        if !unused {
            return;
        }
        let mut maps = self.maps.write().unwrap_or_else(|e| e.into_inner());
        for &(id, _) in requests {
            // A lookup may have found the inode again since: the count says.
            let Some(data) = maps.by_id.get(&id).filter(|_| id != ROOT_ID) else {
                continue;
            };
            if data.lookups.load(Ordering::Relaxed) == 0 {
                let key = data.key;
                maps.by_id.remove(&id);
                if maps.by_key.get(&key) == Some(&id) {
                    maps.by_key.remove(&key);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.maps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .by_id
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether this server can name the share's root by handle and open it again.
fn handles_work(root: &OwnedFd) -> io::Result<()> {
    let handle = platform::file_handle(root.as_fd())?;
    let dir = platform::reopen(root.as_fd(), libc::O_RDONLY | libc::O_DIRECTORY)?;
    platform::open_file_handle(dir.as_fd(), &handle, platform::O_PATH).map(drop)
}
