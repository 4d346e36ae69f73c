//! The server sandbox (`--sandbox namespace|chroot|none`), modelled on virtiofsd's.
//!
//! - `namespace`: a private mount namespace (and, where the transport allows, an empty
//!   network namespace) in which the share is bind-mounted onto itself, made the root
//!   with pivot_root, and the old root detached. Nothing of the host's file tree is left
//!   reachable by path: `/proc/<pid>/root` of the server shows the share.
//! - `chroot`: chroot(2) into the share, for hosts that forbid new namespaces (root only).
//! - `none`: no confinement.
//!
//! What the server still needs from outside the share is opened before: the host's
//! `/proc` (magic links, status files; made the working directory for path-only calls),
//! listening sockets, /dev/fuse channels, and for `mount` an unmount helper forked
//! in the host's namespace.
//!
//! Must run before any thread starts: unshare(CLONE_NEWNS) moves only the calling
//! thread, and a half-moved process would serve from the host's tree. The seccomp
//! filter (`seccomp`) is the last step, once everything else is set up.

pub mod seccomp;

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::fs::path_cstr;
use crate::platform;

/// How a server confines itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// New mount namespace with the share pivoted to `/` (the old root detached).
    Namespace,
    /// chroot(2) into the share (needs root).
    Chroot,
    /// No sandbox: a compromised server can reach the whole host file tree.
    None,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Namespace => "namespace",
            Mode::Chroot => "chroot",
            Mode::None => "none",
        })
    }
}

/// What to set up.
pub struct Request<'a> {
    /// `None`: `namespace` where the process may create one, else `chroot` as root,
    /// else `none`. An explicit mode that cannot be set up is an error.
    pub mode: Option<Mode>,
    /// The shared directory (absolute).
    pub share: &'a Path,
    /// Also unshare the network namespace (the server's listeners are already bound;
    /// it never opens a network connection afterwards).
    pub new_net: bool,
    /// A mount to drop from the new namespace before the pivot: `mount`'s own FUSE
    /// mountpoint, so that a copy here never keeps the connection alive after the
    /// user unmounts it on the host.
    pub drop_mount: Option<&'a Path>,
}

/// The sandbox in force.
#[derive(Debug)]
pub struct Sandbox {
    pub mode: Mode,
    /// The share as the server must now open it: `/` when confined.
    pub root: PathBuf,
}

/// True if `req_mode` may end up confining a process with these privileges: then a
/// `mount` server needs its host-side unmount helper, forked before `enter`.
pub fn may_confine(req_mode: Option<Mode>) -> bool {
    match req_mode {
        Some(Mode::None) => false,
        Some(_) => true,
        #[cfg(target_os = "linux")]
        None => platform::thread_has_cap_sys_admin() || platform::geteuid() == 0,
        #[cfg(not(target_os = "linux"))]
        None => false,
    }
}

/// Sets up the sandbox. Call single-threaded, while still privileged (before
/// `--run-as` drops privileges) and after everything outside the share is open.
#[cfg(target_os = "linux")]
pub fn enter(req: &Request<'_>) -> io::Result<Sandbox> {
    // The host's /proc first: after a pivot or chroot it cannot be found again.
    platform::proc_root().map_err(|e| ctx(e, "opening /proc"))?;
    let threads = platform::thread_count()?;
    if threads != 1 {
        return Err(io::Error::other(format!(
            "the sandbox must be set up before threads start ({threads} running)"
        )));
    }
    let share = path_cstr(req.share)?;
    let shown = req.share.display();
    let net = if req.new_net { " and network" } else { "" };
    let mode = match req.mode {
        Some(Mode::Namespace) => {
            namespace(req, &share).map_err(|e| ctx(e.into_inner(), "sandbox namespace"))?;
            log::info!("sandbox: namespace (private mount{net} namespace, {shown} pivoted to /)");
            Mode::Namespace
        }
        Some(Mode::Chroot) => {
            platform::chroot(&share).map_err(|e| ctx(e, "sandbox chroot"))?;
            log::info!("sandbox: chroot into {shown}");
            Mode::Chroot
        }
        Some(Mode::None) => {
            log::warn!("sandbox: none (--sandbox none): the whole host tree stays reachable");
            Mode::None
        }
        None => match namespace(req, &share) {
            Ok(()) => {
                log::info!(
                    "sandbox: namespace (private mount{net} namespace, {shown} pivoted to /)"
                );
                Mode::Namespace
            }
            Err(Failure::Unshare(e)) if platform::geteuid() == 0 => {
                platform::chroot(&share).map_err(|e| ctx(e, "sandbox chroot"))?;
                log::info!(
                    "sandbox: chroot into {shown}: no new mount namespace allowed here ({e})"
                );
                Mode::Chroot
            }
            Err(Failure::Unshare(e)) => {
                // A user namespace would allow it, but remaps every uid the server sees.
                log::info!(
                    "sandbox: none: not root and no CAP_SYS_ADMIN for a mount namespace ({e})"
                );
                Mode::None
            }
            Err(Failure::Setup(e)) => {
                // Already in the new namespace (e.g. pivot_root refuses a rootfs host):
                // chroot is still possible since unshare proved the privilege.
                platform::chroot(&share).map_err(|e| ctx(e, "sandbox chroot"))?;
                log::warn!("sandbox: chroot into {shown}: the namespace setup failed ({e})");
                Mode::Chroot
            }
        },
    };
    // Path-only syscalls reach /proc/self/fd/N relative to the cwd, in every mode.
    platform::enter_proc_cwd().map_err(|e| ctx(e, "entering /proc"))?;
    let root = match mode {
        Mode::None => req.share.to_path_buf(),
        Mode::Namespace | Mode::Chroot => PathBuf::from("/"),
    };
    Ok(Sandbox { mode, root })
}

