//! The portable FUSE codec (src/protocol): round trips of every opcode through a
//! test-only encoder, golden reply bytes, malformed framing, and a deterministic
//! fuzz loop of valid, mutated and random messages that must never panic.

use std::ffi::CStr;
use std::time::Instant;

use ownfs::protocol::abi::{init, opcode as op, *};
use ownfs::protocol::reply;
use ownfs::protocol::request::{
    parse, parse_with, Extension, Negotiated, Operation, Records, Request,
};
use ownfs::protocol::wire::{align8, DecodeError, Reader, Wire, Writer};

/// splitmix64: small, deterministic, good enough to pick bytes and cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len())]
    }
}

/// A struct with every field random.
fn rand_struct<T: Wire>(rng: &mut Rng) -> T {
    let b: Vec<u8> = (0..T::SIZE).map(|_| rng.next() as u8).collect();
    T::decode(&mut Reader::new(&b)).expect("exact size")
}

static NAMES: [&CStr; 7] = [
    c"a",
    c"",
    c"with/slash",
    c"..",
    c".",
    c"\xff\xfe",
    c"0123456789abcdef0123456789abcdef",
];
static DATA: [u8; 4096] = [0x5a; 4096];

fn enc<T: Wire>(out: &mut Vec<u8>, v: &T) {
    let mut b = vec![0u8; T::SIZE];
    v.encode(&mut Writer::new(&mut b)).expect("fits");
    out.extend_from_slice(&b);
}

fn name(out: &mut Vec<u8>, n: &CStr) {
    out.extend_from_slice(n.to_bytes_with_nul());
}

/// Test-only request encoder: header, args as the kernel lays them out at `neg`, extensions.
fn encode(
    unique: u64,
    nodeid: u64,
    opcode: u32,
    o: &Operation<'_>,
    ext: &[u8],
    neg: Negotiated,
) -> Vec<u8> {
    use Operation as O;
    let mut a = Vec::new();
    match o {
        O::Lookup { name: n }
        | O::Unlink { name: n }
        | O::Rmdir { name: n }
        | O::Removexattr { name: n } => name(&mut a, n),
        O::Forget(x) => enc(&mut a, x),
        O::Getattr(x) => enc(&mut a, x),
        O::Setattr(x) => enc(&mut a, x),
        O::Readlink | O::Statfs | O::Destroy | O::Unknown(_) => {}
        O::Symlink { name: n, target } => {
            name(&mut a, n);
            name(&mut a, target);
        }
        O::Mknod { arg, name: n } => {
            enc(&mut a, arg);
            if neg.minor < 12 {
                a.truncate(8);
            }
            name(&mut a, n);
        }
        O::Mkdir { arg, name: n } => {
            enc(&mut a, arg);
            name(&mut a, n);
        }
        O::Rename {
            arg,
            name: n,
            newname,
        } => {
            enc(&mut a, arg);
            name(&mut a, n);
            name(&mut a, newname);
        }
        O::Rename2 {
            arg,
            name: n,
            newname,
        } => {
            enc(&mut a, arg);
            name(&mut a, n);
            name(&mut a, newname);
        }
        O::Link { arg, name: n } => {
            enc(&mut a, arg);
            name(&mut a, n);
        }
        O::Open(x) | O::Opendir(x) => enc(&mut a, x),
        O::Read(x) | O::Readdir(x) | O::Readdirplus(x) => enc(&mut a, x),
        O::Write { arg, data } => {
            enc(&mut a, arg);
            a.extend_from_slice(data);
        }
        O::Release(x) | O::Releasedir(x) => enc(&mut a, x),
        O::Fsync(x) | O::Fsyncdir(x) => enc(&mut a, x),
        O::Setxattr {
            arg,
            name: n,
            value,
        } => {
            enc(&mut a, arg);
            if neg.flags & init::SETXATTR_EXT == 0 {
                a.truncate(8);
            }
            name(&mut a, n);
            a.extend_from_slice(value);
        }
        O::Getxattr { arg, name: n } => {
            enc(&mut a, arg);
            name(&mut a, n);
        }
        O::Listxattr(x) => enc(&mut a, x),
        O::Flush(x) => enc(&mut a, x),
        O::Init(x) => {
            enc(&mut a, x);
            if x.minor < 36 {
                a.truncate(16);
            }
        }
        O::Getlk(x) | O::Setlk(x) | O::Setlkw(x) => enc(&mut a, x),
        O::Access(x) => enc(&mut a, x),
        O::Create { arg, name: n } | O::Tmpfile { arg, name: n } => {
            enc(&mut a, arg);
            if neg.minor < 12 {
                a.truncate(8);
            }
            name(&mut a, n);
        }
        O::Interrupt(x) => enc(&mut a, x),
        O::Bmap(x) => enc(&mut a, x),
        O::Ioctl { arg, data } => {
            enc(&mut a, arg);
            a.extend_from_slice(data);
        }
        O::Poll(x) => enc(&mut a, x),
        O::NotifyReply { arg, data } => {
            enc(&mut a, arg);
            a.extend_from_slice(data);
        }
        O::BatchForget(r) => {
            enc(
                &mut a,
                &BatchForgetIn {
                    count: r.len() as u32,
                    dummy: 0,
                },
            );
            a.extend_from_slice(r.as_bytes());
        }
        O::Fallocate(x) => enc(&mut a, x),
        O::Lseek(x) => enc(&mut a, x),
        O::CopyFileRange(x) | O::CopyFileRange64(x) => enc(&mut a, x),
        O::Setupmapping(x) => enc(&mut a, x),
        O::Removemapping(r) => {
            enc(
                &mut a,
                &RemovemappingIn {
                    count: r.len() as u32,
                },
            );
            a.extend_from_slice(r.as_bytes());
        }
        O::Syncfs(x) => enc(&mut a, x),
        O::Statx(x) => enc(&mut a, x),
        O::CuseInit(x) => enc(&mut a, x),
    }
    let len = InHeader::SIZE + a.len() + ext.len();
    let h = InHeader {
        len: len as u32,
        opcode,
        unique,
        nodeid,
        uid: 1000,
        gid: 100,
        pid: 42,
        total_extlen: (ext.len() / 8) as u16,
        padding: 0,
    };
    let mut out = Vec::with_capacity(len);
    enc(&mut out, &h);
    out.extend_from_slice(&a);
    out.extend_from_slice(ext);
    out
}

