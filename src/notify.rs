//! Telling the client kernel that attributes it cached changed behind its back: the seam
//! between a filesystem, which knows when an operation had side effects the client
//! kernel cannot infer, and a transport, which may have a way to say so. Transports
//! without one (virtio-fs has no notification queue in Linux guests) provide none.

use std::fmt;

pub trait Invalidator: Send + Sync + fmt::Debug {
    /// Drops the client kernel's cached attributes of node `inode`. Best effort: a node
    /// the kernel has already forgotten needs nothing.
    fn attributes(&self, inode: u64);
}
