//! Facts of the Linux FUSE kernel ABI, 7.1 to 7.45: opcodes, flags, notification
//! codes and the layout of every fixed-size argument and reply struct.
//!
//! Names follow `include/uapi/linux/fuse.h` minus the `FUSE_` prefix where the
//! module path already says it. Layouts are declared field by field with
//! [`wire_struct!`]; sizes are checked against the header in the tests below.

use super::wire::wire_struct;

/// The major version this crate speaks.
pub const KERNEL_VERSION: u32 = 7;
/// The newest minor whose layouts this module knows.
pub const KERNEL_MINOR_VERSION: u32 = 45;
/// The oldest minor [`super::request::parse`] decodes (7.9 changed read/write/getattr args).
pub const MIN_MINOR: u32 = 9;
/// The node ID of the root directory.
pub const ROOT_ID: u64 = 1;
/// The smallest read buffer the kernel accepts on /dev/fuse.
pub const MIN_READ_BUFFER: usize = 8192;
/// Bit set in `unique` on requests the kernel resends (7.40).
pub const UNIQUE_RESEND: u64 = 1 << 63;
/// uid/gid of a request whose caller has no mapping in the server's namespace.
pub const INVALID_UIDGID: u32 = u32::MAX;
/// Most in_iovecs + out_iovecs an unrestricted ioctl may ask for.
pub const IOCTL_MAX_IOV: usize = 256;
/// Largest CUSE device info string.
pub const CUSE_INIT_INFO_MAX: usize = 4096;

/// Request opcodes (`enum fuse_opcode`).
pub mod opcode {
    pub const LOOKUP: u32 = 1;
    /// No reply.
    pub const FORGET: u32 = 2;
    pub const GETATTR: u32 = 3;
    pub const SETATTR: u32 = 4;
    pub const READLINK: u32 = 5;
    pub const SYMLINK: u32 = 6;
    pub const MKNOD: u32 = 8;
    pub const MKDIR: u32 = 9;
    pub const UNLINK: u32 = 10;
    pub const RMDIR: u32 = 11;
    pub const RENAME: u32 = 12;
    pub const LINK: u32 = 13;
    pub const OPEN: u32 = 14;
    pub const READ: u32 = 15;
    pub const WRITE: u32 = 16;
    pub const STATFS: u32 = 17;
    pub const RELEASE: u32 = 18;
    pub const FSYNC: u32 = 20;
    pub const SETXATTR: u32 = 21;
    pub const GETXATTR: u32 = 22;
    pub const LISTXATTR: u32 = 23;
    pub const REMOVEXATTR: u32 = 24;
    pub const FLUSH: u32 = 25;
    pub const INIT: u32 = 26;
    pub const OPENDIR: u32 = 27;
    pub const READDIR: u32 = 28;
    pub const RELEASEDIR: u32 = 29;
    pub const FSYNCDIR: u32 = 30;
    pub const GETLK: u32 = 31;
    pub const SETLK: u32 = 32;
    pub const SETLKW: u32 = 33;
    pub const ACCESS: u32 = 34;
    pub const CREATE: u32 = 35;
    pub const INTERRUPT: u32 = 36;
    pub const BMAP: u32 = 37;
    pub const DESTROY: u32 = 38;
    pub const IOCTL: u32 = 39;
    pub const POLL: u32 = 40;
    /// The answer to a RETRIEVE notification.
    pub const NOTIFY_REPLY: u32 = 41;
    /// No reply.
    pub const BATCH_FORGET: u32 = 42;
    pub const FALLOCATE: u32 = 43;
    pub const READDIRPLUS: u32 = 44;
    pub const RENAME2: u32 = 45;
    pub const LSEEK: u32 = 46;
    pub const COPY_FILE_RANGE: u32 = 47;
    pub const SETUPMAPPING: u32 = 48;
    pub const REMOVEMAPPING: u32 = 49;
    pub const SYNCFS: u32 = 50;
    pub const TMPFILE: u32 = 51;
    pub const STATX: u32 = 52;
    pub const COPY_FILE_RANGE_64: u32 = 53;
    pub const CUSE_INIT: u32 = 4096;
    /// CUSE_INIT as a big-endian peer would send it.
    pub const CUSE_INIT_BSWAP_RESERVED: u32 = 1_048_576;
    /// INIT as a big-endian peer would send it.
    pub const INIT_BSWAP_RESERVED: u32 = 436_207_616;