/// A valid operation for `code` with random fields, as the parser should return it at `neg`.
fn sample(code: u32, rng: &mut Rng, neg: Negotiated) -> Operation<'static> {
    use Operation as O;
    let n = |rng: &mut Rng| NAMES[rng.below(NAMES.len())];
    let data = |rng: &mut Rng| &DATA[..rng.below(DATA.len() + 1)];
    let records = |rng: &mut Rng| &DATA[..16 * rng.below(20)];
    match code {
        op::LOOKUP => O::Lookup { name: n(rng) },
        op::FORGET => O::Forget(rand_struct(rng)),
        op::GETATTR => O::Getattr(rand_struct(rng)),
        op::SETATTR => O::Setattr(rand_struct(rng)),
        op::READLINK => O::Readlink,
        op::SYMLINK => O::Symlink {
            name: n(rng),
            target: n(rng),
        },
        op::MKNOD => {
            let mut arg: MknodIn = rand_struct(rng);
            if neg.minor < 12 {
                arg.umask = 0;
                arg.padding = 0;
            }
            O::Mknod { arg, name: n(rng) }
        }
        op::MKDIR => O::Mkdir {
            arg: rand_struct(rng),
            name: n(rng),
        },
        op::UNLINK => O::Unlink { name: n(rng) },
        op::RMDIR => O::Rmdir { name: n(rng) },
        op::RENAME => O::Rename {
            arg: rand_struct(rng),
            name: n(rng),
            newname: n(rng),
        },
        op::LINK => O::Link {
            arg: rand_struct(rng),
            name: n(rng),
        },
        op::OPEN => O::Open(rand_struct(rng)),
        op::READ => O::Read(rand_struct(rng)),
        op::WRITE => {
            let d = data(rng);
            let mut arg: WriteIn = rand_struct(rng);
            arg.size = d.len() as u32;
            O::Write { arg, data: d }
        }
        op::STATFS => O::Statfs,
        op::RELEASE => O::Release(rand_struct(rng)),
        op::FSYNC => O::Fsync(rand_struct(rng)),
        op::SETXATTR => {
            let d = data(rng);
            let mut arg: SetxattrIn = rand_struct(rng);
            arg.size = d.len() as u32;
            if neg.flags & init::SETXATTR_EXT == 0 {
                arg.setxattr_flags = 0;
                arg.padding = 0;
            }
            O::Setxattr {
                arg,
                name: n(rng),
                value: d,
            }
        }
        op::GETXATTR => O::Getxattr {
            arg: rand_struct(rng),
            name: n(rng),
        },
        op::LISTXATTR => O::Listxattr(rand_struct(rng)),
        op::REMOVEXATTR => O::Removexattr { name: n(rng) },
        op::FLUSH => O::Flush(rand_struct(rng)),
        op::INIT => {
            let mut arg: InitIn = rand_struct(rng);
            arg.major = 7;
            arg.minor = rng.pick(&[9, 26, 35, 36, 45]);
            if arg.minor < 36 {
                // An older kernel neither sends flags2 nor announces it.
                arg.flags &= !(1 << 30);
                arg.flags2 = 0;
                arg.unused = [0; 11];
            }
            O::Init(arg)
        }
        op::OPENDIR => O::Opendir(rand_struct(rng)),
        op::READDIR => O::Readdir(rand_struct(rng)),
        op::RELEASEDIR => O::Releasedir(rand_struct(rng)),
        op::FSYNCDIR => O::Fsyncdir(rand_struct(rng)),
        op::GETLK => O::Getlk(rand_struct(rng)),
        op::SETLK => O::Setlk(rand_struct(rng)),
        op::SETLKW => O::Setlkw(rand_struct(rng)),
        op::ACCESS => O::Access(rand_struct(rng)),
        op::CREATE | op::TMPFILE => {
            let mut arg: CreateIn = rand_struct(rng);
            if neg.minor < 12 {
                arg.umask = 0;
                arg.open_flags = 0;
            }
            let name = n(rng);
            if code == op::CREATE {
                O::Create { arg, name }
            } else {
                O::Tmpfile { arg, name }
            }
        }
        op::INTERRUPT => O::Interrupt(rand_struct(rng)),
        op::BMAP => O::Bmap(rand_struct(rng)),
        op::DESTROY => O::Destroy,
        op::IOCTL => {
            let d = data(rng);
            let mut arg: IoctlIn = rand_struct(rng);
            arg.in_size = d.len() as u32;
            O::Ioctl { arg, data: d }
        }
        op::POLL => O::Poll(rand_struct(rng)),
        op::NOTIFY_REPLY => {
            let d = data(rng);
            let mut arg: NotifyRetrieveIn = rand_struct(rng);
            arg.size = d.len() as u32;
            O::NotifyReply { arg, data: d }
        }
        op::BATCH_FORGET => O::BatchForget(Records::from_bytes(records(rng))),
        op::FALLOCATE => O::Fallocate(rand_struct(rng)),
        op::READDIRPLUS => O::Readdirplus(rand_struct(rng)),
        op::RENAME2 => O::Rename2 {
            arg: rand_struct(rng),
            name: n(rng),
            newname: n(rng),
        },
        op::LSEEK => O::Lseek(rand_struct(rng)),
        op::COPY_FILE_RANGE => O::CopyFileRange(rand_struct(rng)),
        op::SETUPMAPPING => O::Setupmapping(rand_struct(rng)),
        op::REMOVEMAPPING => O::Removemapping(Records::from_bytes(records(rng))),
        op::SYNCFS => O::Syncfs(rand_struct(rng)),
        op::STATX => O::Statx(rand_struct(rng)),
        op::COPY_FILE_RANGE_64 => O::CopyFileRange64(rand_struct(rng)),
        op::CUSE_INIT => O::CuseInit(rand_struct(rng)),
        other => O::Unknown(other),
    }
}

