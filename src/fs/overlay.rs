//! Ownership virtualization for rootless servers.
//!
//! A server that cannot chown records the intended owner, permission bits and file
//! type in the host inode's `user.ownfs.stat` xattr (symlinks, which cannot carry
//! user xattrs on Linux, in the server's symlink record store) and applies it to every reply.
//! Records are diffs against the host-derived default, never against what the
//! client currently sees, and an empty diff removes the record.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use super::inode_store::{InodeData, OverlayCache};
use super::override_stat::{self, OverrideStat};
use super::record::{DecodeError, Kind, Record};
pub use super::symlink_store::SymlinkStore;
use super::symlink_store::RESERVED_PREFIX;
use crate::platform::{self, mode, stat64};

pub const RECORD_XATTR: &CStr = c"user.ownfs.stat";
/// The server's own xattr namespace (the record and anything it may add later):
/// clients can neither read, write, remove nor list names in it.
pub const RESERVED_XATTR_PREFIX: &[u8] = b"user.ownfs.";

/// Ownership records: clients can neither read, write, remove nor list them, in
/// any format and in either mode.
pub fn is_record_xattr(name: &[u8]) -> bool {
    name.starts_with(RESERVED_XATTR_PREFIX)
        || name == override_stat::NAME.to_bytes()
        || name == override_stat::FUSE_OVERLAYFS_NAME.to_bytes()
}

/// Host permission floors: the server must always be able to read and write what it serves.
pub const FILE_FLOOR: u32 = 0o600;
pub const DIR_FLOOR: u32 = 0o700;

/// Which xattr a rootless server writes the records of files and directories to.
/// Reads accept every one: this format's first, then the others in this order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RecordFormat {
    /// `user.ownfs.stat`, binary (docs/ownership-record.md).
    #[default]
    Ownfs,
    /// `user.containers.override_stat` as containers-storage writes it
    /// (`UID:GID:MODE:TYPE`); libkrun and fuse-overlayfs read it too.
    Containers,
    /// `user.fuseoverlayfs.override_stat`, which fuse-overlayfs reads and writes with
    /// `-o xattr_permissions=2`, in the containers-storage form (fuse-overlayfs reads
    /// the first three fields).
    FuseOverlayfs,
}

impl RecordFormat {
    const ALL: [RecordFormat; 3] = [
        RecordFormat::Ownfs,
        RecordFormat::Containers,
        RecordFormat::FuseOverlayfs,
    ];

    pub fn name(self) -> &'static CStr {
        match self {
            RecordFormat::Ownfs => RECORD_XATTR,
            RecordFormat::Containers => override_stat::NAME,
            RecordFormat::FuseOverlayfs => override_stat::FUSE_OVERLAYFS_NAME,
        }
    }

    /// Whether a listxattr result names this format's xattr; `None` (no list) says maybe.
    fn is_listed(self, names: Option<&[u8]>) -> bool {
        names.is_none_or(|l| l.split(|&b| b == 0).any(|n| n == self.name().to_bytes()))
    }

    /// This format, then the others: the order records are read in.
    pub fn read_order(self) -> [RecordFormat; 3] {
        let mut order = Self::ALL;
        let at = order.iter().position(|&f| f == self).unwrap_or(0);
        order[..=at].rotate_right(1);
        order
    }

    /// The text formats of the containers tools: every server-owned inode carries one,
    /// as containers-storage writes it on every file of a layer (fuse-overlayfs fails
    /// lookups of files without it in a layer that uses it).
    pub fn tags_every_inode(self) -> bool {
        self != RecordFormat::Ownfs
    }
}

#[derive(Clone, Debug)]
pub struct Rootless {
    /// Host objects owned by the server appear as this owner.
    pub default_uid: u32,
    pub default_gid: u32,
    pub server_uid: u32,
    pub server_gid: u32,
    /// The server holds CAP_CHOWN: try the host chown first and record only on EPERM.
    pub try_host_chown: bool,
    pub format: RecordFormat,
}

/// What the client should see for an inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Virtual {
    pub uid: u32,
    pub gid: u32,
    pub perms: u32,
    pub kind: Kind,
}

pub fn is_reserved_name(name: &[u8]) -> bool {
    name.starts_with(RESERVED_PREFIX.to_bytes())
}

fn floor_of(format: u32) -> u32 {
    match format {
        mode::S_IFDIR => DIR_FLOOR,
        mode::S_IFLNK => 0,
        _ => FILE_FLOOR,
    }
}