    /// Every opcode this module decodes, for tests and tables.
    pub const ALL: [u32; 52] = [
        LOOKUP,
        FORGET,
        GETATTR,
        SETATTR,
        READLINK,
        SYMLINK,
        MKNOD,
        MKDIR,
        UNLINK,
        RMDIR,
        RENAME,
        LINK,
        OPEN,
        READ,
        WRITE,
        STATFS,
        RELEASE,
        FSYNC,
        SETXATTR,
        GETXATTR,
        LISTXATTR,
        REMOVEXATTR,
        FLUSH,
        INIT,
        OPENDIR,
        READDIR,
        RELEASEDIR,
        FSYNCDIR,
        GETLK,
        SETLK,
        SETLKW,
        ACCESS,
        CREATE,
        INTERRUPT,
        BMAP,
        DESTROY,
        IOCTL,
        POLL,
        NOTIFY_REPLY,
        BATCH_FORGET,
        FALLOCATE,
        READDIRPLUS,
        RENAME2,
        LSEEK,
        COPY_FILE_RANGE,
        SETUPMAPPING,
        REMOVEMAPPING,
        SYNCFS,
        TMPFILE,
        STATX,
        COPY_FILE_RANGE_64,
        CUSE_INIT,
    ];
}

/// Notification codes, sent in the out-header's `error` field with `unique` 0.
pub mod notify {
    pub const POLL: i32 = 1;
    pub const INVAL_INODE: i32 = 2;
    pub const INVAL_ENTRY: i32 = 3;
    pub const STORE: i32 = 4;
    pub const RETRIEVE: i32 = 5;
    pub const DELETE: i32 = 6;
    /// 7.40: ask the kernel to resend pending requests.
    pub const RESEND: i32 = 7;
    /// 7.44: bump the connection epoch (invalidates every cached dentry).
    pub const INC_EPOCH: i32 = 8;
    /// 7.45: ask the kernel to drop unused inodes.
    pub const PRUNE: i32 = 9;
}

/// INIT flags: bits 0..31 travel in `flags`, bits 32..63 in `flags2` (7.36, with INIT_EXT).
pub mod init {
    pub const ASYNC_READ: u64 = 1 << 0;
    pub const POSIX_LOCKS: u64 = 1 << 1;
    pub const FILE_OPS: u64 = 1 << 2;
    pub const ATOMIC_O_TRUNC: u64 = 1 << 3;
    pub const EXPORT_SUPPORT: u64 = 1 << 4;
    pub const BIG_WRITES: u64 = 1 << 5;
    pub const DONT_MASK: u64 = 1 << 6;
    pub const SPLICE_WRITE: u64 = 1 << 7;
    pub const SPLICE_MOVE: u64 = 1 << 8;
    pub const SPLICE_READ: u64 = 1 << 9;
    pub const FLOCK_LOCKS: u64 = 1 << 10;
    pub const HAS_IOCTL_DIR: u64 = 1 << 11;
    pub const AUTO_INVAL_DATA: u64 = 1 << 12;
    pub const DO_READDIRPLUS: u64 = 1 << 13;
    pub const READDIRPLUS_AUTO: u64 = 1 << 14;
    pub const ASYNC_DIO: u64 = 1 << 15;
    pub const WRITEBACK_CACHE: u64 = 1 << 16;
    pub const NO_OPEN_SUPPORT: u64 = 1 << 17;
    pub const PARALLEL_DIROPS: u64 = 1 << 18;
    pub const HANDLE_KILLPRIV: u64 = 1 << 19;
    pub const POSIX_ACL: u64 = 1 << 20;
    pub const ABORT_ERROR: u64 = 1 << 21;
    pub const MAX_PAGES: u64 = 1 << 22;
    pub const CACHE_SYMLINKS: u64 = 1 << 23;
    pub const NO_OPENDIR_SUPPORT: u64 = 1 << 24;
    pub const EXPLICIT_INVAL_DATA: u64 = 1 << 25;
    pub const MAP_ALIGNMENT: u64 = 1 << 26;
    pub const SUBMOUNTS: u64 = 1 << 27;
    pub const HANDLE_KILLPRIV_V2: u64 = 1 << 28;
    /// setxattr_in grows to 16 bytes (7.33).
    pub const SETXATTR_EXT: u64 = 1 << 29;
    /// flags2 and the 64-byte init_in/init_out are in use (7.36).
    pub const INIT_EXT: u64 = 1 << 30;
    pub const INIT_RESERVED: u64 = 1 << 31;
    pub const SECURITY_CTX: u64 = 1 << 32;
    pub const HAS_INODE_DAX: u64 = 1 << 33;
    /// Requests that create carry the caller's groups as FUSE_EXT_GROUPS (7.38).
    pub const CREATE_SUPP_GROUP: u64 = 1 << 34;
    pub const HAS_EXPIRE_ONLY: u64 = 1 << 35;
    /// Formerly DIRECT_IO_RELAX.
    pub const DIRECT_IO_ALLOW_MMAP: u64 = 1 << 36;
    pub const PASSTHROUGH: u64 = 1 << 37;
    pub const NO_EXPORT_SUPPORT: u64 = 1 << 38;
    pub const HAS_RESEND: u64 = 1 << 39;
    pub const ALLOW_IDMAP: u64 = 1 << 40;
    pub const OVER_IO_URING: u64 = 1 << 41;
    pub const REQUEST_TIMEOUT: u64 = 1 << 42;

