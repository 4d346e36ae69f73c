//! The statistics control socket of a running server, and its client (`ownfs stats`).
//!
//! A server listens on `<runtime dir>/ownfs/stats/<target>.sock`, where the target is
//! its mountpoint or its own socket path, in a directory only its user can enter; the
//! socket is mode 0600 and answers only root and the server's user. A client sends
//! `table\n` or `json\n` and reads the rendering to end of file. SIGUSR1 logs the table.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{render, Stats};
use crate::platform;
use crate::socket::{self, SocketPerms};

/// Longest socket path the kernel accepts (`sun_path` less its NUL).
const MAX_SOCKET_PATH: usize = 103;
/// How long a client may take to send its request or read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// The directory of this user's control sockets: under /run for root, else under
/// `$XDG_RUNTIME_DIR`; `None` for a user without a runtime directory.
pub fn socket_dir() -> Option<PathBuf> {
    let base = if platform::geteuid() == 0 {
        PathBuf::from(platform::RUN_DIR)
    } else {
        PathBuf::from(std::env::var_os("XDG_RUNTIME_DIR")?)
    };
    Some(base.join("ownfs").join("stats"))
}

/// The control socket of the server of `target` (a mountpoint or a socket path, made
/// absolute by the caller): its path, escaped into one name; long ones are hashed.
pub fn socket_for(target: &Path) -> Option<PathBuf> {
    socket_dir().map(|dir| socket_in(&dir, target))
}

fn socket_in(dir: &Path, target: &Path) -> PathBuf {
    let mut name = String::new();
    for &b in target.as_os_str().as_encoded_bytes().iter().skip(1) {
        match b {
            b'/' => name.push('-'),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'_' => name.push(b as char),
            _ => name.push_str(&format!("%{b:02X}")),
        }
    }
    let path = dir.join(format!("{name}.sock"));
    if path.as_os_str().len() <= MAX_SOCKET_PATH {
        return path;
    }
    // FNV-1a: stable across builds and processes, unlike std's hasher.
    let hash = target
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    dir.join(format!("h-{hash:016x}.sock"))
}

/// A bound control socket, not yet answering.
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
    owner: u32,
}

impl ControlSocket {
    /// Binds `path` (mode 0600), creating its directory (mode 0700) if needed and
    /// replacing a socket left by a server that is gone; refuses one that another
    /// server answers on.
    pub fn bind(path: &Path) -> io::Result<Self> {
        let owner = platform::geteuid();
        if let Some(dir) = path.parent() {
            if let Some(base) = dir.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(base)?;
            }
            match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
            let meta = std::fs::symlink_metadata(dir)?;
            if !meta.is_dir() || meta.uid() != owner || meta.mode() & 0o022 != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "{} must be a directory of uid {owner} that no one else can write",
                        dir.display()
                    ),
                ));
            }
        }
        let listener = socket::bind_unix(path, SocketPerms::new(Some(0o600), None))?;
        Ok(ControlSocket {
            listener,
            path: path.to_path_buf(),
            owner,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answers clients on a thread of its own.
    pub fn serve(self, stats: Arc<Stats>) -> io::Result<()> {
        std::thread::Builder::new()
            .name("ownfs-stats".into())
            .spawn(move || self.accept_loop(&stats))?;
        Ok(())
    }

    fn accept_loop(self, stats: &Stats) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if let Err(e) = self.answer(stream, stats) {
                        log::debug!("stats client on {}: {e}", self.path.display());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!(
                        "stats socket {}: {e}; no longer answering",
                        self.path.display()
                    );
                    return;
                }
            }
        }
    }

    fn answer(&self, mut stream: UnixStream, stats: &Stats) -> io::Result<()> {
        let peer = platform::peer_cred(stream.as_fd())?;
        if peer.uid != 0 && peer.uid != self.owner {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("uid {} refused", peer.uid),
            ));
        }
        stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
        stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
        let mut request = [0u8; 8];
        let mut len = 0;
        while len < request.len() && !request[..len].contains(&b'\n') {
            match stream.read(&mut request[len..])? {
                0 => break,
                n => len += n,
            }
        }
        let snap = stats.snapshot();
        let reply = match &request[..len] {
            b"json\n" => render::json(&snap),
            b"table\n" => render::table(&snap),
            _ => "unknown request: send `table` or `json`\n".to_string(),
        };
        stream.write_all(reply.as_bytes())
    }
}

/// Logs the table at each SIGUSR1 (blocked by `platform::block_server_signals`), on a
/// thread of its own.
pub fn log_on_sigusr1(stats: Arc<Stats>) -> io::Result<()> {
    std::thread::Builder::new()
        .name("ownfs-stats-signal".into())
        .spawn(move || loop {
            platform::wait_signal(libc::SIGUSR1);
            log::info!("statistics:\n{}", render::table(&stats.snapshot()));
        })?;
    Ok(())
}

/// Asks the server on `socket` for its statistics, as JSON or as a table.
pub fn query(socket: &Path, json: bool) -> io::Result<String> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT * 2))?;
    stream.write_all(if json { b"json\n" } else { b"table\n" })?;
    let mut out = String::new();
    stream.read_to_string(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_component_and_fit_a_socket_address() {
        let dir = Path::new("/run/ownfs/stats");
        let short = socket_in(dir, Path::new("/mnt/my share-1"));
        assert_eq!(short, dir.join("mnt-my%20share%2D1.sock"));
        let long = socket_in(dir, &Path::new("/").join("x".repeat(300)));
        assert_eq!(long.parent(), Some(dir));
        assert!(long.as_os_str().len() <= MAX_SOCKET_PATH);
        assert_ne!(long, socket_in(dir, &Path::new("/").join("y".repeat(300))));
    }
}
