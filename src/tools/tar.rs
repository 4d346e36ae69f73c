//! `ownfs export-tar SRC OUT.tar`: the share as a client sees it, as a POSIX tar
//! archive (ustar headers, pax extended headers where ustar runs out of room).
//!
//! Headers carry the virtual uid, gid, permission bits and file type: emulated
//! FIFOs and device files become real FIFO, character and block entries (with
//! their device numbers and no data), symlinks carry the owners from the sidecar,
//! and the second and later names of a host inode become hard links to the first.
//! User and group names are left empty: the ids are what counts.
//!
//! Entry names are relative to SRC without a `./` prefix, directories end in `/`,
//! and SRC itself is not an entry (the usual shape of an OCI layer). Entries come
//! in byte order of names, parents first, so the same tree gives the same archive.
//! Sockets (real or emulated) have no tar representation and are skipped.

use std::collections::hash_map::{Entry, HashMap};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::progress::Progress;
use super::{walk, Node, Options};
use crate::platform::{self, mode};

const BLOCK: usize = 512;
/// GNU tar's default record size: the archive is padded to a multiple of it.
const RECORD: u64 = 20 * BLOCK as u64;

const REGULAR: u8 = b'0';
const HARD_LINK: u8 = b'1';
const SYMLINK: u8 = b'2';
const CHAR_DEV: u8 = b'3';
const BLOCK_DEV: u8 = b'4';
const DIRECTORY: u8 = b'5';
const FIFO: u8 = b'6';
const PAX: u8 = b'x';

/// Writes the archive of `src` to the file `out` (`-`: standard output); returns the
/// number of entries; `progress` counts the entries walked and bytes written. A partly written file is removed on error. When `out` lies
/// inside `src`, it is left out of the archive.
pub fn export(src: &Path, out: &Path, opts: &Options, progress: &Progress) -> io::Result<usize> {
    if out == Path::new("-") {
        let stdout = io::stdout();
        let mut w = BufWriter::new(stdout.lock());
        let n = write_archive(src, opts, None, &mut w, progress)?;
        w.flush()?;
        return Ok(n);
    }
    let file = File::create(out)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", out.display())))?;
    let meta = file.metadata()?;
    let mut w = BufWriter::new(file);
    let res = write_archive(src, opts, Some((meta.dev(), meta.ino())), &mut w, progress)
        .and_then(|n| w.flush().map(|()| n));
    if res.is_err() {
        let _ = std::fs::remove_file(out);
    }
    res
}

/// Writes the archive of `src` to `out`, leaving out the host inode `skip` (dev, ino).
fn write_archive(
    src: &Path,
    opts: &Options,
    skip: Option<(u64, u64)>,
    out: &mut dyn Write,
    progress: &Progress,
) -> io::Result<usize> {
    let mut ar = Archive {
        out,
        written: 0,
        entries: 0,
        first_names: HashMap::new(),
    };
    walk(src, opts, skip, &mut |node| {
        ar.add(node)?;
        progress.entry_written(ar.written);
        Ok(())
    })?;
    ar.finish()?;
    Ok(ar.entries)
}

struct Archive<'w> {
    out: &'w mut dyn Write,
    written: u64,
    entries: usize,
    /// Host (dev, ino) of multiply linked inodes → the name archived first.
    first_names: HashMap<(u64, u64), Vec<u8>>,
}

/// The fields of one entry, before encoding.
#[derive(Debug, Default)]
struct Header {
    name: Vec<u8>,
    perms: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: i64,
    typeflag: u8,
    linkname: Vec<u8>,
    devmajor: u32,
    devminor: u32,
}

