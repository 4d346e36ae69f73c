//! Between fuse-backend-rs's host types (`stat64`, `FsOptions`, `OpenOptions`...) and
//! the Linux ABI structs. On a Linux host the option bits are the kernel's own; the
//! macOS build of fuse-backend-rs names macFUSE's bits, so they go through tables.

use std::io;
use std::time::Duration;

use fuse_backend_rs::abi::fuse_abi::{stat64, statvfs64, FsOptions, OpenOptions, SetattrValid};
use fuse_backend_rs::api::filesystem::{Entry, FileLock as HostLock};

use super::abi::{fattr, Attr, AttrOut, EntryOut, FileLock, Kstatfs, SetattrIn, Statx, SxTime};
use crate::extension::StatxReply;
use crate::platform;

/// statx(2) mask bits (`include/uapi/linux/stat.h`).
const STATX_BASIC_STATS: u32 = 0x7ff;
const STATX_BTIME: u32 = 0x800;

fn split(d: Duration) -> (u64, u32) {
    (d.as_secs(), d.subsec_nanos())
}

fn nanos(n: i64) -> u32 {
    n.clamp(0, 999_999_999) as u32
}

/// A device number in the kernel's `new_encode_dev` form (what `fuse_attr.rdev` holds).
fn encode_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// The kernel's `new_decode_dev`.
pub fn decode_dev(dev: u32) -> (u32, u32) {
    ((dev & 0xfff00) >> 8, (dev & 0xff) | ((dev >> 12) & 0xfff00))
}

/// fuse_attr of a host `stat64`.
#[allow(clippy::unnecessary_cast, clippy::useless_conversion)] // field types differ by OS
pub fn attr(st: &stat64, flags: u32) -> Attr {
    let (major, minor) = platform::rdev_of(st);
    Attr {
        ino: st.st_ino as u64,
        size: st.st_size.max(0) as u64,
        blocks: st.st_blocks.max(0) as u64,
        atime: st.st_atime as u64,
        mtime: st.st_mtime as u64,
        ctime: st.st_ctime as u64,
        atimensec: nanos(st.st_atime_nsec as i64),
        mtimensec: nanos(st.st_mtime_nsec as i64),
        ctimensec: nanos(st.st_ctime_nsec as i64),
        mode: platform::st_mode(st),
        nlink: u32::try_from(st.st_nlink).unwrap_or(u32::MAX),
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: encode_dev(major, minor),
        blksize: u32::try_from(st.st_blksize).unwrap_or(4096),
        flags,
    }
}

pub fn attr_out(st: &stat64, timeout: Duration) -> AttrOut {
    let (attr_valid, attr_valid_nsec) = split(timeout);
    AttrOut {
        attr_valid,
        attr_valid_nsec,
        dummy: 0,
        attr: attr(st, 0),
    }
}

pub fn entry_out(e: &Entry) -> EntryOut {
    let (entry_valid, entry_valid_nsec) = split(e.entry_timeout);
    let (attr_valid, attr_valid_nsec) = split(e.attr_timeout);
    EntryOut {
        nodeid: e.inode,
        generation: e.generation,
        entry_valid,
        attr_valid,
        entry_valid_nsec,
        attr_valid_nsec,
        attr: attr(&e.attr, e.attr_flags),
    }
}

fn sx_time(sec: i64, nsec: i64) -> SxTime {
    SxTime {
        tv_sec: sec,
        tv_nsec: nanos(nsec),
        reserved: 0,
    }
}

#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
pub fn statx(r: &StatxReply) -> Statx {
    let a = attr(&r.stat, 0);
    let (rdev_major, rdev_minor) = platform::rdev_of(&r.stat);
    let btime = r.btime.map(|(s, n)| sx_time(s, i64::from(n)));
    Statx {
        mask: STATX_BASIC_STATS | if btime.is_some() { STATX_BTIME } else { 0 },
        blksize: a.blksize,
        attributes: 0,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        mode: a.mode as u16,
        spare0: 0,
        ino: a.ino,
        size: a.size,
        blocks: a.blocks,
        attributes_mask: 0,
        atime: sx_time(r.stat.st_atime as i64, r.stat.st_atime_nsec as i64),
        btime: btime.unwrap_or_default(),
        ctime: sx_time(r.stat.st_ctime as i64, r.stat.st_ctime_nsec as i64),
        mtime: sx_time(r.stat.st_mtime as i64, r.stat.st_mtime_nsec as i64),
        rdev_major,
        rdev_minor,
        dev_major: 0,
        dev_minor: 0,
        spare2: [0; 14],
    }
}