    /// Splits 64 flag bits into the (flags, flags2) words of init_out.
    pub const fn split(all: u64) -> (u32, u32) {
        (all as u32, (all >> 32) as u32)
    }

    /// Joins init_in's words; flags2 counts only when INIT_EXT is set.
    pub const fn join(flags: u32, flags2: u32) -> u64 {
        let lo = flags as u64;
        if lo & INIT_EXT != 0 {
            lo | ((flags2 as u64) << 32)
        } else {
            lo
        }
    }
}

/// CUSE INIT flags.
pub const CUSE_UNRESTRICTED_IOCTL: u32 = 1 << 0;

/// fuse_setattr_in.valid bits.
pub mod fattr {
    pub const MODE: u32 = 1 << 0;
    pub const UID: u32 = 1 << 1;
    pub const GID: u32 = 1 << 2;
    pub const SIZE: u32 = 1 << 3;
    pub const ATIME: u32 = 1 << 4;
    pub const MTIME: u32 = 1 << 5;
    pub const FH: u32 = 1 << 6;
    pub const ATIME_NOW: u32 = 1 << 7;
    pub const MTIME_NOW: u32 = 1 << 8;
    pub const LOCKOWNER: u32 = 1 << 9;
    pub const CTIME: u32 = 1 << 10;
    pub const KILL_SUIDGID: u32 = 1 << 11;
}

/// fuse_open_out.open_flags bits.
pub mod fopen {
    pub const DIRECT_IO: u32 = 1 << 0;
    pub const KEEP_CACHE: u32 = 1 << 1;
    pub const NONSEEKABLE: u32 = 1 << 2;
    pub const CACHE_DIR: u32 = 1 << 3;
    pub const STREAM: u32 = 1 << 4;
    pub const NOFLUSH: u32 = 1 << 5;
    pub const PARALLEL_DIRECT_WRITES: u32 = 1 << 6;
    /// backing_id names a file registered with FUSE_DEV_IOC_BACKING_OPEN.
    pub const PASSTHROUGH: u32 = 1 << 7;
}

/// Flags of individual requests.
pub mod flags {
    pub const RELEASE_FLUSH: u32 = 1 << 0;
    pub const RELEASE_FLOCK_UNLOCK: u32 = 1 << 1;
    /// getattr_in.fh is valid.
    pub const GETATTR_FH: u32 = 1 << 0;
    /// lk_in describes a flock() lock, not a POSIX one.
    pub const LK_FLOCK: u32 = 1 << 0;
    pub const WRITE_CACHE: u32 = 1 << 0;
    pub const WRITE_LOCKOWNER: u32 = 1 << 1;
    /// Formerly WRITE_KILL_PRIV.
    pub const WRITE_KILL_SUIDGID: u32 = 1 << 2;
    pub const READ_LOCKOWNER: u32 = 1 << 1;
    pub const IOCTL_COMPAT: u32 = 1 << 0;
    pub const IOCTL_UNRESTRICTED: u32 = 1 << 1;
    pub const IOCTL_RETRY: u32 = 1 << 2;
    pub const IOCTL_32BIT: u32 = 1 << 3;
    pub const IOCTL_DIR: u32 = 1 << 4;
    pub const IOCTL_COMPAT_X32: u32 = 1 << 5;
    pub const POLL_SCHEDULE_NOTIFY: u32 = 1 << 0;
    pub const FSYNC_FDATASYNC: u32 = 1 << 0;
    /// fuse_attr.flags: the entry is a submount.
    pub const ATTR_SUBMOUNT: u32 = 1 << 0;
    /// fuse_attr.flags: DAX is enabled for the inode.
    pub const ATTR_DAX: u32 = 1 << 1;
    pub const OPEN_KILL_SUIDGID: u32 = 1 << 0;
    pub const SETXATTR_ACL_KILL_SGID: u32 = 1 << 0;
    /// notify_inval_entry: only expire the dentry, keep it.
    pub const EXPIRE_ONLY: u32 = 1 << 0;
    pub const SETUPMAPPING_FLAG_WRITE: u64 = 1 << 0;
    pub const SETUPMAPPING_FLAG_READ: u64 = 1 << 1;
}

/// Extension types in the area after the args (7.38); 0..=31 are security contexts.
pub mod ext {
    pub const MAX_NR_SECCTX: u32 = 31;
    pub const GROUPS: u32 = 32;
}

