//! Byte-level cursors: every ABI struct is read and written field by field,
//! little-endian, at offsets that follow from the field order alone.

use std::ffi::CStr;
use std::fmt;

/// Why a message could not be decoded; never a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// A field or payload needs `need` bytes where only `have` remain.
    Short { need: usize, have: usize },
    /// The buffer is shorter than `fuse_in_header`.
    ShortHeader { have: usize },
    /// The header's `len` disagrees with the bytes received.
    LengthMismatch { header: u32, actual: usize },
    /// A name or string argument has no NUL terminator inside the message.
    MissingNul,
    /// `total_extlen` points before the end of the in-header.
    ExtensionTooLong { extlen: usize, available: usize },
    /// An extension header's size is zero, unaligned or past the area's end.
    BadExtension { offset: usize },
    /// A count (forgets, mappings, groups) promises more records than were sent.
    CountTooLarge { count: u32 },
    /// The session negotiated a minor older than this decoder supports.
    UnsupportedMinor(u32),
    /// The opcode is a byte-swapped INIT: the peer is big-endian.
    WrongEndian,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Short { need, have } => write!(f, "argument needs {need} bytes, {have} left"),
            Self::ShortHeader { have } => {
                write!(f, "message of {have} bytes is shorter than fuse_in_header")
            }
            Self::LengthMismatch { header, actual } => {
                write!(f, "header says {header} bytes, message has {actual}")
            }
            Self::MissingNul => write!(f, "string argument without NUL terminator"),
            Self::ExtensionTooLong { extlen, available } => {
                write!(
                    f,
                    "extension area of {extlen} bytes, only {available} after the header"
                )
            }
            Self::BadExtension { offset } => {
                write!(f, "malformed extension header at offset {offset}")
            }
            Self::CountTooLarge { count } => write!(f, "record count {count} exceeds the message"),
            Self::UnsupportedMinor(m) => {
                write!(f, "FUSE protocol 7.{m} is older than 7.9, unsupported")
            }
            Self::WrongEndian => write!(f, "byte-swapped INIT: big-endian peers are unsupported"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// The caller's buffer is too small for the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeError {
    /// Bytes the whole reply would need.
    pub need: usize,
    /// Bytes the buffer has.
    pub have: usize,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "reply needs {} bytes, buffer has {}",
            self.need, self.have
        )
    }
}

impl std::error::Error for EncodeError {}

/// A forward-only cursor over a borrowed message.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads `buf` from its start.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Bytes not consumed yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Everything not consumed yet, consuming it.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// The next `n` bytes, borrowed from the message.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Short {
                need: n,
                have: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// The next `N` bytes as an array (for the integer readers).
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let b = self.bytes(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_le_bytes)
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_le_bytes)
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_le_bytes)
    }

    /// A little-endian i32.
    pub fn i32(&mut self) -> Result<i32, DecodeError> {
        self.array().map(i32::from_le_bytes)
    }

    /// A little-endian i64.
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        self.array().map(i64::from_le_bytes)
    }

    /// A NUL-terminated string; the terminator is consumed, not returned.
    pub fn cstr(&mut self) -> Result<&'a CStr, DecodeError> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::MissingNul)?;
        let with_nul = self.bytes(end.saturating_add(1))?;
        CStr::from_bytes_with_nul(with_nul).map_err(|_| DecodeError::MissingNul)
    }
}

/// A forward-only cursor over a caller-owned reply buffer.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// Writes into `buf` from its start.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes written so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Appends `b`, or fails leaving the buffer's tail untouched.
    pub fn bytes(&mut self, b: &[u8]) -> Result<(), EncodeError> {
        let have = self.buf.len();
        let err = EncodeError {
            need: self.pos.saturating_add(b.len()),
            have,
        };
        let end = self.pos.checked_add(b.len()).ok_or(err)?;
        let dst = self.buf.get_mut(self.pos..end).ok_or(err)?;
        dst.copy_from_slice(b);
        self.pos = end;
        Ok(())
    }

    /// Appends `n` zero bytes (padding, reserved fields).
    pub fn zeros(&mut self, n: usize) -> Result<(), EncodeError> {
        let have = self.buf.len();
        let err = EncodeError {
            need: self.pos.saturating_add(n),
            have,
        };
        let end = self.pos.checked_add(n).ok_or(err)?;
        self.buf.get_mut(self.pos..end).ok_or(err)?.fill(0);
        self.pos = end;
        Ok(())
    }

    /// Pads with zeros up to the next multiple of 8 (dirent records).
    pub fn align8(&mut self) -> Result<(), EncodeError> {
        self.zeros(align8(self.pos).saturating_sub(self.pos))
    }

    /// A little-endian u16.
    pub fn u16(&mut self, v: u16) -> Result<(), EncodeError> {
        self.bytes(&v.to_le_bytes())
    }

    /// A little-endian u32.
    pub fn u32(&mut self, v: u32) -> Result<(), EncodeError> {
        self.bytes(&v.to_le_bytes())
    }

    /// A little-endian u64.
    pub fn u64(&mut self, v: u64) -> Result<(), EncodeError> {
        self.bytes(&v.to_le_bytes())
    }

    /// A little-endian i32.
    pub fn i32(&mut self, v: i32) -> Result<(), EncodeError> {
        self.bytes(&v.to_le_bytes())
    }

    /// A little-endian i64.
    pub fn i64(&mut self, v: i64) -> Result<(), EncodeError> {
        self.bytes(&v.to_le_bytes())
    }

    /// Overwrites a u32 already written at `at` (the out-header's `len`).
    pub fn patch_u32(&mut self, at: usize, v: u32) -> Result<(), EncodeError> {
        let have = self.buf.len();
        let err = EncodeError {
            need: at.saturating_add(4),
            have,
        };
        let end = at.checked_add(4).filter(|&e| e <= self.pos).ok_or(err)?;
        self.buf
            .get_mut(at..end)
            .ok_or(err)?
            .copy_from_slice(&v.to_le_bytes());
        Ok(())
    }
}