/// A valid extension area: supplementary groups and/or a security context.
fn sample_ext(rng: &mut Rng) -> Vec<u8> {
    let mut e = Vec::new();
    if rng.below(2) == 0 {
        let nr = rng.below(6);
        let size = align8(12 + 4 * nr);
        e.extend_from_slice(&(size as u32).to_le_bytes());
        e.extend_from_slice(&ext::GROUPS.to_le_bytes());
        e.extend_from_slice(&(nr as u32).to_le_bytes());
        for g in 0..nr {
            e.extend_from_slice(&(100 + g as u32).to_le_bytes());
        }
        e.resize(size, 0);
    }
    if rng.below(2) == 0 {
        let start = e.len();
        e.extend_from_slice(&24u32.to_le_bytes());
        e.extend_from_slice(&1u32.to_le_bytes());
        e.extend_from_slice(&[7u8; 16]);
        assert_eq!(e.len() - start, 24);
    }
    e
}

const MINORS: [u32; 9] = [9, 11, 12, 23, 31, 36, 38, 40, 45];

fn negotiations() -> Vec<Negotiated> {
    MINORS
        .iter()
        .flat_map(|&minor| {
            [
                Negotiated { minor, flags: 0 },
                Negotiated {
                    minor,
                    flags: init::SETXATTR_EXT,
                },
            ]
        })
        .collect()
}

