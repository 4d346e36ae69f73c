//! Decoding one request message into a header, an [`Operation`] and its extensions.
//!
//! Everything borrows from the input buffer: names are `&CStr`, payloads `&[u8]`,
//! record lists are [`Records`] views decoded on iteration. Nothing allocates.

use std::ffi::CStr;
use std::marker::PhantomData;

use super::abi::{self, compat, ext, init, opcode as op};
use super::abi::{
    AccessIn, BatchForgetIn, BmapIn, CopyFileRangeIn, CreateIn, CuseInitIn, ExtHeader, FallocateIn,
    FlushIn, ForgetIn, ForgetOne, FsyncIn, GetattrIn, GetxattrIn, InHeader, InitIn, InterruptIn,
    IoctlIn, LinkIn, LkIn, LseekIn, MkdirIn, MknodIn, NotifyRetrieveIn, OpenIn, PollIn, ReadIn,
    ReleaseIn, RemovemappingIn, RemovemappingOne, Rename2In, RenameIn, SetattrIn, SetupmappingIn,
    SetxattrIn, StatxIn, SyncfsIn, WriteIn,
};
use super::wire::{DecodeError, Reader, Wire};

/// What the session negotiated that changes request layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The minor both sides agreed on in INIT.
    pub minor: u32,
    /// The INIT flags the server accepted (both words joined, see [`init::join`]).
    pub flags: u64,
}

impl Negotiated {
    /// A session that agreed on `minor` and no layout-changing flags.
    pub const fn minor(minor: u32) -> Self {
        Self { minor, flags: 0 }
    }
}

/// A fixed-size record list borrowed from the message (forgets, DAX ranges).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Records<'a, T> {
    raw: &'a [u8],
    _t: PhantomData<T>,
}

impl<'a, T: Wire> Records<'a, T> {
    /// Takes `count` records of `T::SIZE` bytes from `r`.
    fn take(r: &mut Reader<'a>, count: u32) -> Result<Self, DecodeError> {
        let n = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(T::SIZE))
            .filter(|&n| n <= r.remaining())
            .ok_or(DecodeError::CountTooLarge { count })?;
        Ok(Self {
            raw: r.bytes(n)?,
            _t: PhantomData,
        })
    }

    /// A view over `raw`, which should hold whole records (a trailing partial one is skipped).
    pub fn from_bytes(raw: &'a [u8]) -> Self {
        Self {
            raw,
            _t: PhantomData,
        }
    }

    /// How many records there are.
    pub fn len(&self) -> usize {
        self.raw.len().checked_div(T::SIZE).unwrap_or(0)
    }

    /// True when the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The records' bytes, as they came.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// Decodes the records one by one.
    pub fn iter(&self) -> impl Iterator<Item = T> + 'a {
        // chunks_exact yields exactly T::SIZE bytes, so decode cannot fail; filter_map avoids unwrap.
        self.raw
            .chunks_exact(T::SIZE.max(1))
            .filter_map(|c| T::decode(&mut Reader::new(c)).ok())
    }
}

/// The supplementary groups of the caller (FUSE_EXT_GROUPS, with CREATE_SUPP_GROUP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuppGroups<'a> {
    raw: &'a [u8],
}

impl<'a> SuppGroups<'a> {
    /// The number of groups.
    pub fn len(&self) -> usize {
        self.raw.len() / 4
    }

    /// True when the caller has no supplementary groups listed.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The group IDs' bytes (nr_groups little-endian u32s).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// The group IDs.
    pub fn iter(&self) -> impl Iterator<Item = u32> + 'a {
        self.raw
            .chunks_exact(4)
            .filter_map(|c| <[u8; 4]>::try_from(c).ok().map(u32::from_le_bytes))
    }
}

