//! Guest side of fuse-pipe: [`RemoteFs`] implements `FileSystem` by forwarding every
//! call over one multiplexed [`Connection`].
//!
//! Many requests are in flight at once on the single stream: each carries an id, and
//! whichever waiting caller currently holds the read side hands every reply to the
//! caller waiting for its id (leader/follower, so a lone caller reads its own reply
//! without a thread hand-off). When the stream breaks, a manager thread reconnects
//! with backoff and resends what was in flight; a request waits at most `timeout`
//! while the client is disconnected, then fails with EIO.
//!
//! Node ids and handles of a server die with it. The client tags every id it hands
//! its kernel with an epoch (bits 48..64) that changes when it reconnects to a new
//! server instance; a request naming an id of an older epoch fails with ESTALE
//! (which makes the kernel look paths up again), the root (node 1) is the same in
//! every epoch.

use std::collections::HashMap;
use std::io::{self, BufReader, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use fuse_backend_rs::abi::fuse_abi::{CreateIn, FsOptions, OpenOptions, SetattrValid};
use fuse_backend_rs::api::filesystem::{
    Context, DirEntry, Entry, FileSystem, GetxattrReply, ListxattrReply, ZeroCopyReader,
    ZeroCopyWriter,
};

use super::groups;
use super::host;
use super::wire::{
    self, op, status, Caller, Enc, Header, Hello, ReplyData, Request, Welcome, XattrOut,
    HEADER_LEN, WELCOME_FIXED_LEN,
};
use super::{connect, Address, Stream};
use crate::notify::Invalidator;
use crate::platform::{stat64, statvfs64};

const ROOT: u64 = 1;
const EPOCH_SHIFT: u32 = 48;
const LOCAL_MASK: u64 = (1 << EPOCH_SHIFT) - 1;
const EPOCH_MASK: u32 = 0xffff;

fn errno(n: i32) -> io::Error {
    io::Error::from_raw_os_error(n)
}

/// Server node id to the id the kernel sees.
fn node_out(epoch: u32, sid: u64) -> io::Result<u64> {
    if sid == 0 || sid == ROOT {
        return Ok(sid);
    }
    tag(epoch, sid)
}

fn tag(epoch: u32, sid: u64) -> io::Result<u64> {
    if sid > LOCAL_MASK {
        log::error!("server id {sid:#x} does not fit in 48 bits");
        return Err(errno(libc::EIO));
    }
    Ok((u64::from(epoch & EPOCH_MASK) << EPOCH_SHIFT) | sid)
}

fn untag(epoch: u32, kid: u64) -> io::Result<u64> {
    if (kid >> EPOCH_SHIFT) as u32 != epoch & EPOCH_MASK {
        return Err(errno(libc::ESTALE));
    }
    Ok(kid & LOCAL_MASK)
}

/// Kernel node id to the server's; ESTALE for an id of an earlier server instance.
fn node_in(epoch: u32, kid: u64) -> io::Result<u64> {
    if kid == 0 || kid == ROOT {
        return Ok(kid);
    }
    untag(epoch, kid)
}

fn handle_out(epoch: u32, sid: u64) -> io::Result<u64> {
    if sid == 0 {
        return Ok(0);
    }
    tag(epoch, sid)
}

fn handle_in(epoch: u32, kid: u64) -> io::Result<u64> {
    if kid == 0 {
        return Ok(0);
    }
    untag(epoch, kid)
}

#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub addr: Address,
    /// How long a request waits while the client is disconnected before it fails
    /// with EIO; also how long the first connection may take.
    pub timeout: Duration,
    /// Offer WRITEBACK_CACHE to the kernel.
    pub writeback: bool,
    /// Sent after the hello, for a server that requires it.
    pub token: Option<super::auth::Token>,
}

/// A reply body and the epoch of the connection it came on.
struct Reply {
    epoch: u32,
    body: Vec<u8>,
}

#[derive(Default)]
struct Slot {
    result: Option<io::Result<Reply>>,
    /// Asked to take over reading replies.
    nudged: bool,
    /// Asleep on the condition variable.
    waiting: bool,
}

#[derive(Default)]
struct Waiter {
    slot: Mutex<Slot>,
    cv: Condvar,
}

struct Pending {
    op: u16,
    frame: Arc<Vec<u8>>,
    epoch: u32,
    /// Names no node or handle but the root: valid on any server instance.
    portable: bool,
    waiter: Arc<Waiter>,
}

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
    /// The last connection error, for the first connect's message.
    last_error: Option<String>,
    /// The server refused us (version, capabilities): retrying will not help soon.
    refused: bool,
}

/// Read side of the current connection. Whichever waiting caller holds it reads
/// replies for everyone until its own arrives (leader/follower): the common case,
/// one caller, then costs no thread hand-off at all.
struct ReadSide {
    r: BufReader<Stream>,
    epoch: u32,
    generation: u64,
}

