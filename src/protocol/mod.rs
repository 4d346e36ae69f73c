//! A portable codec for the Linux FUSE kernel protocol (7.9 to 7.45), shared by
//! every transport.
//!
//! Requests are decoded from byte buffers and replies and notifications are
//! encoded into caller-owned buffers. All layouts are explicit and little-endian
//! (the peers are little-endian Linux kernels; a big-endian peer's INIT is
//! reported as [`wire::DecodeError::WrongEndian`]), so the codec behaves the same
//! on a macOS host as on Linux. No `unsafe`, no host struct layouts, no panics on
//! any input, and no allocation: decoded requests borrow from the input.
//!
//! - [`abi`]: opcodes, flags, notification codes, struct layouts and sizes.
//! - [`wire`]: the little-endian [`wire::Reader`] and [`wire::Writer`] cursors.
//! - [`request`]: [`request::parse`] from a message into a [`request::Request`].
//! - [`reply`]: out-header, reply bodies, dirent packing and notifications.
//! - [`dispatch`]: a [`dispatch::Session`] serving decoded requests from a
//!   `FileSystem`, with [`host`] translating its types and [`iobuf`] its data buffers.

#![forbid(unsafe_code)]

pub mod abi;
pub mod dispatch;
pub mod host;
pub mod iobuf;
pub mod reply;
pub mod request;
pub mod wire;