/// One entry of the extension area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extension<'a> {
    /// Security contexts (types 0..=31 are `nr_secctx`); the fuse_secctx records, undecoded.
    SecurityContext { nr_secctx: u32, data: &'a [u8] },
    /// The caller's supplementary groups.
    Groups(SuppGroups<'a>),
    /// A type this module does not know; its payload after the header.
    Unknown { typ: u32, data: &'a [u8] },
}

/// The extension area after the args (7.38+: `total_extlen * 8` bytes), already validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Extensions<'a> {
    raw: &'a [u8],
}

impl<'a> Extensions<'a> {
    /// Checks that `raw` is a sequence of well-formed extension headers.
    fn validate(raw: &'a [u8]) -> Result<Self, DecodeError> {
        let exts = Self { raw };
        let mut it = ExtIter {
            rest: raw,
            offset: 0,
        };
        while it.next_checked()?.is_some() {}
        Ok(exts)
    }

    /// The raw area (empty when the request has none).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// The extensions in order.
    pub fn iter(&self) -> impl Iterator<Item = Extension<'a>> + 'a {
        let mut it = ExtIter {
            rest: self.raw,
            offset: 0,
        };
        std::iter::from_fn(move || it.next_checked().ok().flatten())
    }

    /// The supplementary groups, if the kernel sent them.
    pub fn groups(&self) -> Option<SuppGroups<'a>> {
        self.iter().find_map(|e| match e {
            Extension::Groups(g) => Some(g),
            _ => None,
        })
    }

    /// The security contexts, if the kernel sent them.
    pub fn security_context(&self) -> Option<(u32, &'a [u8])> {
        self.iter().find_map(|e| match e {
            Extension::SecurityContext { nr_secctx, data } => Some((nr_secctx, data)),
            _ => None,
        })
    }
}

/// Walks extension headers, reporting the first malformed one.
struct ExtIter<'a> {
    rest: &'a [u8],
    offset: usize,
}

impl<'a> ExtIter<'a> {
    fn next_checked(&mut self) -> Result<Option<Extension<'a>>, DecodeError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let bad = DecodeError::BadExtension {
            offset: self.offset,
        };
        let mut r = Reader::new(self.rest);
        let h = ExtHeader::decode(&mut r).map_err(|_| bad)?;
        let size = usize::try_from(h.size).map_err(|_| bad)?;
        // The kernel pads every extension to 8 bytes and counts its header in size.
        if size < ExtHeader::SIZE || size % 8 != 0 || size > self.rest.len() {
            return Err(bad);
        }
        let (this, rest) = self.rest.split_at(size);
        let data = this.get(ExtHeader::SIZE..).ok_or(bad)?;
        self.rest = rest;
        self.offset = self.offset.saturating_add(size);
        let e = if h.typ <= ext::MAX_NR_SECCTX {
            Extension::SecurityContext {
                nr_secctx: h.typ,
                data,
            }
        } else if h.typ == ext::GROUPS {
            let mut r = Reader::new(data);
            let nr = r.u32().map_err(|_| bad)?;
            let n = usize::try_from(nr)
                .ok()
                .and_then(|n| n.checked_mul(4))
                .ok_or(bad)?;
            Extension::Groups(SuppGroups {
                raw: r.bytes(n).map_err(|_| bad)?,
            })
        } else {
            Extension::Unknown { typ: h.typ, data }
        };
        Ok(Some(e))
    }
}