/// Host permission bits of a server-owned node that should look like `perms`: never
/// group- or other-writable, so no other host user can write its record (see `trusts`),
/// and never below the floor the server needs.
pub fn host_perms(perms: u32, format: u32) -> u32 {
    (perms & 0o755) | floor_of(format)
}

/// The Linux dev_t split of FUSE's 32-bit rdev.
pub fn split_rdev(rdev: u32) -> (u32, u32) {
    (
        (rdev >> 8) & 0xfff,
        (rdev & 0xff) | ((rdev >> 12) & 0xfff00),
    )
}

impl Rootless {
    fn host_default(&self, host: &stat64) -> Virtual {
        Virtual {
            uid: if host.st_uid == self.server_uid {
                self.default_uid
            } else {
                host.st_uid
            },
            gid: if host.st_gid == self.server_gid {
                self.default_gid
            } else {
                host.st_gid
            },
            perms: platform::st_mode(host) & 0o7777,
            kind: {
                let (rdev_major, rdev_minor) = platform::rdev_of(host);
                Kind {
                    format: platform::st_mode(host) & mode::S_IFMT,
                    rdev_major,
                    rdev_minor,
                }
            },
        }
    }

    /// Whether a record on `host` can only have come from this server: the inode is
    /// the server's and no other host user may write it (`user.*` xattrs need write
    /// permission; symlink records live in the server's own store).
    pub fn trusts(&self, host: &stat64) -> bool {
        let format = platform::st_mode(host) & mode::S_IFMT;
        host.st_uid == self.server_uid
            && (format == mode::S_IFLNK || platform::st_mode(host) & 0o022 == 0)
    }

    /// The client's view of a host stat under `record`; a record the server cannot
    /// vouch for (`trusts`) is ignored.
    pub fn view(&self, host: &stat64, record: Option<&Record>) -> Virtual {
        let mut v = self.host_default(host);
        if let Some(r) = record.filter(|_| self.trusts(host)) {
            v.uid = r.uid.unwrap_or(v.uid);
            v.gid = r.gid.unwrap_or(v.gid);
            v.perms = r.mode.unwrap_or(v.perms);
            if let Some(k) = r.kind {
                v.kind = k;
            }
        }
        v
    }

    /// Rewrites `st` in place to the client's view.
    pub fn apply(&self, st: &mut stat64, record: Option<&Record>) {
        let v = self.view(st, record);
        let host_format = platform::st_mode(st) & mode::S_IFMT;
        st.st_uid = v.uid;
        st.st_gid = v.gid;
        platform::set_st_mode(st, v.kind.format | v.perms);
        if v.kind.format != host_format {
            platform::set_rdev(st, v.kind.rdev_major, v.kind.rdev_minor);
        }
    }

    /// The record a `user.containers.override_stat` value amounts to on `host`. A type
    /// other than the host's is taken only for a special file emulated by a host
    /// regular file, as ownfs records them.
    fn record_of_override(&self, host: &stat64, o: &OverrideStat) -> Record {
        let d = self.host_default(host);
        let emulated = |k: &Kind| {
            platform::st_mode(host) & mode::S_IFMT == mode::S_IFREG
                && matches!(
                    k.format,
                    mode::S_IFIFO | mode::S_IFSOCK | mode::S_IFCHR | mode::S_IFBLK
                )
        };
        let want = Virtual {
            uid: o.uid.unwrap_or(d.uid),
            gid: o.gid.unwrap_or(d.gid),
            perms: o.perms.unwrap_or(d.perms),
            kind: o.kind.filter(emulated).unwrap_or(d.kind),
        };
        self.diff(host, &want)
    }

    /// Whether `host` carries a record in this server's format even when it has
    /// nothing to record (`RecordFormat::tags_every_inode`).
    pub fn tags(&self, host: &stat64) -> bool {
        self.format.tags_every_inode() && self.trusts(host)
    }

    /// The value of the record `rec` of `host` in `format`.
    pub fn encode(&self, format: RecordFormat, host: &stat64, rec: &Record) -> Vec<u8> {
        match format {
            RecordFormat::Ownfs => rec.encode().to_vec(),
            _ => {
                let mut v = self.host_default(host);
                v.uid = rec.uid.unwrap_or(v.uid);
                v.gid = rec.gid.unwrap_or(v.gid);
                v.perms = rec.mode.unwrap_or(v.perms);
                v.kind = rec.kind.unwrap_or(v.kind);
                OverrideStat::encode(v.uid, v.gid, v.perms, &v.kind).into_bytes()
            }
        }
    }

