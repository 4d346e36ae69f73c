//! The inode table: client node ids mapped to host inodes pinned by `O_PATH` fds.
//!
//! Host inodes are deduplicated by (dev, ino, mnt_id). Node ids are handed out
//! sequentially and never reused while the server runs, so an id the client holds
//! stays valid until the client forgets it.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use super::record::Record;
use crate::platform::{mode, InodeKey};

pub const ROOT_ID: u64 = 1;

/// The ownership record of an inode as last read, valid while the host ctime is unchanged.
#[derive(Default)]
pub struct OverlayCache {
    pub ctime: Option<(i64, i64)>,
    pub record: Option<Record>,
    /// A record of a version we do not know: shown as absent, never overwritten.
    pub foreign: bool,
}

pub struct InodeData {
    pub id: u64,
    /// Serialises record read-modify-write and caches the record (rootless mode).
    pub overlay: Mutex<OverlayCache>,
    pub key: InodeKey,
    /// `S_IFMT` bits of the host inode.
    pub file_type: u32,
    /// For a directory: whether the host compares names in it case-sensitively,
    /// once known (see `casefold`).
    pub case_sensitive: OnceLock<bool>,
    /// For a folding directory: its names as last listed.
    pub case_names: super::casefold::Names,
    fd: OwnedFd,
    lookups: AtomicU64,
}

impl InodeData {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn is_dir(&self) -> bool {
        self.file_type == mode::S_IFDIR
    }

    pub fn is_symlink(&self) -> bool {
        self.file_type == mode::S_IFLNK
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
}

fn ebadf() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}

impl InodeStore {
    pub fn new(root_fd: OwnedFd, root_key: InodeKey, file_type: u32) -> Self {
        let mut maps = Maps::default();
        let root = Arc::new(InodeData {
            id: ROOT_ID,
            overlay: Mutex::default(),
            key: root_key,
            file_type,
            case_sensitive: OnceLock::new(),
            case_names: Default::default(),
            fd: root_fd,
            // The root is never forgotten: it holds one lookup of its own.
            lookups: AtomicU64::new(1),
        });
        maps.by_key.insert(root_key, ROOT_ID);
        maps.by_id.insert(ROOT_ID, root);
        InodeStore {
            maps: RwLock::new(maps),
            next_id: AtomicU64::new(ROOT_ID + 1),
        }
    }

    pub fn get(&self, id: u64) -> io::Result<Arc<InodeData>> {
        let maps = self.maps.read().unwrap_or_else(|e| e.into_inner());
        maps.by_id.get(&id).cloned().ok_or_else(ebadf)
    }

    /// Records one client lookup of the host inode behind `fd`. Returns the node id,
    /// reusing the existing one (and dropping `fd`) when the inode is already known.
    pub fn insert_or_ref(&self, fd: OwnedFd, key: InodeKey, file_type: u32) -> Arc<InodeData> {
        let mut maps = self.maps.write().unwrap_or_else(|e| e.into_inner());
        if let Some(&id) = maps.by_key.get(&key) {
            if let Some(data) = maps.by_id.get(&id) {
                data.lookups.fetch_add(1, Ordering::Relaxed);
                return data.clone();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let data = Arc::new(InodeData {
            id,
            overlay: Mutex::default(),
            key,
            file_type,
            case_sensitive: OnceLock::new(),
            case_names: Default::default(),
            fd,
            lookups: AtomicU64::new(1),
        });
        maps.by_key.insert(key, id);
        maps.by_id.insert(id, data.clone());
        data
    }

    /// Drops `count` client references; the inode leaves the table at zero.
    pub fn forget(&self, id: u64, count: u64) {
        if id == ROOT_ID {
            return;
        }
        let mut maps = self.maps.write().unwrap_or_else(|e| e.into_inner());
        Self::forget_locked(&mut maps, id, count);
    }

    pub fn forget_many(&self, requests: &[(u64, u64)]) {
        let mut maps = self.maps.write().unwrap_or_else(|e| e.into_inner());
        for &(id, count) in requests {
            if id != ROOT_ID {
                Self::forget_locked(&mut maps, id, count);
            }
        }
    }

    fn forget_locked(maps: &mut Maps, id: u64, count: u64) {
        let Some(data) = maps.by_id.get(&id) else {
            return;
        };
        let left = data.lookups.load(Ordering::Relaxed).saturating_sub(count);
        data.lookups.store(left, Ordering::Relaxed);
        if left == 0 {
            let key = data.key;
            maps.by_id.remove(&id);
            if maps.by_key.get(&key) == Some(&id) {
                maps.by_key.remove(&key);
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
