//! Linux host calls, each wrapped once in a safe function.
//!
//! Inodes are pinned by `O_PATH` descriptors; operations that refuse `O_PATH`
//! descriptors go through the `/proc/self/fd/N` magic link instead, always relative to
//! a `/proc` descriptor opened before any sandbox (see `procfs`).

mod caps;
mod child;
mod fuse_uring;
mod peer;
mod procfs;
mod sandbox;
mod seccomp;
mod splice;
pub use caps::*;
pub use child::*;
pub use fuse_uring::*;
pub use peer::*;
pub use procfs::*;
pub use sandbox::*;
pub use seccomp::*;
pub use splice::SplicePipe;

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

pub use libc::{stat64, statvfs64};
pub use libc::{
    FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE,
    FALLOC_FL_UNSHARE_RANGE, FALLOC_FL_ZERO_RANGE,
};
/// Open flag that pins an inode without data access.
pub use libc::{O_DIRECT, O_PATH};
/// "No such attribute" from the xattr calls.
pub const ENOATTR: i32 = libc::ENODATA;
/// Symlinks cannot carry `user.*` xattrs on Linux: their records live in a sidecar.
pub const SYMLINK_XATTRS: bool = false;
/// Where daemons keep their runtime files (sockets).
pub const RUN_DIR: &str = "/run";

/// Host identity of an inode: (device, inode number, mount id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InodeKey {
    pub dev: u64,
    pub ino: u64,
    pub mnt_id: u64,
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    let fd = cvt(fd)?;
    // SAFETY: the kernel just returned this descriptor to us and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

const EMPTY: &CStr = c"";

/// `/proc/self/fd/N` as a C string, built on the stack so hot paths do not allocate.
/// Used as `self/fd/N` under the `/proc` descriptor (or the cwd, once that is `/proc`).
pub struct ProcFdPath {
    buf: [u8; 32],
}

impl ProcFdPath {
    pub fn new(fd: BorrowedFd<'_>) -> Self {
        const PREFIX: &[u8] = b"/proc/self/fd/";
        let mut buf = [0u8; 32];
        buf[..PREFIX.len()].copy_from_slice(PREFIX);
        let mut digits = [0u8; 12];
        let mut n = fd.as_raw_fd() as u32;
        let mut len = 0;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for i in 0..len {
            buf[PREFIX.len() + i] = digits[len - 1 - i];
        }
        ProcFdPath { buf }
    }

    fn absolute(&self) -> &CStr {
        // The buffer always holds a NUL after the digits (32 > 14 + 10).
        CStr::from_bytes_until_nul(&self.buf).unwrap_or(c"/proc/self/fd")
    }

    /// `self/fd/N`, for the `*at` calls with the `/proc` descriptor.
    pub fn relative(&self) -> &CStr {
        const SKIP: usize = b"/proc/".len();
        CStr::from_bytes_until_nul(&self.buf[SKIP..]).unwrap_or(c"self/fd")
    }

    /// The path for syscalls that take no directory descriptor: relative to the cwd in
    /// a server (which made `/proc` its cwd before any sandbox), absolute in tools and
    /// tests that never do.
    pub fn for_path_call(&self) -> &CStr {
        if proc_is_cwd() {
            self.relative()
        } else {
            self.absolute()
        }
    }
}

/// Opens `name` relative to `dir` without following a trailing symlink.
pub fn openat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: libc::c_int,
    mode: u32,
) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid C string and `dir` a live descriptor.
    owned(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })
}

/// Opens an absolute host path (used once, for the shared directory itself).
pub fn open_path(path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: `path` is a valid C string.
    owned(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) })
}

/// Opens the inode behind `fd` (typically an `O_PATH` fd) anew with real access `flags`.
/// Permission is checked against the calling thread's filesystem credentials.
pub fn reopen(fd: BorrowedFd<'_>, flags: libc::c_int) -> io::Result<OwnedFd> {
    let path = ProcFdPath::new(fd);
    let flags = (flags | libc::O_CLOEXEC) & !(libc::O_NOFOLLOW | libc::O_CREAT | libc::O_EXCL);
    openat(proc_root()?, path.relative(), flags, 0)
}

