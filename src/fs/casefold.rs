//! Case-insensitive host directories (APFS by default, ext4/f2fs casefold, FAT) under
//! a Linux client, which expects `A` and `a` to be two names.
//!
//! Such a directory resolves any spelling to the one stored entry. The passthrough
//! therefore accepts a name only as spelled in the listing: a lookup, unlink or
//! rename of another spelling is ENOENT, and creating a name that the host would
//! resolve to a differently spelled entry is EEXIST instead of silently aliasing it.
//! Whether a directory folds is asked once per directory inode and cached; only
//! folding directories pay for a listing scan.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use crate::platform;

/// True if the directory behind `dir` lists `name` with exactly these bytes.
pub fn listed(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<bool> {
    let fd = platform::reopen(dir, libc::O_RDONLY | libc::O_DIRECTORY)?;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = platform::getdents(fd.as_fd(), &mut buf)?;
        if n == 0 {
            return Ok(false);
        }
        let mut off = 0;
        while off < n {
            let (d, len) = platform::parse_dirent(&buf[off..n])
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EIO))?;
            if d.name == name {
                return Ok(true);
            }
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
        let found = |n: &[u8]| listed(pin.as_fd(), n).unwrap();
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
