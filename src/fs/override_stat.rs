//! The containers ecosystem's ownership record: the `user.containers.override_stat`
//! xattr of containers-storage (buildah, podman), libkrun/krunkit and fuse-overlayfs.
//!
//! A text value `UID:GID:MODE[:TYPE]`: decimal ids, octal mode. Writers differ:
//! - containers-storage writes four fields, the mode as `%04o` of the permission and
//!   set-id bits, and TYPE one of `file dir symlink pipe socket block-MAJ-MIN
//!   char-MAJ-MIN`;
//! - libkrun writes three, the mode with its file-type bits (`0100755`), and `x` for
//!   a field it does not know;
//! - fuse-overlayfs reads the first three (`%d:%d:%o`) and keeps the host's type.
//!
//! We write the containers-storage form, which all three read: under this name for
//! `--record-format containers`, under fuse-overlayfs's own name
//! (`user.fuseoverlayfs.override_stat`, whose `sscanf` stops after the mode) for
//! `--record-format fuse-overlayfs`. We read either: a
//! TYPE field wins over type bits in MODE, and a missing field keeps the host's value.

use super::record::Kind;
use crate::platform::mode;

pub const NAME: &std::ffi::CStr = c"user.containers.override_stat";
/// fuse-overlayfs's own name for the same record (`-o xattr_permissions=2`).
pub const FUSE_OVERLAYFS_NAME: &std::ffi::CStr = c"user.fuseoverlayfs.override_stat";

/// The fields of a value; `None` where the value leaves the host's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OverrideStat {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Permission and set-id bits (07777).
    pub perms: Option<u32>,
    pub kind: Option<Kind>,
}

fn type_name(k: &Kind) -> String {
    match k.format {
        mode::S_IFDIR => "dir".into(),
        mode::S_IFLNK => "symlink".into(),
        mode::S_IFIFO => "pipe".into(),
        mode::S_IFSOCK => "socket".into(),
        mode::S_IFBLK => format!("block-{}-{}", k.rdev_major, k.rdev_minor),
        mode::S_IFCHR => format!("char-{}-{}", k.rdev_major, k.rdev_minor),
        _ => "file".into(),
    }
}

fn parse_type(t: &str) -> Option<Kind> {
    let plain = |format| {
        Some(Kind {
            format,
            rdev_major: 0,
            rdev_minor: 0,
        })
    };
    let device = |format, rest: &str| {
        let mut parts = rest.split('-');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Kind {
            format,
            rdev_major: major,
            rdev_minor: minor,
        })
    };
    match t {
        "file" => plain(mode::S_IFREG),
        "dir" => plain(mode::S_IFDIR),
        "symlink" => plain(mode::S_IFLNK),
        "pipe" => plain(mode::S_IFIFO),
        "socket" => plain(mode::S_IFSOCK),
        _ => {
            if let Some(rest) = t.strip_prefix("block-") {
                device(mode::S_IFBLK, rest)
            } else if let Some(rest) = t.strip_prefix("char-") {
                device(mode::S_IFCHR, rest)
            } else {
                None
            }
        }
    }
}

impl OverrideStat {
    /// The containers-storage form of a full view.
    pub fn encode(uid: u32, gid: u32, perms: u32, kind: &Kind) -> String {
        format!("{uid}:{gid}:{:04o}:{}", perms & 0o7777, type_name(kind))
    }

