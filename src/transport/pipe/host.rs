//! Translation between this host's values (flags, `stat64`, errno) and the wire's.
//!
//! The wire uses its own bit assignments (see `wire`); this module is the only place
//! that knows the host's. A macOS server translates with the Darwin tables of
//! `platform::xlate`; the `*_to_wire` direction of flags and the `*_from_wire`
//! direction of attributes serve the client, which runs on Linux only.

use std::io;

use fuse_backend_rs::abi::fuse_abi::{OpenOptions, SetattrValid};
use fuse_backend_rs::api::filesystem::Entry;

use super::wire::{self, Attr, EntryOut, StatfsOut, Time};
#[cfg(target_os = "macos")]
use crate::platform::xlate;
use crate::platform::{self, stat64, statvfs64};

#[cfg(target_os = "linux")]
/// Open flags: host to wire. Bits without a wire meaning are dropped (O_LARGEFILE is
/// implied on 64-bit hosts; the rest never reach a FUSE server).
pub fn open_to_wire(flags: u32) -> u32 {
    let f = flags as i32;
    let mut w = (f & libc::O_ACCMODE) as u32;
    let map = [
        (libc::O_APPEND, wire::open::APPEND),
        (libc::O_TRUNC, wire::open::TRUNC),
        (libc::O_CREAT, wire::open::CREAT),
        (libc::O_EXCL, wire::open::EXCL),
        (libc::O_NONBLOCK, wire::open::NONBLOCK),
        (libc::O_DIRECT, wire::open::DIRECT),
        (libc::O_NOFOLLOW, wire::open::NOFOLLOW),
        (libc::O_NOATIME, wire::open::NOATIME),
        (libc::O_DIRECTORY, wire::open::DIRECTORY),
        (libc::O_CLOEXEC, wire::open::CLOEXEC),
        (libc::O_NOCTTY, wire::open::NOCTTY),
    ];
    for (h, b) in map {
        if f & h != 0 {
            w |= b;
        }
    }
    // O_SYNC contains the O_DSYNC bit.
    if f & libc::O_SYNC == libc::O_SYNC {
        w |= wire::open::SYNC;
    } else if f & libc::O_DSYNC != 0 {
        w |= wire::open::DSYNC;
    }
    w
}

#[cfg(target_os = "linux")]
/// Open flags: wire to host.
pub fn open_from_wire(w: u32) -> u32 {
    let mut f = (w & wire::open::ACCMODE) as i32;
    let map = [
        (wire::open::APPEND, libc::O_APPEND),
        (wire::open::TRUNC, libc::O_TRUNC),
        (wire::open::CREAT, libc::O_CREAT),
        (wire::open::EXCL, libc::O_EXCL),
        (wire::open::NONBLOCK, libc::O_NONBLOCK),
        (wire::open::SYNC, libc::O_SYNC),
        (wire::open::DSYNC, libc::O_DSYNC),
        (wire::open::DIRECT, libc::O_DIRECT),
        (wire::open::NOFOLLOW, libc::O_NOFOLLOW),
        (wire::open::NOATIME, libc::O_NOATIME),
        (wire::open::DIRECTORY, libc::O_DIRECTORY),
        (wire::open::CLOEXEC, libc::O_CLOEXEC),
        (wire::open::NOCTTY, libc::O_NOCTTY),
    ];
    for (b, h) in map {
        if w & b != 0 {
            f |= h;
        }
    }
    f as u32
}

#[cfg(target_os = "macos")]
/// Open flags: wire to host (Darwin bits; O_DIRECT and O_NOATIME are dropped).
pub fn open_from_wire(w: u32) -> u32 {
    use wire::open::*;
    let bits = xlate::WireOpen {
        accmode: ACCMODE,
        append: APPEND,
        trunc: TRUNC,
        creat: CREAT,
        excl: EXCL,
        nonblock: NONBLOCK,
        sync: SYNC,
        dsync: DSYNC,
        nofollow: NOFOLLOW,
        directory: DIRECTORY,
        cloexec: CLOEXEC,
        noctty: NOCTTY,
    };
    xlate::open_from_wire(w, &bits) as u32
}

