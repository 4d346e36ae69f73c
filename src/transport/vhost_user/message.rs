//! vhost-user messages on the wire (QEMU's docs/interop/vhost-user.rst): a 12-byte
//! little-endian header (request, flags, payload size), the payload, and the
//! descriptors passed with SCM_RIGHTS alongside the header.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

use crate::platform;

pub const GET_FEATURES: u32 = 1;
pub const SET_FEATURES: u32 = 2;
pub const SET_OWNER: u32 = 3;
pub const RESET_OWNER: u32 = 4;
pub const SET_MEM_TABLE: u32 = 5;
pub const SET_VRING_NUM: u32 = 8;
pub const SET_VRING_ADDR: u32 = 9;
pub const SET_VRING_BASE: u32 = 10;
pub const GET_VRING_BASE: u32 = 11;
pub const SET_VRING_KICK: u32 = 12;
pub const SET_VRING_CALL: u32 = 13;
pub const SET_VRING_ERR: u32 = 14;
pub const GET_PROTOCOL_FEATURES: u32 = 15;
pub const SET_PROTOCOL_FEATURES: u32 = 16;
pub const GET_QUEUE_NUM: u32 = 17;
pub const SET_VRING_ENABLE: u32 = 18;
pub const GET_MAX_MEM_SLOTS: u32 = 36;
pub const ADD_MEM_REG: u32 = 37;
pub const REM_MEM_REG: u32 = 38;

/// The request's name in the spec, for logs.
pub fn name(request: u32) -> &'static str {
    match request {
        GET_FEATURES => "GET_FEATURES",
        SET_FEATURES => "SET_FEATURES",
        SET_OWNER => "SET_OWNER",
        RESET_OWNER => "RESET_OWNER",
        SET_MEM_TABLE => "SET_MEM_TABLE",
        SET_VRING_NUM => "SET_VRING_NUM",
        SET_VRING_ADDR => "SET_VRING_ADDR",
        SET_VRING_BASE => "SET_VRING_BASE",
        GET_VRING_BASE => "GET_VRING_BASE",
        SET_VRING_KICK => "SET_VRING_KICK",
        SET_VRING_CALL => "SET_VRING_CALL",
        SET_VRING_ERR => "SET_VRING_ERR",
        GET_PROTOCOL_FEATURES => "GET_PROTOCOL_FEATURES",
        SET_PROTOCOL_FEATURES => "SET_PROTOCOL_FEATURES",
        GET_QUEUE_NUM => "GET_QUEUE_NUM",
        SET_VRING_ENABLE => "SET_VRING_ENABLE",
        GET_MAX_MEM_SLOTS => "GET_MAX_MEM_SLOTS",
        ADD_MEM_REG => "ADD_MEM_REG",
        REM_MEM_REG => "REM_MEM_REG",
        _ => "unsupported",
    }
}

/// Requests whose sender waits for a reply of their own, not an acknowledgement; the
/// ones this backend does not implement can only be answered by closing the connection
/// (GET_CONFIG, GET_INFLIGHT_FD, GET_STATUS, GET_SHARED_OBJECT, GET_DEVICE_STATE...).
const UNSUPPORTED_WITH_REPLY: &[u32] = &[24, 31, 40, 41, 42, 43];

/// Header flags: protocol version 1, "this is a reply", "acknowledge this".
pub const VERSION: u32 = 0x1;
pub const VERSION_MASK: u32 = 0x3;
pub const REPLY: u32 = 0x4;
pub const NEED_REPLY: u32 = 0x8;

pub const HEADER_SIZE: usize = 12;
/// Larger than any payload this backend accepts (a full memory table is 264 bytes).
pub const MAX_PAYLOAD: usize = 4096;

/// The vring index is the low byte of a u64 payload; bit 8 says no descriptor came.
pub const VRING_INDEX_MASK: u64 = 0xff;
pub const VRING_NOFD: u64 = 0x100;