#[test]
fn every_opcode_round_trips() {
    let mut rng = Rng(1);
    let mut count = 0;
    for neg in negotiations() {
        for &code in op::ALL.iter().chain(&[7, 19, 54, 4095, 9999]) {
            for _ in 0..20 {
                let o = sample(code, &mut rng, neg);
                let ext = if neg.minor >= 38 && code != op::INIT && code != op::CUSE_INIT {
                    sample_ext(&mut rng)
                } else {
                    Vec::new()
                };
                let unique = rng.next();
                let msg = encode(unique, 5, code, &o, &ext, neg);
                let req: Request<'_> =
                    parse_with(&msg, neg).unwrap_or_else(|e| panic!("{code} at {neg:?}: {e}"));
                assert_eq!(req.op, o, "opcode {code} at {neg:?}");
                assert_eq!(req.header.unique, unique);
                assert_eq!(req.header.opcode, code);
                assert_eq!(req.header.nodeid, 5);
                assert_eq!(
                    (req.header.uid, req.header.gid, req.header.pid),
                    (1000, 100, 42)
                );
                assert_eq!(req.ext.as_bytes(), &ext[..]);
                count += 1;
            }
        }
    }
    assert!(count > 9000);
}

#[test]
fn records_and_extensions_decode() {
    let forgets: Vec<u8> = [(1u64, 2u64), (3, 4)]
        .iter()
        .flat_map(|&(a, b)| [a.to_le_bytes(), b.to_le_bytes()])
        .flatten()
        .collect();
    let o = Operation::BatchForget(Records::from_bytes(&forgets));
    let mut ext = Vec::new();
    for v in [24u32, ext::GROUPS, 3, 10, 20, 30] {
        ext.extend_from_slice(&v.to_le_bytes());
    }
    let neg = Negotiated::minor(45);
    let msg = encode(9, 0, op::BATCH_FORGET, &o, &ext, neg);
    let req = parse(&msg, 45).expect("valid");
    let Operation::BatchForget(list) = req.op else {
        panic!("{:?}", req.op)
    };
    let got: Vec<_> = list.iter().map(|f| (f.nodeid, f.nlookup)).collect();
    assert_eq!(got, [(1, 2), (3, 4)]);
    let groups: Vec<u32> = req.ext.groups().expect("groups").iter().collect();
    assert_eq!(groups, [10, 20, 30]);
    assert_eq!(req.ext.iter().count(), 1);
    // Before 7.38 total_extlen was padding: the same bytes are trailing args, ignored.
    let req = parse(&msg, 37).expect("valid");
    assert!(req.ext.as_bytes().is_empty());
}

