//! A portable vhost-user device backend: the VMM drives the device over a Unix socket
//! (descriptors passed with SCM_RIGHTS), shares guest memory as mappable descriptors
//! and notifies through eventfds (Linux) or pipes (any host). One thread polls the
//! socket and every kick with poll(2), on Linux and macOS alike; a [`Backend`] answers
//! the descriptor chains, on that thread or on a worker pool.
//!
//! The device knows nothing of what the chains carry: virtio-fs plugs in as a
//! [`Backend`] (src/transport/virtiofs.rs).

mod device;
pub mod memory;
pub mod message;
mod notifier;
mod pool;
mod ring;

pub use device::{serve_connection, DeviceConfig};
pub use memory::Memory;
pub use ring::Chain;

/// Answers the chains the driver puts on the device's queues.
pub trait Backend: Send + Sync + 'static {
    /// Answers one request; returns the bytes written into the chain's writable
    /// buffers (the used length). Never fails: a chain that cannot be answered gets 0.
    fn answer(&self, chain: Chain) -> u32;
}
