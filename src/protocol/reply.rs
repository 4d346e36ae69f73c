//! Encoding replies and notifications into caller-owned buffers.
//!
//! Every function writes one whole message (out-header included) at the start of
//! `buf` and returns its length, or an [`EncodeError`] if `buf` is too small. The
//! buffers are meant to be reused per worker: nothing here allocates.

use super::abi::{
    compat, notify, AttrOut, BmapOut, CopyFileRangeOut, Dirent, EntryOut, GetxattrOut, InitOut,
    IoctlOut, LkOut, LseekOut, NotifyDeleteOut, NotifyInvalEntryOut, NotifyInvalInodeOut,
    NotifyPollWakeupOut, NotifyPruneOut, NotifyRetrieveOut, NotifyStoreOut, OpenOut, OutHeader,
    PollOut, StatfsOut, StatxOut, WriteOut, DIRENTPLUS_NAME_OFFSET, DIRENT_NAME_OFFSET,
};
use super::wire::{align8, EncodeError, Wire, Writer};

/// Writes an out-header, lets `body` write the rest, then patches `len`.
pub fn message(
    buf: &mut [u8],
    unique: u64,
    error: i32,
    body: impl FnOnce(&mut Writer<'_>) -> Result<(), EncodeError>,
) -> Result<usize, EncodeError> {
    let mut w = Writer::new(buf);
    OutHeader {
        len: 0,
        error,
        unique,
    }
    .encode(&mut w)?;
    body(&mut w)?;
    let n = w.position();
    let len = u32::try_from(n).map_err(|_| EncodeError { need: n, have: n })?;
    w.patch_u32(0, len)?;
    Ok(n)
}

/// An error reply; `errno` is the positive error number (sent negated).
pub fn error(buf: &mut [u8], unique: u64, errno: i32) -> Result<usize, EncodeError> {
    message(buf, unique, errno.saturating_abs().saturating_neg(), |_| {
        Ok(())
    })
}

/// A success reply with no body (setxattr, unlink, release...).
pub fn empty(buf: &mut [u8], unique: u64) -> Result<usize, EncodeError> {
    message(buf, unique, 0, |_| Ok(()))
}

/// A success reply whose body is one ABI struct.
pub fn with<T: Wire>(buf: &mut [u8], unique: u64, body: &T) -> Result<usize, EncodeError> {
    message(buf, unique, 0, |w| body.encode(w))
}

/// A success reply whose body is raw bytes (read, readlink, xattr values and lists).
pub fn data(buf: &mut [u8], unique: u64, bytes: &[u8]) -> Result<usize, EncodeError> {
    message(buf, unique, 0, |w| w.bytes(bytes))
}

/// Only the out-header of a success reply carrying `payload_len` bytes the caller
/// places (or sends as a separate iovec) right after it; returns the header size.
pub fn header_for_payload(
    buf: &mut [u8],
    unique: u64,
    payload_len: usize,
) -> Result<usize, EncodeError> {
    let total = payload_len.saturating_add(OutHeader::SIZE);
    let len = u32::try_from(total).map_err(|_| EncodeError {
        need: total,
        have: buf.len(),
    })?;
    let mut w = Writer::new(buf);
    OutHeader {
        len,
        error: 0,
        unique,
    }
    .encode(&mut w)?;
    Ok(w.position())
}

/// Writes the first `n` bytes of `body`'s encoding (the compat layouts are prefixes).
fn prefix<T: Wire>(w: &mut Writer<'_>, body: &T, n: usize) -> Result<(), EncodeError> {
    let mut tmp = [0u8; 512];
    let mut t = Writer::new(&mut tmp);
    body.encode(&mut t)?;
    let end = n.min(t.position());
    w.bytes(tmp.get(..end).unwrap_or_default())
}

/// entry_out, 120 bytes before 7.9 (lookup, mknod, mkdir, symlink, link).
pub fn entry(buf: &mut [u8], unique: u64, minor: u32, e: &EntryOut) -> Result<usize, EncodeError> {
    message(buf, unique, 0, |w| encode_entry(w, minor, e))
}

fn encode_entry(w: &mut Writer<'_>, minor: u32, e: &EntryOut) -> Result<(), EncodeError> {
    if minor < 9 {
        prefix(w, e, compat::ENTRY_OUT_SIZE)
    } else {
        e.encode(w)
    }
}

/// attr_out, 96 bytes before 7.9 (getattr, setattr).
pub fn attr(buf: &mut [u8], unique: u64, minor: u32, a: &AttrOut) -> Result<usize, EncodeError> {
    message(buf, unique, 0, |w| {
        if minor < 9 {
            prefix(w, a, compat::ATTR_OUT_SIZE)
        } else {
            a.encode(w)
        }
    })
}

/// open_out (open, opendir); set FOPEN_PASSTHROUGH and backing_id for passthrough.
pub fn open(buf: &mut [u8], unique: u64, o: &OpenOut) -> Result<usize, EncodeError> {
    with(buf, unique, o)
}

/// entry_out then open_out (create, tmpfile).
pub fn create(
    buf: &mut [u8],
    unique: u64,
    minor: u32,
    e: &EntryOut,
    o: &OpenOut,
) -> Result<usize, EncodeError> {
    message(buf, unique, 0, |w| {
        encode_entry(w, minor, e)?;
        o.encode(w)
    })
}

/// The size init_out had at `minor`: 8 before 7.5, 24 before 7.23, 64 since.
pub fn init_out_size(minor: u32) -> usize {
    match minor {
        0..=4 => compat::INIT_OUT_SIZE,
        5..=22 => compat::INIT_22_OUT_SIZE,
        _ => InitOut::SIZE,
    }
}

/// init_out, cut to the size the kernel's minor expects (`o.minor` is the one we answer).
pub fn init(
    buf: &mut [u8],
    unique: u64,
    kernel_minor: u32,
    o: &InitOut,
) -> Result<usize, EncodeError> {
    message(buf, unique, 0, |w| {
        prefix(w, o, init_out_size(kernel_minor.min(o.minor)))
    })
}

/// write_out (write; copy_file_range before COPY_FILE_RANGE_64).
pub fn write(buf: &mut [u8], unique: u64, size: u32) -> Result<usize, EncodeError> {
    with(buf, unique, &WriteOut { size, padding: 0 })
}

/// copy_file_range_out (COPY_FILE_RANGE_64).
pub fn copy_file_range_64(
    buf: &mut [u8],
    unique: u64,
    bytes_copied: u64,
) -> Result<usize, EncodeError> {
    with(buf, unique, &CopyFileRangeOut { bytes_copied })
}

/// statfs_out, 48 bytes before 7.4.
pub fn statfs(
    buf: &mut [u8],
    unique: u64,
    minor: u32,
    s: &StatfsOut,
) -> Result<usize, EncodeError> {
    message(buf, unique, 0, |w| {
        if minor < 4 {
            prefix(w, s, compat::STATFS_SIZE)
        } else {
            s.encode(w)
        }
    })
}

/// getxattr_out: the size probe answer of getxattr/listxattr with size 0.
pub fn xattr_size(buf: &mut [u8], unique: u64, size: u32) -> Result<usize, EncodeError> {
    with(buf, unique, &GetxattrOut { size, padding: 0 })
}

/// lseek_out.
pub fn lseek(buf: &mut [u8], unique: u64, offset: u64) -> Result<usize, EncodeError> {
    with(buf, unique, &LseekOut { offset })
}

/// lk_out (getlk).
pub fn lk(buf: &mut [u8], unique: u64, l: &LkOut) -> Result<usize, EncodeError> {
    with(buf, unique, l)
}

/// bmap_out.
pub fn bmap(buf: &mut [u8], unique: u64, block: u64) -> Result<usize, EncodeError> {
    with(buf, unique, &BmapOut { block })
}

/// poll_out.
pub fn poll(buf: &mut [u8], unique: u64, revents: u32) -> Result<usize, EncodeError> {
    with(
        buf,
        unique,
        &PollOut {
            revents,
            padding: 0,
        },
    )
}

/// ioctl_out followed by the output data (or iovecs on a retry).
pub fn ioctl(buf: &mut [u8], unique: u64, o: &IoctlOut, out: &[u8]) -> Result<usize, EncodeError> {
    message(buf, unique, 0, |w| {
        o.encode(w)?;
        w.bytes(out)
    })
}

/// statx_out.
pub fn statx(buf: &mut [u8], unique: u64, s: &StatxOut) -> Result<usize, EncodeError> {
    with(buf, unique, s)
}

/// Bytes one READDIR entry named `namelen` bytes takes, padding included.
pub const fn dirent_size(namelen: usize) -> usize {
    align8(DIRENT_NAME_OFFSET.saturating_add(namelen))
}

/// Bytes one READDIRPLUS entry named `namelen` bytes takes, padding included.
pub const fn direntplus_size(namelen: usize) -> usize {
    align8(DIRENTPLUS_NAME_OFFSET.saturating_add(namelen))
}

fn name_len(name: &[u8], need: usize, have: usize) -> Result<u32, EncodeError> {
    u32::try_from(name.len()).map_err(|_| EncodeError { need, have })
}

/// Packs one fuse_dirent at the start of `buf`; returns its size. Callers stop
/// (without error to the kernel) once this fails for lack of room.
pub fn push_dirent(
    buf: &mut [u8],
    ino: u64,
    off: u64,
    typ: u32,
    name: &[u8],
) -> Result<usize, EncodeError> {
    let need = dirent_size(name.len());
    let have = buf.len();
    if need > have {
        return Err(EncodeError { need, have });
    }
    let namelen = name_len(name, need, have)?;
    let mut w = Writer::new(buf);
    Dirent {
        ino,
        off,
        namelen,
        typ,
    }
    .encode(&mut w)?;
    w.bytes(name)?;
    w.align8()?;
    Ok(w.position())
}

/// Packs one fuse_direntplus (entry_out, then the dirent for `ino`) at the start of
/// `buf`. `ino` is the dirent's own: "." and ".." come without an entry (node id 0).
pub fn push_direntplus(
    buf: &mut [u8],
    entry: &EntryOut,
    ino: u64,
    off: u64,
    typ: u32,
    name: &[u8],
) -> Result<usize, EncodeError> {
    let need = direntplus_size(name.len());
    let have = buf.len();
    if need > have {
        return Err(EncodeError { need, have });
    }
    let namelen = name_len(name, need, have)?;
    let mut w = Writer::new(buf);
    entry.encode(&mut w)?;
    Dirent {
        ino,
        off,
        namelen,
        typ,
    }
    .encode(&mut w)?;
    w.bytes(name)?;
    w.align8()?;
    Ok(w.position())
}

/// A notification: unique 0, the code in `error`.
fn notification(
    buf: &mut [u8],
    code: i32,
    body: impl FnOnce(&mut Writer<'_>) -> Result<(), EncodeError>,
) -> Result<usize, EncodeError> {
    message(buf, 0, code, body)
}

/// NOTIFY_POLL: wake up the poller registered as `kh`.
pub fn notify_poll(buf: &mut [u8], kh: u64) -> Result<usize, EncodeError> {
    notification(buf, notify::POLL, |w| NotifyPollWakeupOut { kh }.encode(w))
}

/// NOTIFY_INVAL_INODE: drop cached attributes and data in [off, off+len) (len <= 0: to the end).
pub fn notify_inval_inode(
    buf: &mut [u8],
    ino: u64,
    off: i64,
    len: i64,
) -> Result<usize, EncodeError> {
    notification(buf, notify::INVAL_INODE, |w| {
        NotifyInvalInodeOut { ino, off, len }.encode(w)
    })
}

/// NOTIFY_INVAL_ENTRY: drop (or with EXPIRE_ONLY expire) the dentry `name` in `parent`.
pub fn notify_inval_entry(
    buf: &mut [u8],
    parent: u64,
    name: &[u8],
    flags: u32,
) -> Result<usize, EncodeError> {
    let namelen = name_len(name, name.len(), buf.len())?;
    notification(buf, notify::INVAL_ENTRY, |w| {
        NotifyInvalEntryOut {
            parent,
            namelen,
            flags,
        }
        .encode(w)?;
        w.bytes(name)?;
        w.bytes(&[0])
    })
}

/// NOTIFY_DELETE: `child` named `name` in `parent` is gone.
pub fn notify_delete(
    buf: &mut [u8],
    parent: u64,
    child: u64,
    name: &[u8],
) -> Result<usize, EncodeError> {
    let namelen = name_len(name, name.len(), buf.len())?;
    notification(buf, notify::DELETE, |w| {
        NotifyDeleteOut {
            parent,
            child,
            namelen,
            padding: 0,
        }
        .encode(w)?;
        w.bytes(name)?;
        w.bytes(&[0])
    })
}

/// NOTIFY_STORE: put `data` into the page cache of `nodeid` at `offset`.
pub fn notify_store(
    buf: &mut [u8],
    nodeid: u64,
    offset: u64,
    data: &[u8],
) -> Result<usize, EncodeError> {
    let size = u32::try_from(data.len()).map_err(|_| EncodeError {
        need: data.len(),
        have: buf.len(),
    })?;
    notification(buf, notify::STORE, |w| {
        NotifyStoreOut {
            nodeid,
            offset,
            size,
            padding: 0,
        }
        .encode(w)?;
        w.bytes(data)
    })
}

/// NOTIFY_RETRIEVE: ask for `size` cached bytes; they come back as NOTIFY_REPLY `notify_unique`.
pub fn notify_retrieve(
    buf: &mut [u8],
    notify_unique: u64,
    nodeid: u64,
    offset: u64,
    size: u32,
) -> Result<usize, EncodeError> {
    notification(buf, notify::RETRIEVE, |w| {
        NotifyRetrieveOut {
            notify_unique,
            nodeid,
            offset,
            size,
            padding: 0,
        }
        .encode(w)
    })
}

/// NOTIFY_RESEND (7.40): resend every request still waiting for a reply.
pub fn notify_resend(buf: &mut [u8]) -> Result<usize, EncodeError> {
    notification(buf, notify::RESEND, |_| Ok(()))
}

/// NOTIFY_INC_EPOCH (7.44): invalidate every dentry looked up before now.
pub fn notify_inc_epoch(buf: &mut [u8]) -> Result<usize, EncodeError> {
    notification(buf, notify::INC_EPOCH, |_| Ok(()))
}

/// NOTIFY_PRUNE (7.45): let the kernel forget these unused inodes.
pub fn notify_prune(buf: &mut [u8], nodeids: &[u64]) -> Result<usize, EncodeError> {
    let count = u32::try_from(nodeids.len()).map_err(|_| EncodeError {
        need: usize::MAX,
        have: buf.len(),
    })?;
    notification(buf, notify::PRUNE, |w| {
        NotifyPruneOut {
            count,
            padding: 0,
            spare: 0,
        }
        .encode(w)?;
        nodeids.iter().try_for_each(|&n| w.u64(n))
    })
}
