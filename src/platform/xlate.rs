//! Darwin (macOS) host values translated for a Linux guest.
//!
//! Pure tables with the Darwin constants written out, so they compile and are tested
//! on every OS: a macOS server translates with them, Linux CI checks them. Wire values
//! (errno, device numbers, xattr namespaces, flag bits) are Linux's, as FUSE messages
//! carry them; flag bits are passed in by the caller ([`LINUX_OPEN`]).

use std::io;

/// Darwin constants, from the macOS SDK headers named on each group.
pub mod darwin {
    // <sys/fcntl.h>
    pub const O_ACCMODE: i32 = 0x3;
    pub const O_NONBLOCK: i32 = 0x4;
    pub const O_APPEND: i32 = 0x8;
    pub const O_SYNC: i32 = 0x80;
    pub const O_NOFOLLOW: i32 = 0x100;
    pub const O_CREAT: i32 = 0x200;
    pub const O_TRUNC: i32 = 0x400;
    pub const O_EXCL: i32 = 0x800;
    pub const O_EVTONLY: i32 = 0x8000;
    pub const O_NOCTTY: i32 = 0x20000;
    pub const O_DIRECTORY: i32 = 0x10_0000;
    pub const O_SYMLINK: i32 = 0x20_0000;
    pub const O_DSYNC: i32 = 0x40_0000;
    pub const O_CLOEXEC: i32 = 0x100_0000;
    // <sys/stdio.h> (renamex_np, renameatx_np)
    pub const RENAME_SWAP: u32 = 0x2;
    pub const RENAME_EXCL: u32 = 0x4;
    // <sys/xattr.h>
    pub const XATTR_NOFOLLOW: i32 = 0x1;
    pub const XATTR_CREATE: i32 = 0x2;
    pub const XATTR_REPLACE: i32 = 0x4;
    // <sys/unistd.h>
    pub const SEEK_HOLE: i32 = 3;
    pub const SEEK_DATA: i32 = 4;
    // <sys/errno.h>
    pub const ENOATTR: i32 = 93;
}

/// Darwin errno → Linux errno. 1..=34 are the same numbers on both (the V7 set);
/// above that each is listed; anything without a Linux meaning becomes EIO.
const ERRNO: [(i32, i32); 57] = [
    (35, 11),   // EAGAIN
    (36, 115),  // EINPROGRESS
    (37, 114),  // EALREADY
    (38, 88),   // ENOTSOCK
    (39, 89),   // EDESTADDRREQ
    (40, 90),   // EMSGSIZE
    (41, 91),   // EPROTOTYPE
    (42, 92),   // ENOPROTOOPT
    (43, 93),   // EPROTONOSUPPORT
    (44, 94),   // ESOCKTNOSUPPORT
    (45, 95),   // ENOTSUP → EOPNOTSUPP
    (46, 96),   // EPFNOSUPPORT
    (47, 97),   // EAFNOSUPPORT
    (48, 98),   // EADDRINUSE
    (49, 99),   // EADDRNOTAVAIL
    (50, 100),  // ENETDOWN
    (51, 101),  // ENETUNREACH
    (52, 102),  // ENETRESET
    (53, 103),  // ECONNABORTED
    (54, 104),  // ECONNRESET
    (55, 105),  // ENOBUFS
    (56, 106),  // EISCONN
    (57, 107),  // ENOTCONN
    (58, 108),  // ESHUTDOWN
    (59, 109),  // ETOOMANYREFS
    (60, 110),  // ETIMEDOUT
    (61, 111),  // ECONNREFUSED
    (62, 40),   // ELOOP
    (63, 36),   // ENAMETOOLONG
    (64, 112),  // EHOSTDOWN
    (65, 113),  // EHOSTUNREACH
    (66, 39),   // ENOTEMPTY
    (68, 87),   // EUSERS
    (69, 122),  // EDQUOT
    (70, 116),  // ESTALE
    (71, 66),   // EREMOTE
    (77, 37),   // ENOLCK
    (78, 38),   // ENOSYS
    (79, 22),   // EFTYPE (wrong file type for the call) → EINVAL
    (80, 13),   // EAUTH → EACCES
    (81, 13),   // ENEEDAUTH → EACCES
    (84, 75),   // EOVERFLOW
    (89, 125),  // ECANCELED
    (90, 43),   // EIDRM
    (91, 42),   // ENOMSG
    (92, 84),   // EILSEQ
    (93, 61),   // ENOATTR → ENODATA
    (94, 74),   // EBADMSG
    (95, 72),   // EMULTIHOP
    (96, 61),   // ENODATA
    (97, 67),   // ENOLINK
    (98, 63),   // ENOSR
    (99, 60),   // ENOSTR
    (100, 71),  // EPROTO
    (101, 62),  // ETIME
    (102, 95),  // EOPNOTSUPP (socket flavour)
    (104, 131), // ENOTRECOVERABLE
];
const LINUX_EIO: i32 = 5;
const LINUX_EOWNERDEAD: i32 = 130;