/// Rounds up to the 8-byte record alignment (FUSE_REC_ALIGN); saturates near usize::MAX.
pub const fn align8(n: usize) -> usize {
    match n.checked_add(7) {
        Some(v) => v & !7,
        None => usize::MAX & !7,
    }
}

/// A fixed-size ABI struct with an explicit little-endian layout.
pub trait Wire: Sized {
    /// sizeof() of the C struct in fuse.h.
    const SIZE: usize;
    /// Reads the struct field by field.
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
    /// Writes the struct field by field.
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError>;
}

macro_rules! wire_int {
    ($($t:ident),*) => {$(
        impl Wire for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                r.$t()
            }
            fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
                w.$t(*self)
            }
        }
    )*};
}
wire_int!(u16, u32, u64, i32, i64);

impl<T: Wire + Copy + Default, const N: usize> Wire for [T; N] {
    const SIZE: usize = T::SIZE * N;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut out = [T::default(); N];
        for slot in out.iter_mut() {
            *slot = T::decode(r)?;
        }
        Ok(out)
    }
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        self.iter().try_for_each(|v| v.encode(w))
    }
}

/// Declares a plain struct with pub fields and its [`Wire`] impl, fields in ABI order.
macro_rules! wire_struct {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $name { $($(#[$fm])* pub $field: $ty),* }

        impl $crate::protocol::wire::Wire for $name {
            const SIZE: usize = 0 $(+ <$ty as $crate::protocol::wire::Wire>::SIZE)*;
            fn decode(
                r: &mut $crate::protocol::wire::Reader<'_>,
            ) -> Result<Self, $crate::protocol::wire::DecodeError> {
                Ok(Self { $($field: <$ty as $crate::protocol::wire::Wire>::decode(r)?),* })
            }
            fn encode(
                &self,
                w: &mut $crate::protocol::wire::Writer<'_>,
            ) -> Result<(), $crate::protocol::wire::EncodeError> {
                $($crate::protocol::wire::Wire::encode(&self.$field, w)?;)*
                Ok(())
            }
        }
    };
}
pub(crate) use wire_struct;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_is_bounded_and_little_endian() {
        let mut r = Reader::new(&[1, 0, 0, 0, 2, 0, b'a', 0, b'b']);
        assert_eq!(r.u32(), Ok(1));
        assert_eq!(r.u16(), Ok(2));
        assert_eq!(r.cstr().map(CStr::to_bytes), Ok(&b"a"[..]));
        assert_eq!(r.cstr(), Err(DecodeError::MissingNul));
        assert_eq!(r.u32(), Err(DecodeError::Short { need: 4, have: 1 }));
        assert_eq!(r.bytes(1), Ok(&b"b"[..]));
    }

    #[test]
    fn writer_refuses_overflow() {
        let mut buf = [0u8; 6];
        let mut w = Writer::new(&mut buf);
        assert!(w.u32(0x0403_0201).is_ok());
        assert_eq!(w.u32(5), Err(EncodeError { need: 8, have: 6 }));
        assert!(w.u16(0x0605).is_ok());
        assert!(w.patch_u32(0, 9).is_ok());
        assert!(w.patch_u32(4, 9).is_err());
        assert_eq!(buf, [9, 0, 0, 0, 5, 6]);
        assert_eq!(align8(0), 0);
        assert_eq!(align8(1), 8);
        assert_eq!(align8(usize::MAX), usize::MAX & !7);
    }
}
