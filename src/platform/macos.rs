//! macOS host calls, each wrapped once in a safe function. Type-checked in CI, never
//! run there (docs/macos.md lists what is untested).
//!
//! macOS has no `O_PATH`. An inode is pinned by a descriptor opened with `O_EVTONLY`
//! (no data access through it, does not keep a volume busy), `O_NONBLOCK` (a FIFO
//! must not block the open) and, for symlinks, `O_SYMLINK` (the link itself). Calls
//! that need a real open reopen the pin: a directory relative to itself
//! (`openat(pin, ".")`), anything else by the path the kernel reports for the pin
//! (`F_GETPATH`), accepted only if it is still the pinned (dev, ino), else ESTALE.
//! A macOS server is always rootless: it never switches credentials.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::xlate;

pub use libc::{stat as stat64, statvfs as statvfs64};

/// Open flag that pins an inode without data access (Linux: `O_PATH`).
pub const O_PATH: libc::c_int = libc::O_EVTONLY;
/// No direct I/O open flag on macOS (F_NOCACHE is per descriptor); nothing to strip.
pub const O_DIRECT: libc::c_int = 0;
/// "No such attribute" from the xattr calls.
pub const ENOATTR: i32 = libc::ENOATTR;
/// A symlink carries xattrs (through an `O_SYMLINK` descriptor): records live on it.
pub const SYMLINK_XATTRS: bool = true;
/// Where daemons keep their runtime files (sockets).
pub const RUN_DIR: &str = "/var/run";

/// fallocate modes as the FileSystem receives them: Linux values (the guest's).
pub const FALLOC_FL_KEEP_SIZE: i32 = 0x01;
pub const FALLOC_FL_PUNCH_HOLE: i32 = 0x02;
pub const FALLOC_FL_COLLAPSE_RANGE: i32 = 0x08;
pub const FALLOC_FL_ZERO_RANGE: i32 = 0x10;
pub const FALLOC_FL_INSERT_RANGE: i32 = 0x20;
pub const FALLOC_FL_UNSHARE_RANGE: i32 = 0x40;

/// Host identity of an inode. macOS has no mount id; `dev` names the volume.
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

fn errno(n: i32) -> io::Error {
    io::Error::from_raw_os_error(n)
}

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    let fd = cvt(fd)?;
    // SAFETY: the kernel just returned this descriptor to us and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn raw_openat(dir: RawFd, name: &CStr, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid C string; `dir` is a live descriptor or AT_FDCWD.
    owned(unsafe { libc::openat(dir, name.as_ptr(), flags, mode as libc::c_uint) })
}

fn pin_flags(flags: libc::c_int) -> libc::c_int {
    if flags & O_PATH != 0 {
        flags | libc::O_NONBLOCK
    } else {
        flags
    }
}

/// Opens `name` relative to `dir` without following a trailing symlink. A pin of a
/// symlink (`O_PATH | O_NOFOLLOW`) opens the link itself.
pub fn openat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: libc::c_int,
    mode: u32,
) -> io::Result<OwnedFd> {
    let flags = pin_flags(flags) | libc::O_CLOEXEC;
    match raw_openat(dir.as_raw_fd(), name, flags, mode) {
        Err(e)
            if e.raw_os_error() == Some(libc::ELOOP)
                && flags & O_PATH != 0
                && flags & libc::O_NOFOLLOW != 0 =>
        {
            let link = (flags & !libc::O_NOFOLLOW) | libc::O_SYMLINK;
            raw_openat(dir.as_raw_fd(), name, link, mode)
        }
        r => r,
    }
}

/// Opens an absolute host path (used once, for the shared directory itself).
pub fn open_path(path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    raw_openat(libc::AT_FDCWD, path, pin_flags(flags) | libc::O_CLOEXEC, 0)
}

/// The path the kernel currently knows for `fd` (F_GETPATH).
fn fd_path(fd: BorrowedFd<'_>) -> io::Result<CString> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: F_GETPATH writes at most MAXPATHLEN (= PATH_MAX) bytes into `buf`.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPATH, buf.as_mut_ptr()) })?;
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    buf.truncate(len);
    CString::new(buf).map_err(|_| errno(libc::EINVAL))
}

fn same_inode(a: &stat64, b: &stat64) -> bool {
    a.st_dev == b.st_dev && a.st_ino == b.st_ino
}