    /// Parses a value in any writer's form; `None` if it is not one.
    pub fn decode(value: &[u8]) -> Option<OverrideStat> {
        let text = std::str::from_utf8(value).ok()?;
        // Some writers end the value with a NUL.
        let text = text.trim_end_matches('\0');
        let mut fields = text.split(':');
        let id = |f: &str| -> Option<Option<u32>> {
            if f == "x" {
                Some(None)
            } else {
                f.parse().ok().map(Some)
            }
        };
        let uid = id(fields.next()?)?;
        let gid = id(fields.next()?)?;
        let mode_field = fields.next()?;
        let full_mode = if mode_field == "x" {
            None
        } else {
            Some(u32::from_str_radix(mode_field, 8).ok()?)
        };
        let type_bits = full_mode
            .map(|m| m & mode::S_IFMT)
            .filter(|&t| t != 0)
            .map(|format| Kind {
                format,
                rdev_major: 0,
                rdev_minor: 0,
            });
        let kind = match fields.next() {
            Some(t) => Some(parse_type(t)?),
            None => type_bits,
        };
        if fields.next().is_some() {
            return None;
        }
        Some(OverrideStat {
            uid,
            gid,
            perms: full_mode.map(|m| m & 0o7777),
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(format: u32, rdev_major: u32, rdev_minor: u32) -> Kind {
        Kind {
            format,
            rdev_major,
            rdev_minor,
        }
    }

    /// What containers-storage writes (its FormatContainersOverrideXattrDevice) for
    /// each file type, byte for byte.
    #[test]
    fn golden_containers_storage_values() {
        let cases = [
            (0, 0, 0o755, kind(mode::S_IFREG, 0, 0), "0:0:0755:file"),
            (
                1000,
                100,
                0o4755,
                kind(mode::S_IFREG, 0, 0),
                "1000:100:4755:file",
            ),
            (0, 0, 0o1777, kind(mode::S_IFDIR, 0, 0), "0:0:1777:dir"),
            (
                33,
                33,
                0o777,
                kind(mode::S_IFLNK, 0, 0),
                "33:33:0777:symlink",
            ),
            (0, 5, 0o620, kind(mode::S_IFIFO, 0, 0), "0:5:0620:pipe"),
            (7, 7, 0o755, kind(mode::S_IFSOCK, 0, 0), "7:7:0755:socket"),
            (0, 6, 0o660, kind(mode::S_IFBLK, 8, 0), "0:6:0660:block-8-0"),
            (0, 0, 0o666, kind(mode::S_IFCHR, 1, 3), "0:0:0666:char-1-3"),
        ];
        for (uid, gid, perms, k, text) in cases {
            assert_eq!(OverrideStat::encode(uid, gid, perms, &k), text);
            assert_eq!(
                OverrideStat::decode(text.as_bytes()),
                Some(OverrideStat {
                    uid: Some(uid),
                    gid: Some(gid),
                    perms: Some(perms),
                    kind: Some(k),
                }),
                "{text}"
            );
        }
    }

    /// What libkrun writes: three fields, the mode with its type bits, `x` for unknown.
    #[test]
    fn golden_libkrun_values() {
        let cases = [
            (
                "0:0:0100755",
                Some(0),
                Some(0),
                Some(0o755),
                Some(kind(mode::S_IFREG, 0, 0)),
            ),
            (
                "1000:1000:040700",
                Some(1000),
                Some(1000),
                Some(0o700),
                Some(kind(mode::S_IFDIR, 0, 0)),
            ),
            (
                "0:0:0120777",
                Some(0),
                Some(0),
                Some(0o777),
                Some(kind(mode::S_IFLNK, 0, 0)),
            ),
            (
                "0:0:010644",
                Some(0),
                Some(0),
                Some(0o644),
                Some(kind(mode::S_IFIFO, 0, 0)),
            ),
            (
                "0:0:0140755",
                Some(0),
                Some(0),
                Some(0o755),
                Some(kind(mode::S_IFSOCK, 0, 0)),
            ),
            (
                "0:6:060660",
                Some(0),
                Some(6),
                Some(0o660),
                Some(kind(mode::S_IFBLK, 0, 0)),
            ),
            (
                "0:0:020666",
                Some(0),
                Some(0),
                Some(0o666),
                Some(kind(mode::S_IFCHR, 0, 0)),
            ),
            // A mode without type bits (as fuse-overlayfs writes) keeps the host's type.
            ("5:6:0640", Some(5), Some(6), Some(0o640), None),
            (
                "x:x:0100600",
                None,
                None,
                Some(0o600),
                Some(kind(mode::S_IFREG, 0, 0)),
            ),
            ("1:x:x", Some(1), None, None, None),
        ];
        for (text, uid, gid, perms, k) in cases {
            assert_eq!(
                OverrideStat::decode(text.as_bytes()),
                Some(OverrideStat {
                    uid,
                    gid,
                    perms,
                    kind: k
                }),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_what_no_writer_writes() {
        for bad in [
            &b""[..],
            b"0",
            b"0:0",
            b"a:0:0644",
            b"0:0:0999",
            b"0:0:0644:tape",
            b"0:0:0644:char-1",
            b"0:0:0644:file:extra",
            b"-1:0:0644",
            b"\xff:0:0644",
        ] {
            assert_eq!(OverrideStat::decode(bad), None, "{bad:?}");
        }
        assert_eq!(
            OverrideStat::decode(b"1:2:0644\0").map(|s| s.uid),
            Some(Some(1)),
            "a trailing NUL"
        );
    }
}