#[allow(clippy::useless_conversion)] // 32-bit counts on macOS
pub fn kstatfs(s: &statvfs64) -> Kstatfs {
    Kstatfs {
        blocks: u64::from(s.f_blocks),
        bfree: u64::from(s.f_bfree),
        bavail: u64::from(s.f_bavail),
        files: u64::from(s.f_files),
        ffree: u64::from(s.f_ffree),
        bsize: u32::try_from(s.f_bsize).unwrap_or(u32::MAX),
        namelen: u32::try_from(s.f_namemax).unwrap_or(255),
        frsize: u32::try_from(s.f_frsize).unwrap_or(u32::MAX),
        padding: 0,
        spare: [0; 6],
    }
}

/// SETATTR's arguments as the trait takes them: a `stat64` holding the new values and
/// the mask of those to apply.
#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
pub fn setattr(s: &SetattrIn) -> (stat64, SetattrValid) {
    let mut st = platform::zeroed_stat();
    platform::set_st_mode(&mut st, s.mode);
    st.st_uid = s.uid;
    st.st_gid = s.gid;
    // A size past i64::MAX arrives negative, for the filesystem to refuse (EINVAL).
    st.st_size = s.size as i64 as _;
    st.st_atime = i64::try_from(s.atime).unwrap_or(i64::MAX) as _;
    st.st_mtime = i64::try_from(s.mtime).unwrap_or(i64::MAX) as _;
    st.st_ctime = i64::try_from(s.ctime).unwrap_or(i64::MAX) as _;
    st.st_atime_nsec = s.atimensec.into();
    st.st_mtime_nsec = s.mtimensec.into();
    st.st_ctime_nsec = s.ctimensec.into();
    let valid = SETATTR_MAP
        .iter()
        .filter(|(bit, _)| s.valid & bit != 0)
        .fold(SetattrValid::empty(), |acc, (_, v)| acc | *v);
    (st, valid)
}

/// FATTR_FH and FATTR_LOCKOWNER are the protocol's business, not the filesystem's;
/// macOS's FUSE has no CTIME or KILL_SUIDGID bits (the guest kernel handles both).
const SETATTR_MAP: &[(u32, SetattrValid)] = &[
    (fattr::MODE, SetattrValid::MODE),
    (fattr::UID, SetattrValid::UID),
    (fattr::GID, SetattrValid::GID),
    (fattr::SIZE, SetattrValid::SIZE),
    (fattr::ATIME, SetattrValid::ATIME),
    (fattr::MTIME, SetattrValid::MTIME),
    (fattr::ATIME_NOW, SetattrValid::ATIME_NOW),
    (fattr::MTIME_NOW, SetattrValid::MTIME_NOW),
    #[cfg(target_os = "linux")]
    (fattr::CTIME, SetattrValid::CTIME),
    #[cfg(target_os = "linux")]
    (fattr::KILL_SUIDGID, SetattrValid::KILL_SUIDGID),
];

/// INIT flags the kernel offered, as the filesystem's `init` takes them.
#[cfg(target_os = "linux")]
pub fn fs_options(linux: u64) -> FsOptions {
    FsOptions::from_bits_truncate(linux)
}

/// INIT flags the filesystem wants, as the kernel reads them.
#[cfg(target_os = "linux")]
pub fn linux_init_flags(o: FsOptions) -> u64 {
    o.bits()
}

/// OPEN/CREATE reply flags (FOPEN_*).
#[cfg(target_os = "linux")]
pub fn fopen_flags(o: OpenOptions) -> u32 {
    o.bits()
}

#[cfg(not(target_os = "linux"))]
const INIT_MAP: &[(u64, FsOptions)] = {
    use super::abi::init;
    &[
        (init::ASYNC_READ, FsOptions::ASYNC_READ),
        (init::POSIX_LOCKS, FsOptions::POSIX_LOCKS),
        (init::ATOMIC_O_TRUNC, FsOptions::ATOMIC_O_TRUNC),
        (init::EXPORT_SUPPORT, FsOptions::EXPORT_SUPPORT),
        (init::BIG_WRITES, FsOptions::BIG_WRITES),
        (init::DONT_MASK, FsOptions::DONT_MASK),
        (init::FLOCK_LOCKS, FsOptions::FLOCK_LOCKS),
    ]
};