/// Opens the inode behind the pin `fd` anew with real access `flags`. O_TRUNC is
/// applied only after the opened inode is known to be the pinned one.
pub fn reopen(fd: BorrowedFd<'_>, flags: libc::c_int) -> io::Result<OwnedFd> {
    let flags = flags & !(libc::O_NOFOLLOW | libc::O_CREAT | libc::O_EXCL);
    if flags & !libc::O_CLOEXEC == O_PATH {
        // A pin of something already open: the open descriptor serves.
        return fd.try_clone_to_owned();
    }
    let pinned = fstat(fd)?;
    if pinned.st_mode & libc::S_IFMT == libc::S_IFDIR {
        return raw_openat(fd.as_raw_fd(), c".", flags | libc::O_CLOEXEC, 0);
    }
    let path = fd_path(fd)?;
    let trunc = flags & libc::O_TRUNC != 0;
    let open_flags = (flags & !libc::O_TRUNC) | libc::O_CLOEXEC | libc::O_NOFOLLOW;
    let new = raw_openat(libc::AT_FDCWD, &path, open_flags, 0)?;
    let now = fstat(std::os::fd::AsFd::as_fd(&new))?;
    if !same_inode(&pinned, &now) {
        return Err(errno(libc::ESTALE));
    }
    if trunc {
        ftruncate(std::os::fd::AsFd::as_fd(&new), 0)?;
    }
    Ok(new)
}

/// `fstat` on any descriptor, pins included: the one syscall of the stat path.
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<stat64> {
    let mut st = MaybeUninit::<stat64>::uninit();
    // SAFETY: `st` is a valid out-pointer of the right type.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded and filled the struct.
    Ok(unsafe { st.assume_init() })
}

/// An all-zero stat, for replies that carry no attributes.
pub fn zeroed_stat() -> stat64 {
    // SAFETY: stat is plain old data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// An all-zero statvfs.
pub fn zeroed_statvfs() -> statvfs64 {
    // SAFETY: statvfs is plain old data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// Stat plus identity of the inode behind `fd`.
pub fn statx_identity(fd: BorrowedFd<'_>) -> io::Result<(stat64, InodeKey)> {
    let st = fstat(fd)?;
    Ok((st, identity_of(&st)))
}

fn identity_of(st: &stat64) -> InodeKey {
    InodeKey {
        dev: st_dev(st),
        ino: st.st_ino,
        mnt_id: 0,
    }
}

/// `st_dev` of a host stat as u64 (dev_t is a signed 32-bit value).
pub fn st_dev(st: &stat64) -> u64 {
    u64::from(st.st_dev as u32)
}

/// Device numbers of a stat, split the macOS way (8-bit major, 24-bit minor).
pub fn rdev_of(st: &stat64) -> (u32, u32) {
    xlate::dev_split(st.st_rdev as u32)
}

pub fn set_rdev(st: &mut stat64, major: u32, minor: u32) {
    st.st_rdev = xlate::dev_join(major, minor) as libc::dev_t;
}

pub fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: valid descriptor and C string.
    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t) }).map(drop)
}

/// `rdev` in the Linux encoding the FileSystem receives (FUSE's 32-bit dev_t).
pub fn mknodat(dir: BorrowedFd<'_>, name: &CStr, mode: u32, rdev: u64) -> io::Result<()> {
    let (major, minor) = (
        (rdev >> 8) & 0xfff,
        (rdev & 0xff) | ((rdev >> 12) & 0xf_ff00),
    );
    let dev = xlate::dev_join(major as u32, minor as u32) as libc::dev_t;
    // SAFETY: valid descriptor and C string.
    cvt(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t, dev) })
        .map(drop)
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

/// Rename with renameatx_np flags (RENAME_EXCL, RENAME_SWAP; see `xlate`).
pub fn renameat2(
    olddir: BorrowedFd<'_>,
    oldname: &CStr,
    newdir: BorrowedFd<'_>,
    newname: &CStr,
    flags: u32,
) -> io::Result<()> {
    // SAFETY: valid descriptors and C strings.
    cvt(unsafe {
        libc::renameatx_np(
            olddir.as_raw_fd(),
            oldname.as_ptr(),
            newdir.as_raw_fd(),
            newname.as_ptr(),
            flags,
        )
    })
    .map(drop)
}