/// macOS FUSE has no CTIME or KILL_SUIDGID attribute bits: the guest kernel handles both.
const SETATTR_MAP: &[(SetattrValid, u32)] = &[
    (SetattrValid::MODE, wire::setattr::MODE),
    (SetattrValid::UID, wire::setattr::UID),
    (SetattrValid::GID, wire::setattr::GID),
    (SetattrValid::SIZE, wire::setattr::SIZE),
    (SetattrValid::ATIME, wire::setattr::ATIME),
    (SetattrValid::MTIME, wire::setattr::MTIME),
    (SetattrValid::ATIME_NOW, wire::setattr::ATIME_NOW),
    (SetattrValid::MTIME_NOW, wire::setattr::MTIME_NOW),
    #[cfg(target_os = "linux")]
    (SetattrValid::CTIME, wire::setattr::CTIME),
    #[cfg(target_os = "linux")]
    (SetattrValid::KILL_SUIDGID, wire::setattr::KILL_SUIDGID),
];

#[cfg(target_os = "linux")]
pub fn setattr_valid_to_wire(v: SetattrValid) -> u32 {
    SETATTR_MAP
        .iter()
        .filter(|(h, _)| v.contains(*h))
        .fold(0, |acc, (_, w)| acc | w)
}

pub fn setattr_valid_from_wire(w: u32) -> SetattrValid {
    SETATTR_MAP
        .iter()
        .filter(|(_, b)| w & b != 0)
        .fold(SetattrValid::empty(), |acc, (h, _)| acc | *h)
}

/// A table-driven translation that refuses unknown bits (EINVAL) instead of dropping
/// them: for flags whose meaning matters (rename, xattr, fallocate, access).
fn translate(value: u32, map: &[(u32, u32)]) -> io::Result<u32> {
    let mut out = 0;
    let mut seen = 0;
    for &(from, to) in map {
        if value & from != 0 {
            out |= to;
            seen |= from;
        }
    }
    if value & !seen != 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    Ok(out)
}

fn swap(map: &[(u32, u32)]) -> Vec<(u32, u32)> {
    map.iter().map(|&(a, b)| (b, a)).collect()
}

#[cfg(target_os = "linux")]
const RENAME_MAP: [(u32, u32); 3] = [
    (libc::RENAME_NOREPLACE, wire::rename::NOREPLACE),
    (libc::RENAME_EXCHANGE, wire::rename::EXCHANGE),
    (libc::RENAME_WHITEOUT, wire::rename::WHITEOUT),
];
#[cfg(target_os = "linux")]
const XATTR_MAP: [(u32, u32); 2] = [
    (libc::XATTR_CREATE as u32, wire::xattr::CREATE),
    (libc::XATTR_REPLACE as u32, wire::xattr::REPLACE),
];
const FALLOC_MAP: [(u32, u32); 6] = [
    (
        platform::FALLOC_FL_KEEP_SIZE as u32,
        wire::fallocate::KEEP_SIZE,
    ),
    (
        platform::FALLOC_FL_PUNCH_HOLE as u32,
        wire::fallocate::PUNCH_HOLE,
    ),
    (
        platform::FALLOC_FL_ZERO_RANGE as u32,
        wire::fallocate::ZERO_RANGE,
    ),
    (
        platform::FALLOC_FL_COLLAPSE_RANGE as u32,
        wire::fallocate::COLLAPSE_RANGE,
    ),
    (
        platform::FALLOC_FL_INSERT_RANGE as u32,
        wire::fallocate::INSERT_RANGE,
    ),
    (
        platform::FALLOC_FL_UNSHARE_RANGE as u32,
        wire::fallocate::UNSHARE_RANGE,
    ),
];
const ACCESS_MAP: [(u32, u32); 3] = [
    (libc::R_OK as u32, wire::access::R),
    (libc::W_OK as u32, wire::access::W),
    (libc::X_OK as u32, wire::access::X),
];

#[cfg(target_os = "linux")]
pub fn rename_to_wire(f: u32) -> io::Result<u32> {
    translate(f, &RENAME_MAP)
}
#[cfg(target_os = "linux")]
pub fn rename_from_wire(f: u32) -> io::Result<u32> {
    translate(f, &swap(&RENAME_MAP))
}
#[cfg(target_os = "linux")]
pub fn xattr_to_wire(f: u32) -> io::Result<u32> {
    translate(f, &XATTR_MAP)
}
#[cfg(target_os = "linux")]
pub fn xattr_from_wire(f: u32) -> io::Result<u32> {
    translate(f, &swap(&XATTR_MAP))
}
#[cfg(target_os = "linux")]
/// Unknown fallocate modes are not supported (EOPNOTSUPP, as the kernel says).
pub fn fallocate_to_wire(f: u32) -> io::Result<u32> {
    translate(f, &FALLOC_MAP).map_err(|_| io::Error::from_raw_os_error(libc::EOPNOTSUPP))
}
#[cfg(target_os = "macos")]
pub fn rename_from_wire(f: u32) -> io::Result<u32> {
    xlate::rename_from_wire(f, wire::rename::NOREPLACE, wire::rename::EXCHANGE)
}
#[cfg(target_os = "macos")]
pub fn xattr_from_wire(f: u32) -> io::Result<u32> {
    xlate::xattr_flags_from_wire(f, wire::xattr::CREATE, wire::xattr::REPLACE).map(|f| f as u32)
}
pub fn fallocate_from_wire(f: u32) -> io::Result<u32> {
    translate(f, &swap(&FALLOC_MAP)).map_err(|_| io::Error::from_raw_os_error(libc::EOPNOTSUPP))
}
#[cfg(target_os = "linux")]
pub fn access_to_wire(f: u32) -> io::Result<u32> {
    translate(f, &ACCESS_MAP)
}
pub fn access_from_wire(f: u32) -> io::Result<u32> {
    translate(f, &swap(&ACCESS_MAP))
}