/// `fstat` on any descriptor, `O_PATH` included: the one syscall of the stat path.
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<stat64> {
    let mut st = MaybeUninit::<stat64>::uninit();
    // SAFETY: `st` is a valid out-pointer of the right type.
    cvt(unsafe { libc::fstat64(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstat64 succeeded and filled the struct.
    Ok(unsafe { st.assume_init() })
}

/// An all-zero stat, for replies that carry no attributes.
pub fn zeroed_stat() -> stat64 {
    // SAFETY: stat64 is plain old data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// Stat plus mount id of the inode behind `fd`, in one `statx` call.
pub fn statx_identity(fd: BorrowedFd<'_>) -> io::Result<(stat64, InodeKey)> {
    statx_identity_born(fd).map(|(st, key, _)| (st, key))
}

/// Seconds and nanoseconds of an inode's creation.
pub type BirthTime = (i64, u32);

/// `statx_identity` plus the birth time where the filesystem keeps one, in the same call.
pub fn statx_identity_born(
    fd: BorrowedFd<'_>,
) -> io::Result<(stat64, InodeKey, Option<BirthTime>)> {
    identity_at(fd, EMPTY, libc::AT_EMPTY_PATH)
}

/// `statx_identity_born` of `dir/name`, never following a symlink: a lookup's first
/// look, which needs no descriptor of its own when the inode is known.
pub fn statx_identity_born_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
) -> io::Result<(stat64, InodeKey, Option<BirthTime>)> {
    identity_at(dir, name, 0)
}

fn identity_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: libc::c_int,
) -> io::Result<(stat64, InodeKey, Option<BirthTime>)> {
    let mut stx = MaybeUninit::<libc::statx>::zeroed();
    let flags = flags | libc::AT_SYMLINK_NOFOLLOW | libc::AT_STATX_SYNC_AS_STAT;
    // SAFETY: valid descriptor and C string (empty with AT_EMPTY_PATH: `dir` itself);
    // `stx` is a valid out-pointer.
    cvt(unsafe {
        libc::statx(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags,
            libc::STATX_BASIC_STATS | libc::STATX_MNT_ID | libc::STATX_BTIME,
            stx.as_mut_ptr(),
        )
    })?;
    // SAFETY: statx succeeded and filled the struct.
    let stx = unsafe { stx.assume_init() };
    let mut st = zeroed_stat();
    st.st_dev = libc::makedev(stx.stx_dev_major, stx.stx_dev_minor);
    st.st_ino = stx.stx_ino;
    st.st_nlink = stx.stx_nlink as _;
    st.st_mode = stx.stx_mode as u32;
    st.st_uid = stx.stx_uid;
    st.st_gid = stx.stx_gid;
    st.st_rdev = libc::makedev(stx.stx_rdev_major, stx.stx_rdev_minor);
    st.st_size = stx.stx_size as i64;
    st.st_blksize = stx.stx_blksize as _;
    st.st_blocks = stx.stx_blocks as i64;
    st.st_atime = stx.stx_atime.tv_sec;
    st.st_atime_nsec = stx.stx_atime.tv_nsec as _;
    st.st_mtime = stx.stx_mtime.tv_sec;
    st.st_mtime_nsec = stx.stx_mtime.tv_nsec as _;
    st.st_ctime = stx.stx_ctime.tv_sec;
    st.st_ctime_nsec = stx.stx_ctime.tv_nsec as _;
    let mnt_id = if stx.stx_mask & libc::STATX_MNT_ID != 0 {
        stx.stx_mnt_id
    } else {
        0
    };
    let key = InodeKey {
        dev: st.st_dev,
        ino: st.st_ino,
        mnt_id,
    };
    let born = (stx.stx_mask & libc::STATX_BTIME != 0)
        .then_some((stx.stx_btime.tv_sec, stx.stx_btime.tv_nsec));
    Ok((st, key, born))
}

/// `st_dev` of a host stat as u64.
pub fn st_dev(st: &stat64) -> u64 {
    st.st_dev
}

/// Device numbers of a stat (glibc's dev_t split).
pub fn rdev_of(st: &stat64) -> (u32, u32) {
    (libc::major(st.st_rdev), libc::minor(st.st_rdev))
}

pub fn set_rdev(st: &mut stat64, major: u32, minor: u32) {
    st.st_rdev = libc::makedev(major, minor);
}

pub fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: valid descriptor and C string.
    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) }).map(drop)
}

pub fn mknodat(dir: BorrowedFd<'_>, name: &CStr, mode: u32, rdev: u64) -> io::Result<()> {
    // SAFETY: valid descriptor and C string.
    cvt(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode, rdev) }).map(drop)
}

pub fn symlinkat(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: valid descriptor and C strings.
    cvt(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) }).map(drop)
}

pub fn unlinkat(dir: BorrowedFd<'_>, name: &CStr, remove_dir: bool) -> io::Result<()> {
    let flags = if remove_dir { libc::AT_REMOVEDIR } else { 0 };
    // SAFETY: valid descriptor and C string.
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) }).map(drop)
}

pub fn renameat2(
    olddir: BorrowedFd<'_>,
    oldname: &CStr,
    newdir: BorrowedFd<'_>,
    newname: &CStr,
    flags: u32,
) -> io::Result<()> {
    // SAFETY: valid descriptors and C strings.
    cvt(unsafe {
        libc::renameat2(
            olddir.as_raw_fd(),
            oldname.as_ptr(),
            newdir.as_raw_fd(),
            newname.as_ptr(),
            flags,
        )
    })
    .map(drop)
}

/// Hard-links the inode behind `fd` as `newdir/newname`. Goes through the magic link
/// with AT_SYMLINK_FOLLOW because `AT_EMPTY_PATH` needs CAP_DAC_READ_SEARCH.
pub fn link_fd(fd: BorrowedFd<'_>, newdir: BorrowedFd<'_>, newname: &CStr) -> io::Result<()> {
    let path = ProcFdPath::new(fd);
    let proc = proc_root()?;
    // SAFETY: valid descriptors and C strings.
    cvt(unsafe {
        libc::linkat(
            proc.as_raw_fd(),
            path.relative().as_ptr(),
            newdir.as_raw_fd(),
            newname.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    })
    .map(drop)
}

pub fn readlink_fd(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: `buf` is writable for its full length.
    let len = cvt_size(unsafe {
        libc::readlinkat(
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    })?;
    buf.truncate(len);
    Ok(buf)
}

/// chown of the inode behind `fd`; `None` leaves that id unchanged.
pub fn fchown(fd: BorrowedFd<'_>, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    let uid = uid.unwrap_or(u32::MAX);
    let gid = gid.unwrap_or(u32::MAX);
    // SAFETY: valid descriptor; empty path with AT_EMPTY_PATH targets `fd` itself.
    cvt(unsafe {
        libc::fchownat(
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            uid,
            gid,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

/// chmod of the inode behind an `O_PATH` fd (fchmod refuses those).
pub fn chmod_fd(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    let path = ProcFdPath::new(fd);
    let proc = proc_root()?;
    // SAFETY: valid descriptor and C string; the magic link is followed (flags 0).
    cvt(unsafe { libc::fchmodat(proc.as_raw_fd(), path.relative().as_ptr(), mode, 0) }).map(drop)
}

/// chmod through an open (non-`O_PATH`) file.
pub fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    // SAFETY: valid descriptor.
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode) }).map(drop)
}

/// truncate by inode (permission checked against the thread's credentials).
pub fn truncate_fd(fd: BorrowedFd<'_>, size: u64) -> io::Result<()> {
    let path = ProcFdPath::new(fd);
    // SAFETY: valid C string.
    cvt(unsafe { libc::truncate64(path.for_path_call().as_ptr(), size as i64) }).map(drop)
}

pub fn ftruncate(fd: BorrowedFd<'_>, size: u64) -> io::Result<()> {
    // SAFETY: valid descriptor.
    cvt(unsafe { libc::ftruncate64(fd.as_raw_fd(), size as i64) }).map(drop)
}

/// A timestamp for `set_times`.
#[derive(Clone, Copy, Debug)]
pub enum TimeSpec {
    Omit,
    Now,
    At(i64, i64),
}

impl TimeSpec {
    fn raw(self) -> libc::timespec {
        match self {
            TimeSpec::Omit => libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_OMIT,
            },
            TimeSpec::Now => libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_NOW,
            },
            TimeSpec::At(sec, nsec) => libc::timespec {
                tv_sec: sec,
                tv_nsec: nsec,
            },
        }
    }
}

