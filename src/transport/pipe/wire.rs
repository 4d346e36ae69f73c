//! fuse-pipe framing and handshake (`docs/protocol.md` is the normative description).
//!
//! After the handshake a client sends frames `u32 len, u32 ngroups, ngroups × u32,
//! FUSE request`, all little-endian, `len` counting the bytes after itself; the server
//! answers with bare FUSE replies, whose out-header carries their length. Every length
//! is checked against its limit before anything is read or allocated.

use std::io::{self, BufRead, Read};

use crate::protocol::abi::OutHeader;
use crate::protocol::dispatch::BUFFER_SIZE;
use crate::protocol::wire::{wire_struct, Reader, Wire, Writer};

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

wire_struct! {
    /// The client's hello (24 bytes); `token_len` bytes of token follow.
    pub struct Hello { magic: u64, version: u16, token_len: u16, caps: u32, required: u32, max_frame: u32 }
}

wire_struct! {
    /// The server's answer (34 bytes); `message_len` bytes of UTF-8 text follow. The
    /// instance is random per server process: a different one after a reconnect means
    /// the server restarted and every node id and handle of the old one is gone.
    pub struct Welcome {
        magic: u64, version: u16, status: u16, caps: u32, required: u32, max_frame: u32,
        instance: u64, message_len: u16,
    }
}

pub const HELLO_LEN: usize = Hello::SIZE;
pub const WELCOME_FIXED_LEN: usize = Welcome::SIZE;
pub const MAX_WELCOME_MESSAGE: usize = 1024;

impl Hello {
    /// This version's hello with `caps`, announcing a token of `token_len` bytes.
    pub fn new(caps: u32, token_len: usize) -> Hello {
        Hello {
            magic: u64::from_le_bytes(MAGIC),
            version: VERSION,
            token_len: token_len.min(MAX_TOKEN) as u16,
            caps,
            required: 0,
            max_frame: MAX_FRAME,
        }
    }
}

/// The bytes of `v` (a hello or welcome).
pub fn encode<T: Wire>(v: &T) -> Vec<u8> {
    let mut b = vec![0u8; T::SIZE];
    let _ = v.encode(&mut Writer::new(&mut b));
    b
}

/// A hello or welcome from its bytes; `None` if short or without the magic.
pub fn decode<T: Wire>(b: &[u8]) -> Option<T> {
    let magic = Reader::new(b).u64().ok()?;
    let v = T::decode(&mut Reader::new(b)).ok()?;
    (magic == u64::from_le_bytes(MAGIC)).then_some(v)
}

/// A welcome and its message (cut at [`MAX_WELCOME_MESSAGE`] bytes).
pub fn welcome_bytes(w: &Welcome, message: &str) -> Vec<u8> {
    let msg = &message.as_bytes()[..message.len().min(MAX_WELCOME_MESSAGE)];
    let w = Welcome {
        message_len: msg.len() as u16,
        ..*w
    };
    [encode(&w), msg.to_vec()].concat()
}

/// A request frame: `groups` and the FUSE message `msg`.
pub fn request_frame(groups: &[u32], msg: &[u8]) -> Vec<u8> {
    let head = 8 + 4 * groups.len();
    let mut f = vec![0u8; head + msg.len()];
    put_frame_head(&mut f[..head], groups, msg.len());
    f[head..].copy_from_slice(msg);
    f
}

/// Room before a FUSE message for the head of its frame with the most groups.
pub const FRAME_HEAD_ROOM: usize = 8 + 4 * MAX_GROUPS as usize;

/// Writes the head of a request frame (`groups`, then a `msg_len`-byte message) at the
/// end of `room`, so that the message right after `room` completes the frame; returns
/// where in `room` the frame starts. `room` holds [`FRAME_HEAD_ROOM`] bytes.
pub fn put_frame_head(room: &mut [u8], groups: &[u32], msg_len: usize) -> usize {
    let start = room.len() - 8 - 4 * groups.len();
    let len = 4 + 4 * groups.len() + msg_len;
    let words = [len as u32, groups.len() as u32].into_iter();
    let words = words.chain(groups.iter().copied());
    for (dst, word) in room[start..].chunks_exact_mut(4).zip(words) {
        dst.copy_from_slice(&word.to_le_bytes());
    }
    start
}

/// The FUSE message of a frame built by [`request_frame`].
pub fn frame_message(frame: &[u8]) -> &[u8] {
    let groups = frame
        .get(4..8)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    frame.get(8 + 4 * groups..).unwrap_or(&[])
}

