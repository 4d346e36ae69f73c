//! `ownfs convert-records SRC --to FORMAT`: rewrites the records of files and
//! directories in the other xattr format (`--record-format`), offline.
//!
//! Per inode, the new xattr is written before the old one is removed: at any moment
//! the inode holds one record or two that say the same, so a crash loses nothing and
//! a second run finishes the job. Symlinks keep their records in the server's store,
//! which has one format. Records of an unknown version are left as they are.

use std::io;
use std::path::Path;

use super::{in_path, walk, Options, Source};
use crate::fs::overlay::{self, RecordFormat};
use crate::platform;

/// What a conversion did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Records rewritten in the target format.
    pub converted: u64,
    /// Records already in the target format.
    pub kept: u64,
    /// Records left alone: a version or form this build cannot read.
    pub unreadable: u64,
}

/// Converts every file and directory record under `src` to `to`.
pub fn convert(src: &Path, opts: &Options, to: RecordFormat) -> io::Result<Summary> {
    let from = match to {
        RecordFormat::Ownfs => RecordFormat::Containers,
        RecordFormat::Containers => RecordFormat::Ownfs,
    };
    let [target, old] = to.names();
    // Where an inode has both (an interrupted run), the old format's record is the one kept.
    let read = Options {
        format: from,
        ..*opts
    };
    let mut sum = Summary::default();
    walk(src, &read, None, &mut |node| {
        let rec = match (node.source, node.record) {
            (Source::Foreign, _) => {
                sum.unreadable += 1;
                return Ok(());
            }
            (Source::Xattr | Source::Containers, Some(rec)) => rec,
            _ => return Ok(()),
        };
        let fail = |e| in_path(src, node.path, e);
        let already = (node.source == Source::Containers) == (to == RecordFormat::Containers);
        if !already {
            let value = node.rootless.encode(to, node.host, &rec);
            platform::setxattr(node.fd, target, &value, 0).map_err(fail)?;
        }
        overlay::remove_xattr(node.fd, old).map_err(fail)?;
        if already {
            sum.kept += 1;
        } else {
            sum.converted += 1;
        }
        Ok(())
    })?;
    Ok(sum)
}