/// utimensat on the inode behind `fd` (symlinks included, never followed).
pub fn set_times(fd: BorrowedFd<'_>, atime: TimeSpec, mtime: TimeSpec) -> io::Result<()> {
    let times = [atime.raw(), mtime.raw()];
    // SAFETY: valid descriptor, C string and a two-element timespec array.
    cvt(unsafe {
        libc::utimensat(
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            times.as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

pub fn fallocate(fd: BorrowedFd<'_>, mode: u32, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: valid descriptor.
    cvt(unsafe { libc::fallocate64(fd.as_raw_fd(), mode as i32, offset as i64, len as i64) })
        .map(drop)
}

pub fn lseek(fd: BorrowedFd<'_>, offset: i64, whence: libc::c_int) -> io::Result<u64> {
    // SAFETY: valid descriptor.
    let ret = unsafe { libc::lseek64(fd.as_raw_fd(), offset, whence) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as u64)
    }
}

pub fn fsync(fd: BorrowedFd<'_>, datasync: bool) -> io::Result<()> {
    // SAFETY: valid descriptor.
    cvt(unsafe {
        if datasync {
            libc::fdatasync(fd.as_raw_fd())
        } else {
            libc::fsync(fd.as_raw_fd())
        }
    })
    .map(drop)
}

pub fn fstatvfs(fd: BorrowedFd<'_>) -> io::Result<statvfs64> {
    let mut st = MaybeUninit::<statvfs64>::uninit();
    // SAFETY: valid descriptor and out-pointer.
    cvt(unsafe { libc::fstatvfs64(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstatvfs64 succeeded.
    Ok(unsafe { st.assume_init() })
}

/// access(2) of the inode behind `fd`, judged with the thread's filesystem ids (AT_EACCESS).
pub fn access_fd(fd: BorrowedFd<'_>, mask: u32) -> io::Result<()> {
    // SAFETY: valid descriptor and C string.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_faccessat2,
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            mask as libc::c_int,
            libc::AT_EACCESS | libc::AT_EMPTY_PATH,
        ) as libc::c_int
    })
    .map(drop)
}

/// Closes a duplicate of `fd`: releases the caller's POSIX locks like close(2) would.
pub fn close_dup(fd: BorrowedFd<'_>) -> io::Result<()> {
    let dup = fd.try_clone_to_owned()?;
    drop(dup);
    Ok(())
}

/// One getdents64 call into `buf`; returns bytes filled (0 at end of directory).
pub fn getdents(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for its full length.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_getdents64,
            fd.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    cvt_size(ret as libc::ssize_t)
}

/// A parsed `linux_dirent64`.
pub struct RawDirent<'a> {
    pub ino: u64,
    pub next_offset: u64,
    pub dtype: u8,
    pub name: &'a [u8],
}

/// Parses the record at the start of `buf`; returns it and its length.
pub fn parse_dirent(buf: &[u8]) -> Option<(RawDirent<'_>, usize)> {
    const HDR: usize = 19; // d_ino(8) d_off(8) d_reclen(2) d_type(1)
    if buf.len() < HDR {
        return None;
    }
    let ino = u64::from_ne_bytes(buf[0..8].try_into().ok()?);
    let next_offset = u64::from_ne_bytes(buf[8..16].try_into().ok()?);
    let reclen = u16::from_ne_bytes(buf[16..18].try_into().ok()?) as usize;
    if reclen < HDR || reclen > buf.len() {
        return None;
    }
    let dtype = buf[18];
    let raw_name = &buf[HDR..reclen];
    let name_len = raw_name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(raw_name.len());
    Some((
        RawDirent {
            ino,
            next_offset,
            dtype,
            name: &raw_name[..name_len],
        },
        reclen,
    ))
}

// ---- extended attributes by path; `l` variants do not follow a final symlink ----

/// getxattr(2) of `path`; a zero-length `buf` asks for the value's size.
pub fn getxattr_path(path: &CStr, name: &CStr, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: valid C strings; `buf` is writable for its length.
    cvt_size(unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    })
}

/// lgetxattr(2) of `path`; a zero-length `buf` asks for the value's size.
pub fn lgetxattr_path(path: &CStr, name: &CStr, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: valid C strings; `buf` is writable for its length.
    cvt_size(unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    })
}

