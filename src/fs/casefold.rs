//! Case-insensitive host directories (APFS by default, ext4/f2fs casefold, FAT) under
//! a Linux client, which expects `A` and `a` to be two names.
//!
//! Such a directory resolves any spelling to the one stored entry. The passthrough
//! therefore accepts a name only as spelled in the listing: a lookup, unlink or
//! rename of another spelling is ENOENT, and creating a name that the host would
//! resolve to a differently spelled entry is EEXIST instead of silently aliasing it.
//! Whether a directory folds is asked once per directory inode and cached; only
//! folding directories pay for a listing, read once and kept while the directory
//! does not change.

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::platform;

/// A listing younger than this may have missed a change made within the same
/// timestamp tick (coarse clocks tick every few milliseconds), so it is not kept.
const SETTLED: Duration = Duration::from_millis(100);

/// The exact names of one folding directory, kept with the directory's change and
/// modification times when they were read. Every change to the directory moves its
/// ctime (which no caller can set), so an unchanged stamp means an unchanged listing.
#[derive(Default)]
pub struct Names(Mutex<Option<Box<Listing>>>);

struct Listing {
    stamp: Stamp,
    names: HashSet<Vec<u8>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ctime: (i64, i64),
    mtime: (i64, i64),
}

impl Stamp {
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)] // time_t widths differ
    fn of(dir: BorrowedFd<'_>) -> io::Result<Stamp> {
        let st = platform::fstat(dir)?;
        Ok(Stamp {
            ctime: (st.st_ctime as i64, st.st_ctime_nsec as i64),
            mtime: (st.st_mtime as i64, st.st_mtime_nsec as i64),
        })
    }

    fn settled(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as i128;
        let at = |(s, ns): (i64, i64)| i128::from(s) * 1_000_000_000 + i128::from(ns);
        now - at(self.ctime).max(at(self.mtime)) > SETTLED.as_nanos() as i128
    }
}

impl Names {
    /// True if the directory behind `dir` lists `name` with exactly these bytes. One
    /// fstat when the kept listing is current; otherwise the directory is read again.
    pub fn listed(&self, dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<bool> {
        let stamp = Stamp::of(dir)?;
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(listing) = kept.as_deref() {
            if listing.stamp == stamp {
                return Ok(listing.names.contains(name));
            }
        }
        let names = list(dir)?;
        let found = names.contains(name);
        *kept = stamp.settled().then(|| Box::new(Listing { stamp, names }));
        Ok(found)
    }
}

/// Every name the directory behind `dir` lists.
fn list(dir: BorrowedFd<'_>) -> io::Result<HashSet<Vec<u8>>> {
    let fd = platform::reopen(dir, libc::O_RDONLY | libc::O_DIRECTORY)?;
    let mut buf = vec![0u8; 32 * 1024];
    let mut names = HashSet::new();
    loop {
        let n = platform::getdents(fd.as_fd(), &mut buf)?;
        if n == 0 {
            return Ok(names);
        }
        let mut off = 0;
        while off < n {
            let (d, len) = platform::parse_dirent(&buf[off..n])
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EIO))?;
            names.insert(d.name.to_vec());
            off += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_matches_exact_bytes_only() {
        let dir = std::env::temp_dir().join(format!("ownfs-casefold-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("Upper"), b"").unwrap();
        let path = crate::fs::path_cstr(&dir).unwrap();
        let pin = platform::open_path(&path, platform::O_PATH | libc::O_DIRECTORY).unwrap();
        let names = Names::default();
        let found = |n: &[u8]| names.listed(pin.as_fd(), n).unwrap();
        let result = (
            found(b"Upper"),
            found(b"upper"),
            found(b"Uppe"),
            found(b"."),
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(result, (true, false, false, true));
    }
}