/// Sizes of older layouts the kernel still sends or accepts at lower minors.
pub mod compat {
    /// entry_out before 7.9 (no blksize/padding in fuse_attr).
    pub const ENTRY_OUT_SIZE: usize = 120;
    /// attr_out before 7.9.
    pub const ATTR_OUT_SIZE: usize = 96;
    /// mknod_in before 7.12 (no umask).
    pub const MKNOD_IN_SIZE: usize = 8;
    /// create_in before 7.12 was an open_in (flags, mode).
    pub const CREATE_IN_SIZE: usize = 8;
    /// write_in before 7.9.
    pub const WRITE_IN_SIZE: usize = 24;
    /// read_in before 7.9 (fh, offset, size, padding).
    pub const READ_IN_SIZE: usize = 24;
    /// statfs_out before 7.4.
    pub const STATFS_SIZE: usize = 48;
    /// setxattr_in without FUSE_SETXATTR_EXT.
    pub const SETXATTR_IN_SIZE: usize = 8;
    /// init_in before 7.36.
    pub const INIT_IN_SIZE: usize = 16;
    /// init_out before 7.5.
    pub const INIT_OUT_SIZE: usize = 8;
    /// init_out before 7.23.
    pub const INIT_22_OUT_SIZE: usize = 24;
}

wire_struct! {
    /// struct fuse_attr.
    pub struct Attr {
        ino: u64, size: u64, blocks: u64, atime: u64, mtime: u64, ctime: u64,
        atimensec: u32, mtimensec: u32, ctimensec: u32, mode: u32, nlink: u32,
        uid: u32, gid: u32, rdev: u32, blksize: u32,
        /// FUSE_ATTR_* (7.32; padding before).
        flags: u32,
    }
}

wire_struct! {
    /// struct fuse_sx_time.
    pub struct SxTime { tv_sec: i64, tv_nsec: u32, reserved: i32 }
}

wire_struct! {
    /// struct fuse_statx (7.39).
    pub struct Statx {
        mask: u32, blksize: u32, attributes: u64, nlink: u32, uid: u32, gid: u32,
        mode: u16, spare0: u16, ino: u64, size: u64, blocks: u64, attributes_mask: u64,
        atime: SxTime, btime: SxTime, ctime: SxTime, mtime: SxTime,
        rdev_major: u32, rdev_minor: u32, dev_major: u32, dev_minor: u32,
        spare2: [u64; 14],
    }
}

wire_struct! {
    /// struct fuse_kstatfs.
    pub struct Kstatfs {
        blocks: u64, bfree: u64, bavail: u64, files: u64, ffree: u64,
        bsize: u32, namelen: u32, frsize: u32, padding: u32, spare: [u32; 6],
    }
}

wire_struct! {
    /// struct fuse_file_lock.
    pub struct FileLock { start: u64, end: u64, typ: u32, pid: u32 }
}

wire_struct! {
    /// struct fuse_entry_out.
    pub struct EntryOut {
        nodeid: u64, generation: u64, entry_valid: u64, attr_valid: u64,
        entry_valid_nsec: u32, attr_valid_nsec: u32, attr: Attr,
    }
}

wire_struct! {
    /// struct fuse_forget_in.
    pub struct ForgetIn { nlookup: u64 }
}

wire_struct! {
    /// struct fuse_forget_one (BATCH_FORGET record).
    pub struct ForgetOne { nodeid: u64, nlookup: u64 }
}

wire_struct! {
    /// struct fuse_batch_forget_in.
    pub struct BatchForgetIn { count: u32, dummy: u32 }
}

wire_struct! {
    /// struct fuse_getattr_in (7.9).
    pub struct GetattrIn { getattr_flags: u32, dummy: u32, fh: u64 }
}

wire_struct! {
    /// struct fuse_attr_out.
    pub struct AttrOut { attr_valid: u64, attr_valid_nsec: u32, dummy: u32, attr: Attr }
}

wire_struct! {
    /// struct fuse_statx_in (7.39).
    pub struct StatxIn { getattr_flags: u32, reserved: u32, fh: u64, sx_flags: u32, sx_mask: u32 }
}

wire_struct! {
    /// struct fuse_statx_out (7.39).
    pub struct StatxOut { attr_valid: u64, attr_valid_nsec: u32, flags: u32, spare: [u64; 2], stat: Statx }
}

wire_struct! {
    /// struct fuse_mknod_in.
    pub struct MknodIn { mode: u32, rdev: u32, umask: u32, padding: u32 }
}

wire_struct! {
    /// struct fuse_mkdir_in.
    pub struct MkdirIn { mode: u32, umask: u32 }
}

wire_struct! {
    /// struct fuse_rename_in.
    pub struct RenameIn { newdir: u64 }
}

wire_struct! {
    /// struct fuse_rename2_in.
    pub struct Rename2In { newdir: u64, flags: u32, padding: u32 }
}

wire_struct! {
    /// struct fuse_link_in.
    pub struct LinkIn { oldnodeid: u64 }
}