/// listxattr(2) of `path`: NUL-terminated names into `buf`, or the size with an empty `buf`.
pub fn listxattr_path(path: &CStr, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: a valid C string; `buf` is writable for its length.
    cvt_size(unsafe { libc::listxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// llistxattr(2) of `path`: NUL-terminated names into `buf`, or the size with an empty `buf`.
pub fn llistxattr_path(path: &CStr, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: a valid C string; `buf` is writable for its length.
    cvt_size(unsafe { libc::llistxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// setxattr(2) of `path` with `XATTR_CREATE`/`XATTR_REPLACE` `flags`.
pub fn setxattr_path(path: &CStr, name: &CStr, value: &[u8], flags: i32) -> io::Result<()> {
    // SAFETY: valid C strings and a readable value slice.
    cvt(unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    })
    .map(drop)
}

/// lsetxattr(2) of `path` with `XATTR_CREATE`/`XATTR_REPLACE` `flags`.
pub fn lsetxattr_path(path: &CStr, name: &CStr, value: &[u8], flags: i32) -> io::Result<()> {
    // SAFETY: valid C strings and a readable value slice.
    cvt(unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    })
    .map(drop)
}

/// removexattr(2) of `path`.
pub fn removexattr_path(path: &CStr, name: &CStr) -> io::Result<()> {
    // SAFETY: valid C strings.
    cvt(unsafe { libc::removexattr(path.as_ptr(), name.as_ptr()) }).map(drop)
}

// ---- extended attributes of a descriptor, through the magic link so O_PATH fds work ----

pub fn getxattr(fd: BorrowedFd<'_>, name: &CStr, buf: &mut [u8]) -> io::Result<usize> {
    getxattr_path(ProcFdPath::new(fd).for_path_call(), name, buf)
}

pub fn listxattr(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    listxattr_path(ProcFdPath::new(fd).for_path_call(), buf)
}

pub fn setxattr(fd: BorrowedFd<'_>, name: &CStr, value: &[u8], flags: i32) -> io::Result<()> {
    setxattr_path(ProcFdPath::new(fd).for_path_call(), name, value, flags)
}

pub fn removexattr(fd: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    removexattr_path(ProcFdPath::new(fd).for_path_call(), name)
}

/// Runs `f` with a `File` view of a borrowed descriptor, without taking ownership.
pub fn with_file<R>(fd: BorrowedFd<'_>, f: impl FnOnce(&mut File) -> R) -> R {
    // SAFETY: ManuallyDrop keeps the File from closing a descriptor it does not own,
    // and the borrow guarantees the descriptor outlives this call.
    let mut file = ManuallyDrop::new(unsafe { File::from_raw_fd(fd.as_raw_fd()) });
    f(&mut file)
}

// ---- per-thread credentials ----

/// Sets this thread's filesystem uid and reads it back; setfsuid itself never reports errors.
pub fn set_thread_fsuid(uid: u32) -> io::Result<()> {
    // SAFETY: setfsuid has no memory effects; it only changes this thread's fsuid.
    unsafe { libc::setfsuid(uid) };
    // SAFETY: an invalid id (-1) changes nothing and returns the current fsuid.
    let now = unsafe { libc::setfsuid(u32::MAX) } as u32;
    if now == uid {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(libc::EPERM))
    }
}

/// Sets this thread's filesystem gid and reads it back.
pub fn set_thread_fsgid(gid: u32) -> io::Result<()> {
    // SAFETY: setfsgid has no memory effects; it only changes this thread's fsgid.
    unsafe { libc::setfsgid(gid) };
    // SAFETY: an invalid id (-1) changes nothing and returns the current fsgid.
    let now = unsafe { libc::setfsgid(u32::MAX) } as u32;
    if now == gid {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(libc::EPERM))
    }
}

/// Sets the supplementary groups of this thread only, via the raw syscall
/// (glibc's setgroups broadcasts the change to every thread of the process).
pub fn set_thread_groups(groups: &[u32]) -> io::Result<()> {
    // SAFETY: `groups` is a valid array of gid_t of the given length.
    cvt(unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) as libc::c_int })
        .map(drop)
}

/// Sets this thread's groups, then real/effective/saved gid and uid; other threads keep theirs.
pub fn set_thread_credentials(uid: u32, gid: u32, groups: &[u32]) -> io::Result<()> {
    set_thread_groups(groups)?;
    // SAFETY: no memory effects; changes only the calling thread's gids.
    cvt(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) as libc::c_int })?;
    // SAFETY: no memory effects; changes only the calling thread's uids.
    cvt(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) as libc::c_int }).map(drop)
}

pub fn geteuid() -> u32 {
    // SAFETY: no arguments, no memory effects.
    unsafe { libc::geteuid() }
}

pub fn getegid() -> u32 {
    // SAFETY: no arguments, no memory effects.
    unsafe { libc::getegid() }
}

/// The process-wide umask; the server sets it to 0 because the client kernel already applied the caller's.
pub fn set_umask(mask: u32) -> u32 {
    // SAFETY: umask has no memory effects.
    unsafe { libc::umask(mask) }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer.
    cvt(unsafe { libc::getrlimit64(libc::RLIMIT_NOFILE, &mut lim) })?;
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: valid in-pointer.
    cvt(unsafe { libc::setrlimit64(libc::RLIMIT_NOFILE, &lim) })?;
    Ok(lim.rlim_cur)
}

// ---- FUSE device and mounting ----

pub const FUSE_DEVICE: &CStr = c"/dev/fuse";

pub fn open_fuse_device() -> io::Result<OwnedFd> {
    open_path(FUSE_DEVICE, libc::O_RDWR)
}

/// A new `/dev/fuse` descriptor attached to the same connection (FUSE_DEV_IOC_CLONE),
/// so each worker thread reads from a queue of its own.
pub fn clone_fuse_device(session: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    const FUSE_DEV_IOC_CLONE: libc::c_ulong = 0x8004_e500; // _IOR(229, 0, uint32_t)
    let fd = open_fuse_device()?;
    let mut src: u32 = session.as_raw_fd() as u32;
    // SAFETY: the ioctl reads one u32 from a valid pointer.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), FUSE_DEV_IOC_CLONE, &mut src) })?;
    Ok(fd)
}

/// Hands the host file behind `file` (any descriptor, O_PATH included) to the FUSE
/// connection of `device` for kernel passthrough (FUSE_DEV_IOC_BACKING_OPEN, Linux 6.9);
/// returns its backing id. The kernel keeps the calling thread's credentials for the I/O
/// it does on that file. Needs CAP_SYS_ADMIN.
pub fn fuse_backing_open(device: BorrowedFd<'_>, file: BorrowedFd<'_>) -> io::Result<u32> {
    // struct fuse_backing_map from <linux/fuse.h>.
    #[repr(C)]
    struct BackingMap {
        fd: i32,
        flags: u32,
        padding: u64,
    }
    const FUSE_DEV_IOC_BACKING_OPEN: libc::c_ulong = 0x4010_e501; // _IOW(229, 1, fuse_backing_map)
    let map = BackingMap {
        fd: file.as_raw_fd(),
        flags: 0,
        padding: 0,
    };
    // The kernel requires CAP_SYS_ADMIN here and keeps these credentials for the I/O:
    // the caller's ids plus that one capability, for this call only.
    let id = with_extra_caps(cap_mask(&[cap::SYS_ADMIN]), || {
        // SAFETY: the kernel reads one fuse_backing_map from a valid pointer.
        cvt(unsafe { libc::ioctl(device.as_raw_fd(), FUSE_DEV_IOC_BACKING_OPEN, &map) })
    })??;
    Ok(id as u32)
}

