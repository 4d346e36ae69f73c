//! Raw FUSE messages, built byte by byte (little-endian, `fuse_kernel.h` layouts), and
//! a harness that hands them to the protocol core exactly as every transport does
//! (`ownfs::protocol::dispatch::Session::handle`), with no kernel in between.
//!
//! Replies go to one end of a datagram socket pair: one write by the server is one
//! datagram, so the harness sees each reply whole, as the kernel would, and notices a
//! request answered twice or not at all.
//!
//! [`PipeFuse`] sends the same messages through a running `ownfs serve` instead, in
//! fuse-pipe frames, so both reach the protocol core by the same code path.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ownfs::extension::FileSystemExt;
pub use ownfs::protocol::dispatch::Handled;
use ownfs::protocol::dispatch::{takes_answer, Session, SessionOptions, BUFFER_SIZE};
use ownfs::transport::pipe::wire::{self, Hello, Welcome, WELCOME_FIXED_LEN};

pub const IN_HEADER_LEN: usize = 40;
pub const OUT_HEADER_LEN: usize = 16;
pub const ROOT: u64 = 1;

/// Opcodes and setattr's `FATTR_*` bits: the protocol core's own constants.
#[allow(unused_imports)]
pub use ownfs::protocol::abi::{fattr, opcode as op};

/// The body of a request after `fuse_in_header`.
#[derive(Clone, Default)]
pub struct Body(pub Vec<u8>);