fn fstatat_nofollow(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<stat64> {
    let mut st = MaybeUninit::<stat64>::uninit();
    // SAFETY: valid descriptor, C string and out-pointer.
    cvt(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    // SAFETY: fstatat succeeded and filled the struct.
    Ok(unsafe { st.assume_init() })
}

/// Hard-links the inode behind `fd` as `newdir/newname`, by the pin's path; a link
/// that turns out to name another inode (the path moved meanwhile) is undone.
pub fn link_fd(fd: BorrowedFd<'_>, newdir: BorrowedFd<'_>, newname: &CStr) -> io::Result<()> {
    let pinned = fstat(fd)?;
    let path = fd_path(fd)?;
    // SAFETY: valid descriptors and C strings; flags 0 links a symlink itself.
    cvt(unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            path.as_ptr(),
            newdir.as_raw_fd(),
            newname.as_ptr(),
            0,
        )
    })?;
    let made = fstatat_nofollow(newdir, newname)?;
    if !same_inode(&pinned, &made) {
        unlinkat(newdir, newname, false)?;
        return Err(errno(libc::ESTALE));
    }
    Ok(())
}

pub fn readlink_fd(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: `buf` is writable for its full length; `fd` is an O_SYMLINK pin.
    let len = cvt(unsafe { libc::freadlink(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })?;
    buf.truncate(len as usize);
    Ok(buf)
}

/// chown of the inode behind `fd`; `None` leaves that id unchanged.
pub fn fchown(fd: BorrowedFd<'_>, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    let uid = uid.unwrap_or(u32::MAX);
    let gid = gid.unwrap_or(u32::MAX);
    // SAFETY: valid descriptor.
    cvt(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) }).map(drop)
}

/// chmod of the inode behind a pin (fchmod accepts any descriptor on macOS).
pub fn chmod_fd(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    fchmod(fd, mode)
}

pub fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    // SAFETY: valid descriptor.
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) }).map(drop)
}

/// truncate by inode: a write open of the pinned inode, then ftruncate.
pub fn truncate_fd(fd: BorrowedFd<'_>, size: u64) -> io::Result<()> {
    let w = reopen(fd, libc::O_WRONLY)?;
    ftruncate(std::os::fd::AsFd::as_fd(&w), size)
}

pub fn ftruncate(fd: BorrowedFd<'_>, size: u64) -> io::Result<()> {
    let size = i64::try_from(size).map_err(|_| errno(libc::EFBIG))?;
    // SAFETY: valid descriptor.
    cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), size) }).map(drop)
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

/// futimens on the pinned inode (an O_SYMLINK pin sets the link's own times).
pub fn set_times(fd: BorrowedFd<'_>, atime: TimeSpec, mtime: TimeSpec) -> io::Result<()> {
    let times = [atime.raw(), mtime.raw()];
    // SAFETY: valid descriptor and a two-element timespec array.
    cvt(unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) }).map(drop)
}

/// fallocate with Linux modes: plain and KEEP_SIZE preallocate (F_PREALLOCATE),
/// PUNCH_HOLE|KEEP_SIZE punches (F_PUNCHHOLE); the rest has no macOS call.
pub fn fallocate(fd: BorrowedFd<'_>, mode: u32, offset: u64, len: u64) -> io::Result<()> {
    let offset = i64::try_from(offset).map_err(|_| errno(libc::EFBIG))?;
    let len = i64::try_from(len).map_err(|_| errno(libc::EFBIG))?;
    let end = offset.checked_add(len).ok_or_else(|| errno(libc::EFBIG))?;
    let keep = FALLOC_FL_KEEP_SIZE as u32;
    let punch = FALLOC_FL_PUNCH_HOLE as u32;
    if mode == punch | keep {
        let mut hole = libc::fpunchhole_t {
            fp_flags: 0,
            reserved: 0,
            fp_offset: offset,
            fp_length: len,
        };
        // SAFETY: F_PUNCHHOLE reads one fpunchhole_t from a valid pointer.
        return cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_PUNCHHOLE, &mut hole) }).map(drop);
    }
    if mode & !keep != 0 {
        return Err(errno(libc::EOPNOTSUPP));
    }
    let size = fstat(fd)?.st_size;
    if end > size {
        let mut store = libc::fstore_t {
            fst_flags: libc::F_ALLOCATEALL,
            fst_posmode: libc::F_PEOFPOSMODE,
            fst_offset: 0,
            fst_length: end - size,
            fst_bytesalloc: 0,
        };
        // SAFETY: F_PREALLOCATE reads and updates one fstore_t behind a valid pointer.
        cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_PREALLOCATE, &mut store) })?;
        if mode & keep == 0 {
            ftruncate(fd, end as u64)?;
        }
    }
    Ok(())
}