#[cfg(target_os = "linux")]
pub fn whence_to_wire(w: u32) -> io::Result<u32> {
    Ok(match w as i32 {
        libc::SEEK_SET => wire::whence::SET,
        libc::SEEK_CUR => wire::whence::CUR,
        libc::SEEK_END => wire::whence::END,
        libc::SEEK_DATA => wire::whence::DATA,
        libc::SEEK_HOLE => wire::whence::HOLE,
        _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
    })
}

pub fn whence_from_wire(w: u32) -> io::Result<u32> {
    Ok(match w {
        wire::whence::SET => libc::SEEK_SET,
        wire::whence::CUR => libc::SEEK_CUR,
        wire::whence::END => libc::SEEK_END,
        wire::whence::DATA => libc::SEEK_DATA,
        wire::whence::HOLE => libc::SEEK_HOLE,
        _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
    } as u32)
}

/// Errno values on the wire are Linux's; on a Linux host that is the identity.
/// Anything that is not a plausible errno becomes EIO.
#[cfg(target_os = "linux")]
pub fn errno_to_wire(e: &io::Error) -> i32 {
    match e.raw_os_error() {
        Some(n) if n > 0 && n < 4096 => n,
        _ => libc::EIO,
    }
}

/// Errno values on the wire are Linux's: a Darwin errno is translated.
#[cfg(target_os = "macos")]
pub fn errno_to_wire(e: &io::Error) -> i32 {
    xlate::errno_to_linux(e.raw_os_error().unwrap_or(libc::EIO))
}

#[cfg(target_os = "linux")]
pub fn errno_from_wire(n: i32) -> io::Error {
    if n > 0 && n < 4096 {
        io::Error::from_raw_os_error(n)
    } else {
        io::Error::from_raw_os_error(libc::EIO)
    }
}

