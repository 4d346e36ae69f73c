//! Guest side of fuse-pipe: the kernel's FUSE requests go from `/dev/fuse` to the
//! server as they are, but for their node ids and handles ([`super::ids`]), with the
//! caller's supplementary groups; the server's replies go back to the kernel.
//!
//! Kernel threads read `/dev/fuse` and send; one thread per connection reads replies
//! and hands each to the kernel, matched by the kernel's unique id, so many requests
//! are in flight at once. When the connection breaks, a manager thread reconnects
//! with backoff, replays the session's INIT and resends what is in flight; a request
//! waits at most `timeout` while the client is disconnected, then fails with EIO.
//! Ids of an earlier server instance fail with ESTALE (see [`super::ids`]).

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use super::ids::{self, ReplyIds, TooLarge, EPOCH_MASK};
use super::wire::{
    self, status, Hello, Welcome, MAX_MESSAGE, MAX_WELCOME_MESSAGE, WELCOME_FIXED_LEN,
};
use crate::creds;
use crate::platform;
use crate::protocol::abi::{init, opcode as op, InHeader, InitIn, InitOut, OutHeader};
use crate::protocol::dispatch::{checks_caller_groups, takes_answer};
use crate::protocol::reply;
use crate::protocol::request::{parse_with, Negotiated, Operation};
use crate::protocol::wire::{Reader, Wire, Writer};
use crate::socket::{connect, Address, Stream};
use crate::transport::fusedev::Workers;

#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub addr: Address,
    /// How long a request waits while the client is disconnected before it fails
    /// with EIO; also how long the first connection may take.
    pub timeout: Duration,
    /// Offer WRITEBACK_CACHE to the server.
    pub writeback: bool,
    /// Sent after the hello, for a server that requires it.
    pub token: Option<super::auth::Token>,
}

/// Requests at least this large keep the buffer they were read into, until answered,
/// instead of being copied out of it.
const LARGE_MESSAGE: usize = 64 * 1024;
/// Buffers of answered large requests kept for the next ones.
const SPARE_BUFFERS: usize = 4;
/// A buffer a request is read into: room for the frame's head, then the message.
const READ_BUFFER: usize = wire::FRAME_HEAD_ROOM + MAX_MESSAGE;
/// The pipe READ replies pass through: one of `max_pages` (1 MiB) and its header.
const SPLICE_PIPE: usize = 2 << 20;

/// Whether a `len`-byte READ reply is better spliced through a pipe of `pipe` bytes:
/// large enough to pay for the extra calls, and likely to fit (the socket may hand
/// over one pipe slot per page, plus one per buffer it received).
fn worth_splicing(len: usize, pipe: usize) -> bool {
    len >= 32 * 1024 && len + len / 8 + 32 * 1024 <= pipe
}

/// A request frame, kept to be resent after a reconnect: `bytes[start..end]`.
struct Frame {
    bytes: Vec<u8>,
    start: usize,
    end: usize,
}

impl Frame {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }
}

/// A request the kernel waits for.
struct Pending {
    opcode: u32,
    frame: Arc<Frame>,
    /// Epoch of the server ids in the frame.
    epoch: u32,
    /// Names no node or handle but the root: valid on any server instance.
    portable: bool,
    since: Instant,
    /// An ACL change of this kernel node: its attributes are stale once it succeeds.
    acl_node: Option<u64>,
}

#[derive(Default)]
struct Link {
    /// Write side of the current connection; `None` while disconnected.
    stream: Option<Stream>,
    /// Counts connections; only errors of the current one tear it down.
    generation: u64,
    epoch: u32,
    /// Instance id of the server last connected to (0: none yet).
    instance: u64,
    disconnected_since: Option<Instant>,
    server_caps: u32,
    /// Why the last connection was lost, for the log.
    last_error: Option<String>,
    /// Carries large requests to the socket by reference (see `send_kept`).
    pipe: Option<platform::SplicePipe>,
}

