//! ownfs: a passthrough file server that keeps POSIX ownership and permission
//! semantics exact.
//!
//! - [`platform`]: the only place that calls the host kernel directly.
//! - [`creds`]: per-thread caller credentials.
//! - [`fs`]: the passthrough `FileSystem`.
//! - [`transport`]: ways to reach it (local `/dev/fuse` mount).
//! - [`sandbox`]: confining a server to its share (namespace, chroot).
//! - [`backing`]: kernel passthrough of open files, between the two.
//! - [`extension`]: operations newer than fuse-backend-rs's `FileSystem` trait.
//! - [`notify`]: invalidating what the client kernel cached, between the two.
//! - [`sandbox`]: what a running server may still do (seccomp).
//! - [`socket`]: the Unix sockets servers listen on.
//! - [`protocol`]: the portable Linux FUSE wire codec (decode requests, encode replies).
//! - [`stats`]: live per-operation statistics, between transports and filesystem.
//! - [`tools`]: offline views of a rootless share (owner listing, tar export).

pub mod backing;
pub mod creds;
pub mod extension;
pub mod fs;
pub mod negotiate;
pub mod notify;
pub mod platform;
pub mod protocol;
pub mod sandbox;
pub mod socket;
pub mod stats;
#[cfg(test)]
mod test_support;
pub mod tools;
pub mod transport;
