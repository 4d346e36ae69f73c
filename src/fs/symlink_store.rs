//! Ownership records of symlinks, which cannot carry `user.*` xattrs on Linux.
//!
//! They live in an SQLite database in the server-owned directory
//! `SRC/.ownfs-symlinks.d/` (mode 0700), one row per symlink keyed by host (dev, ino)
//! and validated by birth time, so a reused inode number never inherits a record.
//! SQLite gives what a flat file could not: a change costs one row, not a rewrite
//! of every record; several servers on one share lock and see each other's
//! changes; a crash at any point leaves each row old or new (WAL journal).
//!
//! Every change also touches the symlink's ctime (a chown to its own owner), so each
//! server's per-inode cache, keyed by ctime, notices changes made by another server.
//!
//! A share served by an earlier ownfs has its records in the flat file
//! `.ownfs-symlinks`; the first writable open copies them in and keeps the file as
//! `.ownfs-symlinks.bak`. macOS keeps records on the symlinks themselves and has no
//! store (`platform::SYMLINK_XATTRS`).
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

use std::collections::HashMap;
use std::ffi::CStr;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use super::overlay::StoredRecord;
use super::record::{self, DecodeError, Record};
use crate::platform::{self, mode};

/// Every name at the share root starting with this is the server's: hidden from clients.
pub const RESERVED_PREFIX: &CStr = c".ownfs-symlinks";
/// The flat file of earlier versions.
pub const LEGACY_NAME: &CStr = c".ownfs-symlinks";
const LEGACY_BACKUP: &CStr = c".ownfs-symlinks.bak";
const LEGACY_TMP: &CStr = c".ownfs-symlinks.tmp";
const LEGACY_MAGIC: &[u8; 8] = b"OWNFSYM1";
const LEGACY_ENTRY: usize = 8 + 8 + 8 + 4 + record::LEN;
/// The store's directory at the share root, and the database in it.
pub const DIR_NAME: &CStr = c".ownfs-symlinks.d";
const DB_NAME: &CStr = c"records.sqlite";
/// `PRAGMA user_version` of the schema below; a newer one is read but never written.
const SCHEMA_VERSION: i64 = 1;

/// Birth time (seconds, nanoseconds); `(0, 0)` where the filesystem keeps none.
type BirthTime = (i64, u32);

/// (dev, ino) → (birth time, encoded record), as read from a legacy flat file.
type LegacyMap = HashMap<(u64, u64), (BirthTime, Vec<u8>)>;

fn birth_of(fd: BorrowedFd<'_>) -> io::Result<BirthTime> {
    Ok(platform::birth_time(fd)?.unwrap_or((0, 0)))
}

fn decode_stored(bytes: &[u8]) -> StoredRecord {
    match Record::decode(bytes) {
        Ok(r) => StoredRecord::Known(r),
        Err(DecodeError::UnknownVersion(v)) => {
            log::warn!("symlink record of unknown version {v}: shown as absent, never overwritten");
            StoredRecord::Foreign
        }
        Err(DecodeError::Short) => StoredRecord::Absent,
    }
}

/// True if a file or directory at the share root can only have been made by the
/// server (`server_uid`): its own, of the expected type, and writable by no one else.
fn is_servers(st: &platform::stat64, server_uid: u32, format: u32) -> bool {
    let m = platform::st_mode(st);
    st.st_uid == server_uid && m & 0o022 == 0 && m & mode::S_IFMT == format
}

/// Reads the legacy flat file, if the server wrote it. `None`: absent, not the
/// server's, or of a format this build does not know (each logged).
fn read_legacy(root: BorrowedFd<'_>, server_uid: u32) -> io::Result<Option<LegacyMap>> {
    let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK;
    let fd = match platform::openat(root, LEGACY_NAME, flags, 0) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    let st = platform::fstat(fd.as_fd())?;
    if !is_servers(&st, server_uid, mode::S_IFREG) {
        log::warn!(
            "{}: not the server's own (owner {}, mode {:o}); its records are ignored",
            LEGACY_NAME.to_string_lossy(),
            st.st_uid,
            platform::st_mode(&st)
        );
        return Ok(None);
    }
    let mut data = Vec::new();
    std::fs::File::from(fd).read_to_end(&mut data)?;
    let Some(body) = data.strip_prefix(LEGACY_MAGIC) else {
        if !data.is_empty() {
            log::warn!(
                "{}: unknown format; left untouched and ignored",
                LEGACY_NAME.to_string_lossy()
            );
        }
        return Ok(None);
    };
    let mut map = LegacyMap::new();
    // A trailing partial entry is ignored, as earlier versions did.
    for e in body.chunks_exact(LEGACY_ENTRY) {
        let u64_at = |i: usize| u64::from_le_bytes(e[i..i + 8].try_into().unwrap_or([0; 8]));
        let btime_ns = u32::from_le_bytes(e[24..28].try_into().unwrap_or([0; 4]));
        map.insert(
            (u64_at(0), u64_at(8)),
            ((u64_at(16) as i64, btime_ns), e[28..].to_vec()),
        );
    }
    Ok(Some(map))
}

