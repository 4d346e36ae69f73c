//! Open file and directory handles.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// Read position of an open directory, kept between readdir calls.
pub struct DirCursor {
    /// Directory offset of the next unconsumed entry in `buf`, or `None` if unknown.
    pub pos: Option<u64>,
    pub buf: Vec<u8>,
    pub filled: usize,
    pub consumed: usize,
}

pub struct HandleData {
    pub inode: u64,
    fd: OwnedFd,
    dir: Option<Mutex<DirCursor>>,
    /// Counted in the kernel I/O table (regular files while passthrough is on).
    pub kernel_io: bool,
}

impl HandleData {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn dir_cursor(&self) -> io::Result<MutexGuard<'_, DirCursor>> {
        match &self.dir {
            Some(m) => Ok(m.lock().unwrap_or_else(|e| e.into_inner())),
            None => Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
        }
    }
}

pub struct HandleTable {
    map: RwLock<HashMap<u64, Arc<HandleData>>>,
    next: AtomicU64,
}

impl Default for HandleTable {
    fn default() -> Self {
        HandleTable {
            map: RwLock::new(HashMap::new()),
            next: AtomicU64::new(1),
        }
    }
}

impl HandleTable {
    pub fn insert(&self, inode: u64, fd: OwnedFd, is_dir: bool) -> u64 {
        self.insert_with(inode, fd, is_dir, false)
    }

    pub fn insert_with(&self, inode: u64, fd: OwnedFd, is_dir: bool, kernel_io: bool) -> u64 {
        let dir = is_dir.then(|| {
            Mutex::new(DirCursor {
                pos: None,
                buf: Vec::new(),
                filled: 0,
                consumed: 0,
            })
        });
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let data = Arc::new(HandleData {
            inode,
            fd,
            dir,
            kernel_io,
        });
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, data);
        id
    }

    /// The handle, checked to belong to `inode` so a client cannot mix them up.
    pub fn get(&self, id: u64, inode: u64) -> io::Result<Arc<HandleData>> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        match map.get(&id) {
            Some(h) if h.inode == inode => Ok(h.clone()),
            _ => Err(io::Error::from_raw_os_error(libc::EBADF)),
        }
    }

    pub fn remove(&self, id: u64, inode: u64) -> io::Result<Arc<HandleData>> {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        match map.get(&id) {
            Some(h) if h.inode == inode => {}
            _ => return Err(io::Error::from_raw_os_error(libc::EBADF)),
        }
        map.remove(&id)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))
    }
}