/// Drops a backing id (FUSE_DEV_IOC_BACKING_CLOSE); files the kernel already opened
/// through it keep working.
/// Needs CAP_SYS_ADMIN, like the open.
pub fn fuse_backing_close(device: BorrowedFd<'_>, id: u32) -> io::Result<()> {
    const FUSE_DEV_IOC_BACKING_CLOSE: libc::c_ulong = 0x4004_e502; // _IOW(229, 2, uint32_t)
    with_extra_caps(cap_mask(&[cap::SYS_ADMIN]), || {
        // SAFETY: the kernel reads one u32 from a valid pointer.
        cvt(unsafe { libc::ioctl(device.as_raw_fd(), FUSE_DEV_IOC_BACKING_CLOSE, &id) })
    })?
    .map(drop)
}

/// `opts` plus FOPEN_PASSTHROUGH (bit 7 of fuse_open_out.open_flags, Linux 6.9), which
/// fuse-backend-rs 0.14 does not name.
pub fn with_fopen_passthrough(
    opts: fuse_backend_rs::abi::fuse_abi::OpenOptions,
) -> fuse_backend_rs::abi::fuse_abi::OpenOptions {
    const FOPEN_PASSTHROUGH: u32 = 1 << 7;
    // SAFETY: OpenOptions is a plain u32 copied into the open reply; bitflags 1 marks
    // unnamed bits unsafe only because its own operations ignore them.
    unsafe {
        fuse_backend_rs::abi::fuse_abi::OpenOptions::from_bits_unchecked(
            opts.bits() | FOPEN_PASSTHROUGH,
        )
    }
}

/// mount(2).
pub fn mount(
    source: &CStr,
    target: &CStr,
    fstype: &CStr,
    flags: libc::c_ulong,
    data: &CStr,
) -> io::Result<()> {
    // SAFETY: all pointers are valid C strings.
    cvt(unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    })
    .map(drop)
}

pub fn umount(target: &CStr, lazy: bool) -> io::Result<()> {
    let flags = if lazy { libc::MNT_DETACH } else { 0 };
    // SAFETY: valid C string.
    cvt(unsafe { libc::umount2(target.as_ptr(), flags) }).map(drop)
}

/// read(2) into `buf`.
pub fn read_fd(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for its full length.
    cvt_size(unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// copy_file_range(2) between two open files at explicit offsets; the host may share
/// extents (a reflink on btrfs and xfs) instead of copying.
pub fn copy_file_range(
    from: BorrowedFd<'_>,
    from_offset: u64,
    to: BorrowedFd<'_>,
    to_offset: u64,
    len: u64,
    flags: u32,
) -> io::Result<u64> {
    let bad = || io::Error::from_raw_os_error(libc::EINVAL);
    let mut off_in = i64::try_from(from_offset).map_err(|_| bad())?;
    let mut off_out = i64::try_from(to_offset).map_err(|_| bad())?;
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    // SAFETY: valid descriptors and offset pointers that live across the call.
    let n = cvt_size(unsafe {
        libc::copy_file_range(
            from.as_raw_fd(),
            &mut off_in,
            to.as_raw_fd(),
            &mut off_out,
            len,
            flags,
        )
    })?;
    Ok(n as u64)
}

/// An unnamed regular file in directory `dir` (O_TMPFILE), linkable later.
pub fn open_tmpfile(dir: BorrowedFd<'_>, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    openat(dir, c".", flags | libc::O_TMPFILE, mode)
}

/// syncfs(2) of the filesystem holding `fd` (which must not be O_PATH).
pub fn syncfs(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: valid descriptor.
    cvt(unsafe { libc::syncfs(fd.as_raw_fd()) }).map(drop)
}

/// write(2) of `buf`: one message on a message device such as /dev/fuse.
pub fn write_fd(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is readable for its full length.
    cvt_size(unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) })
}

/// Raw descriptor number, for mount options such as `fd=N`.
pub fn raw(fd: BorrowedFd<'_>) -> RawFd {
    fd.as_raw_fd()
}

/// Blocks SIGINT, SIGTERM and SIGHUP (termination) and SIGUSR1 (log statistics) in the
/// calling thread and the threads it spawns later, for `wait_*` to collect.
pub fn block_server_signals() -> io::Result<()> {
    let mut set = termination_set();
    // SAFETY: valid set; sigaddset only updates it.
    unsafe { libc::sigaddset(&mut set, libc::SIGUSR1) };
    // SAFETY: valid signal set; old set not requested.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Blocks until `sig` (blocked by `block_server_signals`) arrives, and takes it.
pub fn wait_signal(sig: i32) {
    let set = one_signal_set(sig);
    // SAFETY: valid set; no siginfo requested. Retried on EINTR.
    while unsafe { libc::sigwaitinfo(&set, std::ptr::null_mut()) } != sig {}
}

fn termination_set() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set; sigaddset only updates it.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGINT);
        libc::sigaddset(set.as_mut_ptr(), libc::SIGTERM);
        libc::sigaddset(set.as_mut_ptr(), libc::SIGHUP);
        set.assume_init()
    }
}

fn one_signal_set(sig: i32) -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set; sigaddset only updates it.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), sig);
        set.assume_init()
    }
}

