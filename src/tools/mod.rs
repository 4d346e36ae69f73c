//! Offline tools for a rootless share: they read the host tree and its ownership
//! records directly (no mount, no server) and present what a server would serve.
//!
//! - [`owners`]: lists every entry that carries an ownership record.
//! - [`tar`]: exports the whole tree as a tar archive with the virtual owners,
//!   modes and file types in its headers.
//! - [`convert`]: rewrites the records in another xattr format.
//!
//! Each reports its walk through a [`progress::Progress`].
//!
//! They walk the tree the same way: no symlink is followed, no directory on another
//! filesystem is entered (the mount point itself is listed), the server's record store at the root is left out, and names
//! are visited in byte order, parents before children.

pub mod convert;
pub mod owners;
pub mod progress;
pub mod tar;

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::fs::overlay::{self, RecordFormat, Rootless, StoredRecord, SymlinkStore, Virtual};
use crate::fs::record::Record;
use crate::fs::symlink_store;
use crate::platform::{self, mode, stat64};

/// Who is who in the share being read. The default is `--default-owner 0:0` with the
/// server owner taken from the share root.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// The owner that host files owned by the server appear as (`--default-owner`).
    pub default_owner: (u32, u32),
    /// The uid:gid the server ran as; `None`: the owner of the share root, since that
    /// is who served it.
    pub server_owner: Option<(u32, u32)>,
    /// Which record xattr wins where an inode has both (`--record-format`).
    pub format: RecordFormat,
}

/// Where the record of an entry came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// No record: the view is the host-derived default.
    None,
    /// The xattr of this format.
    Xattr(RecordFormat),
    /// The server's symlink record store.
    Store,
    /// A record of an unknown version: the server shows the host-derived default.
    Foreign,
}

/// One entry of the share as seen by [`walk`].
pub struct Node<'a> {
    /// Path relative to the share root, without a leading `./`; empty for the root.
    pub path: &'a [u8],
    /// An `O_PATH` descriptor of the host inode.
    pub fd: BorrowedFd<'a>,
    pub host: &'a stat64,
    pub record: Option<Record>,
    pub source: Source,
    /// What a client of the server would see.
    pub view: Virtual,
    /// How the share's records are read.
    pub rootless: &'a Rootless,
}