impl Body {
    pub fn new() -> Body {
        Body(Vec::new())
    }
    pub fn u32(mut self, v: u32) -> Body {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(mut self, v: u64) -> Body {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bytes(mut self, v: &[u8]) -> Body {
        self.0.extend_from_slice(v);
        self
    }
    /// A name as the kernel sends it: the bytes and a terminating NUL.
    pub fn name(self, v: &[u8]) -> Body {
        self.bytes(v).bytes(&[0])
    }
}

/// A whole request: header fields and body; `len` overrides the length field.
#[derive(Clone)]
pub struct Msg {
    pub opcode: u32,
    pub node: u64,
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
    pub body: Vec<u8>,
    pub len: Option<u32>,
}

impl Msg {
    pub fn new(opcode: u32, node: u64, body: Body) -> Msg {
        Msg {
            opcode,
            node,
            uid: 0,
            gid: 0,
            pid: std::process::id(),
            body: body.0,
            len: None,
        }
    }

    pub fn len(mut self, len: u32) -> Msg {
        self.len = Some(len);
        self
    }

    pub fn caller(mut self, uid: u32, gid: u32) -> Msg {
        self.uid = uid;
        self.gid = gid;
        self
    }

    pub fn encode(&self, unique: u64) -> Vec<u8> {
        let total = (IN_HEADER_LEN + self.body.len()) as u32;
        let mut v = Vec::with_capacity(total as usize);
        v.extend_from_slice(&self.len.unwrap_or(total).to_le_bytes());
        v.extend_from_slice(&self.opcode.to_le_bytes());
        v.extend_from_slice(&unique.to_le_bytes());
        v.extend_from_slice(&self.node.to_le_bytes());
        v.extend_from_slice(&self.uid.to_le_bytes());
        v.extend_from_slice(&self.gid.to_le_bytes());
        v.extend_from_slice(&self.pid.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes()); // total_extlen + padding
        v.extend_from_slice(&self.body);
        v
    }
}

// ---- request builders (one per operation used) ----

pub fn lookup(parent: u64, name: &[u8]) -> Msg {
    Msg::new(op::LOOKUP, parent, Body::new().name(name))
}
pub fn forget(node: u64, nlookup: u64) -> Msg {
    Msg::new(op::FORGET, node, Body::new().u64(nlookup))
}
pub fn batch_forget(items: &[(u64, u64)]) -> Msg {
    let mut b = Body::new().u32(items.len() as u32).u32(0);
    for &(n, c) in items {
        b = b.u64(n).u64(c);
    }
    Msg::new(op::BATCH_FORGET, 0, b)
}
pub fn getattr(node: u64) -> Msg {
    Msg::new(op::GETATTR, node, Body::new().u32(0).u32(0).u64(0))
}

/// `fuse_setattr_in`; times are (seconds, nanoseconds).
#[derive(Default)]
pub struct Setattr {
    pub valid: u32,
    pub fh: u64,
    pub size: u64,
    pub atime: (u64, u32),
    pub mtime: (u64, u32),
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

pub fn setattr(node: u64, a: Setattr) -> Msg {
    let b = Body::new()
        .u32(a.valid)
        .u32(0)
        .u64(a.fh)
        .u64(a.size)
        .u64(0) // lock_owner
        .u64(a.atime.0)
        .u64(a.mtime.0)
        .u64(0) // ctime
        .u32(a.atime.1)
        .u32(a.mtime.1)
        .u32(0)
        .u32(a.mode)
        .u32(0)
        .u32(a.uid)
        .u32(a.gid)
        .u32(0);
    Msg::new(op::SETATTR, node, b)
}
pub fn readlink(node: u64) -> Msg {
    Msg::new(op::READLINK, node, Body::new())
}
pub fn symlink(parent: u64, name: &[u8], target: &[u8]) -> Msg {
    Msg::new(op::SYMLINK, parent, Body::new().name(name).name(target))
}
pub fn mknod(parent: u64, name: &[u8], mode: u32, rdev: u32) -> Msg {
    let b = Body::new().u32(mode).u32(rdev).u32(0).u32(0).name(name);
    Msg::new(op::MKNOD, parent, b)
}
pub fn mkdir(parent: u64, name: &[u8], mode: u32) -> Msg {
    Msg::new(op::MKDIR, parent, Body::new().u32(mode).u32(0).name(name))
}
pub fn unlink(parent: u64, name: &[u8]) -> Msg {
    Msg::new(op::UNLINK, parent, Body::new().name(name))
}
pub fn rmdir(parent: u64, name: &[u8]) -> Msg {
    Msg::new(op::RMDIR, parent, Body::new().name(name))
}
pub fn rename(olddir: u64, old: &[u8], newdir: u64, new: &[u8]) -> Msg {
    Msg::new(
        op::RENAME,
        olddir,
        Body::new().u64(newdir).name(old).name(new),
    )
}
pub fn rename2(olddir: u64, old: &[u8], newdir: u64, new: &[u8], flags: u32) -> Msg {
    let b = Body::new()
        .u64(newdir)
        .u32(flags)
        .u32(0)
        .name(old)
        .name(new);
    Msg::new(op::RENAME2, olddir, b)
}
pub fn link(node: u64, newparent: u64, name: &[u8]) -> Msg {
    Msg::new(op::LINK, newparent, Body::new().u64(node).name(name))
}
pub fn open(node: u64, flags: u32) -> Msg {
    Msg::new(op::OPEN, node, Body::new().u32(flags).u32(0))
}
pub fn opendir(node: u64) -> Msg {
    Msg::new(
        op::OPENDIR,
        node,
        Body::new().u32(libc::O_RDONLY as u32).u32(0),
    )
}
pub fn create(parent: u64, name: &[u8], flags: u32, mode: u32) -> Msg {
    let b = Body::new().u32(flags).u32(mode).u32(0).u32(0).name(name);
    Msg::new(op::CREATE, parent, b)
}
fn read_in(opcode: u32, node: u64, fh: u64, offset: u64, size: u32) -> Msg {
    let b = Body::new()
        .u64(fh)
        .u64(offset)
        .u32(size)
        .u32(0)
        .u64(0)
        .u32(libc::O_RDWR as u32)
        .u32(0);
    Msg::new(opcode, node, b)
}
pub fn read(node: u64, fh: u64, offset: u64, size: u32) -> Msg {
    read_in(op::READ, node, fh, offset, size)
}
pub fn readdir(node: u64, fh: u64, offset: u64, size: u32) -> Msg {
    read_in(op::READDIR, node, fh, offset, size)
}
pub fn readdirplus(node: u64, fh: u64, offset: u64, size: u32) -> Msg {
    read_in(op::READDIRPLUS, node, fh, offset, size)
}
/// A write whose `size` field is `size`, followed by `data` (which may disagree).
pub fn write(node: u64, fh: u64, offset: u64, size: u32, data: &[u8]) -> Msg {
    let b = Body::new()
        .u64(fh)
        .u64(offset)
        .u32(size)
        .u32(0)
        .u64(0)
        .u32(libc::O_RDWR as u32)
        .u32(0)
        .bytes(data);
    Msg::new(op::WRITE, node, b)
}
pub fn release(node: u64, fh: u64) -> Msg {
    Msg::new(op::RELEASE, node, Body::new().u64(fh).u32(0).u32(0).u64(0))
}
pub fn releasedir(node: u64, fh: u64) -> Msg {
    Msg::new(
        op::RELEASEDIR,
        node,
        Body::new().u64(fh).u32(0).u32(0).u64(0),
    )
}
pub fn flush(node: u64, fh: u64) -> Msg {
    Msg::new(op::FLUSH, node, Body::new().u64(fh).u32(0).u32(0).u64(0))
}
pub fn fsync(node: u64, fh: u64) -> Msg {
    Msg::new(op::FSYNC, node, Body::new().u64(fh).u32(0).u32(0))
}
pub fn fsyncdir(node: u64, fh: u64) -> Msg {
    Msg::new(op::FSYNCDIR, node, Body::new().u64(fh).u32(0).u32(0))
}
pub fn statfs(node: u64) -> Msg {
    Msg::new(op::STATFS, node, Body::new())
}
pub fn access(node: u64, mask: u32) -> Msg {
    Msg::new(op::ACCESS, node, Body::new().u32(mask).u32(0))
}
/// A setxattr whose `size` field is `size`, followed by the name and `value`.
pub fn setxattr(node: u64, name: &[u8], value: &[u8], size: u32) -> Msg {
    let b = Body::new().u32(size).u32(0).name(name).bytes(value);
    Msg::new(op::SETXATTR, node, b)
}
pub fn setxattr_flags(node: u64, name: &[u8], value: &[u8], flags: u32) -> Msg {
    let b = Body::new()
        .u32(value.len() as u32)
        .u32(flags)
        .name(name)
        .bytes(value);
    Msg::new(op::SETXATTR, node, b)
}
pub fn getxattr(node: u64, name: &[u8], size: u32) -> Msg {
    Msg::new(op::GETXATTR, node, Body::new().u32(size).u32(0).name(name))
}
pub fn listxattr(node: u64, size: u32) -> Msg {
    Msg::new(op::LISTXATTR, node, Body::new().u32(size).u32(0))
}
pub fn removexattr(node: u64, name: &[u8]) -> Msg {
    Msg::new(op::REMOVEXATTR, node, Body::new().name(name))
}
pub fn fallocate(node: u64, fh: u64, offset: u64, length: u64, mode: u32) -> Msg {
    let b = Body::new().u64(fh).u64(offset).u64(length).u32(mode).u32(0);
    Msg::new(op::FALLOCATE, node, b)
}
pub fn lseek(node: u64, fh: u64, offset: u64, whence: u32) -> Msg {
    Msg::new(
        op::LSEEK,
        node,
        Body::new().u64(fh).u64(offset).u32(whence).u32(0),
    )
}
pub fn copy_file_range(node: u64, fh: u64, node_out: u64, fh_out: u64, len: u64) -> Msg {
    let b = Body::new()
        .u64(fh)
        .u64(0)
        .u64(node_out)
        .u64(fh_out)
        .u64(0)
        .u64(len)
        .u64(0);
    Msg::new(op::COPY_FILE_RANGE, node, b)
}
pub fn init(major: u32, minor: u32, flags: u32) -> Msg {
    let b = Body::new().u32(major).u32(minor).u32(128 * 1024).u32(flags);
    Msg::new(op::INIT, 0, b)
}

// ---- replies ----

/// One reply datagram, decoded.
#[derive(Clone, Debug)]
pub struct Reply {
    /// Positive errno, 0 for success.
    pub errno: i32,
    pub unique: u64,
    pub body: Vec<u8>,
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}
fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

impl Reply {
    /// Node id of a `fuse_entry_out` (lookup, mkdir, create, ...).
    pub fn entry_node(&self) -> u64 {
        le_u64(&self.body, 0)
    }
    /// `st_mode` of a `fuse_entry_out`.
    pub fn entry_mode(&self) -> u32 {
        le_u32(&self.body, 40 + 60)
    }
    /// `st_uid` of a `fuse_entry_out`.
    pub fn entry_uid(&self) -> u32 {
        le_u32(&self.body, 40 + 68)
    }
    /// `st_mode` of a `fuse_attr_out` (getattr, setattr).
    pub fn attr_mode(&self) -> u32 {
        le_u32(&self.body, 16 + 60)
    }
    pub fn attr_size(&self) -> u64 {
        le_u64(&self.body, 16 + 8)
    }
    /// `fh` of a `fuse_open_out` (open, opendir).
    pub fn open_fh(&self) -> u64 {
        le_u64(&self.body, 0)
    }
    /// `fh` of create's reply (`fuse_entry_out` then `fuse_open_out`).
    pub fn create_fh(&self) -> u64 {
        le_u64(&self.body, 128)
    }
    /// `size` of a `fuse_getxattr_out` or of `fuse_write_out`.
    pub fn size_field(&self) -> u32 {
        le_u32(&self.body, 0)
    }
    /// Names of `fuse_dirent`s (readdir; readdirplus when `plus`).
    pub fn dirent_names(&self, plus: bool) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut at = 0;
        let skip = if plus { 128 } else { 0 };
        while at + skip + 24 <= self.body.len() {
            let d = at + skip;
            let namelen = le_u32(&self.body, d + 16) as usize;
            let name = self.body[d + 24..d + 24 + namelen].to_vec();
            out.push(name);
            at = d + ((24 + namelen + 7) & !7);
        }
        out
    }
}

/// What the server did with one message.
#[derive(Debug)]
pub enum Outcome {
    /// The transport's verdict and every datagram written for it.
    Done(Handled, Vec<Vec<u8>>),
    /// The serving thread panicked past the transport's guard.
    Crashed,
    /// No verdict within the time limit.
    Hung,
    /// The transport closed the connection (fuse-pipe: a frame over its limit).
    Closed(String),
}

/// A server the messages go to.
pub trait Transport {
    /// A fresh unique id (even, like the kernel's).
    fn take_unique(&mut self) -> u64;

    /// Hands exactly these bytes to the server as one message.
    fn send_bytes(&mut self, bytes: Vec<u8>) -> Outcome;

    /// The largest message the transport carries.
    fn max_message(&self) -> usize {
        usize::MAX
    }

    /// Opens a new connection after the transport closed one.
    fn reconnect(&mut self) {}

    /// Sends `msg` with a fresh unique id; returns that id and the outcome.
    fn send(&mut self, msg: &Msg) -> (u64, Outcome) {
        let unique = self.take_unique();
        (unique, self.send_bytes(msg.encode(unique)))
    }

    /// Like `send`, for requests that must be answered once: the decoded reply, or
    /// a description of what went wrong instead.
    fn call(&mut self, msg: &Msg) -> Result<Reply, String> {
        let (unique, outcome) = self.send(msg);
        expect_one_reply(unique, outcome)
    }
}

/// A server under test, fed through the protocol core's message handler.
pub struct RawFuse<F: FileSystemExt + Sync + Send + 'static> {
    server: Arc<Session<F>>,
    server_end: Arc<UnixDatagram>,
    client_end: UnixDatagram,
    next_unique: u64,
    pub limit: Duration,
}

/// Room for the largest reply the worker could write (its buffer size).
const REPLY_ROOM: usize = BUFFER_SIZE;

impl<F: FileSystemExt + Sync + Send + 'static> RawFuse<F> {
    /// A session past INIT at protocol 7.33, the layouts the messages here use.
    pub fn new(fs: F) -> RawFuse<F> {
        let mut raw = Self::uninitialized(fs);
        Transport::call(&mut raw, &init(7, 33, 0)).expect("INIT");
        raw
    }

