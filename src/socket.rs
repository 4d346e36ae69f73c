//! Listening Unix sockets that servers publish on the host: who may connect is decided
//! by the socket file's mode and group, so it is never more open than asked.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

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
