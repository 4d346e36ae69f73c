//! Stream sockets of the servers: `unix:` and `vsock:` addresses, connecting, and the
//! listening Unix sockets servers publish on the host, where who may connect is decided
//! by the socket file's mode and group, so it is never more open than asked.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::platform;

/// Mode and group of a Unix listener's socket file: whoever can connect is served
/// (subject to the peer and token checks), so the default is the owner only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketPerms {
    pub mode: u32,
    pub group: Option<u32>,
}

impl SocketPerms {
    /// `mode`, else 0660 with a group and 0600 without.
    pub fn new(mode: Option<u32>, group: Option<u32>) -> SocketPerms {
        let mode = mode.unwrap_or(if group.is_some() { 0o660 } else { 0o600 });
        SocketPerms { mode, group }
    }
}

impl Default for SocketPerms {
    fn default() -> Self {
        SocketPerms::new(None, None)
    }
}

/// Binds `path` with `perms`. A leftover socket file that nobody answers on is
/// replaced; one that a live server answers on is an error, and so is any other file.
pub fn bind_unix(path: &Path, perms: SocketPerms) -> io::Result<UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use by a running server", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    // Created with no permission bits, then opened up to `perms` (umask is
    // process-wide: call this before starting threads that create files).
    let old = platform::set_umask(0o777);
    let bound = UnixListener::bind(path);
    platform::set_umask(old);
    let listener = bound?;
    let publish = || {
        if let Some(gid) = perms.group {
            std::os::unix::fs::lchown(path, None, Some(gid))?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(perms.mode))
    };
    if let Err(e) = publish() {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(listener)
}

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
    let stream = match addr {
        Address::Unix(p) => UnixStream::connect(p),
        Address::Vsock { cid, port } => platform::vsock_connect(*cid, *port).map(vsock_stream),
    }?;
    widen_send_buffer(&stream);
    Ok(stream)
}

/// Room for a whole 1 MiB READ or WRITE message (and a few more) in the socket: with
/// the default ~208 KiB, the sender sleeps several times per message while the peer
/// drains it. Best effort: the kernel caps it at `net.core.wmem_max`.
fn widen_send_buffer(stream: &Stream) {
    use nix::sys::socket::{setsockopt, sockopt};
    if let Err(e) = setsockopt(stream, sockopt::SndBuf, &(4 << 20)) {
        log::debug!("SO_SNDBUF: {e}");
    }
}

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
                listener: bind_unix(path, perms)?,
                path: path.clone(),
            }),
            Address::Vsock { cid, port } => {
                platform::vsock_listen(*cid, *port, 128).map(Listener::Vsock)
            }
        }
    }

    /// Waits for the next connection; returns it and a description of the peer. A
    /// signal is retried at once, running out of descriptors 100 ms later.
    pub fn accept(&self) -> io::Result<(Stream, String)> {
        loop {
            let accepted = match self {
                Listener::Unix { listener, path } => listener
                    .accept()
                    .map(|(s, _)| (s, format!("unix:{}", path.display()))),
                Listener::Vsock(fd) => platform::vsock_accept(fd.as_fd())
                    .map(|(s, cid)| (vsock_stream(s), format!("vsock cid {cid}"))),
            };
            match accepted {
                Ok((stream, peer)) => {
                    widen_send_buffer(&stream);
                    return Ok((stream, peer));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    log::error!("accept: {e}; retrying in 100 ms");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => return Err(e),
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