wire_struct! {
    /// struct fuse_setattr_in.
    pub struct SetattrIn {
        valid: u32, padding: u32, fh: u64, size: u64, lock_owner: u64,
        atime: u64, mtime: u64, ctime: u64, atimensec: u32, mtimensec: u32, ctimensec: u32,
        mode: u32, unused4: u32, uid: u32, gid: u32, unused5: u32,
    }
}

wire_struct! {
    /// struct fuse_open_in.
    pub struct OpenIn { flags: u32, open_flags: u32 }
}

wire_struct! {
    /// struct fuse_create_in.
    pub struct CreateIn { flags: u32, mode: u32, umask: u32, open_flags: u32 }
}

wire_struct! {
    /// struct fuse_open_out; backing_id is meaningful with FOPEN_PASSTHROUGH (7.40).
    pub struct OpenOut { fh: u64, open_flags: u32, backing_id: i32 }
}

wire_struct! {
    /// struct fuse_release_in.
    pub struct ReleaseIn { fh: u64, flags: u32, release_flags: u32, lock_owner: u64 }
}

wire_struct! {
    /// struct fuse_flush_in.
    pub struct FlushIn { fh: u64, unused: u32, padding: u32, lock_owner: u64 }
}

wire_struct! {
    /// struct fuse_read_in.
    pub struct ReadIn {
        fh: u64, offset: u64, size: u32, read_flags: u32, lock_owner: u64, flags: u32, padding: u32,
    }
}

wire_struct! {
    /// struct fuse_write_in.
    pub struct WriteIn {
        fh: u64, offset: u64, size: u32, write_flags: u32, lock_owner: u64, flags: u32, padding: u32,
    }
}

wire_struct! {
    /// struct fuse_write_out.
    pub struct WriteOut { size: u32, padding: u32 }
}

wire_struct! {
    /// struct fuse_statfs_out.
    pub struct StatfsOut { st: Kstatfs }
}

wire_struct! {
    /// struct fuse_fsync_in.
    pub struct FsyncIn { fh: u64, fsync_flags: u32, padding: u32 }
}

wire_struct! {
    /// struct fuse_setxattr_in with FUSE_SETXATTR_EXT; 8 bytes without it.
    pub struct SetxattrIn { size: u32, flags: u32, setxattr_flags: u32, padding: u32 }
}

wire_struct! {
    /// struct fuse_getxattr_in.
    pub struct GetxattrIn { size: u32, padding: u32 }
}

wire_struct! {
    /// struct fuse_getxattr_out (size probe of GETXATTR/LISTXATTR).
    pub struct GetxattrOut { size: u32, padding: u32 }
}

wire_struct! {
    /// struct fuse_lk_in.
    pub struct LkIn { fh: u64, owner: u64, lk: FileLock, lk_flags: u32, padding: u32 }
}

wire_struct! {
    /// struct fuse_lk_out.
    pub struct LkOut { lk: FileLock }
}

wire_struct! {
    /// struct fuse_access_in.
    pub struct AccessIn { mask: u32, padding: u32 }
}

wire_struct! {
    /// struct fuse_init_in as of 7.36; older kernels send the first 16 bytes.
    pub struct InitIn { major: u32, minor: u32, max_readahead: u32, flags: u32, flags2: u32, unused: [u32; 11] }
}

wire_struct! {
    /// struct fuse_init_out as of 7.43; see [`compat`] for older sizes.
    pub struct InitOut {
        major: u32, minor: u32, max_readahead: u32, flags: u32,
        max_background: u16, congestion_threshold: u16, max_write: u32, time_gran: u32,
        max_pages: u16, map_alignment: u16, flags2: u32, max_stack_depth: u32,
        request_timeout: u16, unused: [u16; 11],
    }
}

wire_struct! {
    /// struct cuse_init_in.
    pub struct CuseInitIn { major: u32, minor: u32, unused: u32, flags: u32 }
}

wire_struct! {
    /// struct cuse_init_out (followed by the device info strings).
    pub struct CuseInitOut {
        major: u32, minor: u32, unused: u32, flags: u32, max_read: u32, max_write: u32,
        dev_major: u32, dev_minor: u32, spare: [u32; 10],
    }
}

wire_struct! {
    /// struct fuse_interrupt_in.
    pub struct InterruptIn { unique: u64 }
}

wire_struct! {
    /// struct fuse_bmap_in.
    pub struct BmapIn { block: u64, blocksize: u32, padding: u32 }
}

wire_struct! {
    /// struct fuse_bmap_out.
    pub struct BmapOut { block: u64 }
}

wire_struct! {
    /// struct fuse_ioctl_in.
    pub struct IoctlIn { fh: u64, flags: u32, cmd: u32, arg: u64, in_size: u32, out_size: u32 }
}

wire_struct! {
    /// struct fuse_ioctl_iovec.
    pub struct IoctlIovec { base: u64, len: u64 }
}