/// A request's arguments, one variant per opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation<'a> {
    Lookup {
        name: &'a CStr,
    },
    Forget(ForgetIn),
    Getattr(GetattrIn),
    Setattr(SetattrIn),
    Readlink,
    /// The new entry's name, then the link target.
    Symlink {
        name: &'a CStr,
        target: &'a CStr,
    },
    /// umask is 0 before 7.12.
    Mknod {
        arg: MknodIn,
        name: &'a CStr,
    },
    Mkdir {
        arg: MkdirIn,
        name: &'a CStr,
    },
    Unlink {
        name: &'a CStr,
    },
    Rmdir {
        name: &'a CStr,
    },
    Rename {
        arg: RenameIn,
        name: &'a CStr,
        newname: &'a CStr,
    },
    /// Links `arg.oldnodeid` into the header's node as `name`.
    Link {
        arg: LinkIn,
        name: &'a CStr,
    },
    Open(OpenIn),
    Read(ReadIn),
    /// `data` is exactly `arg.size` bytes.
    Write {
        arg: WriteIn,
        data: &'a [u8],
    },
    Statfs,
    Release(ReleaseIn),
    Fsync(FsyncIn),
    /// Without SETXATTR_EXT only `size` and `flags` were sent; `value` is `arg.size` bytes.
    Setxattr {
        arg: SetxattrIn,
        name: &'a CStr,
        value: &'a [u8],
    },
    Getxattr {
        arg: GetxattrIn,
        name: &'a CStr,
    },
    Listxattr(GetxattrIn),
    Removexattr {
        name: &'a CStr,
    },
    Flush(FlushIn),
    /// Fields a kernel older than 7.36 did not send are 0.
    Init(InitIn),
    Opendir(OpenIn),
    Readdir(ReadIn),
    Releasedir(ReleaseIn),
    Fsyncdir(FsyncIn),
    Getlk(LkIn),
    Setlk(LkIn),
    Setlkw(LkIn),
    Access(AccessIn),
    /// umask and open_flags are 0 before 7.12.
    Create {
        arg: CreateIn,
        name: &'a CStr,
    },
    Interrupt(InterruptIn),
    Bmap(BmapIn),
    Destroy,
    /// `data` is the `arg.in_size` input bytes.
    Ioctl {
        arg: IoctlIn,
        data: &'a [u8],
    },
    Poll(PollIn),
    /// The data answering a RETRIEVE notification; the header's `unique` is its notify_unique.
    NotifyReply {
        arg: NotifyRetrieveIn,
        data: &'a [u8],
    },
    BatchForget(Records<'a, ForgetOne>),
    Fallocate(FallocateIn),
    Readdirplus(ReadIn),
    Rename2 {
        arg: Rename2In,
        name: &'a CStr,
        newname: &'a CStr,
    },
    Lseek(LseekIn),
    CopyFileRange(CopyFileRangeIn),
    Setupmapping(SetupmappingIn),
    Removemapping(Records<'a, RemovemappingOne>),
    Syncfs(SyncfsIn),
    /// Same args as CREATE.
    Tmpfile {
        arg: CreateIn,
        name: &'a CStr,
    },
    Statx(StatxIn),
    /// Replied with copy_file_range_out (64-bit count) instead of write_out.
    CopyFileRange64(CopyFileRangeIn),
    /// CUSE_INIT; the info strings come in the reply, not here.
    CuseInit(CuseInitIn),
    /// An opcode this module does not know: answer ENOSYS.
    Unknown(u32),
}

/// One decoded request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    pub header: InHeader,
    pub op: Operation<'a>,
    pub ext: Extensions<'a>,
}

/// Decodes a request for a session that negotiated `proto_minor` and no
/// layout-changing INIT flags; see [`parse_with`].
pub fn parse(buf: &[u8], proto_minor: u32) -> Result<Request<'_>, DecodeError> {
    parse_with(buf, Negotiated::minor(proto_minor))
}

/// Decodes one whole request message: `buf` must be exactly the header's `len`.
///
/// INIT and CUSE_INIT decode whatever `neg` says (the minor is not known yet);
/// other opcodes need `neg.minor >= 9`. Trailing bytes after the args an opcode
/// uses are ignored (7.36-7.37 kernels append security contexts there); bytes
/// missing, a missing NUL or a malformed extension area are errors.
pub fn parse_with(buf: &[u8], neg: Negotiated) -> Result<Request<'_>, DecodeError> {
    let mut r = Reader::new(buf);
    let header =
        InHeader::decode(&mut r).map_err(|_| DecodeError::ShortHeader { have: buf.len() })?;
    if usize::try_from(header.len).ok() != Some(buf.len()) {
        return Err(DecodeError::LengthMismatch {
            header: header.len,
            actual: buf.len(),
        });
    }
    let code = header.opcode;
    if code == op::INIT_BSWAP_RESERVED || code == op::CUSE_INIT_BSWAP_RESERVED {
        return Err(DecodeError::WrongEndian);
    }
    let is_init = code == op::INIT || code == op::CUSE_INIT;
    if !is_init && neg.minor < abi::MIN_MINOR {
        return Err(DecodeError::UnsupportedMinor(neg.minor));
    }
    let body = r.rest();
    // Before 7.38 the field was padding; the area sits at the very end of the message.
    let extlen = if neg.minor >= 38 && !is_init {
        usize::from(header.total_extlen) * 8
    } else {
        0
    };
    let split = body
        .len()
        .checked_sub(extlen)
        .ok_or(DecodeError::ExtensionTooLong {
            extlen,
            available: body.len(),
        })?;
    let (args, ext_raw) = body.split_at(split);
    let ext = Extensions::validate(ext_raw)?;
    let op = decode_op(code, &mut Reader::new(args), neg)?;
    Ok(Request { header, op, ext })
}

