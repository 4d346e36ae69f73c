//! Which open files the client kernel reads and writes itself (kernel passthrough).
//!
//! The kernel's rules (fs/fuse/iomode.c): all passthrough opens of one inode share one
//! backing file, and an inode is never open with and without passthrough at once (the
//! kernel fails such an open with EIO). So the backing id lives per inode, counted by
//! its opens, and an inode already open through the server keeps further opens there.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::backing::BackingFiles;

enum Mode {
    Passthrough { id: u32, opens: usize },
    Server { opens: usize },
}

pub struct KernelIo {
    backing: Arc<dyn BackingFiles>,
    inodes: Mutex<HashMap<u64, Mode>>,
    warned: AtomicBool,
}

impl KernelIo {
    pub fn new(backing: Arc<dyn BackingFiles>) -> Self {
        KernelIo {
            backing,
            inodes: Mutex::new(HashMap::new()),
            warned: AtomicBool::new(false),
        }
    }

    pub fn enabled(&self) -> bool {
        self.backing.enabled()
    }

    /// Counts one open of regular file `inode` (host file `file`) and returns the backing
    /// id when the kernel is to do its I/O. Registration runs with the calling thread's
    /// credentials, which the kernel keeps for that I/O.
    pub fn open(&self, inode: u64, file: BorrowedFd<'_>) -> Option<u32> {
        let mut inodes = self.inodes.lock().unwrap_or_else(|e| e.into_inner());
        match inodes.entry(inode) {
            Entry::Occupied(mut e) => match e.get_mut() {
                Mode::Passthrough { id, opens } => {
                    *opens += 1;
                    Some(*id)
                }
                Mode::Server { opens } => {
                    *opens += 1;
                    None
                }
            },
            Entry::Vacant(e) => match self.backing.open(file) {
                Ok(id) => {
                    e.insert(Mode::Passthrough { id, opens: 1 });
                    Some(id)
                }
                Err(err) => {
                    if !self.warned.swap(true, Ordering::Relaxed) {
                        log::warn!("kernel passthrough refused ({err}): serving I/O instead");
                    } else {
                        log::debug!("kernel passthrough refused for inode {inode}: {err}");
                    }
                    e.insert(Mode::Server { opens: 1 });
                    None
                }
            },
        }
    }

    /// Forgets one open counted by `open`; the last one frees the backing id.
    pub fn release(&self, inode: u64) {
        let mut inodes = self.inodes.lock().unwrap_or_else(|e| e.into_inner());
        let Entry::Occupied(mut e) = inodes.entry(inode) else {
            return;
        };
        let (opens, id) = match e.get_mut() {
            Mode::Passthrough { id, opens } => (opens, Some(*id)),
            Mode::Server { opens } => (opens, None),
        };
        *opens = opens.saturating_sub(1);
        if *opens > 0 {
            return;
        }
        e.remove();
        if let Some(id) = id {
            if let Err(err) = self.backing.close(id) {
                log::warn!("closing backing id {id}: {err}");
            }
        }
    }
}