    /// The smallest record that makes `host` look like `want`.
    pub fn diff(&self, host: &stat64, want: &Virtual) -> Record {
        let d = self.host_default(host);
        Record {
            uid: (want.uid != d.uid).then_some(want.uid),
            gid: (want.gid != d.gid).then_some(want.gid),
            mode: (want.perms != d.perms).then_some(want.perms),
            kind: (want.kind.format != d.kind.format).then_some(want.kind),
        }
    }
}

fn ctime_of(st: &stat64) -> (i64, i64) {
    (st.st_ctime, st.st_ctime_nsec)
}

/// One record xattr of a non-symlink inode; `ino` only names it in warnings.
fn read_one(rl: &Rootless, fd: BorrowedFd<'_>, name: &CStr, host: &stat64) -> StoredRecord {
    let ino = host.st_ino;
    let mut buf = [0u8; 256];
    let value = match platform::getxattr(fd, name, &mut buf) {
        Ok(n) => &buf[..n],
        Err(e) if e.raw_os_error() == Some(libc::ERANGE) => {
            log::warn!("inode {ino}: oversized {name:?}; left untouched");
            return StoredRecord::Foreign;
        }
        // ENODATA: no record. Anything else (EACCES on a foreign-owned file): none we can use.
        Err(_) => return StoredRecord::Absent,
    };
    if name != RECORD_XATTR {
        return match OverrideStat::decode(value) {
            Some(o) => StoredRecord::Known(rl.record_of_override(host, &o)),
            None => {
                log::warn!("inode {ino}: unreadable {name:?}; left untouched");
                StoredRecord::Foreign
            }
        };
    }
    match Record::decode(value) {
        Ok(r) => StoredRecord::Known(r),
        Err(DecodeError::UnknownVersion(v)) => {
            log::warn!("inode {ino}: ownership record version {v} is unknown; left untouched");
            StoredRecord::Foreign
        }
        Err(DecodeError::Short) => {
            log::warn!("inode {ino}: truncated ownership record ignored");
            StoredRecord::Absent
        }
    }
}

/// The record of a non-symlink inode: from the xattr of the server's format, else from
/// the first other one present. Also says whether another format's xattr may be there.
fn read_records(rl: &Rootless, fd: BorrowedFd<'_>, host: &stat64) -> (StoredRecord, bool) {
    let (found, _, other) = find_record(rl, fd, host);
    (found, other)
}

/// The record of a non-symlink inode, the format it came from (the server's own if
/// none), and whether another format's xattr is present too. One listxattr tells
/// which record xattrs exist, so an inode without any costs a single syscall.
fn find_record(
    rl: &Rootless,
    fd: BorrowedFd<'_>,
    host: &stat64,
) -> (StoredRecord, RecordFormat, bool) {
    let mut names = [0u8; 1024];
    // Too many names to list here (or none readable): every format is asked for.
    let listed = platform::listxattr(fd, &mut names)
        .ok()
        .map(|n| &names[..n]);
    let present = |f: &RecordFormat| f.is_listed(listed);
    let order = rl.format.read_order();
    let count = order.iter().filter(|f| present(f)).count();
    for format in order.into_iter().filter(present) {
        match read_one(rl, fd, format.name(), host) {
            StoredRecord::Absent => continue,
            found => return (found, format, count > 1),
        }
    }
    (StoredRecord::Absent, rl.format, false)
}

fn fill_cache(cache: &mut OverlayCache, found: StoredRecord, other: bool) {
    (cache.record, cache.foreign) = match found {
        StoredRecord::Known(r) => ((!r.is_empty()).then_some(r), false),
        StoredRecord::Foreign => (None, true),
        StoredRecord::Absent => (None, false),
    };
    cache.other = other;
}

/// Symlinks keep their record in the store where the host cannot put it on them.
fn uses_store(inode: &InodeData) -> bool {
    inode.is_symlink() && !platform::SYMLINK_XATTRS
}

/// Record access for the passthrough; every function expects rootless mode.
pub struct Overlay {
    pub cfg: Rootless,
    pub symlinks: SymlinkStore,
}

