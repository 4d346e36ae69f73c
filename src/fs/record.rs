//! The ownership record: what a rootless server could not apply on the host.
//!
//! Stored in the `user.ownfs.stat` extended attribute of the host inode; the layout
//! is in docs/ownership-record.md. Little-endian, versioned, and longer values are
//! accepted so later versions can append fields.

use crate::platform::mode;

pub const VERSION: u8 = 1;
pub const LEN: usize = 28;

const HAS_UID: u8 = 1;
const HAS_GID: u8 = 2;
const HAS_MODE: u8 = 4;
const HAS_TYPE: u8 = 8;

/// A file type other than the host's, for emulated special files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind {
    /// `S_IFMT` bits in Linux numbering.
    pub format: u32,
    pub rdev_major: u32,
    pub rdev_minor: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Permission bits including suid, sgid and sticky (07777).
    pub mode: Option<u32>,
    pub kind: Option<Kind>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    Short,
    UnknownVersion(u8),
}

impl Record {
    pub fn is_empty(&self) -> bool {
        self.uid.is_none() && self.gid.is_none() && self.mode.is_none() && self.kind.is_none()
    }

    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = VERSION;
        let mut flags = 0;
        if let Some(uid) = self.uid {
            flags |= HAS_UID;
            b[4..8].copy_from_slice(&uid.to_le_bytes());
        }
        if let Some(gid) = self.gid {
            flags |= HAS_GID;
            b[8..12].copy_from_slice(&gid.to_le_bytes());
        }
        if let Some(mode) = self.mode {
            flags |= HAS_MODE;
            b[12..16].copy_from_slice(&(mode & 0o7777).to_le_bytes());
        }
        if let Some(k) = self.kind {
            flags |= HAS_TYPE;
            b[16..20].copy_from_slice(&k.format.to_le_bytes());
            b[20..24].copy_from_slice(&k.rdev_major.to_le_bytes());
            b[24..28].copy_from_slice(&k.rdev_minor.to_le_bytes());
        }
        b[1] = flags;
        b
    }

    pub fn decode(b: &[u8]) -> Result<Record, DecodeError> {
        let Some(&version) = b.first() else {
            return Err(DecodeError::Short);
        };
        if version != VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        if b.len() < LEN {
            return Err(DecodeError::Short);
        }
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let flags = b[1];
        Ok(Record {
            uid: (flags & HAS_UID != 0).then(|| word(4)),
            gid: (flags & HAS_GID != 0).then(|| word(8)),
            mode: (flags & HAS_MODE != 0).then(|| word(12) & 0o7777),
            kind: (flags & HAS_TYPE != 0).then(|| Kind {
                format: word(16) & mode::S_IFMT,
                rdev_major: word(20),
                rdev_minor: word(24),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_field_combination() {
        for flags in 0..16u8 {
            let r = Record {
                uid: (flags & 1 != 0).then_some(1234),
                gid: (flags & 2 != 0).then_some(u32::MAX - 1),
                mode: (flags & 4 != 0).then_some(0o4755),
                kind: (flags & 8 != 0).then_some(Kind {
                    format: mode::S_IFCHR,
                    rdev_major: 4095,
                    rdev_minor: 1 << 19,
                }),
            };
            assert_eq!(Record::decode(&r.encode()), Ok(r));
        }
    }

    #[test]
    fn is_little_endian_with_a_version_byte() {
        let r = Record {
            uid: Some(0x0102_0304),
            ..Default::default()
        };
        let b = r.encode();
        assert_eq!(b[0], VERSION);
        assert_eq!(b[1], HAS_UID);
        assert_eq!(&b[4..8], &[4, 3, 2, 1]);
    }

    #[test]
    fn accepts_longer_values_and_rejects_bad_ones() {
        let r = Record {
            gid: Some(7),
            ..Default::default()
        };
        let mut long = r.encode().to_vec();
        long.extend_from_slice(&[0xAA; 16]);
        assert_eq!(Record::decode(&long), Ok(r));
        assert_eq!(Record::decode(&[]), Err(DecodeError::Short));
        assert_eq!(
            Record::decode(&r.encode()[..LEN - 1]),
            Err(DecodeError::Short)
        );
        let mut future = r.encode();
        future[0] = 2;
        assert_eq!(Record::decode(&future), Err(DecodeError::UnknownVersion(2)));
    }
}
