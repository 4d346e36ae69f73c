//! fuse-pipe: FUSE operations forwarded over a stream socket.
//!
//! A guest without virtio-fs (a Firecracker microVM) mounts `/dev/fuse` with
//! [`client::RemoteFs`], which sends every operation, with the caller's uid, gid, pid
//! and supplementary groups, over vsock (or a Unix socket) to [`server::PipeServer`]
//! on the host. The server calls any `FileSystem` (the passthrough) directly; it uses
//! no `/dev/fuse` pieces, so it can run on a host without Linux FUSE.
//!
//! - [`wire`]: frames, handshake and messages; plain little-endian data.
//! - [`host`]: this host's flag, stat and errno values to and from the wire's.
//! - [`server`]: accept loop, per-connection reader and worker pool, dispatch.
//! - [`client`]: one multiplexed connection with reconnect, and `RemoteFs`.
//! - [`auth`]: the peer uid allow list and the shared token.
//!
//! `docs/protocol.md` describes the protocol and its failure semantics.

pub mod auth;
#[cfg(target_os = "linux")]
pub mod client;
#[cfg(target_os = "linux")]
mod groups;
pub mod host;
pub mod server;
pub mod wire;

use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::str::FromStr;

use crate::platform;

/// Where a server listens or a client connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// `unix:PATH`. Firecracker and Cloud Hypervisor hand a guest's connection to
    /// vsock port P to the host socket `{uds_path}_{P}`: listen there.
    Unix(PathBuf),
    /// `vsock:CID:PORT` (connect, or bind to one CID) or `vsock:PORT` (listen on
    /// any CID).
    Vsock { cid: u32, port: u32 },
}

/// Any CID (for listening).
pub const VSOCK_CID_ANY: u32 = u32::MAX;

impl FromStr for Address {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path".into());
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = s.strip_prefix("vsock:") {
            let num = |v: &str, what: &str| {
                v.parse::<u32>()
                    .map_err(|_| format!("bad vsock {what} '{v}'"))
            };
            return match rest.split_once(':') {
                Some((cid, port)) => Ok(Address::Vsock {
                    cid: num(cid, "CID")?,
                    port: num(port, "port")?,
                }),
                None => Ok(Address::Vsock {
                    cid: VSOCK_CID_ANY,
                    port: num(rest, "port")?,
                }),
            };
        }
        Err(format!(
            "bad address '{s}': expected unix:PATH, vsock:CID:PORT or vsock:PORT"
        ))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
            Address::Vsock { cid, port } if *cid == VSOCK_CID_ANY => write!(f, "vsock:{port}"),
            Address::Vsock { cid, port } => write!(f, "vsock:{cid}:{port}"),
        }
    }
}

/// A connected stream. AF_VSOCK sockets are carried in a `UnixStream` too: only
/// read, write, shutdown, dup and SO_RCVTIMEO are used, and those are the same
/// system calls for every stream socket family.
pub type Stream = UnixStream;

fn vsock_stream(fd: OwnedFd) -> Stream {
    UnixStream::from(fd)
}

/// Connects to `addr`.
pub fn connect(addr: &Address) -> io::Result<Stream> {
    match addr {
        Address::Unix(p) => UnixStream::connect(p),
        Address::Vsock { cid, port } => platform::vsock_connect(*cid, *port).map(vsock_stream),
    }
}

pub use crate::socket::SocketPerms;

/// A bound, listening socket.
pub enum Listener {
    Unix {
        listener: UnixListener,
        path: PathBuf,
    },
    Vsock(OwnedFd),
}

impl Listener {
    /// Binds `addr` with the default socket permissions (0600).
    pub fn bind(addr: &Address) -> io::Result<Listener> {
        Self::bind_with(addr, SocketPerms::default())
    }

    /// Binds `addr`. A leftover Unix socket file that nobody answers on is replaced;
    /// one that a live server answers on is an error, and so is any other file. A
    /// Unix socket file gets `perms` (ignored for vsock).
    pub fn bind_with(addr: &Address, perms: SocketPerms) -> io::Result<Listener> {
        match addr {
            Address::Unix(path) => Ok(Listener::Unix {
                listener: crate::socket::bind_unix(path, perms)?,
                path: path.clone(),
            }),
            Address::Vsock { cid, port } => {
                platform::vsock_listen(*cid, *port, 128).map(Listener::Vsock)
            }
        }
    }

    /// Waits for the next connection; returns it and a description of the peer.
    pub fn accept(&self) -> io::Result<(Stream, String)> {
        match self {
            Listener::Unix { listener, path } => {
                let (s, _) = listener.accept()?;
                Ok((s, format!("unix:{}", path.display())))
            }
            Listener::Vsock(fd) => {
                let (s, cid) = platform::vsock_accept(fd.as_fd())?;
                Ok((vsock_stream(s), format!("vsock cid {cid}")))
            }
        }
    }

    /// The socket file of a Unix listener (removed when the server exits).
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            Listener::Unix { path, .. } => Some(path),
            Listener::Vsock(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses() {
        assert_eq!(
            "unix:/tmp/x.sock".parse::<Address>(),
            Ok(Address::Unix("/tmp/x.sock".into()))
        );
        assert_eq!(
            "vsock:2:5000".parse::<Address>(),
            Ok(Address::Vsock { cid: 2, port: 5000 })
        );
        assert_eq!(
            "vsock:5000".parse::<Address>(),
            Ok(Address::Vsock {
                cid: VSOCK_CID_ANY,
                port: 5000
            })
        );
        for bad in ["", "unix:", "tcp:1", "vsock:x", "vsock:1:y", "vsock:1:2:3"] {
            assert!(bad.parse::<Address>().is_err(), "{bad}");
        }
        for s in ["unix:/a/b", "vsock:3:1024", "vsock:1024"] {
            assert_eq!(s.parse::<Address>().unwrap().to_string(), s);
        }
    }
}