pub fn errno_to_linux(darwin: i32) -> i32 {
    match darwin {
        1..=34 => darwin,
        105 => LINUX_EOWNERDEAD,
        _ => ERRNO
            .iter()
            .find(|(d, _)| *d == darwin)
            .map_or(LINUX_EIO, |&(_, l)| l),
    }
}

/// The pipe's open-flag bits, as the caller names them.
pub struct WireOpen {
    pub accmode: u32,
    pub append: u32,
    pub trunc: u32,
    pub creat: u32,
    pub excl: u32,
    pub nonblock: u32,
    pub sync: u32,
    pub dsync: u32,
    pub nofollow: u32,
    pub directory: u32,
    pub cloexec: u32,
    pub noctty: u32,
}

/// Linux's open(2) bits (<asm-generic/fcntl.h>), as FUSE messages carry them.
pub const LINUX_OPEN: WireOpen = WireOpen {
    accmode: 0o3,
    append: 0o2000,
    trunc: 0o1000,
    creat: 0o100,
    excl: 0o200,
    nonblock: 0o4000,
    // O_SYNC is __O_SYNC | O_DSYNC; the O_DSYNC bit maps on its own.
    sync: 0o4000000,
    dsync: 0o10000,
    nofollow: 0o400000,
    directory: 0o200000,
    cloexec: 0o2000000,
    noctty: 0o400,
};

/// Linux's SEEK_DATA and SEEK_HOLE (Darwin's are 4 and 3).
pub const LINUX_SEEK_DATA: u32 = 3;
pub const LINUX_SEEK_HOLE: u32 = 4;

/// Wire open flags → Darwin. O_DIRECT and O_NOATIME have no Darwin flag and are
/// dropped: the client kernel keeps O_DIRECT semantics, and atime is advisory.
pub fn open_from_wire(w: u32, bits: &WireOpen) -> i32 {
    use darwin::*;
    let mut f = (w & bits.accmode) as i32 & O_ACCMODE;
    let map = [
        (bits.append, O_APPEND),
        (bits.trunc, O_TRUNC),
        (bits.creat, O_CREAT),
        (bits.excl, O_EXCL),
        (bits.nonblock, O_NONBLOCK),
        (bits.sync, O_SYNC),
        (bits.dsync, O_DSYNC),
        (bits.nofollow, O_NOFOLLOW),
        (bits.directory, O_DIRECTORY),
        (bits.cloexec, O_CLOEXEC),
        (bits.noctty, O_NOCTTY),
    ];
    for (b, h) in map {
        if w & b != 0 {
            f |= h;
        }
    }
    f
}

fn einval() -> io::Error {
    io::Error::from_raw_os_error(libc::EINVAL)
}

/// Linux rename flags (wire NOREPLACE, EXCHANGE, WHITEOUT) → renameatx_np flags.
/// Whiteouts are an overlayfs notion Darwin lacks.
pub fn rename_from_wire(w: u32, noreplace: u32, exchange: u32) -> io::Result<u32> {
    match w {
        0 => Ok(0),
        x if x == noreplace => Ok(darwin::RENAME_EXCL),
        x if x == exchange => Ok(darwin::RENAME_SWAP),
        _ => Err(einval()),
    }
}