/// Reads one request frame into `groups` (reused, never grown past the limit) and
/// the start of `buf`, which holds [`MAX_MESSAGE`] bytes; returns the message's length,
/// or `None` at a clean end of stream before the frame.
pub fn read_request(
    r: &mut impl BufRead,
    groups: &mut Vec<u32>,
    buf: &mut [u8],
) -> io::Result<Option<usize>> {
    loop {
        match r.fill_buf() {
            Ok([]) => return Ok(None),
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let mut head = [0u8; 8];
    read_body(r, &mut head)?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let count = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let msg_len = (len <= MAX_FRAME && count <= MAX_GROUPS)
        .then(|| len.checked_sub(4 + 4 * count))
        .flatten()
        .map(|n| n as usize)
        .filter(|&n| n <= MAX_MESSAGE.min(buf.len()))
        .ok_or_else(|| {
            invalid(format!(
                "malformed frame: length {len} with {count} groups (at most {MAX_GROUPS} \
                 groups and a {MAX_MESSAGE}-byte message)"
            ))
        })?;
    let mut raw = [0u8; 4];
    groups.clear();
    for _ in 0..count {
        read_body(r, &mut raw)?;
        groups.push(u32::from_le_bytes(raw));
    }
    read_body(r, &mut buf[..msg_len]).map(|()| Some(msg_len))
}

/// Reads one reply (a bare FUSE message) into the start of `buf`, which holds
/// [`MAX_MESSAGE`] bytes; returns its length.
pub fn read_reply(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let len = read_reply_head(r, buf)?.len as usize;
    read_body(r, &mut buf[OutHeader::SIZE..len])?;
    Ok(len)
}

/// Reads a reply's header into the front of `buf`, which its length is checked to fit.
pub fn read_reply_head(r: &mut impl Read, buf: &mut [u8]) -> io::Result<OutHeader> {
    let head = buf
        .get_mut(..OutHeader::SIZE)
        .ok_or_else(|| invalid("reply buffer too small".into()))?;
    r.read_exact(head)?;
    let h = OutHeader::decode(&mut Reader::new(head)).map_err(|e| invalid(e.to_string()))?;
    let len = h.len as usize;
    if !(OutHeader::SIZE..=MAX_MESSAGE.min(buf.len())).contains(&len) {
        return Err(invalid(format!(
            "malformed reply: length {len} outside {}..={MAX_MESSAGE}",
            OutHeader::SIZE
        )));
    }
    Ok(h)
}

/// `read_exact` inside a frame: an end of stream there is a truncated frame.
pub fn read_body(r: &mut impl Read, buf: &mut [u8]) -> io::Result<()> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => invalid("malformed frame: truncated".into()),
        _ => e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_layouts() {
        let h = Hello::new(3, 5000);
        let b = encode(&h);
        assert_eq!(
            (b.len(), &b[..8], b[8], b[10..12].to_vec()),
            (24, &MAGIC[..], 3, vec![0, 4])
        );
        assert_eq!(decode::<Hello>(&b), Some(h));
        let mut bad = b.clone();
        bad[0] ^= 1;
        assert_eq!(decode::<Hello>(&bad), None);
        let w = Welcome {
            magic: h.magic,
            status: status::BAD_VERSION,
            instance: 9,
            ..Default::default()
        };
        let b = welcome_bytes(&w, "no");
        assert_eq!((b.len(), &b[34..]), (36, &b"no"[..]));
        let got = decode::<Welcome>(&b).unwrap();
        assert_eq!(
            (got.instance, got.status, got.message_len),
            (9, status::BAD_VERSION, 2)
        );
    }

    #[test]
    fn frames_are_bounded() {
        let f = request_frame(&[5, 6], b"message");
        let (mut groups, mut buf) = (Vec::new(), vec![0u8; MAX_MESSAGE]);
        let len = read_request(&mut &f[..], &mut groups, &mut buf).unwrap();
        assert_eq!((groups, len), (vec![5, 6], Some(7)));
        assert_eq!(&buf[..7], b"message");
        assert_eq!(frame_message(&f), b"message");
        let huge = [MAX_FRAME + 1, 0, u32::MAX, 0, 8, MAX_GROUPS + 1, 4, 1];
        for head in huge.chunks(2) {
            let b = [head[0].to_le_bytes(), head[1].to_le_bytes()].concat();
            let mut g = Vec::new();
            assert!(
                read_request(&mut &b[..], &mut g, &mut buf).is_err(),
                "{head:?}"
            );
            assert!(g.capacity() == 0, "nothing allocated for {head:?}");
        }
        let mut g = Vec::new();
        assert_eq!(read_request(&mut &[][..], &mut g, &mut buf).unwrap(), None);
        assert!(read_request(&mut &f[..f.len() - 1], &mut g, &mut buf).is_err());
    }
}