pub fn lseek(fd: BorrowedFd<'_>, offset: i64, whence: libc::c_int) -> io::Result<u64> {
    // SAFETY: valid descriptor.
    let ret = unsafe { libc::lseek(fd.as_raw_fd(), offset, whence) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as u64)
    }
}

/// fsync; F_FULLFSYNC is not used: it is what fsync means on Linux only with a
/// write-through disk cache, and it stalls the whole device.
pub fn fsync(fd: BorrowedFd<'_>, _datasync: bool) -> io::Result<()> {
    // SAFETY: valid descriptor.
    cvt(unsafe { libc::fsync(fd.as_raw_fd()) }).map(drop)
}

/// statvfs built from fstatfs (64-bit counts), scaled into statvfs's 32-bit counts.
pub fn fstatvfs(fd: BorrowedFd<'_>) -> io::Result<statvfs64> {
    let mut sf = MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: valid descriptor and out-pointer.
    cvt(unsafe { libc::fstatfs(fd.as_raw_fd(), sf.as_mut_ptr()) })?;
    // SAFETY: fstatfs succeeded and filled the struct.
    let sf = unsafe { sf.assume_init() };
    let (frsize, [blocks, bfree, bavail]) = xlate::fit_block_counts(
        u64::from(sf.f_bsize),
        [sf.f_blocks, sf.f_bfree, sf.f_bavail],
    );
    let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    let mut st = zeroed_statvfs();
    st.f_bsize = sf.f_iosize.max(0) as libc::c_ulong;
    st.f_frsize = frsize as libc::c_ulong;
    st.f_blocks = blocks;
    st.f_bfree = bfree;
    st.f_bavail = bavail;
    st.f_files = clamp(sf.f_files);
    st.f_ffree = clamp(sf.f_ffree);
    st.f_favail = clamp(sf.f_ffree);
    st.f_namemax = 255;
    if sf.f_flags & libc::MNT_RDONLY as u32 != 0 {
        st.f_flag |= libc::ST_RDONLY;
    }
    Ok(st)
}

/// access(2) of the pinned inode, judged with the server's effective ids.
pub fn access_fd(fd: BorrowedFd<'_>, mask: u32) -> io::Result<()> {
    let path = fd_path(fd)?;
    // SAFETY: valid C string.
    cvt(unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            path.as_ptr(),
            mask as libc::c_int,
            libc::AT_EACCESS | libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

/// Closes a duplicate of `fd`: releases the caller's POSIX locks like close(2) would.
pub fn close_dup(fd: BorrowedFd<'_>) -> io::Result<()> {
    let dup = fd.try_clone_to_owned()?;
    drop(dup);
    Ok(())
}

extern "C" {
    /// The call behind readdir(3) in libSystem; fills `struct direntry` records.
    fn __getdirentries64(
        fd: libc::c_int,
        buf: *mut libc::c_char,
        bufsize: libc::size_t,
        basep: *mut libc::off_t,
    ) -> libc::ssize_t;
}

/// One getdirentries64 call into `buf`; returns bytes filled (0 at end of directory).
pub fn getdents(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    let mut base: libc::off_t = 0;
    // SAFETY: `buf` is writable for its full length; `base` is a valid out-pointer.
    cvt_size(unsafe {
        __getdirentries64(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut base,
        )
    })
}

/// A parsed directory record.
pub struct RawDirent<'a> {
    pub ino: u64,
    pub next_offset: u64,
    pub dtype: u8,
    pub name: &'a [u8],
}

/// Parses the `struct direntry` at the start of `buf`; returns it and its length.
/// Layout (<sys/dirent.h>, 64-bit inodes): d_ino u64, d_seekoff u64, d_reclen u16,
/// d_namlen u16, d_type u8, d_name.
pub fn parse_dirent(buf: &[u8]) -> Option<(RawDirent<'_>, usize)> {
    const HDR: usize = 21;
    if buf.len() < HDR {
        return None;
    }
    let ino = u64::from_ne_bytes(buf[0..8].try_into().ok()?);
    let next_offset = u64::from_ne_bytes(buf[8..16].try_into().ok()?);
    let reclen = u16::from_ne_bytes(buf[16..18].try_into().ok()?) as usize;
    let namlen = u16::from_ne_bytes(buf[18..20].try_into().ok()?) as usize;
    if reclen < HDR || reclen > buf.len() || HDR + namlen > reclen {
        return None;
    }
    Some((
        RawDirent {
            ino,
            next_offset,
            dtype: xlate::dtype_to_linux(buf[20]),
            name: &buf[HDR..HDR + namlen],
        },
        reclen,
    ))
}

// ---- extended attributes: Linux names on the outside, macOS names on the host ----

fn host_xattr_name(name: &CStr) -> io::Result<CString> {
    let host = xlate::xattr_name_to_host(name.to_bytes())?;
    CString::new(host).map_err(|_| errno(libc::EINVAL))
}

pub fn getxattr(fd: BorrowedFd<'_>, name: &CStr, buf: &mut [u8]) -> io::Result<usize> {
    let name = host_xattr_name(name)?;
    let ptr = if buf.is_empty() {
        std::ptr::null_mut()
    } else {
        buf.as_mut_ptr().cast()
    };
    // SAFETY: valid C string; `ptr` is null (size query) or writable for `buf.len()`.
    cvt_size(unsafe { libc::fgetxattr(fd.as_raw_fd(), name.as_ptr(), ptr, buf.len(), 0, 0) })
}

/// The Linux-named list of `fd`'s attributes; sizes and ERANGE as listxattr(2).
pub fn listxattr(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    let mut host = Vec::new();
    loop {
        // SAFETY: a null buffer asks for the size.
        let need =
            cvt_size(unsafe { libc::flistxattr(fd.as_raw_fd(), std::ptr::null_mut(), 0, 0) })?;
        host.resize(need, 0);
        // SAFETY: `host` is writable for its full length.
        match cvt_size(unsafe {
            libc::flistxattr(fd.as_raw_fd(), host.as_mut_ptr().cast(), host.len(), 0)
        }) {
            Ok(n) => {
                host.truncate(n);
                break;
            }
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) => continue,
            Err(e) => return Err(e),
        }
    }
    let mut list = Vec::with_capacity(host.len());
    for name in host.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if let Some(linux) = xlate::xattr_name_from_host(name) {
            list.extend_from_slice(&linux);
            list.push(0);
        }
    }
    if buf.is_empty() {
        return Ok(list.len());
    }
    if list.len() > buf.len() {
        return Err(errno(libc::ERANGE));
    }
    buf[..list.len()].copy_from_slice(&list);
    Ok(list.len())
}