impl Overlay {
    /// The record matching `host` (an fstat of `inode` just taken), from cache when
    /// the host ctime has not moved.
    fn current(&self, inode: &InodeData, host: &stat64, cache: &mut OverlayCache) {
        let ctime = ctime_of(host);
        if cache.ctime == Some(ctime) {
            return;
        }
        if uses_store(inode) {
            let Ok(fd) = inode.fd() else {
                return;
            };
            let found = self
                .symlinks
                .lookup(fd.as_fd(), inode.key.dev, inode.key.ino);
            fill_cache(cache, found, false);
        } else {
            match inode.fd() {
                Ok(fd) => {
                    let (found, other) = read_records(&self.cfg, fd.as_fd(), host);
                    fill_cache(cache, found, other);
                }
                // Nothing read: the next look tries again.
                Err(_) => return,
            }
        }
        cache.ctime = Some(ctime);
    }

    /// Tags the symlink store's directory in the containers format, so that
    /// fuse-overlayfs, which sees it, can list the share root.
    pub fn tag_store_dir(&self, root: BorrowedFd<'_>) -> io::Result<()> {
        if !self.cfg.format.tags_every_inode() {
            return Ok(());
        }
        let flags = platform::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW;
        let dir = match platform::openat(root, super::symlink_store::DIR_NAME, flags, 0) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            r => r?,
        };
        let host = platform::fstat(dir.as_fd())?;
        let name = self.cfg.format.name();
        if self.cfg.trusts(&host)
            && read_one(&self.cfg, dir.as_fd(), name, &host) == StoredRecord::Absent
        {
            let value = self.cfg.encode(self.cfg.format, &host, &Record::default());
            platform::setxattr(dir.as_fd(), name, &value, 0)?;
        }
        Ok(())
    }

    /// Rewrites a host stat of `inode` to the client's view.
    pub fn virtualize(&self, inode: &InodeData, st: &mut stat64) {
        let mut cache = inode.overlay_cache();
        self.current(inode, st, &mut cache);
        self.cfg.apply(st, cache.record.as_ref());
    }

    /// The client's view of `inode` right now.
    pub fn view_of(&self, inode: &InodeData) -> io::Result<Virtual> {
        let host = platform::fstat(inode.fd()?.as_fd())?;
        let mut cache = inode.overlay_cache();
        self.current(inode, &host, &mut cache);
        Ok(self.cfg.view(&host, cache.record.as_ref()))
    }

    /// Read-modify-write of the virtual attributes under the inode's lock.
    /// `change` edits the current view and may change the host (chmod, chown) itself.
    pub fn update(
        &self,
        inode: &InodeData,
        change: impl FnOnce(&mut Virtual, &stat64) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut cache = inode.overlay_cache();
        let host = platform::fstat(inode.fd()?.as_fd())?;
        self.current(inode, &host, &mut cache);
        if cache.foreign {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let mut want = self.cfg.view(&host, cache.record.as_ref());
        change(&mut want, &host)?;
        self.store(inode, &want, &mut cache)
    }

    /// Makes the host inode carry `want`: host permission bits (with the floor, without
    /// set-id bits) and the record for the rest.
    pub fn store(
        &self,
        inode: &InodeData,
        want: &Virtual,
        cache: &mut OverlayCache,
    ) -> io::Result<()> {
        let fd = inode.fd()?;
        let fd = fd.as_fd();
        let mut host = platform::fstat(fd)?;
        let format = platform::st_mode(&host) & mode::S_IFMT;
        let host_perms = if host.st_uid == self.cfg.server_uid {
            host_perms(want.perms, format)
        } else {
            // Another host user's file (a server with CAP_CHOWN chowned it there): the
            // host itself must carry the mode, since no record on it is trusted.
            want.perms
        };
        if !inode.is_symlink() && platform::st_mode(&host) & 0o7777 != host_perms {
            platform::chmod_fd(fd, host_perms)?;
            host = platform::fstat(fd)?;
        }
        let rec = self.cfg.diff(&host, want);
        if !rec.is_empty() && !self.cfg.trusts(&host) {
            log::debug!(
                "inode {}: host owner {} is not the server; its record would be ignored",
                inode.id,
                host.st_uid
            );
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        if uses_store(inode) {
            // No record before and none now (a new symlink of the default owner): nothing to store.
            if !rec.is_empty() || cache.record.is_some() {
                self.symlinks.set(fd, inode.key.dev, inode.key.ino, &rec)?;
            }
        } else {
            let ours = self.cfg.format;
            if rec.is_empty() && !self.cfg.tags(&host) {
                remove_xattr(fd, ours.name())?;
            } else {
                let value = self.cfg.encode(ours, &host, &rec);
                platform::setxattr(fd, ours.name(), &value, 0)?;
            }
            // One record per inode: what another tool wrote is now superseded.
            if cache.other {
                for theirs in &ours.read_order()[1..] {
                    remove_xattr(fd, theirs.name())?;
                }
            }
        }
        let after = platform::fstat(fd)?;
        cache.ctime = Some(ctime_of(&after));
        cache.record = (!rec.is_empty()).then_some(rec);
        cache.foreign = false;
        cache.other = false;
        Ok(())
    }

    /// Sets the virtual attributes of a node this server just created.
    pub fn init_new(&self, inode: &InodeData, want: &Virtual) -> io::Result<()> {
        let mut cache = inode.overlay_cache();
        self.store(inode, want, &mut cache)
    }

    /// Owner of a new node made by (uid, gid) in `parent`: a setgid directory passes on its group.
    pub fn new_owner(
        &self,
        parent: &InodeData,
        uid: u32,
        gid: u32,
    ) -> io::Result<(u32, u32, bool)> {
        let pv = self.view_of(parent)?;
        let sgid = pv.perms & mode::S_ISGID != 0;
        Ok((uid, if sgid { pv.gid } else { gid }, sgid))
    }

    /// d_type of a readdir entry: emulated special files are host regular files.
    pub fn dtype(&self, dir: BorrowedFd<'_>, name: &[u8], host_dtype: u8) -> u8 {
        if host_dtype != libc::DT_REG {
            return host_dtype;
        }
        let mut names = [0u8; 1024];
        let listed = platform::listxattr_at(dir, name, &mut names)
            .ok()
            .map(|n| &names[..n]);
        let present = |f: &RecordFormat| f.is_listed(listed);
        let mut buf = [0u8; 256];
        for format in self.cfg.format.read_order().into_iter().filter(present) {
            let Ok(n) = platform::getxattr_at(dir, name, format.name(), &mut buf) else {
                continue;
            };
            let kind = if format == RecordFormat::Ownfs {
                Record::decode(&buf[..n]).ok().and_then(|r| r.kind)
            } else {
                OverrideStat::decode(&buf[..n]).and_then(|o| o.kind)
            };
            return kind.map_or(host_dtype, |k| match k.format {
                mode::S_IFIFO | mode::S_IFSOCK | mode::S_IFCHR | mode::S_IFBLK => {
                    dtype_of(k.format)
                }
                _ => host_dtype,
            });
        }
        host_dtype
    }
}

/// removexattr where an absent name is fine.
pub fn remove_xattr(fd: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    match platform::removexattr(fd, name) {
        Err(e) if e.raw_os_error() != Some(platform::ENOATTR) => Err(e),
        _ => Ok(()),
    }
}

/// The permission bits of a `system.posix_acl_access` value that holds only the
/// owner, group and other entries (a mode in ACL form); `None` for any richer ACL.
pub fn acl_mode_bits(value: &[u8]) -> Option<u32> {
    const VERSION: u32 = 2;
    const USER_OBJ: u16 = 0x01;
    const GROUP_OBJ: u16 = 0x04;
    const OTHER: u16 = 0x20;
    let (head, entries) = value.split_at_checked(4)?;
    if u32::from_le_bytes(head.try_into().ok()?) != VERSION || entries.len() % 8 != 0 {
        return None;
    }
    let mut bits = 0;
    let mut seen = 0u16;
    for e in entries.chunks_exact(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let perm = u32::from(u16::from_le_bytes([e[2], e[3]]) & 7);
        let shift = match tag {
            USER_OBJ => 6,
            GROUP_OBJ => 3,
            OTHER => 0,
            _ => return None,
        };
        if seen & tag != 0 {
            return None;
        }
        seen |= tag;
        bits |= perm << shift;
    }
    (seen == USER_OBJ | GROUP_OBJ | OTHER).then_some(bits)
}

fn dtype_of(format: u32) -> u8 {
    match format {
        mode::S_IFDIR => libc::DT_DIR,
        mode::S_IFLNK => libc::DT_LNK,
        mode::S_IFCHR => libc::DT_CHR,
        mode::S_IFBLK => libc::DT_BLK,
        mode::S_IFIFO => libc::DT_FIFO,
        mode::S_IFSOCK => libc::DT_SOCK,
        _ => libc::DT_REG,
    }
}

/// What the record xattr of a host inode holds, read the way the server reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredRecord {
    /// No record, or one too short to use (ignored, as the server does).
    Absent,
    Known(Record),
    /// A version this build does not know: shown as absent, never overwritten.
    Foreign,
}