/// One received message.
pub struct Message {
    pub request: u32,
    pub flags: u32,
    pub payload: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

/// Why a message could not be taken off the socket.
pub enum RecvError {
    /// The VMM closed the connection between messages.
    Disconnected,
    /// Broken framing or a read error: the connection cannot go on.
    Broken(io::Error),
}

impl Message {
    pub fn needs_ack(&self) -> bool {
        self.flags & NEED_REPLY != 0
    }

    /// Whether the sender expects a reply of this request's own (not an ack).
    pub fn has_reply(request: u32) -> bool {
        matches!(
            request,
            GET_FEATURES
                | GET_PROTOCOL_FEATURES
                | GET_QUEUE_NUM
                | GET_VRING_BASE
                | GET_MAX_MEM_SLOTS
        ) || UNSUPPORTED_WITH_REPLY.contains(&request)
    }

    /// The payload as a single u64 (features, vring index with the no-fd bit).
    pub fn u64(&self) -> io::Result<u64> {
        Ok(u64::from_le_bytes(self.exact::<8>(0)?))
    }

    /// The payload as a vring state: (index, num).
    pub fn vring_state(&self) -> io::Result<(u32, u32)> {
        if self.payload.len() != 8 {
            return Err(self.bad_size());
        }
        Ok((self.u32_at(0)?, self.u32_at(4)?))
    }

    pub fn u32_at(&self, at: usize) -> io::Result<u32> {
        Ok(u32::from_le_bytes(self.exact::<4>(at)?))
    }

    pub fn u64_at(&self, at: usize) -> io::Result<u64> {
        Ok(u64::from_le_bytes(self.exact::<8>(at)?))
    }

    fn exact<const N: usize>(&self, at: usize) -> io::Result<[u8; N]> {
        self.payload
            .get(at..at + N)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| self.bad_size())
    }

    pub fn bad_size(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "vhost-user request {}: payload of {} bytes is malformed",
                self.request,
                self.payload.len()
            ),
        )
    }
}

/// Reads the next message; the header's read collects any descriptors sent with it.
pub fn recv(sock: &mut UnixStream) -> Result<Message, RecvError> {
    let mut header = [0u8; HEADER_SIZE];
    let mut fds = Vec::new();
    let n =
        platform::recv_with_fds(sock.as_fd(), &mut header, &mut fds).map_err(RecvError::Broken)?;
    if n == 0 {
        return Err(RecvError::Disconnected);
    }
    sock.read_exact(&mut header[n..])
        .map_err(RecvError::Broken)?;
    let word =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let (request, flags, size) = (word(0), word(4), word(8) as usize);
    let broken = |what: String| RecvError::Broken(io::Error::new(io::ErrorKind::InvalidData, what));
    if flags & VERSION_MASK != VERSION {
        return Err(broken(format!(
            "vhost-user request {request}: unknown protocol version in flags {flags:#x}"
        )));
    }
    if size > MAX_PAYLOAD {
        return Err(broken(format!(
            "vhost-user request {request}: payload of {size} bytes is larger than any known message"
        )));
    }
    let mut payload = vec![0u8; size];
    sock.read_exact(&mut payload).map_err(RecvError::Broken)?;
    Ok(Message {
        request,
        flags,
        payload,
        fds,
    })
}

/// Sends the reply to `request` with `payload`.
pub fn reply(sock: &mut UnixStream, request: u32, payload: &[u8]) -> io::Result<()> {
    let mut out = Vec::with_capacity(HEADER_SIZE + payload.len());
    out.extend_from_slice(&request.to_le_bytes());
    out.extend_from_slice(&(VERSION | REPLY).to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    sock.write_all(&out)
}

/// Sends a u64 reply (features, counts, acknowledgements: 0 is success).
pub fn reply_u64(sock: &mut UnixStream, request: u32, value: u64) -> io::Result<()> {
    reply(sock, request, &value.to_le_bytes())
}