/// Linux setxattr flags (wire CREATE, REPLACE) → Darwin's.
pub fn xattr_flags_from_wire(w: u32, create: u32, replace: u32) -> io::Result<i32> {
    if w & !(create | replace) != 0 {
        return Err(einval());
    }
    let mut f = 0;
    if w & create != 0 {
        f |= darwin::XATTR_CREATE;
    }
    if w & replace != 0 {
        f |= darwin::XATTR_REPLACE;
    }
    Ok(f)
}

/// Darwin `dev_t` (32 bits: 8-bit major, 24-bit minor, <sys/types.h>) → (major, minor).
pub fn dev_split(dev: u32) -> (u32, u32) {
    (dev >> 24, dev & 0xff_ffff)
}

/// (major, minor) → Darwin `dev_t`. A Linux major above 255 has no Darwin encoding
/// and is clamped to 255; minors above 24 bits likewise.
pub fn dev_join(major: u32, minor: u32) -> u32 {
    (major.min(0xff) << 24) | minor.min(0xff_ffff)
}

/// Darwin d_type → Linux d_type. The BSD values are Linux's; anything else is unknown.
pub fn dtype_to_linux(d: u8) -> u8 {
    match d {
        1 | 2 | 4 | 6 | 8 | 10 | 12 | 14 => d,
        _ => 0,
    }
}

/// Block counts of a Darwin `statfs` (64-bit) squeezed into `statvfs` (32-bit
/// counts): the fragment size doubles until every count fits, so free/total ratios
/// and byte totals survive. Returns (frsize, [blocks, bfree, bavail]).
pub fn fit_block_counts(frsize: u64, counts: [u64; 3]) -> (u64, [u32; 3]) {
    let mut frsize = frsize.max(1);
    let mut counts = counts;
    while counts.iter().any(|&c| c > u64::from(u32::MAX)) {
        frsize = frsize.saturating_mul(2);
        for c in &mut counts {
            *c /= 2;
        }
    }
    (frsize, counts.map(|c| c as u32))
}

/// Host names reserved for what a Linux guest stores outside `user.` (and for the
/// server's own record): `user.X` is `X`, so this prefix is the only host space a
/// guest `user.` name cannot reach.
pub const HOST_RESERVED: &[u8] = b"ownfs.";
const USER: &[u8] = b"user.";
const RECORD: &[u8] = b"ownfs.stat";
const STORED_NAMESPACES: [&[u8]; 2] = [b"trusted.", b"security."];
/// Ownership records that libkrun and containers-storage keep under these very names on
/// a macOS host: the same name on both sides, and no guest `user.` name reaches them.
const LITERAL: [&[u8]; 2] = [
    b"user.containers.override_stat",
    b"user.fuseoverlayfs.override_stat",
];

