//! `ownfs convert-records SRC --to FORMAT`: rewrites the records of files and
//! directories in another xattr format (`--record-format`), offline.
//!
//! Per inode, the new xattr is written before the others are removed: at any moment
//! the inode holds one record, or several that say the same, so a crash loses nothing
//! and a second run finishes the job. The text formats also tag every server-owned
//! entry without a record with its plain view, as containers-storage does; converting
//! to `ownfs` drops such tags. Symlinks keep their records in the server's store, which
//! has one format. Records of an unknown version or form are left as they are.

use std::io;
use std::path::Path;

use std::os::fd::{AsFd, BorrowedFd};

use super::progress::Progress;
use super::{in_path, walk, Options, Source};
use crate::fs::overlay::{self, RecordFormat, Rootless, StoredRecord};
use crate::fs::record::Record;
use crate::fs::symlink_store;
use crate::platform::{self, mode, stat64};

/// One file or directory to convert.
struct Entry<'a> {
    fd: BorrowedFd<'a>,
    host: &'a stat64,
    rootless: &'a Rootless,
    source: Source,
    record: Option<Record>,
}

impl Entry<'_> {
    fn convert(&self, to: RecordFormat, sum: &mut Summary) -> io::Result<()> {
        let record = match (self.source, self.record) {
            (Source::Foreign, _) => {
                sum.unreadable += 1;
                return Ok(());
            }
            (_, Some(rec)) if !rec.is_empty() => Some(rec),
            _ => None,
        };
        let tag = to.tags_every_inode() && self.rootless.trusts(self.host);
        let here = self.source == Source::Xattr(to);
        if (record.is_some() || tag) && !here {
            let value = self
                .rootless
                .encode(to, self.host, &record.unwrap_or_default());
            platform::setxattr(self.fd, to.name(), &value, 0)?;
        }
        if record.is_none() && !tag && here {
            overlay::remove_xattr(self.fd, to.name())?;
        }
        for other in &to.read_order()[1..] {
            overlay::remove_xattr(self.fd, other.name())?;
        }
        let tagged = matches!(self.source, Source::Xattr(_));
        match (record, here) {
            (Some(_), true) => sum.kept += 1,
            (Some(_), false) => sum.converted += 1,
            (None, _) if (tag && !here) || (!tag && tagged) => sum.tagged += 1,
            (None, _) => {}
        }
        Ok(())
    }
}

/// What a conversion did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Records rewritten in the target format.
    pub converted: u64,
    /// Records already in the target format.
    pub kept: u64,
    /// Records left alone: a version or form this build cannot read.
    pub unreadable: u64,
    /// Entries with nothing to record that gained a tag (text formats) or lost one
    /// (`ownfs`).
    pub tagged: u64,
}

/// Converts every file and directory record under `src` to `to`.
pub fn convert(
    src: &Path,
    opts: &Options,
    to: RecordFormat,
    progress: &Progress,
) -> io::Result<Summary> {
    // Where an inode has several (an interrupted run), the target's is the one kept.
    let read = Options {
        format: to,
        ..*opts
    };
    let mut sum = Summary::default();
    walk(src, &read, None, &mut |node| {
        progress.entry();
        let fail = |e| in_path(src, node.path, e);
        if node.path.is_empty() {
            // The server's store directory, which the walk leaves out, is tagged as well.
            let flags = platform::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW;
            match platform::openat(node.fd, symlink_store::DIR_NAME, flags, 0) {
                Ok(dir) => {
                    let host = platform::fstat(dir.as_fd()).map_err(fail)?;
                    let (found, from) = overlay::stored_record(node.rootless, dir.as_fd(), &host);
                    let source = match found {
                        StoredRecord::Known(_) => Source::Xattr(from),
                        StoredRecord::Foreign => Source::Foreign,
                        StoredRecord::Absent => Source::None,
                    };
                    let entry = Entry {
                        fd: dir.as_fd(),
                        host: &host,
                        rootless: node.rootless,
                        source,
                        record: None,
                    };
                    entry.convert(to, &mut sum).map_err(fail)?;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(fail(e)),
            }
        }
        if platform::st_mode(node.host) & mode::S_IFMT == mode::S_IFLNK {
            return Ok(());
        }
        let entry = Entry {
            fd: node.fd,
            host: node.host,
            rootless: node.rootless,
            source: node.source,
            record: node.record,
        };
        entry.convert(to, &mut sum).map_err(fail)
    })?;
    Ok(sum)
}