/// Waits up to `timeout_ms` for a blocked termination signal; returns it if one came.
pub fn wait_termination_signal(timeout_ms: u64) -> Option<i32> {
    let set = termination_set();
    let ts = libc::timespec {
        tv_sec: (timeout_ms / 1000) as i64,
        tv_nsec: ((timeout_ms % 1000) * 1_000_000) as i64,
    };
    // SAFETY: valid set and timeout; no siginfo requested.
    let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    if sig > 0 {
        Some(sig)
    } else {
        None
    }
}

/// True if `path` is the root of a mount (so mounting there would stack on a busy mountpoint).
pub fn is_mount_root(path: &CStr) -> io::Result<bool> {
    const STATX_ATTR_MOUNT_ROOT: u64 = 0x2000;
    let mut stx = MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: valid C string and out-pointer.
    cvt(unsafe {
        libc::statx(
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_BASIC_STATS,
            stx.as_mut_ptr(),
        )
    })?;
    // SAFETY: statx succeeded.
    let stx = unsafe { stx.assume_init() };
    Ok(stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT != 0
        && stx.stx_attributes & STATX_ATTR_MOUNT_ROOT != 0)
}

/// Clears O_NONBLOCK.
pub fn set_blocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL only read and update descriptor flags.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) }).map(drop)
}

/// True if `fd` was opened for writing (O_WRONLY or O_RDWR).
pub fn open_for_writing(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: F_GETFL only reads descriptor flags.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    Ok(flags & libc::O_ACCMODE != libc::O_RDONLY)
}

/// Held by a detached server; `notify` tells the waiting parent the mount is up.
pub struct DaemonReady {
    pipe: OwnedFd,
}

impl DaemonReady {
    pub fn notify(self) {
        // SAFETY: writes one byte from a valid buffer to a descriptor we own.
        let _ = unsafe { libc::write(self.pipe.as_raw_fd(), b"1".as_ptr().cast(), 1) };
    }
}

/// Forks: the parent waits until the child calls `notify` (exit 0) or dies (exit 1);
/// the child starts a new session and continues. Must run before any thread exists.
pub fn daemonize() -> io::Result<DaemonReady> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid two-element array.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 returned two fresh descriptors that we now own.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the process is single-threaded here (documented precondition), so the
    // child may keep running Rust code after fork.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid > 0 {
        drop(wr);
        let mut byte = [0u8; 1];
        let n = read_fd(rd.as_fd(), &mut byte).unwrap_or(0);
        std::process::exit(if n == 1 { 0 } else { 1 });
    }
    drop(rd);
    // SAFETY: setsid has no memory effects.
    unsafe { libc::setsid() };
    if let Ok(null) = open_path(c"/dev/null", libc::O_RDWR) {
        // SAFETY: dup2 onto the standard descriptors; `null` stays valid during the calls.
        unsafe {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(null.as_raw_fd(), 1);
        }
    }
    Ok(DaemonReady { pipe: wr })
}

/// Birth time of the inode behind `fd`, or `None` where the filesystem keeps none.
pub fn birth_time(fd: BorrowedFd<'_>) -> io::Result<Option<(i64, u32)>> {
    let mut stx = MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: empty path with AT_EMPTY_PATH stats `fd` itself; valid out-pointer.
    cvt(unsafe {
        libc::statx(
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_BTIME,
            stx.as_mut_ptr(),
        )
    })?;
    // SAFETY: statx succeeded.
    let stx = unsafe { stx.assume_init() };
    Ok((stx.stx_mask & libc::STATX_BTIME != 0)
        .then_some((stx.stx_btime.tv_sec, stx.stx_btime.tv_nsec)))
}

/// True if names in the directory behind `fd` (any descriptor, `O_PATH` included) are
/// compared case-sensitively: false for an ext4/f2fs/tmpfs casefold directory
/// (FS_CASEFOLD_FL) and on FAT and exFAT, whose lookups always ignore case.
pub fn dir_is_case_sensitive(fd: BorrowedFd<'_>) -> io::Result<bool> {
    const FS_CASEFOLD_FL: libc::c_long = 0x4000_0000;
    const MSDOS_SUPER_MAGIC: i64 = 0x4d44;
    const EXFAT_SUPER_MAGIC: i64 = 0x2011_bab0;
    let mut sf = MaybeUninit::<libc::statfs64>::uninit();
    // SAFETY: valid descriptor and out-pointer.
    cvt(unsafe { libc::fstatfs64(fd.as_raw_fd(), sf.as_mut_ptr()) })?;
    // SAFETY: fstatfs64 succeeded and filled the struct.
    let magic = unsafe { sf.assume_init() }.f_type;
    if magic == MSDOS_SUPER_MAGIC || magic == EXFAT_SUPER_MAGIC {
        return Ok(false);
    }
    // The flags ioctl refuses O_PATH descriptors: ask through a real open.
    let dir = reopen(fd, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NONBLOCK)?;
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one long into `flags`.
    match cvt(unsafe { libc::ioctl(dir.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) }) {
        Ok(_) => Ok(flags & FS_CASEFOLD_FL == 0),
        // Filesystems without inode flags have no casefold directories.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOTTY | libc::EOPNOTSUPP | libc::EINVAL)
            ) =>
        {
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

/// lgetxattr of `dir/name` without opening it (for readdir of emulated special files).
pub fn getxattr_at(
    dir: BorrowedFd<'_>,
    name: &[u8],
    xname: &CStr,
    buf: &mut [u8],
) -> io::Result<usize> {
    let mut path = ProcFdPath::new(dir).for_path_call().to_bytes().to_vec();
    path.push(b'/');
    path.extend_from_slice(name);
    let path =
        std::ffi::CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    lgetxattr_path(&path, xname, buf)
}

/// llistxattr of `dir/name` without opening it (for readdir of emulated special files).
pub fn listxattr_at(dir: BorrowedFd<'_>, name: &[u8], buf: &mut [u8]) -> io::Result<usize> {
    let mut path = ProcFdPath::new(dir).for_path_call().to_bytes().to_vec();
    path.push(b'/');
    path.extend_from_slice(name);
    let path =
        std::ffi::CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    llistxattr_path(&path, buf)
}

/// A small text file under the host's `/proc`.
fn read_proc_text(rel: &CStr) -> io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    File::from(open_proc_file(rel, libc::O_RDONLY)?).read_to_string(&mut text)?;
    Ok(text)
}

/// True if the calling thread may raise CAP_SYS_ADMIN (it is in its permitted set).
pub fn thread_has_cap_sys_admin() -> bool {
    thread_caps().is_ok_and(|c| c.permitted & cap_mask(&[cap::SYS_ADMIN]) != 0)
}

/// True if the effective capability set holds CAP_CHOWN.
pub fn has_cap_chown() -> bool {
    let Ok(status) = read_proc_text(c"self/status") else {
        return geteuid() == 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        // Bit 0 is CAP_CHOWN.
        .map(|caps| caps & 1 != 0)
        .unwrap_or(false)
}

/// Drops the whole process to `uid:gid` for good: no supplementary groups, real, effective
/// and saved ids all changed, so no capability survives. Call before starting threads.
pub fn drop_privileges(uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: an empty group list; process-wide on purpose (single-threaded here).
    cvt(unsafe { libc::setgroups(0, std::ptr::null()) })?;
    // SAFETY: no memory effects.
    cvt(unsafe { libc::setresgid(gid, gid, gid) })?;
    // SAFETY: no memory effects.
    cvt(unsafe { libc::setresuid(uid, uid, uid) })?;
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: valid out-pointers.
    cvt(unsafe { libc::getresuid(&mut r, &mut e, &mut s) })?;
    if (r, e, s) != (uid, uid, uid) || (uid != 0 && has_cap_chown()) {
        return Err(io::Error::other("privileges were not fully dropped"));
    }
    Ok(())
}

/// Lets child processes inherit `fd` (clears FD_CLOEXEC).
pub fn set_inheritable(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_SETFD only updates descriptor flags.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, 0) }).map(drop)
}