/// macOS: `none` only (no mount namespaces; chroot is not implemented).
#[cfg(not(target_os = "linux"))]
pub fn enter(req: &Request<'_>) -> io::Result<Sandbox> {
    match req.mode {
        Some(Mode::Namespace | Mode::Chroot) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "only --sandbox none is available on this OS",
        )),
        Some(Mode::None) | None => {
            log::info!("sandbox: none (not available on this OS)");
            Ok(Sandbox {
                mode: Mode::None,
                root: req.share.to_path_buf(),
            })
        }
    }
}

#[cfg(target_os = "linux")]
enum Failure {
    /// unshare itself: nothing changed.
    Unshare(io::Error),
    /// A later step: the process is in the new namespace.
    Setup(io::Error),
}

#[cfg(target_os = "linux")]
impl Failure {
    fn into_inner(self) -> io::Error {
        match self {
            Failure::Unshare(e) | Failure::Setup(e) => e,
        }
    }
}

#[cfg(target_os = "linux")]
fn namespace(req: &Request<'_>, share: &std::ffi::CStr) -> Result<(), Failure> {
    platform::unshare_namespaces(req.new_net).map_err(Failure::Unshare)?;
    pivot(req, share).map_err(Failure::Setup)
}

#[cfg(target_os = "linux")]
fn pivot(req: &Request<'_>, share: &std::ffi::CStr) -> io::Result<()> {
    let dir = platform::O_PATH | libc::O_DIRECTORY;
    // Slaves: our unmounts below stay here, the host's still reach us.
    platform::make_mounts_slave(c"/").map_err(|e| ctx(e, "making mounts slave"))?;
    if let Some(mnt) = req.drop_mount {
        let mnt = path_cstr(mnt)?;
        match platform::umount_detach(&mnt) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) => {}
            Err(e) => return Err(ctx(e, "dropping the mountpoint's copy")),
        }
    }
    platform::bind_mount_onto_itself(share).map_err(|e| ctx(e, "bind-mounting the share"))?;
    let old_root = platform::open_path(c"/", dir)?;
    let new_root = platform::open_path(share, dir)?;
    platform::fchdir(new_root.as_fd())?;
    // pivot_root(".", "."): the old root ends up stacked on the new one, then goes.
    platform::pivot_root(c".", c".").map_err(|e| ctx(e, "pivot_root"))?;
    platform::fchdir(old_root.as_fd())?;
    platform::umount_detach(c".").map_err(|e| ctx(e, "detaching the old root"))?;
    platform::fchdir(new_root.as_fd())?;
    Ok(())
}

#[cfg(target_os = "linux")]
fn ctx(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// A listening socket's file, removed at exit through its directory opened before the
/// sandbox (its path means nothing inside it).
pub struct SocketFile {
    dir: OwnedFd,
    name: CString,
}

impl SocketFile {
    pub fn new(path: &Path) -> io::Result<Self> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = platform::open_path(&path_cstr(dir)?, platform::O_PATH | libc::O_DIRECTORY)?;
        Ok(SocketFile {
            dir,
            name: path_cstr(Path::new(name))?,
        })
    }

    /// Unlinks the socket file (best effort: it may already be gone).
    pub fn remove(&self) {
        let _ = platform::unlinkat(self.dir.as_fd(), &self.name, false);
    }
}
