//! fuse-pipe framing and handshake (`docs/protocol.md` is the normative description).
//!
//! After the handshake a client sends frames `u32 len, u32 ngroups, ngroups × u32,
//! FUSE request`, all little-endian, `len` counting the bytes after itself; the server
//! answers with bare FUSE replies, whose out-header carries their length. Every length
//! is checked against its limit before anything is read or allocated.

use std::io::{self, Read};

use crate::protocol::abi::OutHeader;
use crate::protocol::dispatch::BUFFER_SIZE;
use crate::protocol::wire::{Reader, Wire, Writer};

/// First bytes of both handshake messages.
pub const MAGIC: [u8; 8] = *b"OWNFSPIP";
/// Protocol version; both sides must speak exactly this one. 2 added the token after
/// the hello; 3 replaced per-operation messages with the kernel's own FUSE messages.
pub const VERSION: u16 = 3;
/// Longest authentication token a hello may carry.
pub const MAX_TOKEN: usize = 1024;
/// Most supplementary groups a request may carry.
pub const MAX_GROUPS: u32 = 8192;
/// Largest FUSE message either way: a 1 MiB write or read and its headers.
pub const MAX_MESSAGE: usize = BUFFER_SIZE;
/// Largest value of a request frame's length field.
pub const MAX_FRAME: u32 = 4 + 4 * MAX_GROUPS + MAX_MESSAGE as u32;

/// Capability: the server virtualizes ownership (rootless); the client must let its
/// kernel check permissions (`default_permissions`).
pub const CAP_ROOTLESS: u32 = 1 << 0;
/// Capability: the server honours the writeback-cache INIT flag.
pub const CAP_WRITEBACK: u32 = 1 << 1;
/// Every capability this version knows.
pub const KNOWN_CAPS: u32 = CAP_ROOTLESS | CAP_WRITEBACK;

/// Handshake status codes (server to client).
pub mod status {
    pub const OK: u16 = 0;
    pub const BAD_MAGIC: u16 = 1;
    pub const BAD_VERSION: u16 = 2;
    pub const MISSING_CAPS: u16 = 3;
    /// Missing or wrong token (the reason is in the server's log only).
    pub const AUTH_FAILED: u16 = 4;
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Client hello: 24 bytes, then the token (as many bytes as the u16 at offset 10 says).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    pub version: u16,
    pub caps: u32,
    pub required: u32,
    pub max_frame: u32,
}

pub const HELLO_LEN: usize = 24;

impl Hello {
    pub fn encode(&self) -> [u8; HELLO_LEN] {
        self.encode_with_token(&[])[..HELLO_LEN]
            .try_into()
            .unwrap_or([0; HELLO_LEN])
    }

    /// The hello followed by `token` (at most [`MAX_TOKEN`] bytes; longer is cut).
    pub fn encode_with_token(&self, token: &[u8]) -> Vec<u8> {
        let token = &token[..token.len().min(MAX_TOKEN)];
        let mut b = vec![0u8; HELLO_LEN];
        let mut w = Writer::new(&mut b);
        let _ = (|| {
            w.bytes(&MAGIC)?;
            w.u16(self.version)?;
            w.u16(token.len() as u16)?;
            w.u32(self.caps)?;
            w.u32(self.required)?;
            w.u32(self.max_frame)
        })();
        b.extend_from_slice(token);
        b
    }

    /// Only the magic is checked here; the server judges version and capabilities.
    pub fn decode(b: &[u8; HELLO_LEN]) -> Option<Hello> {
        let mut r = Reader::new(b);
        if r.bytes(8).ok()? != MAGIC {
            return None;
        }
        let version = r.u16().ok()?;
        r.u16().ok()?;
        Some(Hello {
            version,
            caps: r.u32().ok()?,
            required: r.u32().ok()?,
            max_frame: r.u32().ok()?,
        })
    }
}

/// How many token bytes follow this hello.
pub fn hello_token_len(b: &[u8; HELLO_LEN]) -> usize {
    usize::from(u16::from_le_bytes([b[10], b[11]]))
}