#[cfg(target_os = "linux")]
pub use sqlite::SymlinkStore;

#[cfg(target_os = "linux")]
mod sqlite {
    use std::os::fd::OwnedFd;
    use std::sync::{Mutex, MutexGuard};

    use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

    use super::*;

    /// The symlink records of one share; `None` parts mean "no store here".
    pub struct SymlinkStore {
        db: Option<Mutex<Connection>>,
        /// The schema is newer than this build: records are read, never written.
        frozen: bool,
        /// Records of a legacy flat file nobody migrated (offline tools only).
        legacy: Option<LegacyMap>,
    }

    fn db_err(e: rusqlite::Error) -> io::Error {
        match e {
            rusqlite::Error::SqliteFailure(f, Some(msg)) => {
                io::Error::other(format!("symlink record store: {msg} ({:?})", f.code))
            }
            e => io::Error::other(format!("symlink record store: {e}")),
        }
    }

    impl SymlinkStore {
        /// The store of the share at `root_path` (as this process sees it, `/` inside
        /// the sandbox; `root` is its fd), for a server running as `server_uid`.
        /// `writable`: created if missing, and a legacy flat file migrated into it.
        pub fn open(
            root_path: &Path,
            root: BorrowedFd<'_>,
            server_uid: u32,
            writable: bool,
        ) -> io::Result<Self> {
            let dir = match open_dir(root, server_uid, writable)? {
                Some(dir) => dir,
                None => return Ok(Self::none()),
            };
            let path = root_path
                .join(DIR_NAME.to_str().unwrap_or_default())
                .join(DB_NAME.to_str().unwrap_or_default());
            let mut flags = OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_NOFOLLOW;
            flags |= if writable {
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
            } else {
                OpenFlags::SQLITE_OPEN_READ_ONLY
            };
            if writable {
                // Made here, mode 0600, so the WAL and index files SQLite adds copy that mode.
                platform::openat(
                    dir.as_fd(),
                    DB_NAME,
                    libc::O_RDWR | libc::O_CREAT | libc::O_NOFOLLOW,
                    0o600,
                )?;
            }
            let db_st =
                match platform::openat(dir.as_fd(), DB_NAME, libc::O_PATH | libc::O_NOFOLLOW, 0) {
                    Ok(fd) => platform::fstat(fd.as_fd())?,
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Self::none()),
                    Err(e) => return Err(e),
                };
            if !is_servers(&db_st, server_uid, mode::S_IFREG) {
                return Err(untrusted(&db_st));
            }
            let conn = Connection::open_with_flags(&path, flags).map_err(db_err)?;
            // The directory opened and checked above is still the one at that path.
            let dir_now = platform::openat(root, DIR_NAME, libc::O_PATH | libc::O_NOFOLLOW, 0)
                .and_then(|fd| platform::fstat(fd.as_fd()))?;
            let dir_then = platform::fstat(dir.as_fd())?;
            if (dir_now.st_dev, dir_now.st_ino) != (dir_then.st_dev, dir_then.st_ino) {
                return Err(io::Error::other(
                    "symlink record store: its directory was replaced while opening",
                ));
            }
            conn.busy_timeout(std::time::Duration::from_secs(5))
                .map_err(db_err)?;
            let mut frozen = !writable;
            if writable {
                // WAL: readers and writers in several processes, and a crash leaves every
                // row old or new. NORMAL sync: durable against a server crash at once and
                // against a host crash from the next checkpoint, as the symlinks themselves are.
                conn.pragma_update(None, "journal_mode", "WAL")
                    .map_err(db_err)?;
                conn.pragma_update(None, "synchronous", "NORMAL")
                    .map_err(db_err)?;
                let version: i64 = conn
                    .pragma_query_value(None, "user_version", |r| r.get(0))
                    .map_err(db_err)?;
                if version > SCHEMA_VERSION {
                    log::warn!(
                        "symlink record store has schema {version}, newer than this build's \
                         {SCHEMA_VERSION}: records are read, symlink chowns fail with EIO"
                    );
                    frozen = true;
                } else {
                    conn.execute_batch(
                        "BEGIN IMMEDIATE;
                         CREATE TABLE IF NOT EXISTS symlinks (
                             dev INTEGER NOT NULL, ino INTEGER NOT NULL,
                             btime_sec INTEGER NOT NULL, btime_nsec INTEGER NOT NULL,
                             record BLOB NOT NULL,
                             PRIMARY KEY (dev, ino)) WITHOUT ROWID;
                         PRAGMA user_version = 1;
                         COMMIT;",
                    )
                    .map_err(db_err)?;
                }
            }
            // Opens the WAL and index files now, before any sandbox narrows what can be opened.
            conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
                .map_err(db_err)?;
            let store = SymlinkStore {
                db: Some(Mutex::new(conn)),
                frozen,
                legacy: None,
            };
            if writable && !frozen {
                store.migrate_legacy(root, server_uid)?;
            }
            Ok(store)
        }