#[cfg(not(target_os = "linux"))]
pub fn fs_options(linux: u64) -> FsOptions {
    INIT_MAP
        .iter()
        .filter(|(bit, _)| linux & bit != 0)
        .fold(FsOptions::empty(), |acc, (_, o)| acc | *o)
}

#[cfg(not(target_os = "linux"))]
pub fn linux_init_flags(o: FsOptions) -> u64 {
    INIT_MAP
        .iter()
        .filter(|(_, f)| o.contains(*f))
        .fold(0, |acc, (bit, _)| acc | bit)
}

#[cfg(not(target_os = "linux"))]
pub fn fopen_flags(o: OpenOptions) -> u32 {
    use super::abi::fopen;
    [
        (OpenOptions::DIRECT_IO, fopen::DIRECT_IO),
        (OpenOptions::KEEP_CACHE, fopen::KEEP_CACHE),
        (OpenOptions::NONSEEKABLE, fopen::NONSEEKABLE),
    ]
    .iter()
    .filter(|(h, _)| o.contains(*h))
    .fold(0, |acc, (_, bit)| acc | bit)
}

/// A request's Linux open(2) flags as this host's (on macOS O_DIRECT and O_NOATIME
/// have no bit and are dropped).
pub fn open_flags(linux: u32) -> u32 {
    #[cfg(not(target_os = "linux"))]
    let linux = platform::xlate::open_from_wire(linux, &platform::xlate::LINUX_OPEN) as u32;
    linux
}

/// RENAME2's Linux flags as this host's; what it cannot do is EINVAL.
pub fn rename_flags(linux: u32) -> io::Result<u32> {
    #[cfg(not(target_os = "linux"))]
    let linux = platform::xlate::rename_from_wire(linux, 1, 2)?;
    Ok(linux)
}

/// SETXATTR's Linux flags (XATTR_CREATE 1, XATTR_REPLACE 2) as this host's.
pub fn xattr_flags(linux: u32) -> io::Result<u32> {
    #[cfg(not(target_os = "linux"))]
    let linux = platform::xlate::xattr_flags_from_wire(linux, 1, 2)? as u32;
    Ok(linux)
}

/// LSEEK's Linux whence as this host's (SEEK_DATA and SEEK_HOLE differ on macOS).
pub fn whence(linux: u32) -> u32 {
    #[cfg(not(target_os = "linux"))]
    let linux = match linux {
        platform::xlate::LINUX_SEEK_DATA => libc::SEEK_DATA as u32,
        platform::xlate::LINUX_SEEK_HOLE => libc::SEEK_HOLE as u32,
        other => other,
    };
    linux
}

/// The Linux errno for an error; errors without one are EIO.
pub fn errno(e: &io::Error) -> i32 {
    let host = e.raw_os_error().unwrap_or(libc::EIO);
    #[cfg(not(target_os = "linux"))]
    let host = platform::xlate::errno_to_linux(host);
    host
}

pub fn host_lock(l: &FileLock) -> HostLock {
    HostLock {
        start: l.start,
        end: l.end,
        lock_type: l.typ,
        pid: l.pid,
    }
}

pub fn wire_lock(l: &HostLock) -> FileLock {
    FileLock {
        start: l.start,
        end: l.end,
        typ: l.lock_type,
        pid: l.pid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_use_the_kernel_encoding() {
        for (major, minor) in [(0, 0), (1, 3), (8, 17), (259, 65536), (4095, 1_048_575)] {
            assert_eq!(decode_dev(encode_dev(major, minor)), (major, minor));
        }
        assert_eq!(encode_dev(1, 3), 0x103);
    }

    #[test]
    fn setattr_keeps_only_what_the_filesystem_applies() {
        let s = SetattrIn {
            valid: fattr::MODE | fattr::FH | fattr::LOCKOWNER | fattr::SIZE,
            mode: 0o100644,
            size: 42,
            ..Default::default()
        };
        let (st, valid) = setattr(&s);
        assert_eq!(valid, SetattrValid::MODE | SetattrValid::SIZE);
        assert_eq!((platform::st_mode(&st), st.st_size), (0o100644, 42));
    }
}