/// Decodes the args of one opcode.
fn decode_op<'a>(
    code: u32,
    r: &mut Reader<'a>,
    neg: Negotiated,
) -> Result<Operation<'a>, DecodeError> {
    use Operation as O;
    let m = neg.minor;
    Ok(match code {
        op::LOOKUP => O::Lookup { name: r.cstr()? },
        op::FORGET => O::Forget(ForgetIn::decode(r)?),
        op::GETATTR => O::Getattr(GetattrIn::decode(r)?),
        op::SETATTR => O::Setattr(SetattrIn::decode(r)?),
        op::READLINK => O::Readlink,
        op::SYMLINK => O::Symlink {
            name: r.cstr()?,
            target: r.cstr()?,
        },
        op::MKNOD => {
            let arg = if m < 12 {
                let mut c = Reader::new(r.bytes(compat::MKNOD_IN_SIZE)?);
                MknodIn {
                    mode: c.u32()?,
                    rdev: c.u32()?,
                    ..MknodIn::default()
                }
            } else {
                MknodIn::decode(r)?
            };
            O::Mknod {
                arg,
                name: r.cstr()?,
            }
        }
        op::MKDIR => O::Mkdir {
            arg: MkdirIn::decode(r)?,
            name: r.cstr()?,
        },
        op::UNLINK => O::Unlink { name: r.cstr()? },
        op::RMDIR => O::Rmdir { name: r.cstr()? },
        op::RENAME => O::Rename {
            arg: RenameIn::decode(r)?,
            name: r.cstr()?,
            newname: r.cstr()?,
        },
        op::LINK => O::Link {
            arg: LinkIn::decode(r)?,
            name: r.cstr()?,
        },
        op::OPEN => O::Open(OpenIn::decode(r)?),
        op::READ => O::Read(ReadIn::decode(r)?),
        op::WRITE => {
            let arg = WriteIn::decode(r)?;
            O::Write {
                arg,
                data: r.bytes(len(arg.size)?)?,
            }
        }
        op::STATFS => O::Statfs,
        op::RELEASE => O::Release(ReleaseIn::decode(r)?),
        op::FSYNC => O::Fsync(FsyncIn::decode(r)?),
        op::SETXATTR => {
            let arg = if neg.flags & init::SETXATTR_EXT != 0 {
                SetxattrIn::decode(r)?
            } else {
                let mut c = Reader::new(r.bytes(compat::SETXATTR_IN_SIZE)?);
                SetxattrIn {
                    size: c.u32()?,
                    flags: c.u32()?,
                    ..SetxattrIn::default()
                }
            };
            let name = r.cstr()?;
            O::Setxattr {
                arg,
                name,
                value: r.bytes(len(arg.size)?)?,
            }
        }
        op::GETXATTR => O::Getxattr {
            arg: GetxattrIn::decode(r)?,
            name: r.cstr()?,
        },
        op::LISTXATTR => O::Listxattr(GetxattrIn::decode(r)?),
        op::REMOVEXATTR => O::Removexattr { name: r.cstr()? },
        op::FLUSH => O::Flush(FlushIn::decode(r)?),
        op::INIT => O::Init(decode_init(r)?),
        op::OPENDIR => O::Opendir(OpenIn::decode(r)?),
        op::READDIR => O::Readdir(ReadIn::decode(r)?),
        op::RELEASEDIR => O::Releasedir(ReleaseIn::decode(r)?),
        op::FSYNCDIR => O::Fsyncdir(FsyncIn::decode(r)?),
        op::GETLK => O::Getlk(LkIn::decode(r)?),
        op::SETLK => O::Setlk(LkIn::decode(r)?),
        op::SETLKW => O::Setlkw(LkIn::decode(r)?),
        op::ACCESS => O::Access(AccessIn::decode(r)?),
        op::CREATE => O::Create {
            arg: decode_create(r, m)?,
            name: r.cstr()?,
        },
        op::INTERRUPT => O::Interrupt(InterruptIn::decode(r)?),
        op::BMAP => O::Bmap(BmapIn::decode(r)?),
        op::DESTROY => O::Destroy,
        op::IOCTL => {
            let arg = IoctlIn::decode(r)?;
            O::Ioctl {
                arg,
                data: r.bytes(len(arg.in_size)?)?,
            }
        }
        op::POLL => O::Poll(PollIn::decode(r)?),
        op::NOTIFY_REPLY => {
            let arg = NotifyRetrieveIn::decode(r)?;
            O::NotifyReply {
                arg,
                data: r.bytes(len(arg.size)?)?,
            }
        }
        op::BATCH_FORGET => {
            let arg = BatchForgetIn::decode(r)?;
            O::BatchForget(Records::take(r, arg.count)?)
        }
        op::FALLOCATE => O::Fallocate(FallocateIn::decode(r)?),
        op::READDIRPLUS => O::Readdirplus(ReadIn::decode(r)?),
        op::RENAME2 => O::Rename2 {
            arg: Rename2In::decode(r)?,
            name: r.cstr()?,
            newname: r.cstr()?,
        },
        op::LSEEK => O::Lseek(LseekIn::decode(r)?),
        op::COPY_FILE_RANGE => O::CopyFileRange(CopyFileRangeIn::decode(r)?),
        op::SETUPMAPPING => O::Setupmapping(SetupmappingIn::decode(r)?),
        op::REMOVEMAPPING => {
            let arg = RemovemappingIn::decode(r)?;
            O::Removemapping(Records::take(r, arg.count)?)
        }
        op::SYNCFS => O::Syncfs(SyncfsIn::decode(r)?),
        op::TMPFILE => O::Tmpfile {
            arg: decode_create(r, m)?,
            name: r.cstr()?,
        },
        op::STATX => O::Statx(StatxIn::decode(r)?),
        op::COPY_FILE_RANGE_64 => O::CopyFileRange64(CopyFileRangeIn::decode(r)?),
        op::CUSE_INIT => O::CuseInit(CuseInitIn::decode(r)?),
        other => O::Unknown(other),
    })
}