    /// A session that has not seen INIT.
    pub fn uninitialized(fs: F) -> RawFuse<F> {
        let (server_end, client_end) = UnixDatagram::pair().expect("socketpair");
        client_end.set_nonblocking(true).unwrap();
        RawFuse {
            server: Arc::new(Session::new(fs, SessionOptions::default())),
            server_end: Arc::new(server_end),
            client_end,
            next_unique: 2,
            limit: Duration::from_secs(10),
        }
    }
}

impl<F: FileSystemExt + Sync + Send + 'static> Transport for RawFuse<F> {
    /// A fresh unique id (even, like the kernel's).
    fn take_unique(&mut self) -> u64 {
        let unique = self.next_unique;
        self.next_unique += 2;
        unique
    }

    /// Hands exactly these bytes to the server as one message read from the device.
    fn send_bytes(&mut self, bytes: Vec<u8>) -> Outcome {
        let server = self.server.clone();
        let reply = self.server_end.clone();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut msg = bytes;
            let mut wbuf = vec![0u8; REPLY_ROOM];
            let answer = server.handle(&mut msg, &mut wbuf);
            if answer.reply > 0 {
                reply.send(&wbuf[..answer.reply]).expect("reply datagram");
            }
            let _ = tx.send(answer.handled);
        });
        let handled = match rx.recv_timeout(self.limit) {
            Ok(h) => h,
            Err(mpsc::RecvTimeoutError::Timeout) => return Outcome::Hung,
            Err(mpsc::RecvTimeoutError::Disconnected) => return Outcome::Crashed,
        };
        let mut replies = Vec::new();
        let mut buf = vec![0u8; REPLY_ROOM + 64];
        while let Ok(n) = self.client_end.recv(&mut buf) {
            replies.push(buf[..n].to_vec());
        }
        Outcome::Done(handled, replies)
    }
}