/// `flags` are macOS XATTR_CREATE/XATTR_REPLACE (see `xlate`).
pub fn setxattr(fd: BorrowedFd<'_>, name: &CStr, value: &[u8], flags: i32) -> io::Result<()> {
    let name = host_xattr_name(name)?;
    // SAFETY: valid C string and a readable value slice.
    cvt(unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
            flags,
        )
    })
    .map(drop)
}

pub fn removexattr(fd: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    let name = host_xattr_name(name)?;
    // SAFETY: valid descriptor and C string.
    cvt(unsafe { libc::fremovexattr(fd.as_raw_fd(), name.as_ptr(), 0) }).map(drop)
}

/// getxattr of `dir/name` (a regular file met in readdir), never following a symlink.
pub fn getxattr_at(
    dir: BorrowedFd<'_>,
    name: &[u8],
    xname: &CStr,
    buf: &mut [u8],
) -> io::Result<usize> {
    let cname = CString::new(name).map_err(|_| errno(libc::EINVAL))?;
    let flags = O_PATH | libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    let fd = raw_openat(dir.as_raw_fd(), &cname, flags, 0)?;
    getxattr(std::os::fd::AsFd::as_fd(&fd), xname, buf)
}

/// listxattr of `dir/name`, not following a final symlink.
pub fn listxattr_at(dir: BorrowedFd<'_>, name: &[u8], buf: &mut [u8]) -> io::Result<usize> {
    let cname = CString::new(name).map_err(|_| errno(libc::EINVAL))?;
    let flags = O_PATH | libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    let fd = raw_openat(dir.as_raw_fd(), &cname, flags, 0)?;
    listxattr(std::os::fd::AsFd::as_fd(&fd), buf)
}

/// Runs `f` with a `File` view of `fd` that does not close it.
pub fn with_file<R>(fd: BorrowedFd<'_>, f: impl FnOnce(&mut File) -> R) -> R {
    // SAFETY: the File never outlives `fd` and ManuallyDrop keeps it from closing it.
    let mut file = ManuallyDrop::new(unsafe { File::from_raw_fd(fd.as_raw_fd()) });
    f(&mut file)
}