/// Calls `visit` for the share root and then every entry below it, in byte order of
/// names, parents first. `skip` names a host inode (dev, ino) to leave out, such as
/// the archive being written into the tree.
pub fn walk(
    src: &Path,
    opts: &Options,
    skip: Option<(u64, u64)>,
    visit: &mut dyn FnMut(&Node<'_>) -> io::Result<()>,
) -> io::Result<()> {
    let cpath = CString::new(src.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let root = platform::open_path(&cpath, platform::O_PATH | libc::O_DIRECTORY)
        .map_err(|e| in_path(src, b"", e))?;
    let (host, _) = platform::statx_identity(root.as_fd()).map_err(|e| in_path(src, b"", e))?;
    let (server_uid, server_gid) = opts.server_owner.unwrap_or((host.st_uid, host.st_gid));
    let walker = Walker {
        src,
        rl: Rootless {
            default_uid: opts.default_owner.0,
            default_gid: opts.default_owner.1,
            server_uid,
            server_gid,
            try_host_chown: false,
            format: opts.format,
        },
        dev: platform::st_dev(&host),
        symlinks: SymlinkStore::open_read_only(src, root.as_fd(), server_uid)
            .map_err(|e| in_path(src, symlink_store::DIR_NAME.to_bytes(), e))?,
        skip,
    };
    let mut path = Vec::new();
    walker.visit(root.as_fd(), &host, &path, visit)?;
    walker.walk_dir(root.as_fd(), &mut path, visit)
}

struct Walker<'s> {
    src: &'s Path,
    rl: Rootless,
    /// Device of the share root: entries elsewhere are not entered.
    dev: u64,
    symlinks: SymlinkStore,
    skip: Option<(u64, u64)>,
}

impl Walker<'_> {
    fn visit(
        &self,
        fd: BorrowedFd<'_>,
        host: &stat64,
        path: &[u8],
        visit: &mut dyn FnMut(&Node<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        let (record, source) = if platform::st_mode(host) & mode::S_IFMT == mode::S_IFLNK {
            match self
                .symlinks
                .lookup(fd, platform::st_dev(host), host.st_ino)
            {
                StoredRecord::Known(r) => (Some(r), Source::Store),
                StoredRecord::Foreign => (None, Source::Foreign),
                StoredRecord::Absent => (None, Source::None),
            }
        } else {
            match overlay::stored_record(&self.rl, fd, host) {
                (StoredRecord::Known(r), format) => (Some(r), Source::Xattr(format)),
                (StoredRecord::Foreign, _) => (None, Source::Foreign),
                (StoredRecord::Absent, _) => (None, Source::None),
            }
        };
        let node = Node {
            path,
            fd,
            host,
            record,
            source,
            view: self.rl.view(host, record.as_ref()),
            rootless: &self.rl,
        };
        visit(&node)
    }

    fn walk_dir(
        &self,
        dir: BorrowedFd<'_>,
        path: &mut Vec<u8>,
        visit: &mut dyn FnMut(&Node<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        let names = read_names(dir).map_err(|e| in_path(self.src, path, e))?;
        for name in names {
            if path.is_empty() && overlay::is_reserved_name(&name) {
                continue;
            }
            let len = path.len();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&name);
            let res = self.entry(dir, &name, path, visit);
            path.truncate(len);
            res?;
        }
        Ok(())
    }

    fn entry(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        path: &mut Vec<u8>,
        visit: &mut dyn FnMut(&Node<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        // Names from getdents never hold a NUL byte.
        let cname = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let fd = match platform::openat(dir, &cname, platform::O_PATH | libc::O_NOFOLLOW, 0) {
            Ok(fd) => fd,
            // Removed while we walk: it is simply not part of the tree any more.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Err(e) => return Err(in_path(self.src, path, e)),
        };
        let (host, _) =
            platform::statx_identity(fd.as_fd()).map_err(|e| in_path(self.src, path, e))?;
        if self.skip == Some((platform::st_dev(&host), host.st_ino)) {
            return Ok(());
        }
        self.visit(fd.as_fd(), &host, path, visit)?;
        if platform::st_mode(&host) & mode::S_IFMT != mode::S_IFDIR {
            return Ok(());
        }
        if platform::st_dev(&host) != self.dev {
            // Like `tar --one-file-system`: the mount point is an entry, its contents are not.
            log::warn!(
                "{}: another filesystem is mounted here; not entered",
                self.src
                    .join(Path::new(std::ffi::OsStr::from_bytes(path)))
                    .display()
            );
            return Ok(());
        }
        self.walk_dir(fd.as_fd(), path, visit)?;
        Ok(())
    }
}

/// The names in a directory except `.` and `..`, sorted bytewise.
fn read_names(dir: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    let fd = platform::reopen(dir, libc::O_RDONLY | libc::O_DIRECTORY)?;
    let mut buf = vec![0u8; 32 * 1024];
    let mut names = Vec::new();
    loop {
        let n = platform::getdents(fd.as_fd(), &mut buf)?;
        if n == 0 {
            break;
        }
        let mut off = 0;
        while off < n {
            let (d, len) = platform::parse_dirent(&buf[off..n])
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EIO))?;
            if d.name != b"." && d.name != b".." {
                names.push(d.name.to_vec());
            }
            off += len;
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// An error that names the host path it happened at.
fn in_path(src: &Path, rel: &[u8], e: io::Error) -> io::Error {
    let full = match rel {
        b"" => src.to_path_buf(),
        rel => src.join(Path::new(std::ffi::OsStr::from_bytes(rel))),
    };
    io::Error::new(e.kind(), format!("{}: {e}", full.display()))
}

/// `ls -l` style letter of a file type.
pub fn type_letter(format: u32) -> char {
    match format {
        mode::S_IFDIR => 'd',
        mode::S_IFLNK => 'l',
        mode::S_IFCHR => 'c',
        mode::S_IFBLK => 'b',
        mode::S_IFIFO => 'p',
        mode::S_IFSOCK => 's',
        _ => '-',
    }
}

/// A path for one field of tab-separated output: backslash, tab, newline and other
/// control characters are escaped C-style, bytes that are not UTF-8 as `\xNN`.
pub fn escape_path(path: &[u8]) -> String {
    let mut out = String::with_capacity(path.len());
    for chunk in path.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_would_break_a_tsv_line() {
        assert_eq!(escape_path(b"a b/c"), "a b/c");
        assert_eq!(escape_path(b"a\tb\nc\\d"), "a\\tb\\nc\\\\d");
        assert_eq!(escape_path(b"x\x01\xffy"), "x\\x01\\xffy");
        assert_eq!(escape_path("é".as_bytes()), "é");
    }

    #[test]
    fn type_letters() {
        assert_eq!(type_letter(mode::S_IFREG), '-');
        assert_eq!(type_letter(mode::S_IFCHR), 'c');
        assert_eq!(type_letter(mode::S_IFIFO), 'p');
    }
}