wire_struct! {
    /// struct fuse_ioctl_out.
    pub struct IoctlOut { result: i32, flags: u32, in_iovs: u32, out_iovs: u32 }
}

wire_struct! {
    /// struct fuse_poll_in.
    pub struct PollIn { fh: u64, kh: u64, flags: u32, events: u32 }
}

wire_struct! {
    /// struct fuse_poll_out.
    pub struct PollOut { revents: u32, padding: u32 }
}

wire_struct! {
    /// struct fuse_notify_poll_wakeup_out.
    pub struct NotifyPollWakeupOut { kh: u64 }
}

wire_struct! {
    /// struct fuse_fallocate_in.
    pub struct FallocateIn { fh: u64, offset: u64, length: u64, mode: u32, padding: u32 }
}

wire_struct! {
    /// struct fuse_in_header; total_extlen counts 8-byte units (7.38, padding before).
    pub struct InHeader {
        len: u32, opcode: u32, unique: u64, nodeid: u64, uid: u32, gid: u32, pid: u32,
        total_extlen: u16, padding: u16,
    }
}

wire_struct! {
    /// struct fuse_out_header; error is 0, a negative errno, or a notify code.
    pub struct OutHeader { len: u32, error: i32, unique: u64 }
}

wire_struct! {
    /// struct fuse_dirent without the name that follows it.
    pub struct Dirent { ino: u64, off: u64, namelen: u32, typ: u32 }
}

wire_struct! {
    /// struct fuse_notify_inval_inode_out.
    pub struct NotifyInvalInodeOut { ino: u64, off: i64, len: i64 }
}

wire_struct! {
    /// struct fuse_notify_inval_entry_out (name and NUL follow).
    pub struct NotifyInvalEntryOut { parent: u64, namelen: u32, flags: u32 }
}

wire_struct! {
    /// struct fuse_notify_delete_out (name and NUL follow).
    pub struct NotifyDeleteOut { parent: u64, child: u64, namelen: u32, padding: u32 }
}

wire_struct! {
    /// struct fuse_notify_store_out (data follows).
    pub struct NotifyStoreOut { nodeid: u64, offset: u64, size: u32, padding: u32 }
}

wire_struct! {
    /// struct fuse_notify_retrieve_out.
    pub struct NotifyRetrieveOut { notify_unique: u64, nodeid: u64, offset: u64, size: u32, padding: u32 }
}

wire_struct! {
    /// struct fuse_notify_retrieve_in: the NOTIFY_REPLY args, shaped like write_in.
    pub struct NotifyRetrieveIn { dummy1: u64, offset: u64, size: u32, dummy2: u32, dummy3: u64, dummy4: u64 }
}

wire_struct! {
    /// struct fuse_notify_prune_out (7.45; count node IDs follow).
    pub struct NotifyPruneOut { count: u32, padding: u32, spare: u64 }
}

wire_struct! {
    /// struct fuse_backing_map (FUSE_DEV_IOC_BACKING_OPEN argument).
    pub struct BackingMap { fd: i32, flags: u32, padding: u64 }
}

wire_struct! {
    /// struct fuse_lseek_in.
    pub struct LseekIn { fh: u64, offset: u64, whence: u32, padding: u32 }
}

wire_struct! {
    /// struct fuse_lseek_out.
    pub struct LseekOut { offset: u64 }
}

wire_struct! {
    /// struct fuse_copy_file_range_in (both COPY_FILE_RANGE opcodes).
    pub struct CopyFileRangeIn {
        fh_in: u64, off_in: u64, nodeid_out: u64, fh_out: u64, off_out: u64, len: u64, flags: u64,
    }
}

wire_struct! {
    /// struct fuse_copy_file_range_out (COPY_FILE_RANGE_64's reply, 7.45).
    pub struct CopyFileRangeOut { bytes_copied: u64 }
}

wire_struct! {
    /// struct fuse_setupmapping_in (virtio-fs DAX).
    pub struct SetupmappingIn { fh: u64, foffset: u64, len: u64, flags: u64, moffset: u64 }
}

wire_struct! {
    /// struct fuse_removemapping_in: 4 bytes, records follow unaligned.
    pub struct RemovemappingIn { count: u32 }
}

wire_struct! {
    /// struct fuse_removemapping_one.
    pub struct RemovemappingOne { moffset: u64, len: u64 }
}

wire_struct! {
    /// struct fuse_syncfs_in.
    pub struct SyncfsIn { padding: u64 }
}

wire_struct! {
    /// struct fuse_secctx_header (extension types 0..=31; `nr_secctx` sits where `type` does).
    pub struct SecctxHeader { size: u32, nr_secctx: u32 }
}

wire_struct! {
    /// struct fuse_secctx (the context name and label follow).
    pub struct Secctx { size: u32, padding: u32 }
}