/// The single well-formed reply to request `unique`, or what was wrong.
pub fn expect_one_reply(unique: u64, outcome: Outcome) -> Result<Reply, String> {
    let replies = match outcome {
        Outcome::Done(Handled::Panicked, _) => return Err("the server panicked".into()),
        Outcome::Done(_, r) => r,
        Outcome::Crashed => return Err("the serving thread crashed".into()),
        Outcome::Hung => return Err("no answer in time (hang)".into()),
        Outcome::Closed(why) => return Err(format!("the connection closed: {why}")),
    };
    if replies.len() != 1 {
        return Err(format!("{} replies instead of one", replies.len()));
    }
    let r = &replies[0];
    if r.len() < OUT_HEADER_LEN {
        return Err(format!("{}-byte reply", r.len()));
    }
    let len = le_u32(r, 0) as usize;
    if len != r.len() {
        return Err(format!("reply length field {len}, {} bytes sent", r.len()));
    }
    let error = i32::from_le_bytes(r[4..8].try_into().unwrap());
    let got_unique = le_u64(r, 8);
    if got_unique != unique {
        return Err(format!("reply to {got_unique}, expected {unique}"));
    }
    if !(-4095..=0).contains(&error) || (error != 0 && r.len() != OUT_HEADER_LEN) {
        return Err(format!(
            "bad error field {error} in a {}-byte reply",
            r.len()
        ));
    }
    Ok(Reply {
        errno: -error,
        unique,
        body: r[OUT_HEADER_LEN..].to_vec(),
    })
}