/// Birth time of the inode behind `fd` (every macOS filesystem keeps one).
pub fn birth_time(fd: BorrowedFd<'_>) -> io::Result<Option<(i64, u32)>> {
    let st = fstat(fd)?;
    Ok(Some((st.st_birthtime, st.st_birthtime_nsec as u32)))
}

/// True if names in the directory behind `fd` are compared case-sensitively.
pub fn dir_is_case_sensitive(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: plain query on a valid descriptor.
    let r = unsafe { libc::fpathconf(fd.as_raw_fd(), libc::_PC_CASE_SENSITIVE) };
    if r < 0 {
        // Filesystems that do not answer (some network ones) are treated as sensitive.
        return Ok(true);
    }
    Ok(r != 0)
}

// ---- process-wide state ----

fn unsupported() -> io::Error {
    errno(libc::ENOTSUP)
}

/// A macOS server is rootless and never switches credentials.
pub fn set_thread_fsuid(_uid: u32) -> io::Result<()> {
    Err(unsupported())
}

pub fn set_thread_fsgid(_gid: u32) -> io::Result<()> {
    Err(unsupported())
}

pub fn set_thread_groups(_groups: &[u32]) -> io::Result<()> {
    Err(unsupported())
}

/// No capabilities on macOS: a rootless server has nothing to raise or drop.
pub fn enable_id_switch() -> io::Result<()> {
    Ok(())
}

pub fn settle_caller_caps(_uid: u32) -> io::Result<()> {
    Ok(())
}

pub fn geteuid() -> u32 {
    // SAFETY: no memory effects.
    unsafe { libc::geteuid() }
}

pub fn getegid() -> u32 {
    // SAFETY: no memory effects.
    unsafe { libc::getegid() }
}

pub fn set_umask(mask: u32) -> u32 {
    // SAFETY: no memory effects.
    u32::from(unsafe { libc::umask(mask as libc::mode_t) })
}

/// Raises the open-file limit to what the kernel allows a process (OPEN_MAX caps it).
pub fn raise_nofile_limit() -> io::Result<u64> {
    const OPEN_MAX: u64 = 10240; // <sys/syslimits.h>
    let mut lim = MaybeUninit::<libc::rlimit>::uninit();
    // SAFETY: valid out-pointer.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, lim.as_mut_ptr()) })?;
    // SAFETY: getrlimit succeeded.
    let mut lim = unsafe { lim.assume_init() };
    lim.rlim_cur = lim.rlim_max.min(OPEN_MAX);
    // SAFETY: valid pointer to an initialised rlimit.
    cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) })?;
    Ok(lim.rlim_cur)
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

/// Blocks SIGINT, SIGTERM and SIGHUP (termination) and SIGUSR1 (log statistics) in the
/// calling thread and the threads it spawns later, for `wait_*` to collect.
pub fn block_server_signals() -> io::Result<()> {
    let mut set = termination_set();
    // SAFETY: valid set; sigaddset only updates it.
    unsafe { libc::sigaddset(&mut set, libc::SIGUSR1) };
    // SAFETY: valid signal set; old set not requested.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(errno(rc));
    }
    Ok(())
}

/// Blocks until `sig` (blocked by `block_server_signals`) arrives, and takes it.
pub fn wait_signal(sig: i32) {
    let set = one_signal_set(sig);
    let mut got = 0;
    // SAFETY: valid set and out-pointer.
    while unsafe { libc::sigwait(&set, &mut got) } != 0 || got != sig {}
}