fn header(len: u32, opcode: u32, extlen: u16) -> Vec<u8> {
    let mut v = Vec::new();
    enc(
        &mut v,
        &InHeader {
            len,
            opcode,
            unique: 1,
            nodeid: 1,
            total_extlen: extlen,
            ..InHeader::default()
        },
    );
    v
}

fn with_len(mut v: Vec<u8>) -> Vec<u8> {
    let n = (v.len() as u32).to_le_bytes();
    v[..4].copy_from_slice(&n);
    v
}

#[test]
fn malformed_framing_is_reported() {
    assert_eq!(
        parse(&[0; 39], 45),
        Err(DecodeError::ShortHeader { have: 39 })
    );
    let mut m = header(41, op::LOOKUP, 0);
    assert_eq!(
        parse(&m, 45),
        Err(DecodeError::LengthMismatch {
            header: 41,
            actual: 40
        })
    );
    m.extend_from_slice(b"ab");
    assert_eq!(
        parse(&m, 45),
        Err(DecodeError::LengthMismatch {
            header: 41,
            actual: 42
        })
    );
    // A name without NUL.
    let m = with_len([header(0, op::LOOKUP, 0), b"abc".to_vec()].concat());
    assert_eq!(parse(&m, 45), Err(DecodeError::MissingNul));
    // Empty names and names with '/' decode; the filesystem judges them.
    let m = with_len([header(0, op::LOOKUP, 0), b"a/b\0".to_vec()].concat());
    assert_eq!(
        parse(&m, 45).map(|r| r.op),
        Ok(Operation::Lookup { name: c"a/b" })
    );
    let m = with_len([header(0, op::UNLINK, 0), b"\0".to_vec()].concat());
    assert_eq!(
        parse(&m, 45).map(|r| r.op),
        Ok(Operation::Unlink { name: c"" })
    );
    // Short fixed args.
    let m = with_len([header(0, op::GETATTR, 0), vec![0; 15]].concat());
    assert_eq!(
        parse(&m, 45).map(|r| r.op),
        Err(DecodeError::Short { need: 8, have: 7 })
    );
    // A write promising more than it carries.
    let mut w = Vec::new();
    enc(
        &mut w,
        &WriteIn {
            size: 10,
            ..WriteIn::default()
        },
    );
    let m = with_len([header(0, op::WRITE, 0), w, vec![1; 9]].concat());
    assert_eq!(
        parse(&m, 45).map(|r| r.op),
        Err(DecodeError::Short { need: 10, have: 9 })
    );
    // A batch forget count larger than its records.
    let m = with_len(
        [
            header(0, op::BATCH_FORGET, 0),
            vec![3, 0, 0, 0, 0, 0, 0, 0],
            vec![0; 40],
        ]
        .concat(),
    );
    assert_eq!(
        parse(&m, 45).map(|r| r.op),
        Err(DecodeError::CountTooLarge { count: 3 })
    );
    let m = with_len([header(0, op::BATCH_FORGET, 0), vec![0xff; 4], vec![0; 4]].concat());
    assert_eq!(
        parse(&m, 45).map(|r| r.op),
        Err(DecodeError::CountTooLarge { count: u32::MAX })
    );
    // Extension area longer than the body, or with a bad header.
    let m = with_len([header(0, op::STATFS, 1), vec![0; 4]].concat());
    assert_eq!(
        parse(&m, 45),
        Err(DecodeError::ExtensionTooLong {
            extlen: 8,
            available: 4
        })
    );
    let m = with_len([header(0, op::STATFS, 1), vec![4, 0, 0, 0, 32, 0, 0, 0]].concat());
    assert_eq!(parse(&m, 45), Err(DecodeError::BadExtension { offset: 0 }));
    let m = with_len(
        [
            header(0, op::STATFS, 2),
            vec![16, 0, 0, 0, 32, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0],
        ]
        .concat(),
    );
    assert_eq!(parse(&m, 45), Err(DecodeError::BadExtension { offset: 0 }));
    // Minors older than 7.9, except for INIT itself; big-endian INIT.
    let m = header(40, op::STATFS, 0);
    assert_eq!(parse(&m, 8), Err(DecodeError::UnsupportedMinor(8)));
    let m = with_len([header(0, op::INIT, 0), vec![7, 0, 0, 0, 8, 0, 0, 0]].concat());
    assert!(matches!(
        parse(&m, 0).map(|r| r.op),
        Ok(Operation::Init(InitIn {
            major: 7,
            minor: 8,
            ..
        }))
    ));
    let m = header(40, op::INIT_BSWAP_RESERVED, 0);
    assert_eq!(parse(&m, 0), Err(DecodeError::WrongEndian));
    // Unknown opcodes decode, for an ENOSYS answer.
    let m = header(40, 7, 0);
    assert_eq!(parse(&m, 45).map(|r| r.op), Ok(Operation::Unknown(7)));
}