/// Receives one descriptor passed with SCM_RIGHTS over a Unix socket (fusermount3's protocol).
pub fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // Room for one cmsghdr carrying one int, 8-byte aligned.
    let mut cbuf = [0u64; 8];
    // SAFETY: msghdr is plain data; all-zero is valid before we fill it in.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    // SAFETY: msg points at live buffers for the iovec and the control data.
    let n = cvt_size(unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) })?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "no descriptor received",
        ));
    }
    // SAFETY: CMSG_FIRSTHDR reads only within msg_control/msg_controllen set above.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    if cmsg.is_null() {
        return Err(io::Error::other("no descriptor received"));
    }
    // SAFETY: cmsg is non-null and inside cbuf; fields are read as plain data.
    let (level, kind, len) = unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type, (*cmsg).cmsg_len) };
    // SAFETY: CMSG_LEN is a pure computation.
    let want = unsafe { libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) } as usize;
    if level != libc::SOL_SOCKET || kind != libc::SCM_RIGHTS || len < want {
        return Err(io::Error::other("unexpected control message"));
    }
    // SAFETY: the kernel wrote one int after the header; read_unaligned copes with alignment.
    let fd = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>()) };
    owned(fd)
}

/// Reads one int-valued socket option.
fn socket_option_int(fd: RawFd, option: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are live and sized for one int.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(value)
}

/// Takes over a listening Unix socket the parent process left open at `fd`
/// (virtiofsd's `--fd`). Call once per descriptor: the listener owns and closes it.
pub fn inherited_unix_listener(fd: RawFd) -> io::Result<std::os::unix::net::UnixListener> {
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    if socket_option_int(fd, libc::SO_DOMAIN)? != libc::AF_UNIX {
        return Err(io::Error::other("not a Unix socket"));
    }
    if socket_option_int(fd, libc::SO_ACCEPTCONN)? == 0 {
        return Err(io::Error::other("socket is not listening"));
    }
    // SAFETY: getsockopt just proved `fd` open; the caller hands it over, and nothing
    // else in this process owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: valid descriptor; F_SETFD with FD_CLOEXEC has no memory effects.
    cvt(unsafe { libc::fcntl(owned.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) })?;
    Ok(owned.into())
}

// ---- fuse-pipe transport ----

/// An all-zero statvfs, for filesystems that build one from fields (the pipe client).
pub fn zeroed_statvfs() -> statvfs64 {
    // SAFETY: statvfs64 is plain old data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

fn vsock_addr(cid: u32, port: u32) -> libc::sockaddr_vm {
    // SAFETY: sockaddr_vm is plain old data; all-zero is valid before we fill it in.
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_cid = cid;
    addr.svm_port = port;
    addr
}

fn vsock_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the result is checked and owned by `owned`.
    owned(unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })
}

/// A listening AF_VSOCK stream socket on `port` (`cid` is usually VMADDR_CID_ANY).
pub fn vsock_listen(cid: u32, port: u32, backlog: i32) -> io::Result<OwnedFd> {
    let fd = vsock_socket()?;
    let addr = vsock_addr(cid, port);
    // SAFETY: addr is a valid sockaddr_vm and the length matches it.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_vm).cast(),
            std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        )
    })?;
    // SAFETY: plain syscall on a socket we own.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
    Ok(fd)
}

/// Accepts one connection on a listening AF_VSOCK socket; returns it and the peer's CID.
pub fn vsock_accept(listener: BorrowedFd<'_>) -> io::Result<(OwnedFd, u32)> {
    let mut addr = vsock_addr(0, 0);
    let mut len = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;
    // SAFETY: addr/len describe a writable sockaddr_vm; the new fd is checked and owned.
    let fd = owned(unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            (&mut addr as *mut libc::sockaddr_vm).cast(),
            &mut len,
            libc::SOCK_CLOEXEC,
        )
    })?;
    Ok((fd, addr.svm_cid))
}