/// One multiplexed, self-healing connection to a pipe server.
pub struct Connection {
    opts: ClientOptions,
    link: Mutex<Link>,
    link_cv: Condvar,
    reader: Mutex<Option<ReadSide>>,
    pending: Mutex<HashMap<u64, Pending>>,
    next_id: AtomicU64,
    epoch: AtomicU32,
    /// Init flags to replay on a reconnect (u32::MAX: no init yet).
    init_flags: AtomicU32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Lock order: link, then pending, then a waiter's slot; the reader lock is never
/// held while taking the link lock.
impl Connection {
    /// Connects (retrying for up to `opts.timeout`) and starts the connection
    /// manager. Fails at once if the server refuses the handshake.
    pub fn start(opts: ClientOptions) -> io::Result<Arc<Connection>> {
        let c = Arc::new(Connection {
            opts,
            link: Mutex::new(Link {
                stream: None,
                generation: 0,
                epoch: 0,
                instance: 0,
                disconnected_since: Some(Instant::now()),
                server_caps: 0,
                last_error: None,
                refused: false,
            }),
            link_cv: Condvar::new(),
            reader: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            epoch: AtomicU32::new(0),
            init_flags: AtomicU32::new(u32::MAX),
        });
        let me = c.clone();
        thread::Builder::new()
            .name("ownfs-pipe-link".into())
            .spawn(move || me.manage())?;
        let deadline = Instant::now() + c.opts.timeout;
        let mut link = lock(&c.link);
        loop {
            if link.stream.is_some() {
                break;
            }
            if link.refused {
                let msg = link.last_error.clone().unwrap_or_default();
                return Err(io::Error::new(io::ErrorKind::ConnectionRefused, msg));
            }
            let now = Instant::now();
            if now >= deadline {
                let msg = link
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "the connection attempt is still pending".to_string());
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "cannot connect to {} within {:?}: {msg}",
                        c.opts.addr, c.opts.timeout
                    ),
                ));
            }
            link = c
                .link_cv
                .wait_timeout(link, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        drop(link);
        Ok(c)
    }

    /// Capabilities the server announced.
    pub fn server_caps(&self) -> u32 {
        lock(&self.link).server_caps
    }

    fn epoch(&self) -> u32 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Reconnect loop: connect, handshake, replay, then wait until the connection
    /// is lost; backoff from 20 ms doubling up to 1 s between failed attempts.
    fn manage(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(20);
        let mut failures = 0u32;
        loop {
            match self.establish() {
                Ok(generation) => {
                    backoff = Duration::from_millis(20);
                    failures = 0;
                    let mut link = lock(&self.link);
                    while link.generation == generation && link.stream.is_some() {
                        link = self.link_cv.wait(link).unwrap_or_else(|e| e.into_inner());
                    }
                    log::warn!(
                        "connection to {} lost ({}); reconnecting",
                        self.opts.addr,
                        link.last_error.as_deref().unwrap_or("closed")
                    );
                }
                Err((e, refused)) => {
                    failures += 1;
                    if failures == 1 || refused {
                        log::warn!("connecting to {}: {e}", self.opts.addr);
                    } else {
                        log::debug!("connecting to {}: {e}", self.opts.addr);
                    }
                    let mut link = lock(&self.link);
                    link.last_error = Some(e.to_string());
                    link.refused = refused;
                    self.link_cv.notify_all();
                }
            }
            thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// Opens, replays and installs a new connection; returns its generation.
    fn establish(&self) -> Result<u64, (io::Error, bool)> {
        let mut stream = connect(&self.opts.addr).map_err(|e| (e, false))?;
        let welcome = handshake(&mut stream, self.opts.token.as_ref())?;
        let flags = self.init_flags.load(Ordering::Acquire);
        if flags != u32::MAX {
            // A restarted server must know the session's mode before anything else.
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let frame = Request::Init { flags }.encode(id, &Caller::default());
            sync_call(&mut stream, id, op::INIT, &frame).map_err(|e| (e, false))?;
        }
        let read_half = stream.try_clone().map_err(|e| (e, false))?;

        let (generation, epoch) = {
            let mut link = lock(&self.link);
            if link.instance != 0 && link.instance != welcome.instance {
                link.epoch = link.epoch.wrapping_add(1) & EPOCH_MASK;
                log::warn!(
                    "server at {} restarted: node ids and open files of the old one are stale",
                    self.opts.addr
                );
            }
            link.instance = welcome.instance;
            link.server_caps = welcome.caps;
            link.generation += 1;
            self.epoch.store(link.epoch, Ordering::Release);
            (link.generation, link.epoch)
        };
        // Readable before anything is resent: the server blocks if its replies are
        // not read.
        *lock(&self.reader) = Some(ReadSide {
            r: BufReader::with_capacity(32 * 1024, read_half),
            epoch,
            generation,
        });

        let mut link = lock(&self.link);
        // Replay what is in flight, oldest first; what names ids of a dead server
        // instance fails with EIO (its outcome there is unknown).
        let mut resend = Vec::new();
        let mut stale = Vec::new();
        {
            let mut pending = lock(&self.pending);
            for (id, p) in pending.iter_mut() {
                if p.epoch != epoch && !p.portable {
                    stale.push(*id);
                } else {
                    p.epoch = epoch;
                    resend.push((*id, p.frame.clone()));
                }
            }
        }
        for id in stale {
            self.deliver(id, Err(errno(libc::EIO)));
        }
        resend.sort_by_key(|(id, _)| *id);
        if !resend.is_empty() {
            log::info!("resending {} requests", resend.len());
            self.nudge_reader();
        }
        for (_, frame) in &resend {
            if let Err(e) = stream.write_all(frame) {
                let _ = stream.shutdown(Shutdown::Both);
                return Err((e, false));
            }
        }
        link.stream = Some(stream);
        link.disconnected_since = None;
        link.last_error = None;
        link.refused = false;
        self.link_cv.notify_all();
        drop(link);
        log::info!("connected to {}", self.opts.addr);
        Ok(generation)
    }

    /// Marks connection `generation` as lost (once) and wakes the manager.
    fn lost(&self, generation: u64, why: &io::Error) {
        let mut link = lock(&self.link);
        if link.generation != generation {
            return;
        }
        if let Some(s) = link.stream.take() {
            let _ = s.shutdown(Shutdown::Both);
        }
        link.disconnected_since.get_or_insert_with(Instant::now);
        link.last_error = Some(why.to_string());
        self.link_cv.notify_all();
    }

    /// As the reader: hands replies to their waiters until `me` has its own or the
    /// stream fails (then the read side is dropped and the error returned).
    fn read_until(&self, side: &mut Option<ReadSide>, me: &Waiter) -> Result<(), (io::Error, u64)> {
        loop {
            if lock(&me.slot).result.is_some() {
                return Ok(());
            }
            let Some(rs) = side.as_mut() else {
                return Ok(());
            };
            match read_reply_frame(&mut rs.r) {
                Ok((h, body)) => {
                    let p = lock(&self.pending).remove(&h.id);
                    let Some(p) = p else {
                        // Timed out, or a duplicate answer to a resent request.
                        log::debug!("reply to unknown request {}", h.id);
                        continue;
                    };
                    if p.op != h.op {
                        fill(&p.waiter, Err(errno(libc::EIO)));
                        let e = invalid(&format!(
                            "reply with op {} to request {} of op {}",
                            h.op, h.id, p.op
                        ));
                        let gen = rs.generation;
                        let _ = rs.r.get_ref().shutdown(Shutdown::Both);
                        *side = None;
                        return Err((e, gen));
                    }
                    let epoch = rs.epoch;
                    let mine = std::ptr::eq(Arc::as_ptr(&p.waiter), me);
                    fill(&p.waiter, Ok(Reply { epoch, body }));
                    if mine {
                        return Ok(());
                    }
                }
                Err(e) => {
                    let gen = rs.generation;
                    let _ = rs.r.get_ref().shutdown(Shutdown::Both);
                    *side = None;
                    return Err((e, gen));
                }
            }
        }
    }

    /// Asks one waiting caller to take over reading (preferring one that sleeps).
    fn nudge_reader(&self) {
        let pending = lock(&self.pending);
        let mut fallback = None;
        for p in pending.values() {
            let mut s = lock(&p.waiter.slot);
            if s.result.is_some() {
                continue;
            }
            if s.waiting {
                s.nudged = true;
                p.waiter.cv.notify_one();
                return;
            }
            if fallback.is_none() {
                fallback = Some(p.waiter.clone());
            }
        }
        if let Some(w) = fallback {
            let mut s = lock(&w.slot);
            s.nudged = true;
            if s.waiting {
                w.cv.notify_one();
            }
        }
    }

    fn deliver(&self, id: u64, outcome: io::Result<Reply>) {
        let p = lock(&self.pending).remove(&id);
        if let Some(p) = p {
            fill(&p.waiter, outcome);
        }
    }

    /// Ends the current connection (after a protocol error); the manager reconnects.
    fn break_link(&self) {
        let link = lock(&self.link);
        if let Some(s) = &link.stream {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Drops a stream a write failed on; the manager reconnects and resends.
    fn write_failed(&self, link: &mut Link, what: &str, e: &io::Error) {
        log::debug!("{what}: {e}");
        if let Some(s) = link.stream.take() {
            let _ = s.shutdown(Shutdown::Both);
        }
        link.disconnected_since.get_or_insert_with(Instant::now);
        link.last_error = Some(e.to_string());
        self.link_cv.notify_all();
    }

    /// Registers request `id` and sends it if connected (else the manager will).
    fn submit(
        &self,
        id: u64,
        op: u16,
        frame: Vec<u8>,
        epoch: u32,
        portable: bool,
    ) -> io::Result<Arc<Waiter>> {
        let waiter = Arc::new(Waiter::default());
        let frame = Arc::new(frame);
        let mut link = lock(&self.link);
        if link.epoch != epoch && !portable {
            return Err(errno(libc::ESTALE));
        }
        lock(&self.pending).insert(
            id,
            Pending {
                op,
                frame: frame.clone(),
                epoch: link.epoch,
                portable,
                waiter: waiter.clone(),
            },
        );
        if let Some(s) = link.stream.as_mut() {
            if let Err(e) = s.write_all(&frame) {
                // Stays pending: the manager resends it on the next connection.
                self.write_failed(&mut link, &format!("sending request {id}"), &e);
            }
        }
        Ok(waiter)
    }

    /// Sends a frame that gets no reply; dropped while disconnected.
    fn send_oneway(&self, frame: &[u8]) {
        let mut link = lock(&self.link);
        if let Some(s) = link.stream.as_mut() {
            if let Err(e) = s.write_all(frame) {
                self.write_failed(&mut link, "sending a one-way frame", &e);
            }
        }
    }

    /// Waits for the reply to `id`, reading replies for everyone while nobody else
    /// does. Gives up with EIO once the client has been disconnected for `timeout`
    /// (counted from when the request was made at most).
    fn wait(&self, id: u64, waiter: &Waiter, started: Instant) -> io::Result<Reply> {
        loop {
            {
                let mut s = lock(&waiter.slot);
                if let Some(r) = s.result.take() {
                    return r;
                }
                s.nudged = false;
            }
            let reader = match self.reader.try_lock() {
                Ok(g) => Some(g),
                Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => None,
            };
            if let Some(mut side) = reader {
                if side.is_some() {
                    let res = self.read_until(&mut side, waiter);
                    drop(side);
                    if let Err((e, generation)) = res {
                        self.lost(generation, &e);
                    }
                    // Somebody else must read for the requests still in flight.
                    self.nudge_reader();
                    continue;
                }
            }
            {
                let mut s = lock(&waiter.slot);
                if s.result.is_none() && !s.nudged {
                    s.waiting = true;
                    s = waiter
                        .cv
                        .wait_timeout(s, Duration::from_millis(250))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                    s.waiting = false;
                }
                if s.result.is_some() || s.nudged {
                    continue;
                }
            }
            let since = lock(&self.link).disconnected_since;
            if let Some(since) = since {
                if since.max(started).elapsed() >= self.opts.timeout
                    && lock(&self.pending).remove(&id).is_some()
                {
                    log::warn!(
                        "request {id} failed: no connection to {} for {:?}",
                        self.opts.addr,
                        self.opts.timeout
                    );
                    return Err(errno(libc::EIO));
                }
            }
        }
    }

    /// Sends one request frame and returns the raw reply body and its epoch.
    fn call_raw(
        &self,
        id: u64,
        op: u16,
        frame: Vec<u8>,
        epoch: u32,
        portable: bool,
    ) -> io::Result<Reply> {
        if frame.len() - 4 > wire::MAX_FRAME as usize {
            log::error!("request of {} bytes exceeds the frame limit", frame.len());
            return Err(errno(libc::EIO));
        }
        let started = Instant::now();
        let waiter = self.submit(id, op, frame, epoch, portable)?;
        self.wait(id, &waiter, started)
    }

    /// A reply that does not decode: the connection is not trusted any more.
    fn malformed(&self, id: u64, e: wire::WireError) -> io::Error {
        log::error!("malformed reply to request {id}: {e}; reconnecting");
        self.break_link();
        errno(libc::EIO)
    }

    /// Sends one request frame and decodes the reply (`frame` was built with `id`).
    fn call_frame(
        &self,
        id: u64,
        op: u16,
        frame: Vec<u8>,
        epoch: u32,
        portable: bool,
    ) -> io::Result<(u32, ReplyData)> {
        let reply = self.call_raw(id, op, frame, epoch, portable)?;
        match wire::decode_reply(op, &reply.body) {
            Ok(Ok(data)) => Ok((reply.epoch, data)),
            Ok(Err(n)) => Err(host::errno_from_wire(n)),
            Err(e) => Err(self.malformed(id, e)),
        }
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

fn fill(w: &Waiter, outcome: io::Result<Reply>) {
    let mut s = lock(&w.slot);
    s.result = Some(outcome);
    // Only a sleeper needs the (system call) wake-up; `waiting` changes under the lock.
    if s.waiting {
        w.cv.notify_one();
    }
}

/// Reads one reply frame.
fn read_reply_frame(r: &mut impl Read) -> io::Result<(Header, Vec<u8>)> {
    let mut hb = [0u8; HEADER_LEN];
    r.read_exact(&mut hb)?;
    let h = match Header::parse(&hb) {
        Ok(h) if h.is_reply() => h,
        Ok(_) => return Err(invalid("request frame from the server")),
        Err(e) => return Err(invalid(&format!("malformed frame: {e}"))),
    };
    let mut body = vec![0u8; h.body_len()];
    r.read_exact(&mut body)?;
    Ok((h, body))
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Client half of the handshake. The error's flag is true when the server refused
/// us (or speaks another protocol): a reason to report, not to retry quickly.
fn handshake(
    stream: &mut Stream,
    token: Option<&super::auth::Token>,
) -> Result<Welcome, (io::Error, bool)> {
    let io = |e: io::Error| (e, false);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    let hello = Hello {
        version: wire::VERSION,
        caps: wire::KNOWN_CAPS,
        required: 0,
        max_frame: wire::MAX_FRAME,
    };
    let token = token.map_or(&[][..], |t| t.as_bytes());
    stream
        .write_all(&hello.encode_with_token(token))
        .map_err(io)?;
    let mut fixed = [0u8; WELCOME_FIXED_LEN];
    stream.read_exact(&mut fixed).map_err(|e| match e.kind() {
        // What a server does to a peer uid it does not serve.
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => (
            io::Error::new(
                e.kind(),
                "the server closed the connection before its welcome \
                 (is this uid allowed to connect? see the server's log)",
            ),
            false,
        ),
        _ => (e, false),
    })?;
    let (mut w, n) = Welcome::decode_fixed(&fixed).map_err(|e| {
        (
            invalid(&format!("not a fuse-pipe server (handshake: {e})")),
            true,
        )
    })?;
    let mut msg = vec![0u8; n];
    stream.read_exact(&mut msg).map_err(io)?;
    w.message = String::from_utf8_lossy(&msg).into_owned();
    stream.set_read_timeout(None).map_err(io)?;
    if w.status != status::OK {
        return Err((
            invalid(&format!(
                "server refused the connection (status {}): {}",
                w.status, w.message
            )),
            true,
        ));
    }
    if w.version != wire::VERSION {
        return Err((
            invalid(&format!(
                "server speaks protocol version {}, this client {}",
                w.version,
                wire::VERSION
            )),
            true,
        ));
    }
    if w.required & !wire::KNOWN_CAPS != 0 {
        return Err((
            invalid(&format!(
                "server requires capabilities {:#x} this client lacks",
                w.required & !wire::KNOWN_CAPS
            )),
            true,
        ));
    }
    Ok(w)
}

/// One request and its reply on a stream nobody else reads yet.
fn sync_call(stream: &mut Stream, id: u64, code: u16, frame: &[u8]) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(frame)?;
    let mut hb = [0u8; HEADER_LEN];
    stream.read_exact(&mut hb)?;
    let h = Header::parse(&hb).map_err(|e| invalid(&e.to_string()))?;
    let mut body = vec![0u8; h.body_len()];
    stream.read_exact(&mut body)?;
    stream.set_read_timeout(None)?;
    if h.id != id || h.op != code || !h.is_reply() {
        return Err(invalid("unexpected answer to init"));
    }
    match wire::decode_reply(code, &body) {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(n)) => Err(host::errno_from_wire(n)),
        Err(e) => Err(invalid(&e.to_string())),
    }
}

/// Operations whose outcome on the server depends on the caller's identity: only
/// these carry supplementary groups (and only these read `/proc`).
fn needs_groups(code: u16) -> bool {
    matches!(
        code,
        op::LOOKUP
            | op::SETATTR
            | op::SYMLINK
            | op::MKNOD
            | op::MKDIR
            | op::UNLINK
            | op::RMDIR
            | op::RENAME
            | op::LINK
            | op::OPEN
            | op::CREATE
            | op::WRITE
            | op::FALLOCATE
            | op::SETXATTR
            | op::GETXATTR
            | op::LISTXATTR
            | op::REMOVEXATTR
            | op::OPENDIR
            | op::READDIRPLUS
            | op::ACCESS
    )
}

/// The `FileSystem` a guest mounts: every call goes to the pipe server.
pub struct RemoteFs {
    conn: Arc<Connection>,
    writeback: bool,
    invalidator: Option<Arc<dyn Invalidator>>,
    uncached_metadata: bool,
}

impl RemoteFs {
    pub fn new(
        conn: Arc<Connection>,
        writeback: bool,
        invalidator: Option<Arc<dyn Invalidator>>,
    ) -> RemoteFs {
        RemoteFs {
            conn,
            writeback,
            invalidator,
            uncached_metadata: false,
        }
    }

    /// Zero entry timeouts, whatever the server offers: with no default_permissions,
    /// only a walk that reaches the server is checked by the host.
    pub fn uncached_metadata(mut self, on: bool) -> RemoteFs {
        self.uncached_metadata = on;
        self
    }

    fn local_entry(&self, e: &wire::EntryOut, node: u64) -> Entry {
        let mut entry = host::entry_from_wire(e, node);
        if self.uncached_metadata {
            entry.entry_timeout = Duration::ZERO;
        }
        entry
    }

    /// An access ACL changes the mode on the server; the client kernel, which does not
    /// negotiate POSIX_ACL here, would keep showing the old one until the attribute
    /// timeout.
    fn acl_changed(&self, inode: u64, name: &std::ffi::CStr) {
        if name.to_bytes().starts_with(b"system.posix_acl_") {
            if let Some(inval) = &self.invalidator {
                inval.attributes(inode);
            }
        }
    }

    fn caller(&self, ctx: &Context, code: u16) -> io::Result<Caller> {
        let groups = if ctx.pid > 0 && needs_groups(code) {
            let g = groups::groups_of(ctx.pid, ctx.uid, ctx.gid)?;
            if g.len() > wire::MAX_GROUPS as usize {
                log::warn!(
                    "pid {} has {} groups, more than the protocol carries",
                    ctx.pid,
                    g.len()
                );
                return Err(errno(libc::EIO));
            }
            g.to_vec()
        } else {
            Vec::new()
        };
        Ok(Caller {
            uid: ctx.uid,
            gid: ctx.gid,
            pid: ctx.pid.max(0) as u32,
            groups,
        })
    }

    /// Sends `req` (built with server ids of `epoch`) and returns the reply.
    fn call(&self, ctx: &Context, epoch: u32, req: Request) -> io::Result<(u32, ReplyData)> {
        let code = req.op();
        let caller = self.caller(ctx, code)?;
        let (nodes, handles) = req.ids();
        let portable = nodes.iter().all(|n| *n <= ROOT) && handles.iter().all(|h| *h == 0);
        let id = self.conn.next_id();
        let frame = req.encode(id, &caller);
        self.conn.call_frame(id, code, frame, epoch, portable)
    }

    fn call_none(&self, ctx: &Context, epoch: u32, req: Request) -> io::Result<()> {
        match self.call(ctx, epoch, req)?.1 {
            ReplyData::None => Ok(()),
            _ => Err(errno(libc::EIO)),
        }
    }

    fn call_entry(&self, ctx: &Context, epoch: u32, req: Request) -> io::Result<Entry> {
        match self.call(ctx, epoch, req)? {
            (e, ReplyData::Entry(entry)) => self.entry(e, &entry),
            _ => Err(errno(libc::EIO)),
        }
    }

    fn call_attr(&self, ctx: &Context, epoch: u32, req: Request) -> io::Result<(stat64, Duration)> {
        match self.call(ctx, epoch, req)?.1 {
            ReplyData::Attr { attr, timeout } => Ok((host::attr_from_wire(&attr), timeout)),
            _ => Err(errno(libc::EIO)),
        }
    }

    /// An entry from the server, with the node id the kernel will use. If it cannot
    /// be represented, the server's lookup count is given back.
    fn entry(&self, epoch: u32, e: &wire::EntryOut) -> io::Result<Entry> {
        match node_out(epoch, e.node) {
            Ok(node) => Ok(self.local_entry(e, node)),
            Err(err) => {
                self.forget_server(epoch, &[(e.node, 1)]);
                Err(err)
            }
        }
    }

    /// Gives back lookup counts of server ids of `epoch` (if still current).
    fn forget_server(&self, epoch: u32, items: &[(u64, u64)]) {
        if items.is_empty() || epoch != self.conn.epoch() {
            return;
        }
        for chunk in items.chunks(16 * 1024) {
            let id = self.conn.next_id();
            let frame = Request::Forget {
                items: chunk.to_vec(),
            }
            .encode(id, &Caller::default());
            self.conn.send_oneway(&frame);
        }
    }

    fn open_reply(
        epoch: u32,
        handle: Option<u64>,
        options: u32,
    ) -> io::Result<(Option<u64>, OpenOptions)> {
        let h = match handle {
            Some(h) => Some(handle_out(epoch, h)?),
            None => None,
        };
        Ok((h, host::open_options_from_wire(options)))
    }
}

impl crate::extension::FileSystemExt for RemoteFs {}

impl FileSystem for RemoteFs {
    type Inode = u64;
    type Handle = u64;

    fn init(&self, capable: FsOptions) -> io::Result<FsOptions> {
        let mut want = crate::negotiate::base_options();
        let server_wb = self.conn.server_caps() & wire::CAP_WRITEBACK != 0;
        if self.writeback && capable.contains(FsOptions::WRITEBACK_CACHE) {
            if server_wb {
                want |= FsOptions::WRITEBACK_CACHE;
            } else {
                log::warn!("the server does not support the writeback cache; not using it");
            }
        }
        let granted = capable & want;
        let flags = if granted.contains(FsOptions::WRITEBACK_CACHE) {
            wire::init::WRITEBACK
        } else {
            0
        };
        self.conn.init_flags.store(flags, Ordering::Release);
        let ctx = Context::new();
        let epoch = self.conn.epoch();
        self.call(&ctx, epoch, Request::Init { flags })?;
        log::info!("negotiated {granted:?}");
        Ok(granted)
    }

    fn lookup(&self, ctx: &Context, parent: u64, name: &std::ffi::CStr) -> io::Result<Entry> {
        let epoch = self.conn.epoch();
        let parent = node_in(epoch, parent)?;
        let name = name.to_bytes().to_vec();
        self.call_entry(ctx, epoch, Request::Lookup { parent, name })
    }

    fn forget(&self, _ctx: &Context, inode: u64, count: u64) {
        self.batch_forget(_ctx, vec![(inode, count)]);
    }

    fn batch_forget(&self, _ctx: &Context, requests: Vec<(u64, u64)>) {
        let epoch = self.conn.epoch();
        // Ids of an earlier server instance have nothing left to forget.
        let items: Vec<(u64, u64)> = requests
            .into_iter()
            .filter(|(n, _)| *n != ROOT)
            .filter_map(|(n, c)| node_in(epoch, n).ok().map(|s| (s, c)))
            .collect();
        self.forget_server(epoch, &items);
    }

    fn getattr(
        &self,
        ctx: &Context,
        inode: u64,
        handle: Option<u64>,
    ) -> io::Result<(stat64, Duration)> {
        let epoch = self.conn.epoch();
        let node = node_in(epoch, inode)?;
        let handle = match handle {
            Some(h) => Some(handle_in(epoch, h)?),
            None => None,
        };
        self.call_attr(ctx, epoch, Request::Getattr { node, handle })
    }

    fn setattr(
        &self,
        ctx: &Context,
        inode: u64,
        attr: stat64,
        handle: Option<u64>,
        valid: SetattrValid,
    ) -> io::Result<(stat64, Duration)> {
        let epoch = self.conn.epoch();
        let node = node_in(epoch, inode)?;
        let handle = match handle {
            Some(h) => Some(handle_in(epoch, h)?),
            None => None,
        };
        let attr = host::setattr_to_wire(&attr, valid);
        self.call_attr(ctx, epoch, Request::Setattr { node, handle, attr })
    }

    fn readlink(&self, ctx: &Context, inode: u64) -> io::Result<Vec<u8>> {
        let epoch = self.conn.epoch();
        let node = node_in(epoch, inode)?;
        match self.call(ctx, epoch, Request::Readlink { node })?.1 {
            ReplyData::Bytes(b) => Ok(b),
            _ => Err(errno(libc::EIO)),
        }
    }

    fn symlink(
        &self,
        ctx: &Context,
        linkname: &std::ffi::CStr,
        parent: u64,
        name: &std::ffi::CStr,
    ) -> io::Result<Entry> {
        let epoch = self.conn.epoch();
        let parent = node_in(epoch, parent)?;
        if linkname.to_bytes().len() > wire::MAX_NAME {
            return Err(errno(libc::ENAMETOOLONG));
        }
        self.call_entry(
            ctx,
            epoch,
            Request::Symlink {
                parent,
                name: name.to_bytes().to_vec(),
                target: linkname.to_bytes().to_vec(),
            },
        )
    }

    fn mknod(
        &self,
        ctx: &Context,
        parent: u64,
        name: &std::ffi::CStr,
        mode: u32,
        rdev: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        let epoch = self.conn.epoch();
        let parent = node_in(epoch, parent)?;
        let (rdev_major, rdev_minor) = wire::split_dev32(rdev);
        self.call_entry(
            ctx,
            epoch,
            Request::Mknod {
                parent,
                name: name.to_bytes().to_vec(),
                mode,
                rdev_major,
                rdev_minor,
                umask,
            },
        )
    }

    fn mkdir(
        &self,
        ctx: &Context,
        parent: u64,
        name: &std::ffi::CStr,
        mode: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        let epoch = self.conn.epoch();
        let parent = node_in(epoch, parent)?;
        self.call_entry(
            ctx,
            epoch,
            Request::Mkdir {
                parent,
                name: name.to_bytes().to_vec(),
                mode,
                umask,
            },
        )
    }

    fn unlink(&self, ctx: &Context, parent: u64, name: &std::ffi::CStr) -> io::Result<()> {
        let epoch = self.conn.epoch();
        let parent = node_in(epoch, parent)?;
        let name = name.to_bytes().to_vec();
        self.call_none(ctx, epoch, Request::Unlink { parent, name })
    }

    fn rmdir(&self, ctx: &Context, parent: u64, name: &std::ffi::CStr) -> io::Result<()> {
        let epoch = self.conn.epoch();
        let parent = node_in(epoch, parent)?;
        let name = name.to_bytes().to_vec();
        self.call_none(ctx, epoch, Request::Rmdir { parent, name })
    }

    fn rename(
        &self,
        ctx: &Context,
        olddir: u64,
        oldname: &std::ffi::CStr,
        newdir: u64,
        newname: &std::ffi::CStr,
        flags: u32,
    ) -> io::Result<()> {
        let epoch = self.conn.epoch();
        let req = Request::Rename {
            olddir: node_in(epoch, olddir)?,
            oldname: oldname.to_bytes().to_vec(),
            newdir: node_in(epoch, newdir)?,
            newname: newname.to_bytes().to_vec(),
            flags: host::rename_to_wire(flags)?,
        };
        self.call_none(ctx, epoch, req)
    }

    fn link(
        &self,
        ctx: &Context,
        inode: u64,
        newparent: u64,
        newname: &std::ffi::CStr,
    ) -> io::Result<Entry> {
        let epoch = self.conn.epoch();
        let req = Request::Link {
            node: node_in(epoch, inode)?,
            newparent: node_in(epoch, newparent)?,
            newname: newname.to_bytes().to_vec(),
        };
        self.call_entry(ctx, epoch, req)
    }

    fn open(
        &self,
        ctx: &Context,
        inode: u64,
        flags: u32,
        fuse_flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions, Option<u32>)> {
        let epoch = self.conn.epoch();
        let req = Request::Open {
            node: node_in(epoch, inode)?,
            flags: host::open_to_wire(flags),
            open_in: open_in_to_wire(fuse_flags),
        };
        match self.call(ctx, epoch, req)? {
            (e, ReplyData::Open { handle, options }) => {
                let (h, o) = Self::open_reply(e, handle, options)?;
                Ok((h, o, None))
            }
            _ => Err(errno(libc::EIO)),
        }
    }

    fn create(
        &self,
        ctx: &Context,
        parent: u64,
        name: &std::ffi::CStr,
        args: CreateIn,
    ) -> io::Result<(Entry, Option<u64>, OpenOptions, Option<u32>)> {
        let epoch = self.conn.epoch();
        let req = Request::Create {
            parent: node_in(epoch, parent)?,
            name: name.to_bytes().to_vec(),
            mode: args.mode,
            umask: args.umask,
            flags: host::open_to_wire(args.flags),
            open_in: open_in_to_wire(args.fuse_flags),
        };
        match self.call(ctx, epoch, req)? {
            (
                e,
                ReplyData::Create {
                    entry,
                    handle,
                    options,
                },
            ) => {
                let entry = self.entry(e, &entry)?;
                let (h, o) = Self::open_reply(e, handle, options)?;
                Ok((entry, h, o, None))
            }
            _ => Err(errno(libc::EIO)),
        }
    }

    fn read(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        w: &mut dyn ZeroCopyWriter,
        size: u32,
        offset: u64,
        lock_owner: Option<u64>,
        flags: u32,
    ) -> io::Result<usize> {
        let epoch = self.conn.epoch();
        let req = Request::Read {
            node: node_in(epoch, inode)?,
            handle: handle_in(epoch, handle)?,
            offset,
            size: size.min(wire::MAX_DATA),
            lock_owner,
            flags: host::open_to_wire(flags),
        };
        // The data goes from the reply body straight to the kernel's buffer.
        let caller = self.caller(ctx, op::READ)?;
        let id = self.conn.next_id();
        let frame = req.encode(id, &caller);
        let reply = self.conn.call_raw(id, op::READ, frame, epoch, false)?;
        match wire::read_reply_data(&reply.body) {
            Ok(Ok(data)) => {
                w.write_all(data)?;
                Ok(data.len())
            }
            Ok(Err(n)) => Err(host::errno_from_wire(n)),
            Err(e) => Err(self.conn.malformed(id, e)),
        }
    }

    fn write(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        r: &mut dyn ZeroCopyReader,
        size: u32,
        offset: u64,
        lock_owner: Option<u64>,
        delayed_write: bool,
        flags: u32,
        fuse_flags: u32,
    ) -> io::Result<usize> {
        if size > wire::MAX_DATA {
            return Err(errno(libc::EINVAL));
        }
        let epoch = self.conn.epoch();
        let node = node_in(epoch, inode)?;
        let handle = handle_in(epoch, handle)?;
        let caller = self.caller(ctx, op::WRITE)?;
        let mut write_flags = 0;
        if delayed_write {
            write_flags |= wire::write::CACHE;
        }
        if fuse_flags & fuse_backend_rs::abi::fuse_abi::WRITE_KILL_PRIV != 0 {
            write_flags |= wire::write::KILL_SUIDGID;
        }
        // The payload goes from the kernel's buffer straight into the frame.
        let id = self.conn.next_id();
        let mut e = Enc::frame_with_capacity(op::WRITE, 0, id, 96 + size as usize);
        wire::encode_caller(&mut e, &caller);
        wire::write_header_fields(
            &mut e,
            node,
            handle,
            offset,
            lock_owner,
            host::open_to_wire(flags),
            write_flags,
        );
        r.read_exact(e.data_in_place(size as usize))?;
        match self
            .conn
            .call_frame(id, op::WRITE, e.finish(), epoch, false)?
            .1
        {
            ReplyData::Written(n) => Ok(n as usize),
            _ => Err(errno(libc::EIO)),
        }
    }

    fn flush(&self, ctx: &Context, inode: u64, handle: u64, lock_owner: u64) -> io::Result<()> {
        let epoch = self.conn.epoch();
        let req = Request::Flush {
            node: node_in(epoch, inode)?,
            handle: handle_in(epoch, handle)?,
            lock_owner,
        };
        self.call_none(ctx, epoch, req)
    }

    fn fsync(&self, ctx: &Context, inode: u64, datasync: bool, handle: u64) -> io::Result<()> {
        let epoch = self.conn.epoch();
        let req = Request::Fsync {
            node: node_in(epoch, inode)?,
            handle: handle_in(epoch, handle)?,
            datasync,
        };
        self.call_none(ctx, epoch, req)
    }

    fn fallocate(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        mode: u32,
        offset: u64,
        length: u64,
    ) -> io::Result<()> {
        let epoch = self.conn.epoch();
        let req = Request::Fallocate {
            node: node_in(epoch, inode)?,
            handle: handle_in(epoch, handle)?,
            mode: host::fallocate_to_wire(mode)?,
            offset,
            length,
        };
        self.call_none(ctx, epoch, req)
    }

    fn release(
        &self,
        ctx: &Context,
        inode: u64,
        flags: u32,
        handle: u64,
        flush: bool,
        flock_release: bool,
        lock_owner: Option<u64>,
    ) -> io::Result<()> {
        let epoch = self.conn.epoch();
        let (Ok(node), Ok(handle)) = (node_in(epoch, inode), handle_in(epoch, handle)) else {
            // The server that opened it is gone, and the handle with it.
            return Ok(());
        };
        let req = Request::Release {
            node,
            handle,
            flags: host::open_to_wire(flags),
            flush,
            flock_release,
            lock_owner,
        };
        self.call_none(ctx, epoch, req)
    }

    fn statfs(&self, ctx: &Context, inode: u64) -> io::Result<statvfs64> {
        let epoch = self.conn.epoch();
        let node = node_in(epoch, inode)?;
        match self.call(ctx, epoch, Request::Statfs { node })?.1 {
            ReplyData::Statfs(s) => Ok(host::statfs_from_wire(&s)),
            _ => Err(errno(libc::EIO)),
        }
    }

    fn setxattr(
        &self,
        ctx: &Context,
        inode: u64,
        name: &std::ffi::CStr,
        value: &[u8],
        flags: u32,
    ) -> io::Result<()> {
        if value.len() > wire::MAX_DATA as usize {
            return Err(errno(libc::E2BIG));
        }
        let epoch = self.conn.epoch();
        let req = Request::Setxattr {
            node: node_in(epoch, inode)?,
            name: name.to_bytes().to_vec(),
            value: value.to_vec(),
            flags: host::xattr_to_wire(flags)?,
        };
        self.call_none(ctx, epoch, req)?;
        self.acl_changed(inode, name);
        Ok(())
    }

    fn getxattr(
        &self,
        ctx: &Context,
        inode: u64,
        name: &std::ffi::CStr,
        size: u32,
    ) -> io::Result<GetxattrReply> {
        let epoch = self.conn.epoch();
        let req = Request::Getxattr {
            node: node_in(epoch, inode)?,
            name: name.to_bytes().to_vec(),
            size: size.min(wire::MAX_DATA),
        };
        match self.call(ctx, epoch, req)?.1 {
            ReplyData::Xattr(XattrOut::Count(n)) => Ok(GetxattrReply::Count(n)),
            ReplyData::Xattr(XattrOut::Data(v)) => Ok(GetxattrReply::Value(v)),
            _ => Err(errno(libc::EIO)),
        }
    }

    fn listxattr(&self, ctx: &Context, inode: u64, size: u32) -> io::Result<ListxattrReply> {
        let epoch = self.conn.epoch();
        let req = Request::Listxattr {
            node: node_in(epoch, inode)?,
            size: size.min(wire::MAX_DATA),
        };
        match self.call(ctx, epoch, req)?.1 {
            ReplyData::Xattr(XattrOut::Count(n)) => Ok(ListxattrReply::Count(n)),
            ReplyData::Xattr(XattrOut::Data(v)) => Ok(ListxattrReply::Names(v)),
            _ => Err(errno(libc::EIO)),
        }
    }

    fn removexattr(&self, ctx: &Context, inode: u64, name: &std::ffi::CStr) -> io::Result<()> {
        let epoch = self.conn.epoch();
        let req = Request::Removexattr {
            node: node_in(epoch, inode)?,
            name: name.to_bytes().to_vec(),
        };
        self.call_none(ctx, epoch, req)?;
        self.acl_changed(inode, name);
        Ok(())
    }

    fn opendir(
        &self,
        ctx: &Context,
        inode: u64,
        flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions)> {
        let epoch = self.conn.epoch();
        let req = Request::Opendir {
            node: node_in(epoch, inode)?,
            flags: host::open_to_wire(flags),
        };
        match self.call(ctx, epoch, req)? {
            (e, ReplyData::Open { handle, options }) => Self::open_reply(e, handle, options),
            _ => Err(errno(libc::EIO)),
        }
    }

    fn readdir(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry) -> io::Result<usize>,
    ) -> io::Result<()> {
        let epoch = self.conn.epoch();
        let req = Request::Readdir {
            node: node_in(epoch, inode)?,
            handle: handle_in(epoch, handle)?,
            offset,
            size: size.min(wire::MAX_DATA),
            plus: false,
        };
        let ReplyData::Dir(entries) = self.call(ctx, epoch, req)?.1 else {
            return Err(errno(libc::EIO));
        };
        for d in &entries {
            let added = add_entry(DirEntry {
                ino: d.ino,
                offset: d.offset,
                type_: u32::from(d.dtype),
                name: &d.name,
            })?;
            if added == 0 {
                break;
            }
        }
        Ok(())
    }

    fn readdirplus(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry, Entry) -> io::Result<usize>,
    ) -> io::Result<()> {
        let epoch = self.conn.epoch();
        let req = Request::Readdir {
            node: node_in(epoch, inode)?,
            handle: handle_in(epoch, handle)?,
            offset,
            size: size.min(wire::MAX_DATA),
            plus: true,
        };
        let (reply_epoch, ReplyData::Dir(entries)) = self.call(ctx, epoch, req)? else {
            return Err(errno(libc::EIO));
        };
        // Every entry with a node holds a lookup count on the server: what the
        // kernel does not take is given back.
        let mut unused = Vec::new();
        let mut full = false;
        for d in &entries {
            let Some(e) = &d.entry else {
                return Err(errno(libc::EIO));
            };
            if full {
                if e.node != 0 {
                    unused.push((e.node, 1));
                }
                continue;
            }
            let entry = match node_out(reply_epoch, e.node) {
                Ok(node) => self.local_entry(e, node),
                Err(_) => {
                    unused.push((e.node, 1));
                    continue;
                }
            };
            let dirent = DirEntry {
                ino: d.ino,
                offset: d.offset,
                type_: u32::from(d.dtype),
                name: &d.name,
            };
            match add_entry(dirent, entry) {
                Ok(0) => {
                    full = true;
                    if e.node != 0 {
                        unused.push((e.node, 1));
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    if e.node != 0 {
                        unused.push((e.node, 1));
                    }
                    self.forget_server(reply_epoch, &unused);
                    return Err(err);
                }
            }
        }
        self.forget_server(reply_epoch, &unused);
        Ok(())
    }

    fn fsyncdir(&self, ctx: &Context, inode: u64, datasync: bool, handle: u64) -> io::Result<()> {
        let epoch = self.conn.epoch();
        let req = Request::Fsyncdir {
            node: node_in(epoch, inode)?,
            handle: handle_in(epoch, handle)?,
            datasync,
        };
        self.call_none(ctx, epoch, req)
    }

    fn releasedir(&self, ctx: &Context, inode: u64, flags: u32, handle: u64) -> io::Result<()> {
        let epoch = self.conn.epoch();
        let (Ok(node), Ok(handle)) = (node_in(epoch, inode), handle_in(epoch, handle)) else {
            return Ok(());
        };
        let req = Request::Releasedir {
            node,
            handle,
            flags: host::open_to_wire(flags),
        };
        self.call_none(ctx, epoch, req)
    }

    fn access(&self, ctx: &Context, inode: u64, mask: u32) -> io::Result<()> {
        let epoch = self.conn.epoch();
        let req = Request::Access {
            node: node_in(epoch, inode)?,
            mask: host::access_to_wire(mask)?,
        };
        self.call_none(ctx, epoch, req)
    }

    fn lseek(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        offset: u64,
        whence: u32,
    ) -> io::Result<u64> {
        let epoch = self.conn.epoch();
        let req = Request::Lseek {
            node: node_in(epoch, inode)?,
            handle: handle_in(epoch, handle)?,
            offset,
            whence: host::whence_to_wire(whence)?,
        };
        match self.call(ctx, epoch, req)?.1 {
            ReplyData::Offset(o) => Ok(o),
            _ => Err(errno(libc::EIO)),
        }
    }
}

fn open_in_to_wire(fuse_flags: u32) -> u32 {
    if fuse_flags & fuse_backend_rs::abi::fuse_abi::FOPEN_IN_KILL_SUIDGID != 0 {
        wire::open_in::KILL_SUIDGID
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_the_epoch() {
        assert_eq!(node_out(0, 1).unwrap(), 1);
        assert_eq!(
            node_out(7, 1).unwrap(),
            1,
            "the root is the root in every epoch"
        );
        assert_eq!(node_out(0, 0).unwrap(), 0);
        assert_eq!(node_out(0, 42).unwrap(), 42);
        let k = node_out(3, 42).unwrap();
        assert_eq!(k, (3 << 48) | 42);
        assert_eq!(node_in(3, k).unwrap(), 42);
        assert_eq!(
            node_in(4, k).unwrap_err().raw_os_error(),
            Some(libc::ESTALE)
        );
        assert_eq!(node_in(4, 1).unwrap(), 1);
        assert_eq!(handle_in(0, handle_out(0, 1).unwrap()).unwrap(), 1);
        assert_eq!(
            handle_in(1, handle_out(0, 1).unwrap())
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ESTALE)
        );
        assert!(node_out(0, 1 << 48).is_err());
    }
}