#[test]
fn replies_golden_bytes() {
    let mut buf = [0u8; 512];
    let n = reply::error(&mut buf, 0x1122, libc::ENOENT).expect("fits");
    assert_eq!(
        buf[..n],
        [16, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, 0x22, 0x11, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(
        reply::error(&mut buf, 1, -libc::EIO),
        reply::error(&mut buf, 1, libc::EIO)
    );
    let e = EntryOut {
        nodeid: 2,
        ..EntryOut::default()
    };
    assert_eq!(reply::entry(&mut buf, 1, 45, &e), Ok(16 + 128));
    assert_eq!(reply::entry(&mut buf, 1, 8, &e), Ok(16 + 120));
    assert_eq!(u32::from_le_bytes(buf[..4].try_into().expect("4")), 136);
    assert_eq!(
        reply::attr(&mut buf, 1, 8, &AttrOut::default()),
        Ok(16 + 96)
    );
    assert_eq!(
        reply::create(&mut buf, 1, 45, &e, &OpenOut::default()),
        Ok(16 + 128 + 16)
    );
    let o = InitOut {
        major: 7,
        minor: 45,
        ..InitOut::default()
    };
    assert_eq!(reply::init(&mut buf, 1, 45, &o), Ok(16 + 64));
    assert_eq!(reply::init(&mut buf, 1, 22, &o), Ok(16 + 24));
    assert_eq!(reply::init(&mut buf, 1, 4, &o), Ok(16 + 8));
    assert_eq!(
        reply::statfs(&mut buf, 1, 45, &StatfsOut::default()),
        Ok(16 + 80)
    );
    assert_eq!(
        reply::statx(&mut buf, 1, &StatxOut::default()),
        Ok(16 + 288)
    );
    assert_eq!(reply::write(&mut buf, 1, 5), Ok(24));
    assert_eq!(reply::copy_file_range_64(&mut buf, 1, 1 << 40), Ok(24));
    assert_eq!(buf[16..24], (1u64 << 40).to_le_bytes());
    assert_eq!(reply::lk(&mut buf, 1, &LkOut::default()), Ok(40));
    assert_eq!(
        reply::ioctl(&mut buf, 1, &IoctlOut::default(), b"xyz"),
        Ok(16 + 16 + 3)
    );
    assert_eq!(reply::header_for_payload(&mut buf, 7, 4096), Ok(16));
    assert_eq!(u32::from_le_bytes(buf[..4].try_into().expect("4")), 4112);
    // Too small a buffer is an error, not a panic.
    assert!(reply::entry(&mut buf[..100], 1, 45, &e).is_err());
    assert!(reply::data(&mut buf[..16], 1, b"x").is_err());
}

#[test]
fn dirents_pack_aligned() {
    assert_eq!(reply::dirent_size(0), 24);
    assert_eq!(reply::dirent_size(1), 32);
    assert_eq!(reply::dirent_size(8), 32);
    assert_eq!(reply::dirent_size(9), 40);
    assert_eq!(reply::direntplus_size(3), 160);
    let mut buf = [0xaau8; 64];
    let n = reply::push_dirent(&mut buf, 5, 1, 4, b"abc").expect("fits");
    assert_eq!(n, 32);
    let d = Dirent::decode(&mut Reader::new(&buf)).expect("dirent");
    assert_eq!(
        d,
        Dirent {
            ino: 5,
            off: 1,
            namelen: 3,
            typ: 4
        }
    );
    assert_eq!(buf[24..32], *b"abc\0\0\0\0\0");
    assert_eq!(buf[32], 0xaa);
    assert!(reply::push_dirent(&mut buf[..31], 5, 1, 4, b"abc").is_err());
    let mut buf = [0u8; 200];
    let e = EntryOut {
        attr: Attr {
            ino: 77,
            ..Attr::default()
        },
        ..EntryOut::default()
    };
    assert_eq!(
        reply::push_direntplus(&mut buf, &e, e.attr.ino, 2, 8, b"abc"),
        Ok(160)
    );
    assert_eq!(buf[128..136], 77u64.to_le_bytes());
    assert!(reply::push_direntplus(&mut buf[..159], &e, e.attr.ino, 2, 8, b"abc").is_err());
}

#[test]
fn notifications() {
    let mut buf = [0u8; 256];
    let hdr = |b: &[u8]| OutHeader::decode(&mut Reader::new(b)).expect("header");
    let n = reply::notify_inc_epoch(&mut buf).expect("fits");
    assert_eq!(
        hdr(&buf),
        OutHeader {
            len: 16,
            error: 8,
            unique: 0
        }
    );
    assert_eq!(n, 16);
    let n = reply::notify_inval_entry(&mut buf, 1, b"name", flags::EXPIRE_ONLY).expect("fits");
    assert_eq!(n, 16 + 16 + 5);
    assert_eq!(
        hdr(&buf),
        OutHeader {
            len: 37,
            error: notify::INVAL_ENTRY,
            unique: 0
        }
    );
    assert_eq!(buf[32..37], *b"name\0");
    let n = reply::notify_delete(&mut buf, 1, 9, b"x").expect("fits");
    assert_eq!((n, hdr(&buf).error), (16 + 24 + 2, notify::DELETE));
    assert_eq!(reply::notify_inval_inode(&mut buf, 3, 0, -1), Ok(40));
    assert_eq!(
        reply::notify_store(&mut buf, 3, 0, b"data"),
        Ok(16 + 24 + 4)
    );
    assert_eq!(reply::notify_retrieve(&mut buf, 5, 3, 0, 4096), Ok(16 + 32));
    assert_eq!(reply::notify_poll(&mut buf, 5), Ok(24));
    assert_eq!(reply::notify_resend(&mut buf), Ok(16));
    assert_eq!(reply::notify_prune(&mut buf, &[1, 2, 3]), Ok(16 + 16 + 24));
    assert_eq!(hdr(&buf).error, notify::PRUNE);
}

/// Every slice a request borrows.
fn borrowed<'a>(r: &Request<'a>) -> Vec<&'a [u8]> {
    use Operation as O;
    let mut v: Vec<&'a [u8]> = vec![r.ext.as_bytes()];
    match r.op {
        O::Lookup { name } | O::Unlink { name } | O::Rmdir { name } | O::Removexattr { name } => {
            v.push(name.to_bytes_with_nul())
        }
        O::Symlink { name, target } => {
            v.extend([name.to_bytes_with_nul(), target.to_bytes_with_nul()])
        }
        O::Mknod { name, .. }
        | O::Mkdir { name, .. }
        | O::Link { name, .. }
        | O::Getxattr { name, .. } => v.push(name.to_bytes_with_nul()),
        O::Create { name, .. } | O::Tmpfile { name, .. } => v.push(name.to_bytes_with_nul()),
        O::Rename { name, newname, .. } | O::Rename2 { name, newname, .. } => {
            v.extend([name.to_bytes_with_nul(), newname.to_bytes_with_nul()])
        }
        O::Write { data, .. } | O::Ioctl { data, .. } | O::NotifyReply { data, .. } => v.push(data),
        O::Setxattr { name, value, .. } => v.extend([name.to_bytes_with_nul(), value]),
        O::BatchForget(rs) => v.push(rs.as_bytes()),
        O::Removemapping(rs) => v.push(rs.as_bytes()),
        _ => {}
    }
    for e in r.ext.iter() {
        match e {
            Extension::SecurityContext { data, .. } | Extension::Unknown { data, .. } => {
                v.push(data)
            }
            Extension::Groups(g) => v.push(g.as_bytes()),
        }
    }
    v
}