/// `st_rdev` (glibc's 64-bit `dev_t`) split into major and minor.
#[cfg(test)]
fn dev_split(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

/// glibc's `makedev`.
#[cfg(target_os = "linux")]
fn dev_join(major: u32, minor: u32) -> u64 {
    let (ma, mi) = (u64::from(major), u64::from(minor));
    ((ma & 0xffff_f000) << 32) | ((ma & 0xfff) << 8) | ((mi & 0xffff_ff00) << 12) | (mi & 0xff)
}

fn time(sec: i64, nsec: i64) -> Time {
    Time {
        sec,
        nsec: nsec.clamp(0, 999_999_999) as u32,
    }
}

pub fn attr_to_wire(st: &stat64) -> Attr {
    let (rdev_major, rdev_minor) = platform::rdev_of(st);
    Attr {
        ino: st.st_ino,
        size: st.st_size.max(0) as u64,
        blocks: st.st_blocks.max(0) as u64,
        atime: time(st.st_atime, st.st_atime_nsec),
        mtime: time(st.st_mtime, st.st_mtime_nsec),
        ctime: time(st.st_ctime, st.st_ctime_nsec),
        mode: platform::st_mode(st),
        nlink: u32::try_from(st.st_nlink).unwrap_or(u32::MAX),
        uid: st.st_uid,
        gid: st.st_gid,
        rdev_major,
        rdev_minor,
        blksize: u32::try_from(st.st_blksize).unwrap_or(4096),
    }
}

#[cfg(target_os = "linux")]
pub fn attr_from_wire(a: &Attr) -> stat64 {
    let mut st = platform::zeroed_stat();
    st.st_ino = a.ino;
    st.st_size = a.size.min(i64::MAX as u64) as i64;
    st.st_blocks = a.blocks.min(i64::MAX as u64) as i64;
    st.st_atime = a.atime.sec;
    st.st_atime_nsec = i64::from(a.atime.nsec);
    st.st_mtime = a.mtime.sec;
    st.st_mtime_nsec = i64::from(a.mtime.nsec);
    st.st_ctime = a.ctime.sec;
    st.st_ctime_nsec = i64::from(a.ctime.nsec);
    st.st_mode = a.mode;
    st.st_nlink = a.nlink.into();
    st.st_uid = a.uid;
    st.st_gid = a.gid;
    st.st_rdev = dev_join(a.rdev_major, a.rdev_minor);
    st.st_blksize = blksize_from_wire(a.blksize);
    st
}

/// blksize_t is i64 on x86_64 and i32 on aarch64; a nonsensical size falls back to a page.
#[cfg(target_os = "linux")]
#[allow(clippy::unnecessary_fallible_conversions)]
fn blksize_from_wire(blksize: u32) -> libc::blksize_t {
    blksize.try_into().unwrap_or(4096)
}

/// setattr arguments travel as a `stat64` through the FileSystem trait.
#[cfg(target_os = "linux")]
pub fn setattr_to_wire(st: &stat64, valid: SetattrValid) -> wire::SetattrIn {
    wire::SetattrIn {
        valid: setattr_valid_to_wire(valid),
        mode: platform::st_mode(st),
        uid: st.st_uid,
        gid: st.st_gid,
        size: st.st_size.max(0) as u64,
        atime: time(st.st_atime, st.st_atime_nsec),
        mtime: time(st.st_mtime, st.st_mtime_nsec),
        ctime: time(st.st_ctime, st.st_ctime_nsec),
    }
}

pub fn setattr_from_wire(s: &wire::SetattrIn) -> (stat64, SetattrValid) {
    let mut st = platform::zeroed_stat();
    platform::set_st_mode(&mut st, s.mode);
    st.st_uid = s.uid;
    st.st_gid = s.gid;
    st.st_size = s.size.min(i64::MAX as u64) as i64;
    st.st_atime = s.atime.sec;
    st.st_atime_nsec = i64::from(s.atime.nsec);
    st.st_mtime = s.mtime.sec;
    st.st_mtime_nsec = i64::from(s.mtime.nsec);
    st.st_ctime = s.ctime.sec;
    st.st_ctime_nsec = i64::from(s.ctime.nsec);
    (st, setattr_valid_from_wire(s.valid))
}

pub fn entry_to_wire(e: &Entry) -> EntryOut {
    EntryOut {
        node: e.inode,
        generation: e.generation,
        attr: attr_to_wire(&e.attr),
        attr_flags: e.attr_flags,
        entry_timeout: e.entry_timeout,
        attr_timeout: e.attr_timeout,
    }
}

/// The entry with the node id the client kernel will see.
#[cfg(target_os = "linux")]
pub fn entry_from_wire(e: &EntryOut, node: u64) -> Entry {
    Entry {
        inode: node,
        generation: e.generation,
        attr: attr_from_wire(&e.attr),
        attr_flags: e.attr_flags,
        attr_timeout: e.attr_timeout,
        entry_timeout: e.entry_timeout,
    }
}

#[allow(clippy::useless_conversion)] // 32-bit counts on macOS
pub fn statfs_to_wire(s: &statvfs64) -> StatfsOut {
    StatfsOut {
        blocks: u64::from(s.f_blocks),
        bfree: u64::from(s.f_bfree),
        bavail: u64::from(s.f_bavail),
        files: u64::from(s.f_files),
        ffree: u64::from(s.f_ffree),
        bsize: u32::try_from(s.f_bsize).unwrap_or(u32::MAX),
        frsize: u32::try_from(s.f_frsize).unwrap_or(u32::MAX),
        namemax: u32::try_from(s.f_namemax).unwrap_or(255),
    }
}

#[cfg(target_os = "linux")]
pub fn statfs_from_wire(s: &StatfsOut) -> statvfs64 {
    let mut st = platform::zeroed_statvfs();
    st.f_blocks = s.blocks;
    st.f_bfree = s.bfree;
    st.f_bavail = s.bavail;
    st.f_files = s.files;
    st.f_ffree = s.ffree;
    st.f_bsize = s.bsize.into();
    st.f_frsize = s.frsize.into();
    st.f_namemax = s.namemax.into();
    st
}

/// Open reply options: host to wire.
pub fn open_options_to_wire(o: OpenOptions) -> u32 {
    let map = [
        (OpenOptions::DIRECT_IO, wire::open_out::DIRECT_IO),
        (OpenOptions::KEEP_CACHE, wire::open_out::KEEP_CACHE),
        (OpenOptions::NONSEEKABLE, wire::open_out::NONSEEKABLE),
        #[cfg(target_os = "linux")]
        (OpenOptions::CACHE_DIR, wire::open_out::CACHE_DIR),
        #[cfg(target_os = "linux")]
        (OpenOptions::STREAM, wire::open_out::STREAM),
    ];
    map.iter()
        .filter(|(h, _)| o.contains(*h))
        .fold(0, |acc, (_, w)| acc | w)
}

/// Open reply options: wire to host.
#[cfg(target_os = "linux")]
pub fn open_options_from_wire(w: u32) -> OpenOptions {
    let map = [
        (wire::open_out::DIRECT_IO, OpenOptions::DIRECT_IO),
        (wire::open_out::KEEP_CACHE, OpenOptions::KEEP_CACHE),
        (wire::open_out::NONSEEKABLE, OpenOptions::NONSEEKABLE),
        (wire::open_out::CACHE_DIR, OpenOptions::CACHE_DIR),
        (wire::open_out::STREAM, OpenOptions::STREAM),
    ];
    map.iter()
        .filter(|(b, _)| w & b != 0)
        .fold(OpenOptions::empty(), |acc, (_, h)| acc | *h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_flags_round_trip() {
        for f in [
            libc::O_RDONLY,
            libc::O_WRONLY | libc::O_TRUNC | libc::O_APPEND,
            libc::O_RDWR | libc::O_SYNC | libc::O_NOFOLLOW,
            libc::O_RDWR | libc::O_DSYNC | libc::O_DIRECT | libc::O_NONBLOCK,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOATIME | libc::O_CLOEXEC,
        ] {
            assert_eq!(open_from_wire(open_to_wire(f as u32)), f as u32, "{f:#o}");
        }
        // O_LARGEFILE has no wire bit and is dropped.
        assert_eq!(open_to_wire((libc::O_RDWR | 0o100000) as u32), 2);
    }

    #[test]
    fn strict_flags_refuse_unknown_bits() {
        assert_eq!(rename_from_wire(rename_to_wire(3).unwrap()).unwrap(), 3);
        assert!(rename_to_wire(1 << 20).is_err());
        assert!(xattr_from_wire(8).is_err());
        assert_eq!(
            fallocate_to_wire(0x4).unwrap_err().raw_os_error(),
            Some(libc::EOPNOTSUPP),
            "FALLOC_FL_NO_HIDE_STALE has no wire bit"
        );
        assert_eq!(access_from_wire(access_to_wire(7).unwrap()).unwrap(), 7);
        for w in 0..5 {
            assert_eq!(whence_to_wire(whence_from_wire(w).unwrap()).unwrap(), w);
        }
        assert!(whence_from_wire(5).is_err());
    }

    #[test]
    fn devices_and_attrs_round_trip() {
        for (ma, mi) in [(0, 0), (1, 3), (8, 17), (259, 65536), (4095, 0xfffff)] {
            assert_eq!(dev_split(dev_join(ma, mi)), (ma, mi));
            let (a, b) = wire::split_dev32(wire::join_dev32(ma, mi).unwrap());
            assert_eq!((a, b), (ma, mi));
            // FUSE carries the low 32 bits of dev_t: the same encoding.
            assert_eq!(Some(dev_join(ma, mi) as u32), wire::join_dev32(ma, mi));
        }
        let a = Attr {
            ino: 7,
            size: 12345,
            blocks: 24,
            atime: Time { sec: 1, nsec: 2 },
            mtime: Time { sec: -3, nsec: 4 },
            ctime: Time { sec: 5, nsec: 6 },
            mode: 0o100644,
            nlink: 2,
            uid: 1000,
            gid: 100,
            rdev_major: 0,
            rdev_minor: 0,
            blksize: 4096,
        };
        assert_eq!(attr_to_wire(&attr_from_wire(&a)), a);
        let s = StatfsOut {
            blocks: 1,
            bfree: 2,
            bavail: 3,
            files: 4,
            ffree: 5,
            bsize: 4096,
            frsize: 512,
            namemax: 255,
        };
        assert_eq!(statfs_to_wire(&statfs_from_wire(&s)), s);
        let v = SetattrValid::MODE | SetattrValid::MTIME_NOW | SetattrValid::KILL_SUIDGID;
        assert_eq!(setattr_valid_from_wire(setattr_valid_to_wire(v)), v);
    }
}