/// A running `ownfs serve`, reached over its socket in fuse-pipe frames.
pub struct PipeFuse {
    sock: PathBuf,
    s: UnixStream,
    next_unique: u64,
    /// Supplementary groups sent with every message.
    pub groups: Vec<u32>,
}

/// Sentinel requests that mark the end of a case's replies have uniques from here.
const SENTINEL: u64 = 1 << 62;

/// Connects to `sock` and does the fuse-pipe handshake with `version`; returns the
/// stream, the server's welcome and its message.
pub fn pipe_handshake(sock: &Path, version: u16) -> std::io::Result<(UnixStream, Welcome, String)> {
    let mut s = UnixStream::connect(sock)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let hello = Hello {
        version,
        ..Hello::new(0, 0)
    };
    s.write_all(&wire::encode(&hello))?;
    let mut fixed = [0u8; WELCOME_FIXED_LEN];
    s.read_exact(&mut fixed)?;
    let w: Welcome = wire::decode(&fixed).ok_or(std::io::ErrorKind::InvalidData)?;
    let mut msg = vec![0u8; w.message_len.into()];
    s.read_exact(&mut msg)?;
    Ok((s, w, String::from_utf8_lossy(&msg).into_owned()))
}

impl PipeFuse {
    /// A connection past the handshake and INIT at protocol 7.33.
    pub fn new(sock: &Path) -> PipeFuse {
        let mut p = Self::uninitialized(sock);
        p.call(&init(7, 33, 0)).expect("INIT through the pipe");
        p
    }