wire_struct! {
    /// struct fuse_ext_header; size includes the header and is 8-aligned.
    pub struct ExtHeader { size: u32, typ: u32 }
}

/// offsetof(struct fuse_dirent, name).
pub const DIRENT_NAME_OFFSET: usize = 24;
/// offsetof(struct fuse_direntplus, dirent.name).
pub const DIRENTPLUS_NAME_OFFSET: usize = 152;

#[cfg(test)]
mod tests {
    use super::super::wire::{Reader, Wire, Writer};
    use super::*;

    /// sizeof() of each struct, as computed from include/uapi/linux/fuse.h at 7.45.
    #[test]
    fn sizes_match_the_kernel_header() {
        let sizes: &[(&str, usize, usize)] = &[
            ("fuse_attr", Attr::SIZE, 88),
            ("fuse_sx_time", SxTime::SIZE, 16),
            ("fuse_statx", Statx::SIZE, 256),
            ("fuse_kstatfs", Kstatfs::SIZE, 80),
            ("fuse_file_lock", FileLock::SIZE, 24),
            ("fuse_entry_out", EntryOut::SIZE, 128),
            ("fuse_forget_in", ForgetIn::SIZE, 8),
            ("fuse_forget_one", ForgetOne::SIZE, 16),
            ("fuse_batch_forget_in", BatchForgetIn::SIZE, 8),
            ("fuse_getattr_in", GetattrIn::SIZE, 16),
            ("fuse_attr_out", AttrOut::SIZE, 104),
            ("fuse_statx_in", StatxIn::SIZE, 24),
            ("fuse_statx_out", StatxOut::SIZE, 288),
            ("fuse_mknod_in", MknodIn::SIZE, 16),
            ("fuse_mkdir_in", MkdirIn::SIZE, 8),
            ("fuse_rename_in", RenameIn::SIZE, 8),
            ("fuse_rename2_in", Rename2In::SIZE, 16),
            ("fuse_link_in", LinkIn::SIZE, 8),
            ("fuse_setattr_in", SetattrIn::SIZE, 88),
            ("fuse_open_in", OpenIn::SIZE, 8),
            ("fuse_create_in", CreateIn::SIZE, 16),
            ("fuse_open_out", OpenOut::SIZE, 16),
            ("fuse_release_in", ReleaseIn::SIZE, 24),
            ("fuse_flush_in", FlushIn::SIZE, 24),
            ("fuse_read_in", ReadIn::SIZE, 40),
            ("fuse_write_in", WriteIn::SIZE, 40),
            ("fuse_write_out", WriteOut::SIZE, 8),
            ("fuse_statfs_out", StatfsOut::SIZE, 80),
            ("fuse_fsync_in", FsyncIn::SIZE, 16),
            ("fuse_setxattr_in", SetxattrIn::SIZE, 16),
            ("fuse_getxattr_in", GetxattrIn::SIZE, 8),
            ("fuse_getxattr_out", GetxattrOut::SIZE, 8),
            ("fuse_lk_in", LkIn::SIZE, 48),
            ("fuse_lk_out", LkOut::SIZE, 24),
            ("fuse_access_in", AccessIn::SIZE, 8),
            ("fuse_init_in", InitIn::SIZE, 64),
            ("fuse_init_out", InitOut::SIZE, 64),
            ("cuse_init_in", CuseInitIn::SIZE, 16),
            ("cuse_init_out", CuseInitOut::SIZE, 72),
            ("fuse_interrupt_in", InterruptIn::SIZE, 8),
            ("fuse_bmap_in", BmapIn::SIZE, 16),
            ("fuse_bmap_out", BmapOut::SIZE, 8),
            ("fuse_ioctl_in", IoctlIn::SIZE, 32),
            ("fuse_ioctl_iovec", IoctlIovec::SIZE, 16),
            ("fuse_ioctl_out", IoctlOut::SIZE, 16),
            ("fuse_poll_in", PollIn::SIZE, 24),
            ("fuse_poll_out", PollOut::SIZE, 8),
            ("fuse_notify_poll_wakeup_out", NotifyPollWakeupOut::SIZE, 8),
            ("fuse_fallocate_in", FallocateIn::SIZE, 32),
            ("fuse_in_header", InHeader::SIZE, 40),
            ("fuse_out_header", OutHeader::SIZE, 16),
            (
                "fuse_dirent (name offset)",
                Dirent::SIZE,
                DIRENT_NAME_OFFSET,
            ),
            (
                "fuse_direntplus (name offset)",
                EntryOut::SIZE + Dirent::SIZE,
                DIRENTPLUS_NAME_OFFSET,
            ),
            ("fuse_notify_inval_inode_out", NotifyInvalInodeOut::SIZE, 24),
            ("fuse_notify_inval_entry_out", NotifyInvalEntryOut::SIZE, 16),
            ("fuse_notify_delete_out", NotifyDeleteOut::SIZE, 24),
            ("fuse_notify_store_out", NotifyStoreOut::SIZE, 24),
            ("fuse_notify_retrieve_out", NotifyRetrieveOut::SIZE, 32),
            (
                "fuse_notify_retrieve_in",
                NotifyRetrieveIn::SIZE,
                WriteIn::SIZE,
            ),
            ("fuse_notify_prune_out", NotifyPruneOut::SIZE, 16),
            ("fuse_backing_map", BackingMap::SIZE, 16),
            ("fuse_lseek_in", LseekIn::SIZE, 24),
            ("fuse_lseek_out", LseekOut::SIZE, 8),
            ("fuse_copy_file_range_in", CopyFileRangeIn::SIZE, 56),
            ("fuse_copy_file_range_out", CopyFileRangeOut::SIZE, 8),
            ("fuse_setupmapping_in", SetupmappingIn::SIZE, 40),
            ("fuse_removemapping_in", RemovemappingIn::SIZE, 4),
            ("fuse_removemapping_one", RemovemappingOne::SIZE, 16),
            ("fuse_syncfs_in", SyncfsIn::SIZE, 8),
            ("fuse_secctx_header", SecctxHeader::SIZE, 8),
            ("fuse_secctx", Secctx::SIZE, 8),
            ("fuse_ext_header", ExtHeader::SIZE, 8),
        ];
        for &(name, ours, header) in sizes {
            assert_eq!(ours, header, "{name}");
        }
        // Compat sizes are prefixes of today's structs.
        assert_eq!(compat::ENTRY_OUT_SIZE, EntryOut::SIZE - 8);
        assert_eq!(compat::ATTR_OUT_SIZE, AttrOut::SIZE - 8);
        assert_eq!(compat::STATFS_SIZE, 48);
    }

