//! `ownfs owners SRC`: which host entries carry an ownership record, and what they
//! look like to clients.
//!
//! Output is tab-separated, one header line and then one line per entry with a
//! record (xattr or symlink sidecar), in walk order:
//!
//! ```text
//! PATH        HOST       VIRTUAL    MODE
//! dev/null    1000:1000  0:0        c 0666 (1,3)
//! usr/bin/su  1000:1000  0:0        - 4755
//! ```
//!
//! PATH is relative to SRC (`.` for SRC itself) with control characters escaped;
//! HOST is the host owner; VIRTUAL and MODE are what the server shows: a type
//! letter as in `ls -l`, the permission bits in octal, and `(major,minor)` for
//! device files. An entry whose record has an unknown version is listed with the
//! host-derived view, which is what the server shows for it.

use std::io::{self, Write};
use std::path::Path;

use super::progress::Progress;
use super::{escape_path, type_letter, walk, Options, Source};
use crate::fs::overlay::Virtual;
use crate::platform::mode;

/// Writes the listing to `out`; returns how many entries carry a record.
pub fn list(
    src: &Path,
    opts: &Options,
    out: &mut dyn Write,
    progress: &Progress,
) -> io::Result<usize> {
    let mut count = 0;
    walk(src, opts, None, &mut |node| {
        progress.entry();
        // The root comes first: a share that cannot be opened prints nothing.
        if node.path.is_empty() {
            writeln!(out, "PATH\tHOST\tVIRTUAL\tMODE")?;
        }
        // A text-format tag that records nothing is no record.
        let nothing =
            matches!(node.source, Source::Xattr(_)) && node.record.is_none_or(|r| r.is_empty());
        if node.source == Source::None || nothing {
            return Ok(());
        }
        let path = if node.path.is_empty() {
            ".".to_string()
        } else {
            escape_path(node.path)
        };
        writeln!(
            out,
            "{path}\t{}:{}\t{}:{}\t{}",
            node.host.st_uid,
            node.host.st_gid,
            node.view.uid,
            node.view.gid,
            mode_string(&node.view)
        )?;
        count += 1;
        Ok(())
    })?;
    Ok(count)
}

/// `- 0644`, `d 1777`, `c 0666 (1,3)`.
pub fn mode_string(v: &Virtual) -> String {
    let letter = type_letter(v.kind.format);
    let mut s = format!("{letter} {:04o}", v.perms & 0o7777);
    if matches!(v.kind.format, mode::S_IFCHR | mode::S_IFBLK) {
        s.push_str(&format!(" ({},{})", v.kind.rdev_major, v.kind.rdev_minor));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::record::Kind;

    fn v(format: u32, perms: u32, rdev: (u32, u32)) -> Virtual {
        Virtual {
            uid: 0,
            gid: 0,
            perms,
            kind: Kind {
                format,
                rdev_major: rdev.0,
                rdev_minor: rdev.1,
            },
        }
    }

    #[test]
    fn formats_modes() {
        assert_eq!(mode_string(&v(mode::S_IFREG, 0o4755, (0, 0))), "- 4755");
        assert_eq!(
            mode_string(&v(mode::S_IFCHR, 0o666, (1, 3))),
            "c 0666 (1,3)"
        );
        assert_eq!(mode_string(&v(mode::S_IFDIR, 0o1777, (0, 0))), "d 1777");
        assert_eq!(mode_string(&v(mode::S_IFIFO, 0o620, (0, 0))), "p 0620");
    }
}