/// The record of the non-symlink inode behind `fd` (host stat `host`), read the way
/// the server reads it, and the format it came from (the server's own if none).
pub fn stored_record(
    rl: &Rootless,
    fd: BorrowedFd<'_>,
    host: &stat64,
) -> (StoredRecord, RecordFormat) {
    let (found, from, _) = find_record(rl, fd, host);
    (found, from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rl() -> Rootless {
        Rootless {
            default_uid: 0,
            default_gid: 0,
            server_uid: 1000,
            server_gid: 1000,
            try_host_chown: false,
            format: RecordFormat::Ownfs,
        }
    }

    fn host(uid: u32, gid: u32, mode: u32) -> stat64 {
        let mut st = platform::zeroed_stat();
        st.st_uid = uid;
        st.st_gid = gid;
        platform::set_st_mode(&mut st, mode);
        st
    }

    #[test]
    fn server_owned_files_show_the_default_owner() {
        let mut st = host(1000, 1000, mode::S_IFREG | 0o644);
        rl().apply(&mut st, None);
        assert_eq!((st.st_uid, st.st_gid), (0, 0));
        let mut other = host(1234, 55, mode::S_IFREG | 0o644);
        rl().apply(&mut other, None);
        assert_eq!((other.st_uid, other.st_gid), (1234, 55));
    }

    #[test]
    fn diff_prunes_against_the_host_default_not_the_view() {
        let st = host(1000, 1000, mode::S_IFREG | 0o644);
        let r = rl();
        let mut want = r.view(&st, None);
        want.uid = 42;
        let rec = r.diff(&st, &want);
        assert_eq!(rec.uid, Some(42));
        assert_eq!(rec.gid, None);
        // chown back to 0:0 twice: the record empties, and the view stays 0:0.
        want.uid = 0;
        assert!(r.diff(&st, &want).is_empty());
        assert!(r.diff(&st, &want).is_empty());
        assert_eq!(r.view(&st, None).uid, 0);
    }

    #[test]
    fn special_files_carry_type_and_rdev() {
        let st = host(1000, 1000, mode::S_IFREG | 0o600);
        let r = rl();
        let mut want = r.view(&st, None);
        want.kind = Kind {
            format: mode::S_IFCHR,
            rdev_major: 1,
            rdev_minor: 3,
        };
        want.perms = 0o666;
        let rec = r.diff(&st, &want);
        let mut shown = st;
        r.apply(&mut shown, Some(&rec));
        assert_eq!(platform::st_mode(&shown), mode::S_IFCHR | 0o666);
        assert_eq!(platform::rdev_of(&shown), (1, 3));
    }

    #[test]
    fn minimal_acls_are_modes() {
        let acl = |entries: &[(u16, u16)]| {
            let mut v = 2u32.to_le_bytes().to_vec();
            for &(tag, perm) in entries {
                v.extend_from_slice(&tag.to_le_bytes());
                v.extend_from_slice(&perm.to_le_bytes());
                v.extend_from_slice(&u32::MAX.to_le_bytes());
            }
            v
        };
        assert_eq!(
            acl_mode_bits(&acl(&[(1, 6), (4, 4), (0x20, 0)])),
            Some(0o640)
        );
        // A named user entry (tag 2) needs real ACL enforcement.
        assert_eq!(
            acl_mode_bits(&acl(&[(1, 6), (2, 4), (4, 4), (0x10, 4), (0x20, 0)])),
            None
        );
        assert_eq!(acl_mode_bits(&acl(&[(1, 6), (4, 4)])), None);
        assert_eq!(acl_mode_bits(&[1, 2, 3]), None);
    }

    #[test]
    fn splits_fuse_rdev() {
        let dev = libc::makedev(0x123, 0x45678) as u32;
        assert_eq!(split_rdev(dev), (0x123, 0x45678));
    }
}