/// Server answer to a hello: 34 bytes, then `message_len` bytes of UTF-8 text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Welcome {
    pub version: u16,
    pub status: u16,
    pub caps: u32,
    pub required: u32,
    pub max_frame: u32,
    /// Random per server process: a different value after a reconnect means the
    /// server restarted and every node id and handle of the old one is gone.
    pub instance: u64,
    pub message: String,
}

pub const WELCOME_FIXED_LEN: usize = 34;
pub const MAX_WELCOME_MESSAGE: usize = 1024;

impl Welcome {
    pub fn encode(&self) -> Vec<u8> {
        let msg = self.message.as_bytes();
        let msg = &msg[..msg.len().min(MAX_WELCOME_MESSAGE)];
        let mut b = vec![0u8; WELCOME_FIXED_LEN];
        let mut w = Writer::new(&mut b);
        let _ = (|| {
            w.bytes(&MAGIC)?;
            w.u16(self.version)?;
            w.u16(self.status)?;
            w.u32(self.caps)?;
            w.u32(self.required)?;
            w.u32(self.max_frame)?;
            w.u64(self.instance)?;
            w.u16(msg.len() as u16)
        })();
        b.extend_from_slice(msg);
        b
    }

    /// Decodes the fixed part; returns the welcome (message empty) and how many
    /// message bytes follow.
    pub fn decode_fixed(b: &[u8; WELCOME_FIXED_LEN]) -> io::Result<(Welcome, usize)> {
        let mut r = Reader::new(b);
        let bad = |_| invalid("welcome truncated".into());
        if r.bytes(8).map_err(bad)? != MAGIC {
            return Err(invalid("bad magic".into()));
        }
        let w = Welcome {
            version: r.u16().map_err(bad)?,
            status: r.u16().map_err(bad)?,
            caps: r.u32().map_err(bad)?,
            required: r.u32().map_err(bad)?,
            max_frame: r.u32().map_err(bad)?,
            instance: r.u64().map_err(bad)?,
            message: String::new(),
        };
        let n = usize::from(r.u16().map_err(bad)?);
        if n > MAX_WELCOME_MESSAGE {
            return Err(invalid(format!(
                "welcome message of {n} bytes exceeds {MAX_WELCOME_MESSAGE}"
            )));
        }
        Ok((w, n))
    }
}

/// A request frame: `groups` and the FUSE message `msg`.
pub fn request_frame(groups: &[u32], msg: &[u8]) -> Vec<u8> {
    let len = 4 + 4 * groups.len() + msg.len();
    let mut f = Vec::with_capacity(4 + len);
    f.extend_from_slice(&(len as u32).to_le_bytes());
    f.extend_from_slice(&(groups.len() as u32).to_le_bytes());
    for g in groups {
        f.extend_from_slice(&g.to_le_bytes());
    }
    f.extend_from_slice(msg);
    f
}

/// The FUSE message of a frame built by [`request_frame`].
pub fn frame_message(frame: &[u8]) -> &[u8] {
    let groups = frame
        .get(4..8)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    frame.get(8 + 4 * groups..).unwrap_or(&[])
}

/// Reads one request frame into `groups` and `msg` (both reused, never grown past the
/// limits); `Ok(false)` at a clean end of stream before the frame.
pub fn read_request(
    r: &mut impl Read,
    groups: &mut Vec<u32>,
    msg: &mut Vec<u8>,
) -> io::Result<bool> {
    let mut head = [0u8; 8];
    if !read_exact_or_eof(r, &mut head)? {
        return Ok(false);
    }
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let count = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len > MAX_FRAME || count > MAX_GROUPS {
        return Err(invalid(format!(
            "malformed frame: length {len} (limit {MAX_FRAME}), {count} groups (limit {MAX_GROUPS})"
        )));
    }
    let Some(msg_len) = len.checked_sub(4 + 4 * count) else {
        return Err(invalid(format!(
            "malformed frame: length {len} cannot hold {count} groups"
        )));
    };
    let msg_len = msg_len as usize;
    if msg_len > MAX_MESSAGE {
        return Err(invalid(format!(
            "malformed frame: a {msg_len}-byte message exceeds {MAX_MESSAGE}"
        )));
    }
    let mut raw = [0u8; 4];
    groups.clear();
    for _ in 0..count {
        read_body(r, &mut raw)?;
        groups.push(u32::from_le_bytes(raw));
    }
    msg.resize(msg_len, 0);
    read_body(r, msg).map(|()| true)
}