fn check(msg: &[u8], neg: Negotiated, ok: &mut usize) {
    if let Ok(req) = parse_with(msg, neg) {
        *ok += 1;
        let lo = msg.as_ptr() as usize;
        let hi = lo + msg.len();
        for s in borrowed(&req) {
            let p = s.as_ptr() as usize;
            assert!(
                s.is_empty() || (p >= lo && p + s.len() <= hi),
                "slice outside the message"
            );
        }
        // Iterating the views decodes within bounds too.
        let _ = req.ext.iter().count();
        if let Operation::BatchForget(r) = req.op {
            assert_eq!(r.iter().count(), r.len());
        }
    }
}

#[test]
fn fuzz_never_panics_and_borrows_within_the_input() {
    let start = Instant::now();
    let mut rng = Rng(0x5eed);
    let negs = negotiations();
    let codes: Vec<u32> = op::ALL
        .iter()
        .copied()
        .chain([0, 7, 54, u32::MAX])
        .collect();
    let (mut total, mut ok) = (0usize, 0usize);
    for i in 0..1_000_000 {
        let neg = rng.pick(&negs);
        let code = rng.pick(&codes);
        let o = sample(code, &mut rng, neg);
        let ext = if neg.minor >= 38 && rng.below(3) == 0 {
            sample_ext(&mut rng)
        } else {
            Vec::new()
        };
        let mut msg = encode(rng.next(), rng.next(), code, &o, &ext, neg);
        match i % 8 {
            0 => {}
            1 | 2 => {
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(msg.len());
                    msg[at] ^= 1 << rng.below(8);
                }
            }
            3 => {
                let keep = rng.below(msg.len() + 1);
                msg.truncate(keep);
                if msg.len() >= 4 && rng.below(2) == 0 {
                    msg = with_len(msg);
                }
            }
            4 => {
                let v = rng.next() as u32;
                let v = if rng.below(2) == 0 { v % 512 } else { v };
                msg[..4].copy_from_slice(&v.to_le_bytes());
            }
            5 => {
                let v = if rng.below(2) == 0 {
                    rng.below(8) as u16
                } else {
                    rng.next() as u16
                };
                msg[36..38].copy_from_slice(&v.to_le_bytes());
            }
            6 => {
                let extra = rng.below(64);
                msg.extend((0..extra).map(|_| rng.next() as u8));
                if rng.below(2) == 0 {
                    msg = with_len(msg);
                }
                // Any byte of the args, e.g. a count or size field, gets a random value.
                if msg.len() > 40 {
                    let at = 40 + rng.below(msg.len() - 40);
                    msg[at] = rng.next() as u8;
                }
            }
            _ => {
                let n = rng.below(300);
                msg = (0..n).map(|_| rng.next() as u8).collect();
                if n >= 40 && rng.below(2) == 0 {
                    msg = with_len(msg);
                    msg[4..8].copy_from_slice(&rng.pick(&codes).to_le_bytes());
                }
            }
        }
        check(&msg, neg, &mut ok);
        total += 1;
    }
    let elapsed = start.elapsed();
    eprintln!("fuzz: {total} messages, {ok} decoded, {elapsed:?}");
    assert!(total >= 200_000);
    // Unmutated and lightly mutated valid messages still decode often enough to reach deep code.
    assert!(ok > total / 8, "only {ok} of {total} decoded");
}