/// Connects an AF_VSOCK stream socket to `cid:port`.
pub fn vsock_connect(cid: u32, port: u32) -> io::Result<OwnedFd> {
    let fd = vsock_socket()?;
    let addr = vsock_addr(cid, port);
    loop {
        // SAFETY: addr is a valid sockaddr_vm and the length matches it.
        let r = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_vm).cast(),
                std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
            )
        };
        match cvt(r) {
            Ok(_) => return Ok(fd),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// A forked process that keeps root only to unmount one mountpoint on request, so a
/// server that dropped its privileges can still unmount cleanly.
pub struct UnmountHelper {
    pipe: OwnedFd,
    pid: libc::pid_t,
}

impl UnmountHelper {
    /// Asks the helper to unmount (lazily if busy) and waits for its verdict.
    pub fn unmount(self) -> io::Result<()> {
        // SAFETY: writes one byte from a valid buffer to a descriptor we own.
        let n = unsafe { libc::write(self.pipe.as_raw_fd(), b"u".as_ptr().cast(), 1) };
        if n != 1 {
            return Err(io::Error::last_os_error());
        }
        let mut status = 0;
        // SAFETY: waits for our own child; valid out-pointer.
        cvt(unsafe { libc::waitpid(self.pid, &mut status, 0) })?;
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "unmount helper failed (status {status})"
            )))
        }
    }
}

/// Forks the unmount helper for `target`. Must run before any thread exists.
pub fn spawn_unmount_helper(target: &CStr) -> io::Result<UnmountHelper> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid two-element array.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 returned two fresh descriptors that we now own.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: single-threaded here (documented precondition); the child only makes
    // async-signal-safe calls before _exit.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid == 0 {
        // SAFETY: the child keeps only the pipe (as stdin) and stderr: no /dev/fuse fd
        // may outlive the server, or the connection would never end.
        let code = unsafe {
            libc::dup2(rd.as_raw_fd(), 0);
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            let mut byte = 0u8;
            if libc::read(0, (&mut byte as *mut u8).cast(), 1) == 1 {
                if libc::umount2(target.as_ptr(), 0) == 0
                    || libc::umount2(target.as_ptr(), libc::MNT_DETACH) == 0
                {
                    0
                } else {
                    1
                }
            } else {
                0 // the server went away without asking
            }
        };
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    drop(rd);
    Ok(UnmountHelper { pipe: wr, pid })
}

/// A host inode named without an open descriptor (`name_to_handle_at`). It is only ever
/// made by the server from an inode it resolved itself, never taken from a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileHandle {
    /// `handle_type` (4 bytes, native order), then the handle: one small allocation.
    packed: Box<[u8]>,
}

const MAX_HANDLE_SZ: usize = 128;

/// `struct file_handle` with room for the largest handle.
#[repr(C)]
struct RawFileHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; MAX_HANDLE_SZ],
}

/// The file handle of the inode behind `fd` (any descriptor, `O_PATH` included);
/// EOPNOTSUPP where the filesystem cannot export its inodes.
pub fn file_handle(fd: BorrowedFd<'_>) -> io::Result<FileHandle> {
    let mut raw = RawFileHandle {
        handle_bytes: MAX_HANDLE_SZ as u32,
        handle_type: 0,
        f_handle: [0; MAX_HANDLE_SZ],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: the empty path with AT_EMPTY_PATH names `fd`; the kernel writes at most
    // `handle_bytes` bytes of handle into `raw` and one int into `mount_id`.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            &mut raw as *mut RawFileHandle,
            &mut mount_id as *mut libc::c_int,
            libc::AT_EMPTY_PATH,
        )
    };
    cvt(ret as libc::c_int)?;
    let len = (raw.handle_bytes as usize).min(MAX_HANDLE_SZ);
    let mut packed = Vec::with_capacity(4 + len);
    packed.extend_from_slice(&raw.handle_type.to_ne_bytes());
    packed.extend_from_slice(&raw.f_handle[..len]);
    Ok(FileHandle {
        packed: packed.into_boxed_slice(),
    })
}

/// Opens the inode `handle` names on the mount `mount` is on (`open_by_handle_at`),
/// with CAP_DAC_READ_SEARCH raised for the call, as the kernel requires it.
pub fn open_file_handle(
    mount: BorrowedFd<'_>,
    handle: &FileHandle,
    flags: libc::c_int,
) -> io::Result<OwnedFd> {
    let (kind, bytes) = handle.packed.split_at(4);
    let bytes = &bytes[..bytes.len().min(MAX_HANDLE_SZ)];
    let mut raw = RawFileHandle {
        handle_bytes: bytes.len() as u32,
        handle_type: i32::from_ne_bytes(
            kind.try_into()
                .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
        ),
        f_handle: [0; MAX_HANDLE_SZ],
    };
    raw.f_handle[..bytes.len()].copy_from_slice(bytes);
    let ret = with_extra_caps(cap_mask(&[cap::DAC_READ_SEARCH]), || {
        // SAFETY: the kernel reads one file_handle of `handle_bytes` bytes from `raw`.
        unsafe {
            libc::syscall(
                libc::SYS_open_by_handle_at,
                mount.as_raw_fd(),
                &raw as *const RawFileHandle,
                flags | libc::O_CLOEXEC,
            )
        }
    })?;
    owned(cvt(ret as libc::c_int)?)
}

/// The soft RLIMIT_NOFILE: how many descriptors this process may hold.
pub fn nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer.
    cvt(unsafe { libc::getrlimit64(libc::RLIMIT_NOFILE, &mut lim) })?;
    Ok(lim.rlim_cur)
}

// ---- vhost-user: messages that carry descriptors ----

/// Most descriptors one vhost-user message carries (a memory table of 8 regions).
pub const MAX_PASSED_FDS: usize = 8;

/// Reads once from a Unix stream socket into `buf`, appending the descriptors passed
/// with it (SCM_RIGHTS, close-on-exec) to `fds`. Returns the bytes read; 0 is EOF.
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut iov = [io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; MAX_PASSED_FDS]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let cmsgs = msg
        .cmsgs()
        .map_err(|_| io::Error::other("more descriptors than a vhost-user message carries"))?;
    for cmsg in cmsgs {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            for fd in raw {
                // SAFETY: the kernel just installed `fd` in this process for this message;
                // nothing else owns it.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Ok(msg.bytes)
}