    #[test]
    fn entry_out_golden_bytes() {
        let e = EntryOut {
            nodeid: 0x0102_0304_0506_0708,
            generation: 9,
            entry_valid: 10,
            attr_valid: 11,
            entry_valid_nsec: 12,
            attr_valid_nsec: 13,
            attr: Attr {
                ino: 14,
                mode: 0o100644,
                blksize: 4096,
                flags: 2,
                ..Attr::default()
            },
        };
        let mut buf = [0xffu8; 128];
        let mut w = Writer::new(&mut buf);
        assert!(e.encode(&mut w).is_ok());
        assert_eq!(w.position(), 128);
        assert_eq!(buf[..8], [8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(buf[8], 9);
        assert_eq!(buf[32..40], [12, 0, 0, 0, 13, 0, 0, 0]);
        // attr starts at 40: ino, then mode at 40 + 60, blksize at 40 + 80, flags at 40 + 84.
        assert_eq!(buf[40], 14);
        assert_eq!(buf[100..104], 0o100644u32.to_le_bytes());
        assert_eq!(buf[120..124], 4096u32.to_le_bytes());
        assert_eq!(buf[124..128], 2u32.to_le_bytes());
        assert_eq!(EntryOut::decode(&mut Reader::new(&buf)), Ok(e));
    }

    #[test]
    fn init_out_golden_bytes() {
        let o = InitOut {
            major: 7,
            minor: 45,
            max_readahead: 0x1000,
            flags: 0xa,
            max_background: 0x0b0c,
            congestion_threshold: 0x0d0e,
            max_write: 0x10_0000,
            time_gran: 1,
            max_pages: 256,
            map_alignment: 12,
            flags2: 0x20,
            max_stack_depth: 1,
            request_timeout: 30,
            unused: [0; 11],
        };
        let mut buf = [0u8; 64];
        assert!(o.encode(&mut Writer::new(&mut buf)).is_ok());
        let expect_prefix: [u8; 42] = [
            7, 0, 0, 0, 45, 0, 0, 0, 0, 0x10, 0, 0, 0xa, 0, 0, 0, 0x0c, 0x0b, 0x0e, 0x0d, 0, 0,
            0x10, 0, 1, 0, 0, 0, 0, 1, 12, 0, 0x20, 0, 0, 0, 1, 0, 0, 0, 30, 0,
        ];
        assert_eq!(buf[..42], expect_prefix);
        assert!(buf[42..].iter().all(|&b| b == 0));
    }

    #[test]
    fn init_flag_words() {
        assert_eq!(
            init::split(init::PASSTHROUGH | init::INIT_EXT),
            (1 << 30, 1 << 5)
        );
        assert_eq!(
            init::join(1 << 30, 1 << 5),
            init::PASSTHROUGH | init::INIT_EXT
        );
        // flags2 is ignored unless INIT_EXT says it is there.
        assert_eq!(init::join(1, 1 << 5), init::ASYNC_READ);
        assert_eq!(opcode::ALL.len(), 52);
    }
}