/// Waits up to `timeout_ms` for a blocked termination signal (macOS has no
/// sigtimedwait: pending signals are polled, then taken with sigwait).
pub fn wait_termination_signal(timeout_ms: u64) -> Option<i32> {
    let set = termination_set();
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(timeout_ms);
    loop {
        let mut pending = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: valid out-pointer.
        if unsafe { libc::sigpending(pending.as_mut_ptr()) } == 0 {
            // SAFETY: sigpending succeeded and filled the set.
            let pending = unsafe { pending.assume_init() };
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                // SAFETY: valid set.
                if unsafe { libc::sigismember(&pending, sig) } == 1 {
                    let mut got = 0;
                    // SAFETY: valid set and out-pointer; a signal is pending, so no wait.
                    if unsafe { libc::sigwait(&set, &mut got) } == 0 {
                        return Some(got);
                    }
                }
            }
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A macOS server never holds chown rights it would use: it always virtualizes.
pub fn has_cap_chown() -> bool {
    false
}

/// Drops the whole process to `uid:gid` for good. Call before starting threads.
pub fn drop_privileges(uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: an empty group list; process-wide on purpose (single-threaded here).
    cvt(unsafe { libc::setgroups(0, std::ptr::null()) })?;
    // SAFETY: no memory effects.
    cvt(unsafe { libc::setgid(gid) })?;
    // SAFETY: no memory effects.
    cvt(unsafe { libc::setuid(uid) })?;
    // SAFETY: no memory effects.
    let (r, e) = unsafe { (libc::getuid(), libc::geteuid()) };
    if (r, e) != (uid, uid) {
        return Err(io::Error::other("privileges were not fully dropped"));
    }
    Ok(())
}

// ---- fuse-pipe transport: the VMM bridges guest vsock to a host Unix socket ----

pub fn vsock_listen(_cid: u32, _port: u32, _backlog: i32) -> io::Result<OwnedFd> {
    Err(errno(libc::EAFNOSUPPORT))
}

pub fn vsock_accept(_listener: BorrowedFd<'_>) -> io::Result<(OwnedFd, u32)> {
    Err(errno(libc::EAFNOSUPPORT))
}

pub fn vsock_connect(_cid: u32, _port: u32) -> io::Result<OwnedFd> {
    Err(errno(libc::EAFNOSUPPORT))
}

/// Kernel passthrough (FOPEN_PASSTHROUGH) is a Linux /dev/fuse feature; a macOS host
/// serves over fuse-pipe only, so replies never carry it.
pub fn with_fopen_passthrough(
    opts: fuse_backend_rs::abi::fuse_abi::OpenOptions,
) -> fuse_backend_rs::abi::fuse_abi::OpenOptions {
    opts
}

/// True if `fd` was opened for writing (O_WRONLY or O_RDWR).
pub fn open_for_writing(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: F_GETFL only reads descriptor flags.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(flags & libc::O_ACCMODE != libc::O_RDONLY)
}

// ---- sandbox: macOS servers run with `--sandbox none` only ----

/// Eight random bytes from getentropy(2).
pub fn random_u64() -> io::Result<u64> {
    let mut b = [0u8; 8];
    // SAFETY: the pointer and length describe `b`.
    cvt(unsafe { libc::getentropy(b.as_mut_ptr().cast(), b.len()) })?;
    Ok(u64::from_ne_bytes(b))
}

/// macOS has no `/proc`: callers that read one (local mounts' groups) get ENOENT.
pub fn open_proc_file(_rel: &CStr, _flags: libc::c_int) -> io::Result<OwnedFd> {
    Err(errno(libc::ENOENT))
}

// ---- fuse-pipe authentication: who is at the other end of a Unix socket ----

/// Credentials of a Unix-socket peer, as the kernel recorded them at connect time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCred {
    pub uid: u32,
    pub gid: u32,
    /// getpeereid does not report the pid.
    pub pid: Option<i32>,
}

/// getpeereid of a connected Unix stream socket.
pub fn peer_cred(fd: BorrowedFd<'_>) -> io::Result<PeerCred> {
    let mut uid: libc::uid_t = 0;
    let mut gid: libc::gid_t = 0;
    // SAFETY: `uid` and `gid` are writable and of the types getpeereid expects.
    cvt(unsafe { libc::getpeereid(fd.as_raw_fd(), &mut uid, &mut gid) })?;
    Ok(PeerCred {
        uid,
        gid,
        pid: None,
    })
}

/// macOS has no file handles: inodes are reopened by name (see `fs::inode_store`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileHandle;

pub fn file_handle(_fd: BorrowedFd<'_>) -> io::Result<FileHandle> {
    Err(io::Error::from_raw_os_error(libc::ENOTSUP))
}

pub fn open_file_handle(
    _mount: BorrowedFd<'_>,
    _handle: &FileHandle,
    _flags: libc::c_int,
) -> io::Result<OwnedFd> {
    Err(io::Error::from_raw_os_error(libc::ENOTSUP))
}

/// Seconds and nanoseconds of an inode's creation.
pub type BirthTime = (i64, u32);

/// `statx_identity` plus the birth time.
pub fn statx_identity_born(
    fd: BorrowedFd<'_>,
) -> io::Result<(stat64, InodeKey, Option<BirthTime>)> {
    let (st, key) = statx_identity(fd)?;
    Ok((
        st,
        key,
        Some((st.st_birthtime, st.st_birthtime_nsec as u32)),
    ))
}

/// `statx_identity_born` of `dir/name`, never following a symlink.
pub fn statx_identity_born_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
) -> io::Result<(stat64, InodeKey, Option<BirthTime>)> {
    let st = fstatat_nofollow(dir, name)?;
    let born = Some((st.st_birthtime, st.st_birthtime_nsec as u32));
    Ok((st, identity_of(&st), born))
}