        /// The records of a share for an offline tool: never creates or changes
        /// anything, and reads a legacy flat file that no server has migrated yet.
        pub fn open_read_only(
            root_path: &Path,
            root: BorrowedFd<'_>,
            server_uid: u32,
        ) -> io::Result<Self> {
            let mut store = Self::open(root_path, root, server_uid, false)?;
            store.legacy = read_legacy(root, server_uid)?;
            Ok(store)
        }

        fn none() -> Self {
            SymlinkStore {
                db: None,
                frozen: false,
                legacy: None,
            }
        }

        fn conn(&self) -> Option<MutexGuard<'_, Connection>> {
            self.db
                .as_ref()
                .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
        }

        /// True when no record can exist: the server need not look for one on unlink.
        pub fn is_empty(&self) -> bool {
            self.db.is_none() && self.legacy.is_none()
        }

        /// The record of the symlink behind `fd`, whose host identity is (`dev`, `ino`),
        /// if its birth time still matches.
        pub fn lookup(&self, fd: BorrowedFd<'_>, dev: u64, ino: u64) -> StoredRecord {
            let Ok(btime) = birth_of(fd) else {
                return StoredRecord::Absent;
            };
            if let Some(conn) = self.conn() {
                let row = conn
                    .prepare_cached(
                        "SELECT btime_sec, btime_nsec, record FROM symlinks
                         WHERE dev = ?1 AND ino = ?2",
                    )
                    .and_then(|mut q| {
                        q.query_row(params![dev as i64, ino as i64], |r| {
                            Ok((
                                (r.get::<_, i64>(0)?, r.get::<_, u32>(1)?),
                                r.get::<_, Vec<u8>>(2)?,
                            ))
                        })
                        .optional()
                    });
                match row {
                    Ok(Some((b, rec))) if b == btime => return decode_stored(&rec),
                    Ok(_) => {}
                    Err(e) => log::warn!("symlink {dev}:{ino}: {}", db_err(e)),
                }
            }
            match self.legacy.as_ref().and_then(|m| m.get(&(dev, ino))) {
                Some((b, rec)) if *b == btime => decode_stored(rec),
                _ => StoredRecord::Absent,
            }
        }

        /// Stores `rec` for the symlink behind `fd` (an empty record removes it), then
        /// touches the symlink's ctime so every server's cache reads it again.
        pub fn set(&self, fd: BorrowedFd<'_>, dev: u64, ino: u64, rec: &Record) -> io::Result<()> {
            if self.frozen {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            let btime = birth_of(fd)?;
            let conn = self
                .conn()
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EROFS))?;
            let res = if rec.is_empty() {
                conn.prepare_cached("DELETE FROM symlinks WHERE dev = ?1 AND ino = ?2")
                    .and_then(|mut q| q.execute(params![dev as i64, ino as i64]))
            } else {
                conn.prepare_cached("INSERT OR REPLACE INTO symlinks VALUES (?1, ?2, ?3, ?4, ?5)")
                    .and_then(|mut q| {
                        q.execute(params![
                            dev as i64,
                            ino as i64,
                            btime.0,
                            btime.1,
                            &rec.encode()[..]
                        ])
                    })
            };
            drop(conn);
            res.map_err(|e| {
                log::warn!("symlink {dev}:{ino}: {}", db_err(e));
                io::Error::from_raw_os_error(libc::EIO)
            })?;
            platform::fchown(fd, None, None)
        }

        /// Drops the record of a symlink whose last name is gone.
        pub fn forget(&self, dev: u64, ino: u64) -> io::Result<()> {
            if self.frozen {
                return Ok(());
            }
            let Some(conn) = self.conn() else {
                return Ok(());
            };
            conn.prepare_cached("DELETE FROM symlinks WHERE dev = ?1 AND ino = ?2")
                .and_then(|mut q| q.execute(params![dev as i64, ino as i64]))
                .map(drop)
                .map_err(db_err)
        }

        /// Copies a legacy flat file in (rows already here win: they are newer), then
        /// keeps the file as a backup. A crash before the rename repeats this harmlessly.
        fn migrate_legacy(&self, root: BorrowedFd<'_>, server_uid: u32) -> io::Result<()> {
            let Some(map) = read_legacy(root, server_uid)? else {
                return Ok(());
            };
            if let Some(mut conn) = self.conn() {
                let tx = conn.transaction().map_err(db_err)?;
                {
                    let mut q = tx
                        .prepare("INSERT OR IGNORE INTO symlinks VALUES (?1, ?2, ?3, ?4, ?5)")
                        .map_err(db_err)?;
                    for (&(dev, ino), ((bs, bns), rec)) in &map {
                        q.execute(params![dev as i64, ino as i64, bs, bns, rec])
                            .map_err(db_err)?;
                    }
                }
                tx.commit().map_err(db_err)?;
            }
            platform::renameat2(root, LEGACY_NAME, root, LEGACY_BACKUP, 0)?;
            match platform::unlinkat(root, LEGACY_TMP, false) {
                Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(e),
                _ => {}
            }
            log::info!(
                "{} symlink records migrated from {} (kept as {})",
                map.len(),
                LEGACY_NAME.to_string_lossy(),
                LEGACY_BACKUP.to_string_lossy()
            );
            Ok(())
        }
    }

    fn untrusted(st: &platform::stat64) -> io::Error {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "symlink record store: {} is not the server's own (owner {}, mode {:o}); \
                 move it away to start afresh",
                DIR_NAME.to_string_lossy(),
                st.st_uid,
                platform::st_mode(st)
            ),
        )
    }

    /// The store's directory, made (0700) when `create`; `None` if absent.
    fn open_dir(
        root: BorrowedFd<'_>,
        server_uid: u32,
        create: bool,
    ) -> io::Result<Option<OwnedFd>> {
        if create {
            match platform::mkdirat(root, DIR_NAME, 0o700) {
                Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(e),
                _ => {}
            }
        }
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
        let dir = match platform::openat(root, DIR_NAME, flags, 0) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(e),
        };
        let st = platform::fstat(dir.as_fd())?;
        if !is_servers(&st, server_uid, mode::S_IFDIR) || platform::st_mode(&st) & 0o077 != 0 {
            return Err(untrusted(&st));
        }
        Ok(Some(dir))
    }
}

/// macOS puts records on symlinks themselves: there is never a store.
#[cfg(not(target_os = "linux"))]
pub struct SymlinkStore;

#[cfg(not(target_os = "linux"))]
impl SymlinkStore {
    pub fn open(_: &Path, _: BorrowedFd<'_>, _: u32, _: bool) -> io::Result<Self> {
        Ok(SymlinkStore)
    }

    pub fn open_read_only(_: &Path, _: BorrowedFd<'_>, _: u32) -> io::Result<Self> {
        Ok(SymlinkStore)
    }

    pub fn is_empty(&self) -> bool {
        true
    }

    pub fn lookup(&self, _: BorrowedFd<'_>, _: u64, _: u64) -> StoredRecord {
        StoredRecord::Absent
    }

    pub fn set(&self, _: BorrowedFd<'_>, _: u64, _: u64, _: &Record) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
    }

    pub fn forget(&self, _: u64, _: u64) -> io::Result<()> {
        Ok(())
    }
}