    /// A connection past the handshake that has not sent INIT.
    pub fn uninitialized(sock: &Path) -> PipeFuse {
        let (s, w, why) = pipe_handshake(sock, wire::VERSION).expect("fuse-pipe handshake");
        assert_eq!(w.status, wire::status::OK, "{why}");
        PipeFuse {
            sock: sock.to_path_buf(),
            s,
            next_unique: 2,
            groups: Vec::new(),
        }
    }

    /// Sends one frame: the groups, then `msg`.
    pub fn send_frame(&mut self, groups: &[u32], msg: &[u8]) -> std::io::Result<()> {
        self.s.write_all(&wire::request_frame(groups, msg))
    }

    /// The raw stream, for frames no client would send.
    pub fn stream(&mut self) -> &mut UnixStream {
        &mut self.s
    }

    /// The next reply: Ok(None) when the server closed the connection.
    pub fn read_reply(&mut self) -> Result<Option<Vec<u8>>, String> {
        let mut head = [0u8; OUT_HEADER_LEN];
        match self.s.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
            Err(e) => return Err(format!("reading a reply: {e}")),
        }
        let len = le_u32(&head, 0) as usize;
        if !(OUT_HEADER_LEN..=BUFFER_SIZE).contains(&len) {
            return Err(format!("reply length field {len}"));
        }
        let mut r = head.to_vec();
        r.resize(len, 0);
        self.s
            .read_exact(&mut r[OUT_HEADER_LEN..])
            .map_err(|e| format!("reply body: {e}"))?;
        Ok(Some(r))
    }

    /// Whether the server closes the connection within the limit (EOF or reset).
    pub fn closed(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            match self.s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
            }
        }
    }
}

impl Transport for PipeFuse {
    fn take_unique(&mut self) -> u64 {
        let unique = self.next_unique;
        self.next_unique += 2;
        unique
    }

    fn max_message(&self) -> usize {
        wire::MAX_MESSAGE
    }

    /// A new connection (and session, past INIT) after the server closed this one.
    fn reconnect(&mut self) {
        let fresh = Self::new(&self.sock);
        self.s = fresh.s;
    }

    /// Sends the message, then a getattr of the root as a sentinel: a server with one
    /// worker per connection answers in order, so every reply before the sentinel's
    /// belongs to the message. With more workers, a message that takes an answer is
    /// also waited for after the sentinel.
    fn send_bytes(&mut self, bytes: Vec<u8>) -> Outcome {
        let sentinel = SENTINEL + self.take_unique();
        let probe = getattr(ROOT).encode(sentinel);
        let groups = self.groups.clone();
        let waits = bytes.len() >= 16 && takes_answer(le_u32(&bytes, 4));
        let unique = if waits { le_u64(&bytes, 8) } else { 0 };
        let sent = self
            .send_frame(&groups, &bytes)
            .and_then(|()| self.send_frame(&[], &probe));
        if let Err(e) = sent {
            return Outcome::Closed(format!("sending: {e}"));
        }
        let (mut replies, mut probed) = (Vec::new(), false);
        while !probed || (waits && !replies.iter().any(|r: &Vec<u8>| le_u64(r, 8) == unique)) {
            match self.read_reply() {
                Ok(Some(r)) if le_u64(&r, 8) == sentinel => probed = true,
                Ok(Some(r)) => replies.push(r),
                Ok(None) => return Outcome::Closed("by the server".into()),
                Err(e) if e.contains("timed out") || e.contains("temporarily") => {
                    return Outcome::Hung
                }
                Err(e) => return Outcome::Closed(e),
            }
        }
        Outcome::Done(Handled::Served, replies)
    }
}
