//! fuse-pipe: the kernel's FUSE messages carried over a stream socket.
//!
//! A guest without virtio-fs (a Firecracker microVM) mounts `/dev/fuse` with
//! [`client::Client`], which sends every request the kernel makes, with the caller's
//! supplementary groups, over vsock (or a Unix socket) to [`server::PipeServer`] on the
//! host. The server decodes and answers them with the protocol core's `Session`, one
//! per connection; it uses no `/dev/fuse` pieces, so it runs on hosts without Linux FUSE.
//!
//! - [`wire`]: handshake and frames.
//! - [`ids`]: server epochs in the node ids and handles the client's kernel sees.
//! - [`server`]: accept loop and per-connection workers.
//! - [`client`]: the kernel's requests over one self-healing connection.
//! - [`auth`]: the peer uid allow list and the shared token.
//!
//! `docs/protocol.md` describes the protocol and its failure semantics.

pub mod auth;
#[cfg(target_os = "linux")]
pub mod client;
pub mod ids;
pub mod server;
pub mod wire;