/// Linux xattr name → Darwin host name (without NUL). `user.X` ↔ `X`; `trusted.` and
/// `security.` live under `ownfs.`; the guest's `user.ownfs.` space other than the
/// record is refused so nothing can alias a reserved name; `system.` and unknown
/// namespaces are unsupported, as on a Linux filesystem without them.
pub fn xattr_name_to_host(linux: &[u8]) -> io::Result<Vec<u8>> {
    if LITERAL.contains(&linux) {
        return Ok(linux.to_vec());
    }
    if let Some(rest) = linux.strip_prefix(USER) {
        if (rest.starts_with(HOST_RESERVED) && rest != RECORD) || LITERAL.contains(&rest) {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        return Ok(rest.to_vec());
    }
    if STORED_NAMESPACES.iter().any(|ns| linux.starts_with(ns)) {
        return Ok([HOST_RESERVED, linux].concat());
    }
    Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
}

/// Darwin host name → Linux name, or `None` for a reserved name with no Linux meaning.
pub fn xattr_name_from_host(host: &[u8]) -> Option<Vec<u8>> {
    if LITERAL.contains(&host) {
        return Some(host.to_vec());
    }
    let Some(rest) = host.strip_prefix(HOST_RESERVED) else {
        return Some([USER, host].concat());
    };
    if host == RECORD {
        return Some([USER, host].concat());
    }
    STORED_NAMESPACES
        .iter()
        .any(|ns| rest.starts_with(ns))
        .then(|| rest.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIRE: WireOpen = WireOpen {
        accmode: 3,
        append: 1 << 2,
        trunc: 1 << 3,
        creat: 1 << 4,
        excl: 1 << 5,
        nonblock: 1 << 6,
        sync: 1 << 7,
        dsync: 1 << 8,
        nofollow: 1 << 10,
        directory: 1 << 12,
        cloexec: 1 << 13,
        noctty: 1 << 14,
    };

    #[cfg(target_os = "linux")]
    #[test]
    fn linux_values_match_libc() {
        let l = &LINUX_OPEN;
        for (ours, libc) in [
            (l.accmode, libc::O_ACCMODE),
            (l.append, libc::O_APPEND),
            (l.trunc, libc::O_TRUNC),
            (l.creat, libc::O_CREAT),
            (l.excl, libc::O_EXCL),
            (l.nonblock, libc::O_NONBLOCK),
            (l.sync | l.dsync, libc::O_SYNC),
            (l.dsync, libc::O_DSYNC),
            (l.nofollow, libc::O_NOFOLLOW),
            (l.directory, libc::O_DIRECTORY),
            (l.cloexec, libc::O_CLOEXEC),
            (l.noctty, libc::O_NOCTTY),
            (LINUX_SEEK_DATA, libc::SEEK_DATA as _),
            (LINUX_SEEK_HOLE, libc::SEEK_HOLE as _),
        ] {
            assert_eq!(ours as i32, libc);
        }
        let o_sync_append = (libc::O_SYNC | libc::O_APPEND | libc::O_RDWR) as u32;
        let d = open_from_wire(o_sync_append, l);
        assert_eq!(d, darwin::O_SYNC | darwin::O_DSYNC | darwin::O_APPEND | 2);
    }

    #[test]
    fn errno_table_matches_the_headers() {
        // Darwin <sys/errno.h> values on the left, Linux <asm-generic/errno*.h> on the right.
        for (d, l) in [
            (2, libc::ENOENT),
            (13, libc::EACCES),
            (17, libc::EEXIST),
            (28, libc::ENOSPC),
            (35, libc::EAGAIN),
            (45, libc::EOPNOTSUPP),
            (62, libc::ELOOP),
            (63, libc::ENAMETOOLONG),
            (66, libc::ENOTEMPTY),
            (69, libc::EDQUOT),
            (70, libc::ESTALE),
            (78, libc::ENOSYS),
            (84, libc::EOVERFLOW),
            (92, libc::EILSEQ),
            (93, libc::ENODATA), // ENOATTR
            (96, libc::ENODATA),
            (102, libc::EOPNOTSUPP),
            (105, libc::EOWNERDEAD),
        ] {
            assert_eq!(errno_to_linux(d), l, "darwin errno {d}");
        }
        assert_eq!(darwin::ENOATTR, 93);
        // Darwin-only errnos (EPROCLIM 67, EBADRPC 72, EDEVERR 83, EQFULL 106) → EIO.
        for d in [0, -1, 67, 72, 83, 106, 4096] {
            assert_eq!(errno_to_linux(d), libc::EIO, "darwin errno {d}");
        }
    }

    #[test]
    fn errno_table_is_a_function() {
        let mut seen = std::collections::HashSet::new();
        for (d, _) in ERRNO {
            assert!(seen.insert(d), "darwin errno {d} listed twice");
            assert!(d > 34);
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn errno_targets_are_linux_values() {
        let linux: [i32; ERRNO.len()] = [
            libc::EAGAIN,
            libc::EINPROGRESS,
            libc::EALREADY,
            libc::ENOTSOCK,
            libc::EDESTADDRREQ,
            libc::EMSGSIZE,
            libc::EPROTOTYPE,
            libc::ENOPROTOOPT,
            libc::EPROTONOSUPPORT,
            libc::ESOCKTNOSUPPORT,
            libc::EOPNOTSUPP,
            libc::EPFNOSUPPORT,
            libc::EAFNOSUPPORT,
            libc::EADDRINUSE,
            libc::EADDRNOTAVAIL,
            libc::ENETDOWN,
            libc::ENETUNREACH,
            libc::ENETRESET,
            libc::ECONNABORTED,
            libc::ECONNRESET,
            libc::ENOBUFS,
            libc::EISCONN,
            libc::ENOTCONN,
            libc::ESHUTDOWN,
            libc::ETOOMANYREFS,
            libc::ETIMEDOUT,
            libc::ECONNREFUSED,
            libc::ELOOP,
            libc::ENAMETOOLONG,
            libc::EHOSTDOWN,
            libc::EHOSTUNREACH,
            libc::ENOTEMPTY,
            libc::EUSERS,
            libc::EDQUOT,
            libc::ESTALE,
            libc::EREMOTE,
            libc::ENOLCK,
            libc::ENOSYS,
            libc::EINVAL,
            libc::EACCES,
            libc::EACCES,
            libc::EOVERFLOW,
            libc::ECANCELED,
            libc::EIDRM,
            libc::ENOMSG,
            libc::EILSEQ,
            libc::ENODATA,
            libc::EBADMSG,
            libc::EMULTIHOP,
            libc::ENODATA,
            libc::ENOLINK,
            libc::ENOSR,
            libc::ENOSTR,
            libc::EPROTO,
            libc::ETIME,
            libc::EOPNOTSUPP,
            libc::ENOTRECOVERABLE,
        ];
        for ((d, l), want) in ERRNO.iter().zip(linux) {
            assert_eq!(*l, want, "darwin errno {d}");
        }
    }

    #[test]
    fn open_flags_use_darwin_bits() {
        // Darwin <sys/fcntl.h>: O_WRONLY 1, O_APPEND 0x8, O_CREAT 0x200, O_TRUNC 0x400,
        // O_EXCL 0x800, O_NOFOLLOW 0x100, O_DIRECTORY 0x100000, O_CLOEXEC 0x1000000.
        let w = 1 | WIRE.append | WIRE.creat | WIRE.trunc | WIRE.excl;
        assert_eq!(open_from_wire(w, &WIRE), 0x1 | 0x8 | 0x200 | 0x400 | 0x800);
        let w = WIRE.nofollow | WIRE.directory | WIRE.cloexec;
        assert_eq!(open_from_wire(w, &WIRE), 0x100 | 0x10_0000 | 0x100_0000);
        // O_SYNC 0x80, O_DSYNC 0x400000, O_NONBLOCK 0x4, O_NOCTTY 0x20000.
        let w = 2 | WIRE.sync | WIRE.dsync | WIRE.nonblock | WIRE.noctty;
        assert_eq!(
            open_from_wire(w, &WIRE),
            0x2 | 0x80 | 0x40_0000 | 0x4 | 0x2_0000
        );
        // Wire O_DIRECT (1 << 9) and O_NOATIME (1 << 11) have no Darwin flag.
        assert_eq!(open_from_wire(2 | (1 << 9) | (1 << 11), &WIRE), 2);
    }

    #[test]
    fn rename_and_xattr_flags() {
        // Darwin <sys/stdio.h>: RENAME_SWAP 0x2, RENAME_EXCL 0x4.
        assert_eq!(rename_from_wire(0, 1, 2).unwrap(), 0);
        assert_eq!(rename_from_wire(1, 1, 2).unwrap(), 0x4);
        assert_eq!(rename_from_wire(2, 1, 2).unwrap(), 0x2);
        for bad in [3, 4, 8] {
            let e = rename_from_wire(bad, 1, 2).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{bad}");
        }
        // Darwin <sys/xattr.h>: XATTR_CREATE 0x2, XATTR_REPLACE 0x4.
        assert_eq!(xattr_flags_from_wire(1, 1, 2).unwrap(), 0x2);
        assert_eq!(xattr_flags_from_wire(2, 1, 2).unwrap(), 0x4);
        assert!(xattr_flags_from_wire(4, 1, 2).is_err());
    }

    #[test]
    fn device_numbers() {
        // Darwin <sys/types.h>: major = dev >> 24, minor = dev & 0xffffff.
        assert_eq!(dev_split(0x0100_0003), (1, 3));
        assert_eq!(dev_split(0x1000_0000 | 0xab_cdef), (16, 0xab_cdef));
        for (ma, mi) in [(0, 0), (1, 3), (255, 0xff_ffff), (8, 1 << 20)] {
            assert_eq!(dev_split(dev_join(ma, mi)), (ma, mi));
        }
        assert_eq!(dev_split(dev_join(259, 1)), (255, 1));
    }

    #[test]
    fn dtypes() {
        // Darwin <sys/dirent.h>: DT_FIFO 1, DT_CHR 2, DT_DIR 4, DT_BLK 6, DT_REG 8,
        // DT_LNK 10, DT_SOCK 12, DT_WHT 14: the Linux numbers.
        for (d, l) in [
            (1, libc::DT_FIFO),
            (2, libc::DT_CHR),
            (4, libc::DT_DIR),
            (6, libc::DT_BLK),
            (8, libc::DT_REG),
            (10, libc::DT_LNK),
            (12, libc::DT_SOCK),
            (0, libc::DT_UNKNOWN),
        ] {
            assert_eq!(dtype_to_linux(d), l);
        }
        assert_eq!(dtype_to_linux(14), 14);
        assert_eq!(dtype_to_linux(3), 0);
    }

    #[test]
    fn statfs_counts_fit_32_bits() {
        let (fr, c) = fit_block_counts(4096, [1000, 500, 400]);
        assert_eq!((fr, c), (4096, [1000, 500, 400]));
        // 16 TiB of 4 KiB blocks: 2^32 blocks, one too many for 32 bits.
        let (fr, c) = fit_block_counts(4096, [1 << 32, 1 << 31, 3]);
        assert_eq!((fr, c), (8192, [1 << 31, 1 << 30, 1]));
        let (fr, c) = fit_block_counts(4096, [u64::MAX, u64::MAX, 0]);
        assert!(u128::from(fr) * u128::from(c[0]) <= u128::from(u64::MAX) * 4096);
        assert!(c[0] > 0);
    }

    #[test]
    fn xattr_namespaces() {
        let to = |n: &[u8]| xattr_name_to_host(n).map_err(|e| e.raw_os_error().unwrap());
        assert_eq!(to(b"user.mime"), Ok(b"mime".to_vec()));
        assert_eq!(to(b"user.ownfs.stat"), Ok(b"ownfs.stat".to_vec()));
        assert_eq!(
            to(b"trusted.overlay.opaque"),
            Ok(b"ownfs.trusted.overlay.opaque".to_vec())
        );
        assert_eq!(
            to(b"security.capability"),
            Ok(b"ownfs.security.capability".to_vec())
        );
        assert_eq!(to(b"user.ownfs.trusted.x"), Err(libc::EPERM));
        assert_eq!(to(b"system.posix_acl_access"), Err(libc::EOPNOTSUPP));
        assert_eq!(to(b"bogus"), Err(libc::EOPNOTSUPP));
        let from = |n: &[u8]| xattr_name_from_host(n);
        assert_eq!(
            from(b"com.apple.quarantine"),
            Some(b"user.com.apple.quarantine".to_vec())
        );
        assert_eq!(from(b"ownfs.stat"), Some(b"user.ownfs.stat".to_vec()));
        // libkrun's and containers-storage's records keep their literal host names.
        let krun = b"user.containers.override_stat";
        assert_eq!(to(krun), Ok(krun.to_vec()));
        assert_eq!(from(krun), Some(krun.to_vec()));
        assert_eq!(to(b"user.user.containers.override_stat"), Err(libc::EPERM));
        assert_eq!(from(b"ownfs.trusted.a"), Some(b"trusted.a".to_vec()));
        assert_eq!(from(b"ownfs.other"), None);
        // Round trip for everything a guest may store.
        for n in [
            &b"user.a"[..],
            b"user.ownfs.stat",
            b"trusted.b",
            b"security.selinux",
        ] {
            assert_eq!(from(&to(n).unwrap()).as_deref(), Some(n));
        }
    }
}
