//! Transports deliver FUSE requests to a `FileSystem` and carry replies back.
//! They know nothing of the filesystem behind them.

#[cfg(target_os = "linux")]
pub mod fusedev;
pub mod pipe;
pub mod vhost_user;
pub mod virtiofs;