/// One self-healing connection to a pipe server, and the kernel it serves.
/// Lock order: link, then pending.
pub struct Client {
    opts: ClientOptions,
    link: Mutex<Link>,
    link_cv: Condvar,
    pending: Mutex<HashMap<u64, Pending>>,
    epoch: AtomicU32,
    /// INIT asking for the flags the kernel agreed to, and those flags: replayed on
    /// every new connection.
    init: Mutex<Option<(Vec<u8>, u64)>>,
    minor: AtomicU32,
    flags: AtomicU64,
    device: OnceLock<OwnedFd>,
    uncached: AtomicBool,
    spare: Mutex<Vec<Vec<u8>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl Client {
    /// Connects (retrying for up to `opts.timeout`) and starts the connection
    /// manager. Fails at once if the server refuses the handshake.
    pub fn start(opts: ClientOptions) -> io::Result<Arc<Client>> {
        let c = Arc::new(Client {
            opts,
            link: Mutex::new(Link {
                pipe: platform::SplicePipe::new(SPLICE_PIPE).ok(),
                ..Link::default()
            }),
            link_cv: Condvar::new(),
            pending: Mutex::new(HashMap::new()),
            epoch: AtomicU32::new(0),
            init: Mutex::new(None),
            minor: AtomicU32::new(0),
            flags: AtomicU64::new(0),
            device: OnceLock::new(),
            uncached: AtomicBool::new(false),
            spare: Mutex::new(Vec::new()),
        });
        // The first connection is made here, so a refusal is reported at once.
        let deadline = Instant::now() + c.opts.timeout;
        let mut backoff = Duration::from_millis(20);
        let generation = loop {
            match c.establish() {
                Ok(generation) => break generation,
                Err((e, true)) => return Err(io::Error::new(io::ErrorKind::ConnectionRefused, e)),
                Err((e, false)) if Instant::now() >= deadline => {
                    let (addr, timeout) = (&c.opts.addr, c.opts.timeout);
                    let e = format!("cannot connect to {addr} within {timeout:?}: {e}");
                    return Err(io::Error::new(io::ErrorKind::TimedOut, e));
                }
                Err(_) => thread::sleep(backoff.min(deadline - Instant::now())),
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
        };
        let me = c.clone();
        thread::Builder::new()
            .name("ownfs-pipe-link".into())
            .spawn(move || me.manage(generation))?;
        Ok(c)
    }

    /// Capabilities the server announced.
    pub fn server_caps(&self) -> u32 {
        lock(&self.link).server_caps
    }

    /// Serves the kernel of the mounted `device` on `threads` threads. With
    /// `uncached`, entries the kernel gets may not be cached (no default_permissions).
    pub fn serve(
        self: &Arc<Self>,
        device: OwnedFd,
        threads: usize,
        uncached: bool,
    ) -> io::Result<Workers> {
        self.uncached.store(uncached, Ordering::Relaxed);
        let reader = device.try_clone()?;
        if self.device.set(device).is_err() {
            return Err(io::Error::other("the client serves one mount"));
        }
        let me = self.clone();
        Workers::spawn(threads, "ownfs-pipe-fuse", move || me.kernel_loop(&reader))
    }

    /// Reconnect loop: wait until connection `generation` is lost, then connect,
    /// handshake, replay; backoff from 20 ms doubling up to 1 s between failures.
    fn manage(self: Arc<Self>, mut generation: u64) {
        let mut backoff = Duration::from_millis(20);
        let mut failures = 0u32;
        loop {
            {
                let mut link = lock(&self.link);
                while link.generation == generation && link.stream.is_some() {
                    link = self.link_cv.wait(link).unwrap_or_else(|e| e.into_inner());
                }
                let why = link.last_error.as_deref().unwrap_or("closed");
                let addr = &self.opts.addr;
                log::warn!("connection to {addr} lost ({why}); reconnecting");
            }
            loop {
                self.expire();
                thread::sleep(backoff);
                match self.establish() {
                    Ok(g) => {
                        (generation, backoff, failures) = (g, Duration::from_millis(20), 0);
                        break;
                    }
                    Err((e, refused)) => {
                        failures += 1;
                        if failures == 1 || refused {
                            log::warn!("connecting to {}: {e}", self.opts.addr);
                        } else {
                            log::debug!("connecting to {}: {e}", self.opts.addr);
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                }
            }
        }
    }

    /// Opens, replays and installs a new connection; returns its generation.
    fn establish(self: &Arc<Self>) -> Result<u64, (io::Error, bool)> {
        let io = |e: io::Error| (e, false);
        let mut stream = connect(&self.opts.addr).map_err(io)?;
        let welcome = handshake(&mut stream, self.opts.token.as_ref())?;
        let init = lock(&self.init).clone();
        if let Some((frame, agreed)) = init {
            // A new connection is a new session on the server: INIT comes first.
            replay_init(&mut stream, &frame, agreed).map_err(io)?;
        }
        let read_half = stream.try_clone().map_err(io)?;
        let mut link = lock(&self.link);
        if link.instance != 0 && link.instance != welcome.instance {
            link.epoch = link.epoch.wrapping_add(1) & EPOCH_MASK;
            let addr = &self.opts.addr;
            log::warn!("server at {addr} restarted: its node ids and open files are stale");
        }
        link.instance = welcome.instance;
        link.server_caps = welcome.caps;
        link.generation += 1;
        let (generation, epoch) = (link.generation, link.epoch);
        self.epoch.store(epoch, Ordering::Release);
        // Replies are read before anything is resent: the server blocks if they are not.
        let me = self.clone();
        thread::Builder::new()
            .name("ownfs-pipe-replies".into())
            .spawn(move || {
                let e = me.read_replies(read_half, epoch);
                me.lost(generation, &e);
            })
            .map_err(io)?;
        // Resend what is in flight, oldest first; what names ids of a dead server
        // instance fails with EIO (its outcome there is unknown).
        let mut resend = Vec::new();
        {
            let mut pending = lock(&self.pending);
            let mut stale = Vec::new();
            for (unique, p) in pending.iter_mut() {
                if p.epoch != epoch && !p.portable {
                    stale.push(*unique);
                } else {
                    p.epoch = epoch;
                    resend.push((*unique, p.frame.clone()));
                }
            }
            for unique in stale {
                pending.remove(&unique);
                self.answer_error(unique, libc::EIO);
            }
        }
        resend.sort_by_key(|(unique, _)| *unique);
        if !resend.is_empty() {
            log::info!("resending {} requests", resend.len());
        }
        for (_, frame) in &resend {
            if let Err(e) = stream.write_all(frame.as_bytes()) {
                let _ = stream.shutdown(Shutdown::Both);
                return Err((e, false));
            }
        }
        link.stream = Some(stream);
        link.disconnected_since = None;
        link.last_error = None;
        self.link_cv.notify_all();
        drop(link);
        log::info!("connected to {}", self.opts.addr);
        Ok(generation)
    }

    /// Marks connection `generation` as lost (once) and wakes the manager.
    fn lost(&self, generation: u64, why: &io::Error) {
        let mut link = lock(&self.link);
        if link.generation == generation {
            self.drop_stream(&mut link, why);
        }
    }

    /// Closes the current stream; the manager reconnects and resends what is pending.
    fn drop_stream(&self, link: &mut Link, why: &io::Error) {
        if let Some(s) = link.stream.take() {
            let _ = s.shutdown(Shutdown::Both);
        }
        link.disconnected_since.get_or_insert_with(Instant::now);
        link.last_error = Some(why.to_string());
        self.link_cv.notify_all();
    }

    /// Fails with EIO what has waited `timeout` for a connection.
    fn expire(&self) {
        let Some(since) = lock(&self.link).disconnected_since else {
            return;
        };
        let mut dead = Vec::new();
        lock(&self.pending).retain(|unique, p| {
            let keep = since.max(p.since).elapsed() < self.opts.timeout;
            if !keep {
                dead.push(*unique);
            }
            keep
        });
        for unique in dead {
            let (addr, timeout) = (&self.opts.addr, self.opts.timeout);
            log::warn!("request {unique} failed: no connection to {addr} for {timeout:?}");
            self.answer_error(unique, libc::EIO);
        }
    }

    /// Hands replies to the kernel until the connection fails.
    fn read_replies(&self, stream: Stream, epoch: u32) -> io::Error {
        // Small, so that little of a large READ's data is read ahead and copied.
        let mut r = BufReader::with_capacity(8 * 1024, stream);
        let mut buf = vec![0u8; MAX_MESSAGE];
        let mut pipe = match platform::SplicePipe::new(SPLICE_PIPE) {
            Ok(p) => Some(p),
            Err(e) => {
                log::debug!("READ replies will be copied: {e}");
                None
            }
        };
        loop {
            let h = match wire::read_reply_head(&mut r, &mut buf) {
                Ok(h) => h,
                Err(e) => return e,
            };
            let len = h.len as usize;
            let p = lock(&self.pending).remove(&h.unique);
            let splice = match (&p, pipe.as_mut()) {
                (Some(p), Some(pipe)) if p.opcode == op::READ && h.error == 0 => {
                    worth_splicing(len, pipe.size()).then_some(pipe)
                }
                _ => None,
            };
            let body = match splice {
                Some(pipe) => self.splice_reply(&mut r, pipe, &mut buf, len),
                None => wire::read_body(&mut r, &mut buf[OutHeader::SIZE..len]).map(|()| false),
            };
            let handed = match body {
                Ok(handed) => handed,
                Err(e) => {
                    if let Some(p) = p {
                        // Resent on the next connection.
                        lock(&self.pending).insert(h.unique, p);
                    }
                    return e;
                }
            };
            let Some(p) = p else {
                // Timed out, or the answer to a request that was resent.
                log::debug!("reply to unknown request {}", h.unique);
                continue;
            };
            if handed {
                self.recycle(p.frame);
                continue;
            }
            let reply = &mut buf[..len];
            if p.opcode == op::INIT && h.error == 0 {
                self.initialized(p.frame.as_bytes(), reply);
            }
            self.recycle(p.frame);
            if h.error != 0 {
                self.to_kernel(reply);
                continue;
            }
            let ids = ReplyIds {
                epoch,
                uncached: self.uncached.load(Ordering::Relaxed),
            };
            if let Err(TooLarge(id)) = ids.reply(p.opcode, reply) {
                log::error!("server id {id:#x} does not fit beside the epoch; answering EIO");
                self.answer_error(h.unique, libc::EIO);
                continue;
            }
            self.to_kernel(reply);
            if let Some(node) = p.acl_node {
                // The mode changed on the server with the ACL; the kernel's copy is stale.
                let mut msg = [0u8; 64];
                if let Ok(n) = reply::notify_inval_inode(&mut msg, node, -1, 0) {
                    self.to_kernel(&msg[..n]);
                }
            }
        }
    }

    /// Hands the kernel the `len`-byte READ reply whose header is in `buf`, its data
    /// moved from the socket by reference. Returns false when the pipe filled up first:
    /// then the whole reply is in `buf`, for the caller to hand over.
    fn splice_reply(
        &self,
        r: &mut BufReader<Stream>,
        pipe: &mut platform::SplicePipe,
        buf: &mut [u8],
        len: usize,
    ) -> io::Result<bool> {
        pipe.discard();
        pipe.put(&buf[..OutHeader::SIZE])?;
        let ahead = r.buffer();
        let first = ahead.len().min(len - OutHeader::SIZE);
        pipe.put(&ahead[..first])?;
        r.consume(first);
        let mut rest = len - OutHeader::SIZE - first;
        while rest > 0 {
            match pipe.fill_from_stream(r.get_ref().as_fd(), rest)? {
                Some(0) => return Err(invalid("malformed frame: truncated".into())),
                Some(n) => rest -= n,
                None => {
                    let got = pipe.take_into(buf)?;
                    wire::read_body(r, &mut buf[got..len])?;
                    return Ok(false);
                }
            }
        }
        let Some(device) = self.device.get() else {
            pipe.discard();
            return Ok(true);
        };
        match pipe.drain_once_to(device.as_fd()) {
            Ok(()) => {}
            // The request was interrupted and is gone.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => log::debug!("answering the kernel: {e}"),
        }
        Ok(true)
    }

    /// The server accepted INIT: its terms, and an INIT for new connections that asks
    /// for what the kernel agreed to, no more.
    fn initialized(&self, frame: &[u8], reply: &[u8]) {
        let Ok(o) = InitOut::decode(&mut Reader::new(&reply[OutHeader::SIZE..])) else {
            return;
        };
        let agreed = init::join(o.flags, o.flags2);
        self.minor.store(o.minor, Ordering::Relaxed);
        self.flags.store(agreed, Ordering::Relaxed);
        let mut msg = wire::frame_message(frame).to_vec();
        set_init_flags(&mut msg, |offered| offered & agreed);
        *lock(&self.init) = Some((wire::request_frame(&[], &msg), agreed));
    }

    fn to_kernel(&self, msg: &[u8]) {
        let Some(device) = self.device.get() else {
            return;
        };
        match platform::write_fd(device.as_fd(), msg) {
            Ok(_) => {}
            // The request was interrupted and is gone.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => log::debug!("answering the kernel: {e}"),
        }
    }

    fn answer_error(&self, unique: u64, errno: i32) {
        let mut buf = [0u8; OutHeader::SIZE];
        if let Ok(n) = reply::error(&mut buf, unique, errno) {
            self.to_kernel(&buf[..n]);
        }
    }

    /// A buffer to read a request into.
    fn read_buffer(&self) -> Vec<u8> {
        lock(&self.spare)
            .pop()
            .unwrap_or_else(|| vec![0u8; READ_BUFFER])
    }

    /// Keeps the buffer of an answered large request for the next one.
    fn recycle(&self, frame: Arc<Frame>) {
        // Small frames are copies: no lock for them on the reply path.
        let Ok(f) = Arc::try_unwrap(frame) else {
            return;
        };
        if f.bytes.len() == READ_BUFFER {
            let mut spare = lock(&self.spare);
            if spare.len() < SPARE_BUFFERS {
                spare.push(f.bytes);
            }
        }
    }

    /// Reads the kernel's requests and sends them on until the mount goes away.
    fn kernel_loop(&self, device: &OwnedFd) {
        let mut buf = self.read_buffer();
        loop {
            let n = match platform::read_fd(device.as_fd(), &mut buf[wire::FRAME_HEAD_ROOM..]) {
                Ok(n) => n,
                Err(e) => match e.raw_os_error() {
                    Some(libc::ENOENT | libc::EINTR | libc::EAGAIN) => continue,
                    Some(libc::ENODEV) => return log::debug!("FUSE connection closed"),
                    _ => return log::error!("reading /dev/fuse: {e}"),
                },
            };
            self.forward(&mut buf, n);
        }
    }

    /// Sends the kernel's `n`-byte request in `buf` (after the frame's head room), or
    /// answers it here when it cannot go. A large request takes `buf` with it.
    fn forward(&self, buf: &mut Vec<u8>, n: usize) {
        let (room, msg) = buf.split_at_mut(wire::FRAME_HEAD_ROOM);
        let msg = &mut msg[..n];
        let Ok(h) = InHeader::decode(&mut Reader::new(msg)) else {
            return log::error!("a {}-byte message from the kernel", msg.len());
        };
        let answered = takes_answer(h.opcode);
        if h.opcode == op::INIT {
            self.offer(msg);
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let rw = match ids::request(msg, epoch) {
            Ok(rw) => rw,
            Err(ids::Stale) => {
                if answered {
                    self.answer_error(h.unique, libc::ESTALE);
                }
                return;
            }
        };
        let msg = &msg[..rw.len];
        let start = if h.pid > 0 && checks_caller_groups(h.opcode) {
            let made = creds::with_proc_groups(h.pid as i32, h.uid, h.gid, |groups| {
                (groups.len() <= wire::MAX_GROUPS as usize)
                    .then(|| wire::put_frame_head(room, groups, msg.len()))
            });
            match made {
                Ok(Some(start)) => start,
                Ok(None) => {
                    log::warn!("pid {} has more groups than fuse-pipe carries", h.pid);
                    return self.answer_error(h.unique, libc::EIO);
                }
                Err(e) => {
                    return self.answer_error(h.unique, e.raw_os_error().unwrap_or(libc::EIO))
                }
            }
        } else {
            wire::put_frame_head(room, &[], msg.len())
        };
        let acl_node = self.acl_change(msg).then_some(h.nodeid);
        let end = wire::FRAME_HEAD_ROOM + msg.len();
        if !answered {
            return self.send(&mut lock(&self.link), &buf[start..end]);
        }
        let frame = if msg.len() >= LARGE_MESSAGE {
            let bytes = std::mem::replace(buf, self.read_buffer());
            Frame { bytes, start, end }
        } else {
            let bytes = buf[start..end].to_vec();
            Frame {
                end: bytes.len(),
                bytes,
                start: 0,
            }
        };
        let p = Pending {
            opcode: h.opcode,
            frame: Arc::new(frame),
            epoch,
            portable: rw.portable,
            since: Instant::now(),
            acl_node,
        };
        self.submit(h.unique, p);
    }

    /// What the kernel's INIT offers, less what the pipe cannot carry.
    fn offer(&self, msg: &mut [u8]) {
        let writeback = self.opts.writeback && self.server_caps() & wire::CAP_WRITEBACK != 0;
        if self.opts.writeback && !writeback {
            log::warn!("the server does not support the writeback cache; not using it");
        }
        // Kernel passthrough and io_uring need the server on this kernel's /dev/fuse.
        let mut never = init::PASSTHROUGH | init::OVER_IO_URING;
        if !writeback {
            never |= init::WRITEBACK_CACHE;
        }
        set_init_flags(msg, |offered| offered & !never);
    }

    /// Whether `msg` sets or removes a POSIX ACL.
    fn acl_change(&self, msg: &[u8]) -> bool {
        let neg = Negotiated {
            minor: self.minor.load(Ordering::Relaxed),
            flags: self.flags.load(Ordering::Relaxed),
        };
        let name = match parse_with(msg, neg).map(|r| r.op) {
            Ok(Operation::Setxattr { name, .. } | Operation::Removexattr { name }) => name,
            _ => return false,
        };
        name.to_bytes().starts_with(b"system.posix_acl_")
    }

    /// Registers request `unique` and sends it if connected (else the manager will).
    fn submit(&self, unique: u64, mut p: Pending) {
        let mut link = lock(&self.link);
        if link.epoch != p.epoch && !p.portable {
            drop(link);
            return self.answer_error(unique, libc::ESTALE);
        }
        p.epoch = link.epoch;
        let frame = p.frame.clone();
        lock(&self.pending).insert(unique, p);
        // Stays pending if it cannot go now: the manager resends it.
        self.send_kept(&mut link, &frame);
    }

    /// Writes a pending request's `frame` if connected. A large one goes by reference
    /// to its pages (vmsplice), which cannot change before its reply: the request
    /// keeps them until then, and the server has read them all before it answers.
    fn send_kept(&self, link: &mut Link, frame: &Frame) {
        let bytes = frame.as_bytes();
        let (Some(stream), Some(pipe)) = (link.stream.as_ref(), link.pipe.as_mut()) else {
            return self.send(link, bytes);
        };
        if bytes.len() < LARGE_MESSAGE {
            return self.send(link, bytes);
        }
        let mut sent = 0;
        let res = loop {
            if sent == bytes.len() {
                break Ok(());
            }
            match pipe.fill_from_memory(&bytes[sent..]) {
                Ok(n) => sent += n,
                Err(e) => break Err(e),
            }
            if let Err(e) = pipe.drain_to_stream(stream.as_fd()) {
                break Err(e);
            }
        };
        match res {
            Ok(()) => {}
            Err(e) if sent == 0 && e.raw_os_error() == Some(libc::EINVAL) => {
                log::debug!("this socket takes no spliced data ({e}); copying requests");
                link.pipe = None;
                self.send(link, bytes);
            }
            Err(e) => {
                pipe.discard();
                log::debug!("sending a request: {e}");
                self.drop_stream(link, &e);
            }
        }
    }

    /// Writes `frame` if connected; a request without reply is dropped otherwise.
    fn send(&self, link: &mut Link, frame: &[u8]) {
        if let Some(Err(e)) = link.stream.as_mut().map(|s| s.write_all(frame)) {
            log::debug!("sending a request: {e}");
            self.drop_stream(link, &e);
        }
    }
}

/// Client half of the handshake. The error's flag is true when the server refused
/// us (or speaks another protocol): a reason to report, not to retry quickly.
fn handshake(
    stream: &mut Stream,
    token: Option<&super::auth::Token>,
) -> Result<Welcome, (io::Error, bool)> {
    let io = |e: io::Error| (e, false);
    let refused = |why: String| (invalid(why), true);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    let token = token.map_or(&[][..], |t| t.as_bytes());
    let hello = wire::encode(&Hello::new(wire::KNOWN_CAPS, token.len()));
    stream
        .write_all(&[hello, token.to_vec()].concat())
        .map_err(io)?;
    let mut fixed = [0u8; WELCOME_FIXED_LEN];
    if let Err(e) = stream.read_exact(&mut fixed) {
        // What a server does to a peer uid it does not serve.
        let closed = matches!(
            e.kind(),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
        );
        let why = "the server closed the connection before its welcome \
                   (is this uid allowed to connect? see the server's log)";
        return Err(io(if closed {
            io::Error::new(e.kind(), why)
        } else {
            e
        }));
    }
    let no_magic = || refused("not a fuse-pipe server (no magic in its answer)".into());
    let w = wire::decode::<Welcome>(&fixed).ok_or_else(no_magic)?;
    if usize::from(w.message_len) > MAX_WELCOME_MESSAGE {
        return Err(refused("the server's welcome message is too long".into()));
    }
    let mut msg = vec![0u8; usize::from(w.message_len)];
    stream.read_exact(&mut msg).map_err(io)?;
    stream.set_read_timeout(None).map_err(io)?;
    let (ours, missing) = (wire::VERSION, w.required & !wire::KNOWN_CAPS);
    let why = if w.status != status::OK {
        let (code, text) = (w.status, String::from_utf8_lossy(&msg));
        format!(
            "server refused the connection (status {code}): {text} \
             (this client speaks fuse-pipe protocol version {ours})"
        )
    } else if w.version != ours {
        let theirs = w.version;
        format!("server speaks fuse-pipe protocol version {theirs}, this client version {ours}")
    } else if missing != 0 {
        format!("server requires capabilities {missing:#x} this client lacks")
    } else {
        return Ok(w);
    };
    Err(refused(why))
}

/// Changes the flags an INIT request offers (a 7.36+ init_in; older ones stay as they
/// are).
fn set_init_flags(msg: &mut [u8], f: impl FnOnce(u64) -> u64) {
    let Some(args) = msg.get_mut(InHeader::SIZE..) else {
        return;
    };
    if let Ok(mut i) = InitIn::decode(&mut Reader::new(args)) {
        (i.flags, i.flags2) = init::split(f(init::join(i.flags, i.flags2)));
        let _ = i.encode(&mut Writer::new(args));
    }
}

/// Sends INIT on a connection nobody else uses yet and checks that the server agrees
/// to what the kernel did.
fn replay_init(stream: &mut Stream, frame: &[u8], agreed: u64) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(frame)?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    let len = wire::read_reply(stream, &mut buf)?;
    stream.set_read_timeout(None)?;
    let h = OutHeader::decode(&mut Reader::new(&buf[..len])).map_err(|e| invalid(e.to_string()))?;
    let sent = InHeader::decode(&mut Reader::new(wire::frame_message(frame)))
        .map_err(|e| invalid(e.to_string()))?;
    if h.unique != sent.unique {
        return Err(invalid("unexpected answer to INIT".into()));
    }
    if h.error != 0 {
        let errno = -h.error;
        return Err(invalid(format!("the server refused INIT (errno {errno})")));
    }
    let o = InitOut::decode(&mut Reader::new(&buf[OutHeader::SIZE..len]));
    let granted = o.map_or(0, |o| init::join(o.flags, o.flags2));
    if granted != agreed {
        log::warn!("the server grants INIT flags {granted:#x}, the kernel agreed to {agreed:#x}");
    }
    Ok(())
}