/// Reads one reply (a bare FUSE message) into `buf`, reused; returns its length.
pub fn read_reply(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.resize(OutHeader::SIZE, 0);
    r.read_exact(buf)?;
    let h = OutHeader::decode(&mut Reader::new(buf)).map_err(|e| invalid(e.to_string()))?;
    let len = h.len as usize;
    if !(OutHeader::SIZE..=MAX_MESSAGE).contains(&len) {
        return Err(invalid(format!(
            "malformed reply: length {len} outside {}..={MAX_MESSAGE}",
            OutHeader::SIZE
        )));
    }
    buf.resize(len, 0);
    read_body(r, &mut buf[OutHeader::SIZE..])?;
    Ok(len)
}

/// `read_exact` inside a frame: an end of stream there is a truncated frame.
fn read_body(r: &mut impl Read, buf: &mut [u8]) -> io::Result<()> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => invalid("malformed frame: truncated".into()),
        _ => e,
    })
}

/// Like `read_exact`, but a clean end of stream before the first byte is `Ok(false)`.
fn read_exact_or_eof(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(invalid("malformed frame: truncated header".into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_roundtrip() {
        let h = Hello {
            version: VERSION,
            caps: 3,
            required: 1,
            max_frame: MAX_FRAME,
        };
        let b = h.encode_with_token(b"tok");
        let fixed: [u8; HELLO_LEN] = b[..HELLO_LEN].try_into().unwrap();
        assert_eq!(Hello::decode(&fixed), Some(h));
        assert_eq!(hello_token_len(&fixed), 3);
        assert_eq!(&b[HELLO_LEN..], b"tok");
        let w = Welcome {
            version: VERSION,
            status: status::BAD_VERSION,
            caps: 1,
            required: 0,
            max_frame: MAX_FRAME,
            instance: 9,
            message: "no".into(),
        };
        let b = w.encode();
        let (got, n) = Welcome::decode_fixed(b[..WELCOME_FIXED_LEN].try_into().unwrap()).unwrap();
        assert_eq!((got.instance, got.status, n), (9, status::BAD_VERSION, 2));
    }

    #[test]
    fn frames_are_bounded() {
        let f = request_frame(&[5, 6], b"message");
        let (mut groups, mut msg) = (Vec::new(), Vec::new());
        assert!(read_request(&mut &f[..], &mut groups, &mut msg).unwrap());
        assert_eq!((groups, &msg[..]), (vec![5, 6], &b"message"[..]));
        assert_eq!(frame_message(&f), b"message");
        for head in [
            [MAX_FRAME + 1, 0],
            [u32::MAX, 0],
            [8, MAX_GROUPS + 1],
            [4, 1],
        ] {
            let mut b = head[0].to_le_bytes().to_vec();
            b.extend_from_slice(&head[1].to_le_bytes());
            let (mut g, mut m) = (Vec::new(), Vec::new());
            assert!(
                read_request(&mut &b[..], &mut g, &mut m).is_err(),
                "{head:?}"
            );
            assert!(m.capacity() == 0, "nothing allocated for {head:?}");
        }
        let (mut g, mut m) = (Vec::new(), Vec::new());
        assert!(!read_request(&mut &[][..], &mut g, &mut m).unwrap());
        assert!(read_request(&mut &f[..f.len() - 1], &mut g, &mut m).is_err());
    }
}