impl Archive<'_> {
    fn put(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)?;
        self.written += data.len() as u64;
        Ok(())
    }

    fn pad(&mut self, len: u64) -> io::Result<()> {
        let rem = (len % BLOCK as u64) as usize;
        if rem != 0 {
            self.put(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    fn add(&mut self, node: &Node<'_>) -> io::Result<()> {
        if node.path.is_empty() {
            return Ok(());
        }
        let host = node.host;
        let host_format = platform::st_mode(host) & mode::S_IFMT;
        let v = &node.view;
        let mut h = Header {
            name: node.path.to_vec(),
            perms: v.perms & 0o7777,
            uid: v.uid,
            gid: v.gid,
            mtime: host.st_mtime,
            ..Default::default()
        };
        // Only a host regular file can stand in for another type.
        let (format, (major, minor)) = match host_format {
            mode::S_IFREG => (v.kind.format, (v.kind.rdev_major, v.kind.rdev_minor)),
            f => (f, platform::rdev_of(host)),
        };
        h.typeflag = match format {
            mode::S_IFDIR if host_format == mode::S_IFDIR => DIRECTORY,
            mode::S_IFLNK if host_format == mode::S_IFLNK => SYMLINK,
            mode::S_IFREG => REGULAR,
            mode::S_IFIFO => FIFO,
            mode::S_IFCHR => CHAR_DEV,
            mode::S_IFBLK => BLOCK_DEV,
            mode::S_IFSOCK => {
                log::warn!("{}: a socket has no tar form; skipped", show(node.path));
                return Ok(());
            }
            f => {
                log::warn!(
                    "{}: recorded file type {f:o} on a host regular file; archived as a regular file",
                    show(node.path)
                );
                REGULAR
            }
        };
        if host_format != mode::S_IFDIR && host.st_nlink > 1 {
            match self
                .first_names
                .entry((platform::st_dev(host), host.st_ino))
            {
                Entry::Occupied(first) => {
                    h.typeflag = HARD_LINK;
                    h.linkname = first.get().clone();
                    return self.header(&h);
                }
                Entry::Vacant(slot) => {
                    slot.insert(node.path.to_vec());
                }
            }
        }
        match h.typeflag {
            DIRECTORY => {
                h.name.push(b'/');
                self.header(&h)
            }
            SYMLINK => {
                h.linkname = platform::readlink_fd(node.fd)?;
                self.header(&h)
            }
            CHAR_DEV | BLOCK_DEV => {
                h.devmajor = major;
                h.devminor = minor;
                self.header(&h)
            }
            FIFO => self.header(&h),
            _ => self.regular(node, h),
        }
    }

    fn regular(&mut self, node: &Node<'_>, mut h: Header) -> io::Result<()> {
        let size = node.host.st_size.max(0) as u64;
        let fd = platform::reopen(node.fd, libc::O_RDONLY)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", show(node.path))))?;
        let file = File::from(fd);
        h.size = size;
        self.header(&h)?;
        // Exactly the size in the header: a file that grew is cut, one that shrank padded.
        let copied = io::copy(&mut (&file).take(size), &mut *self.out)?;
        self.written += copied;
        if copied < size {
            log::warn!(
                "{}: shrank while being archived; padded with zeros",
                show(node.path)
            );
            let mut left = size - copied;
            while left > 0 {
                let n = left.min(BLOCK as u64) as usize;
                self.put(&[0u8; BLOCK][..n])?;
                left -= n as u64;
            }
        }
        self.pad(size)
    }

    /// Writes the header block of `h`, preceded by a pax extended header when a
    /// value does not fit its ustar field.
    fn header(&mut self, h: &Header) -> io::Result<()> {
        let mut pax = Vec::new();
        let mut b = [0u8; BLOCK];
        match split_name(&h.name) {
            Some((prefix, name)) => {
                b[..name.len()].copy_from_slice(name);
                b[345..345 + prefix.len()].copy_from_slice(prefix);
            }
            None => {
                pax_record(&mut pax, "path", &h.name);
                let n = h.name.len().min(100);
                b[..n].copy_from_slice(&h.name[..n]);
            }
        }
        if h.linkname.len() > 100 {
            pax_record(&mut pax, "linkpath", &h.linkname);
            b[157..257].copy_from_slice(&h.linkname[..100]);
        } else {
            b[157..157 + h.linkname.len()].copy_from_slice(&h.linkname);
        }
        put_octal(&mut b[100..108], u64::from(h.perms));
        for (key, value, field) in [("uid", h.uid, 108..116), ("gid", h.gid, 116..124)] {
            if !put_octal(&mut b[field.clone()], u64::from(value)) {
                pax_record(&mut pax, key, value.to_string().as_bytes());
                put_base256(&mut b[field], u64::from(value));
            }
        }
        if !put_octal(&mut b[124..136], h.size) {
            pax_record(&mut pax, "size", h.size.to_string().as_bytes());
            put_base256(&mut b[124..136], h.size);
        }
        if h.mtime < 0 || !put_octal(&mut b[136..148], h.mtime as u64) {
            pax_record(&mut pax, "mtime", h.mtime.to_string().as_bytes());
            put_octal(&mut b[136..148], 0);
        }
        b[156] = h.typeflag;
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        for (value, field) in [(h.devmajor, 329..337), (h.devminor, 337..345)] {
            if !put_octal(&mut b[field.clone()], u64::from(value)) {
                put_base256(&mut b[field], u64::from(value));
            }
        }
        if !pax.is_empty() {
            self.pax_header(h, &pax)?;
        }
        seal(&mut b);
        self.put(&b)?;
        self.entries += 1;
        Ok(())
    }

    fn pax_header(&mut self, h: &Header, data: &[u8]) -> io::Result<()> {
        let mut b = [0u8; BLOCK];
        let base = h
            .name
            .strip_suffix(b"/")
            .unwrap_or(&h.name)
            .rsplit(|&c| c == b'/')
            .next()
            .unwrap_or(b"");
        let mut name = b"PaxHeaders/".to_vec();
        name.extend_from_slice(&base[..base.len().min(100 - name.len())]);
        b[..name.len()].copy_from_slice(&name);
        put_octal(&mut b[100..108], 0o644);
        put_octal(&mut b[108..116], 0);
        put_octal(&mut b[116..124], 0);
        put_octal(&mut b[124..136], data.len() as u64);
        put_octal(&mut b[136..148], h.mtime.max(0) as u64);
        b[156] = PAX;
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        seal(&mut b);
        self.put(&b)?;
        self.put(data)?;
        self.pad(data.len() as u64)
    }

    /// Two zero blocks, then zeros up to a whole record.
    fn finish(&mut self) -> io::Result<()> {
        self.put(&[0u8; 2 * BLOCK])?;
        let rem = self.written % RECORD;
        if rem != 0 {
            let mut left = RECORD - rem;
            while left > 0 {
                let n = left.min(BLOCK as u64) as usize;
                self.put(&[0u8; BLOCK][..n])?;
                left -= n as u64;
            }
        }
        self.out.flush()
    }
}

fn show(path: &[u8]) -> String {
    super::escape_path(path)
}

/// Splits `name` into ustar (prefix, name) fields: at most 155 and 100 bytes, cut
/// at a `/`. `None` when no such split exists.
fn split_name(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if name.len() <= 100 {
        return Some((b"", name));
    }
    // The last byte is never the cut: the name part would be empty.
    let cut = name[..name.len() - 1]
        .iter()
        .enumerate()
        .filter(|&(i, &c)| c == b'/' && name.len() - i - 1 <= 100)
        .map(|(i, _)| i)
        .next()?;
    (cut <= 155).then(|| (&name[..cut], &name[cut + 1..]))
}

/// Writes `value` as zero-padded octal with a terminating NUL; false if it does not fit.
fn put_octal(field: &mut [u8], value: u64) -> bool {
    let digits = field.len() - 1;
    if digits < 22 && value >> (3 * digits) != 0 {
        return false;
    }
    let mut v = value;
    for i in (0..digits).rev() {
        field[i] = b'0' + (v & 7) as u8;
        v >>= 3;
    }
    field[digits] = 0;
    true
}

/// GNU's base-256 form for values too large for octal: high bit set, big-endian.
fn put_base256(field: &mut [u8], value: u64) {
    field.fill(0);
    let bytes = value.to_be_bytes();
    let n = field.len();
    field[n - 8..].copy_from_slice(&bytes);
    field[0] |= 0x80;
}

/// Fills in the checksum: the byte sum with the checksum field read as spaces.
fn seal(b: &mut [u8; BLOCK]) {
    b[148..156].fill(b' ');
    let sum: u32 = b.iter().map(|&c| u32::from(c)).sum();
    put_octal(&mut b[148..155], u64::from(sum));
    b[155] = b' ';
}

/// Appends one `"LEN key=value\n"` record, LEN counting its own digits.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths_count_themselves() {
        let mut v = Vec::new();
        pax_record(&mut v, "path", b"abc");
        assert_eq!(v, b"12 path=abc\n");
        // " path=" + 91 bytes + "\n" is 98: a 2-digit length would make 100, which
        // has 3 digits, so the record is 101 long.
        let mut v = Vec::new();
        pax_record(&mut v, "path", &[b'a'; 91]);
        assert_eq!(v.len(), 101);
        assert!(v.starts_with(b"101 path=aaa"));
        let mut v = Vec::new();
        pax_record(&mut v, "path", &[b'a'; 90]);
        assert_eq!(v.len(), 99);
        assert!(v.starts_with(b"99 path=aaa"));
    }

    #[test]
    fn splits_long_names_at_a_slash() {
        assert_eq!(split_name(b"a/b"), Some((&b""[..], &b"a/b"[..])));
        let dir = [b'd'; 120];
        let mut name = dir.to_vec();
        name.extend_from_slice(b"/file");
        assert_eq!(split_name(&name), Some((&dir[..], &b"file"[..])));
        let mut long_base = b"d/".to_vec();
        long_base.extend_from_slice(&[b'f'; 101]);
        assert_eq!(split_name(&long_base), None);
        let mut deep = [b'p'; 156].to_vec();
        deep.extend_from_slice(b"/f");
        assert_eq!(split_name(&deep), None);
        let mut dir_name = [b'x'; 101].to_vec();
        dir_name.push(b'/');
        assert_eq!(split_name(&dir_name), None);
    }

    #[test]
    fn octal_fields_refuse_what_does_not_fit() {
        let mut f = [0u8; 8];
        assert!(put_octal(&mut f, 0o7777777));
        assert_eq!(&f, b"7777777\0");
        assert!(!put_octal(&mut f, 0o10000000));
        put_base256(&mut f, 3_000_000);
        assert_eq!(f[0], 0x80);
        assert_eq!(
            u64::from_be_bytes([0, f[1], f[2], f[3], f[4], f[5], f[6], f[7]]),
            3_000_000
        );
    }
}