/// A u32 length field as usize (fails only on 16-bit targets).
fn len(n: u32) -> Result<usize, DecodeError> {
    usize::try_from(n).map_err(|_| DecodeError::CountTooLarge { count: n })
}

/// create_in, or the 8-byte open_in (flags, mode) kernels before 7.12 sent.
fn decode_create(r: &mut Reader<'_>, minor: u32) -> Result<CreateIn, DecodeError> {
    if minor < 12 {
        let mut c = Reader::new(r.bytes(compat::CREATE_IN_SIZE)?);
        Ok(CreateIn {
            flags: c.u32()?,
            mode: c.u32()?,
            ..CreateIn::default()
        })
    } else {
        CreateIn::decode(r)
    }
}

/// init_in: 16 bytes before 7.36, 64 after; major and minor are always there.
fn decode_init(r: &mut Reader<'_>) -> Result<InitIn, DecodeError> {
    let mut arg = InitIn {
        major: r.u32()?,
        minor: r.u32()?,
        ..InitIn::default()
    };
    // A kernel with a newer major sends only major and minor, then waits for our answer.
    if arg.major != abi::KERNEL_VERSION || r.remaining() < compat::INIT_IN_SIZE - 8 {
        return Ok(arg);
    }
    arg.max_readahead = r.u32()?;
    arg.flags = r.u32()?;
    // INIT_EXT promises flags2, which only the 64-byte init_in carries.
    let ext = u64::from(arg.flags) & abi::init::INIT_EXT != 0;
    if ext || (arg.minor >= 36 && r.remaining() >= InitIn::SIZE - compat::INIT_IN_SIZE) {
        arg.flags2 = r.u32()?;
        arg.unused = <[u32; 11]>::decode(r)?;
    }
    Ok(arg)
}