/// The soft RLIMIT_NOFILE: how many descriptors this process may hold.
pub fn nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(lim.rlim_cur)
}

/// macOS has no copy_file_range(2): the client kernel falls back to reading and
/// writing.
pub fn copy_file_range(
    _from: BorrowedFd<'_>,
    _from_offset: u64,
    _to: BorrowedFd<'_>,
    _to_offset: u64,
    _len: u64,
    _flags: u32,
) -> io::Result<u64> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// macOS has no O_TMPFILE.
pub fn open_tmpfile(_dir: BorrowedFd<'_>, _flags: i32, _mode: u32) -> io::Result<OwnedFd> {
    Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
}

/// No syncfs(2) on macOS: sync(2) flushes everything, which is what syncfs promises.
pub fn syncfs(_fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() };
    Ok(())
}

// ---- vhost-user: messages that carry descriptors ----

/// Most descriptors one vhost-user message carries (a memory table of 8 regions).
pub const MAX_PASSED_FDS: usize = 8;

/// Reads once from a Unix stream socket into `buf`, appending the descriptors passed
/// with it (SCM_RIGHTS, made close-on-exec) to `fds`. Returns the bytes read; 0 is EOF.
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut iov = [io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; MAX_PASSED_FDS]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )?;
    let cmsgs = msg
        .cmsgs()
        .map_err(|_| io::Error::other("more descriptors than a vhost-user message carries"))?;
    for cmsg in cmsgs {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            for fd in raw {
                // SAFETY: the kernel just installed `fd` in this process for this message;
                // nothing else owns it.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                // macOS has no MSG_CMSG_CLOEXEC: close-on-exec right after.
                fcntl(owned.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
                fds.push(owned);
            }
        }
    }
    Ok(msg.bytes)
}

/// Takes over a listening Unix socket the parent process left open at `fd`
/// (virtiofsd's `--fd`). Call once per descriptor: the listener owns and closes it.
pub fn inherited_unix_listener(fd: RawFd) -> io::Result<std::os::unix::net::UnixListener> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    use nix::sys::socket::SockaddrStorage;
    use nix::sys::socket::{getsockname, getsockopt, sockopt, AddressFamily, SockaddrLike};
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    let addr: SockaddrStorage = getsockname(fd)?;
    if addr.family() != Some(AddressFamily::Unix) {
        return Err(io::Error::other("not a Unix socket"));
    }
    // SAFETY: getsockname just proved `fd` open; the caller hands it over, and nothing
    // else in this process owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    if !getsockopt(&owned, sockopt::AcceptConn)? {
        return Err(io::Error::other("socket is not listening"));
    }
    fcntl(owned.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    Ok(owned.into())
}

/// macOS has no splice(2): no such pipe can be made, and fuse-pipe copies READ data.
pub struct SplicePipe {
    never: std::convert::Infallible,
}

impl SplicePipe {
    pub fn new(_want: usize) -> io::Result<SplicePipe> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub fn size(&self) -> usize {
        match self.never {}
    }

    pub fn held(&self) -> usize {
        match self.never {}
    }

    pub fn fill_from_file(&mut self, _: BorrowedFd<'_>, _: u64, _: usize) -> io::Result<usize> {
        match self.never {}
    }

    pub fn fill_from_stream(&mut self, _: BorrowedFd<'_>, _: usize) -> io::Result<Option<usize>> {
        match self.never {}
    }

    pub fn fill_from_memory(&mut self, _: &[u8]) -> io::Result<usize> {
        match self.never {}
    }

    pub fn put(&mut self, _: &[u8]) -> io::Result<()> {
        match self.never {}
    }

    pub fn drain_to_stream(&mut self, _: BorrowedFd<'_>) -> io::Result<()> {
        match self.never {}
    }

    pub fn drain_once_to(&mut self, _: BorrowedFd<'_>) -> io::Result<()> {
        match self.never {}
    }

    pub fn take_into(&mut self, _: &mut [u8]) -> io::Result<usize> {
        match self.never {}
    }

    pub fn discard(&mut self) {
        match self.never {}
    }
}
