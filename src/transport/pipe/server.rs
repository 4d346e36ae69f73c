//! Host side of fuse-pipe: accepts connections and serves the FUSE messages of each
//! through its own protocol-core [`Session`], under the groups the client forwarded.
//!
//! Per connection, a few worker threads take turns: one reads a frame, serves it and
//! reads on; another is woken to read only when frames queue up, a request may take
//! long, or the reader is held up (see `worker`). A malformed frame ends that
//! connection (logged); other connections carry on. Nothing here touches `/dev/fuse`,
//! so the server builds on hosts without Linux FUSE.

use std::io::{self, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, TryLockError};
use std::thread;
use std::time::Duration;

use super::auth::{PeerPolicy, Token};
use super::wire::{self, status, Hello, Welcome, HELLO_LEN};
use crate::creds;
use crate::extension::{FileSystemExt, RangeSink};
use crate::platform;
use crate::protocol::abi::{opcode, InHeader, OutHeader};
use crate::protocol::dispatch::{may_take_long, Session, SessionOptions, BUFFER_SIZE};
use crate::protocol::reply;
use crate::protocol::wire::{Reader, Wire};
use crate::socket::{Listener, Stream};

#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Worker threads per connection (requests of one connection run concurrently).
    pub workers: usize,
    /// Capabilities this server announces (e.g. [`wire::CAP_ROOTLESS`]).
    pub caps: u32,
    /// How long a new connection may take to send its hello.
    pub handshake_timeout: Duration,
    /// Which peers of a Unix listener are served. Not checked on vsock: that socket
    /// family has no peer uid.
    pub peers: PeerPolicy,
    /// The token every client must send after its hello, if any.
    pub token: Option<Token>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            workers: 4,
            caps: wire::CAP_WRITEBACK,
            handshake_timeout: Duration::from_secs(10),
            peers: PeerPolicy::default(),
            token: None,
        }
    }
}

pub struct PipeServer<F> {
    fs: Arc<F>,
    opts: ServeOptions,
    instance: u64,
    connections: AtomicU64,
}

/// One client connection, shared by its workers.
struct Conn<F> {
    session: Session<Arc<F>>,
    reader: Mutex<BufReader<Stream>>,
    /// Workers that are not reading wait here (see [`worker`]), one as the watcher.
    idle: Mutex<()>,
    wake: Condvar,
    watched: AtomicBool,
    writer: Mutex<Stream>,
    /// For shutting the connection down while a worker may hold the writer.
    stream: Stream,
    closed: AtomicBool,
    name: String,
}

impl<F> Conn<F> {
    /// Ends the connection (once): logs why and wakes every worker of it.
    fn close(&self, why: Option<io::Error>) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        match why {
            None => log::info!("connection {}: closed by the client", self.name),
            Some(e) if e.kind() == io::ErrorKind::InvalidData => {
                log::error!("connection {}: {e}; closing it", self.name)
            }
            Some(e) => log::warn!("connection {}: {e}; closing it", self.name),
        }
        let _ = self.stream.shutdown(Shutdown::Both);
        // Taking the lock first: a worker that saw the connection open is waiting now.
        drop(self.idle.lock());
        self.wake.notify_all();
    }

    /// Waits until a worker is wanted. One waiting worker is the watcher: it looks
    /// again every [`WATCH`], so a reader held up serving a request never leaves the
    /// socket unread for long. Returns whether this worker was the watcher.
    fn wait_turn(&self) -> bool {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        if self.watched.swap(true, Ordering::AcqRel) {
            drop(self.wake.wait(idle));
            return false;
        }
        drop(self.wake.wait_timeout(idle, WATCH));
        self.watched.store(false, Ordering::Release);
        true
    }
}

/// How long a frame may wait unread behind a request its reader is serving.
const WATCH: Duration = Duration::from_millis(50);

/// A random value per server process (see `Welcome::instance`); getrandom, not
/// /dev/urandom: inside the sandbox that path is a client's file.
fn new_instance_id() -> u64 {
    platform::random_u64()
        .ok()
        .filter(|v| *v != 0)
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            (t.unwrap_or_default().as_nanos() as u64) ^ (u64::from(std::process::id()) << 32) | 1
        })
}

impl<F> PipeServer<F>
where
    F: FileSystemExt + Send + Sync + 'static,
{
    pub fn new(fs: Arc<F>, opts: ServeOptions) -> Arc<Self> {
        Arc::new(PipeServer {
            fs,
            opts,
            instance: new_instance_id(),
            connections: AtomicU64::new(0),
        })
    }

    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// Accepts connections until the listener fails; each gets its own threads.
    pub fn run(self: &Arc<Self>, listener: &Listener) -> io::Result<()> {
        loop {
            let (stream, peer) = listener.accept()?;
            let n = self.connections.fetch_add(1, Ordering::Relaxed) + 1;
            let peer = match listener {
                Listener::Unix { .. } => match self.check_peer(&stream) {
                    Ok(who) => format!("{peer}, {who}"),
                    Err(why) => {
                        // Closed before reading a byte: a refused peer costs no thread.
                        log::warn!("connection #{n} ({peer}): {why}; closing it");
                        let _ = stream.shutdown(Shutdown::Both);
                        continue;
                    }
                },
                Listener::Vsock(_) => peer,
            };
            let me = self.clone();
            let spawned = thread::Builder::new()
                .name(format!("ownfs-pipe-c{n}"))
                .spawn(move || me.serve_connection(stream, &format!("#{n} ({peer})")));
            if let Err(e) = spawned {
                log::error!("cannot start a thread for connection #{n}: {e}");
            }
        }
    }

    /// The peer of a Unix connection if the allow list has it ("uid U pid P"), else
    /// why not.
    fn check_peer(&self, stream: &Stream) -> Result<String, String> {
        use std::os::fd::AsFd;
        let cred = platform::peer_cred(stream.as_fd())
            .map_err(|e| format!("cannot read the peer's credentials: {e}"))?;
        self.opts.peers.check(&cred)?;
        Ok(match cred.pid {
            Some(pid) => format!("uid {} pid {pid}", cred.uid),
            None => format!("uid {}", cred.uid),
        })
    }

    /// Serves one connection until it closes or misbehaves.
    pub fn serve_connection(self: &Arc<Self>, stream: Stream, name: &str) {
        if let Err(e) = self.handshake(&stream) {
            if e.kind() == io::ErrorKind::PermissionDenied {
                log::warn!("connection {name}: refused: {e}; closing it");
            } else {
                log::error!("connection {name}: handshake failed: {e}; closing it");
            }
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        log::info!("connection {name}: client connected");
        let (reader, writer) = match (stream.try_clone(), stream.try_clone()) {
            (Ok(r), Ok(w)) => (r, w),
            (Err(e), _) | (_, Err(e)) => return log::error!("connection {name}: {e}"),
        };
        // A session of its own: INIT is per connection, the filesystem is shared.
        let conn = Arc::new(Conn {
            session: Session::new(self.fs.clone(), SessionOptions::default()),
            reader: Mutex::new(BufReader::with_capacity(64 * 1024, reader)),
            idle: Mutex::new(()),
            wake: Condvar::new(),
            watched: AtomicBool::new(false),
            writer: Mutex::new(writer),
            stream,
            closed: AtomicBool::new(false),
            name: name.to_string(),
        });
        let mut handles = Vec::new();
        for i in 1..self.opts.workers.max(1) {
            let conn = conn.clone();
            let h = thread::Builder::new()
                .name(format!("ownfs-pipe-w{i}"))
                .spawn(move || worker(&conn));
            match h {
                Ok(h) => handles.push(h),
                Err(e) => log::warn!("connection {name}: cannot start a worker: {e}"),
            }
        }
        worker(&conn);
        for h in handles {
            let _ = h.join();
        }
    }

    fn handshake(&self, stream: &Stream) -> io::Result<()> {
        stream.set_read_timeout(Some(self.opts.handshake_timeout))?;
        let mut b = [0u8; HELLO_LEN];
        (&*stream).read_exact(&mut b)?;
        let (v, caps) = (wire::VERSION, self.opts.caps);
        let verdict = match wire::decode::<Hello>(&b) {
            None => Err((
                status::BAD_MAGIC,
                "bad magic: not a fuse-pipe client".into(),
            )),
            Some(h) if h.version != v => Err((
                status::BAD_VERSION,
                format!(
                    "fuse-pipe protocol version {} not supported: this server speaks version {v}",
                    h.version
                ),
            )),
            Some(h) if h.required & !caps != 0 => Err((
                status::MISSING_CAPS,
                format!(
                    "client requires capabilities {:#x} the server lacks",
                    h.required & !caps
                ),
            )),
            Some(h) => self.check_token(stream, usize::from(h.token_len))?,
        };
        let welcome = Welcome {
            magic: u64::from_le_bytes(wire::MAGIC),
            version: v,
            status: verdict
                .as_ref()
                .map_or_else(|(code, _)| *code, |()| status::OK),
            caps,
            required: 0,
            max_frame: wire::MAX_FRAME,
            instance: self.instance,
            message_len: 0,
        };
        let message = verdict.as_ref().map_or_else(|(_, m)| m.as_str(), |()| "");
        (&*stream).write_all(&wire::welcome_bytes(&welcome, message))?;
        stream.set_read_timeout(None)?;
        verdict.map_err(|(code, msg)| {
            let kind = match code {
                status::AUTH_FAILED => io::ErrorKind::PermissionDenied,
                _ => io::ErrorKind::InvalidData,
            };
            io::Error::new(kind, msg)
        })
    }

    /// Reads the `len`-byte token that follows the hello and judges it. The verdict's
    /// text goes to the client and to the log: it never contains the token.
    fn check_token(&self, stream: &Stream, len: usize) -> io::Result<Result<(), (u16, String)>> {
        let refuse = |why: &str| {
            let why = format!("authentication failed: {why}");
            Ok(Err((status::AUTH_FAILED, why)))
        };
        if len > wire::MAX_TOKEN {
            return refuse("the token is longer than the protocol allows");
        }
        let mut given = vec![0u8; len];
        (&*stream).read_exact(&mut given)?;
        match &self.opts.token {
            None => Ok(Ok(())),
            Some(_) if given.is_empty() => {
                refuse("the server requires a token and the client sent none (--token-file)")
            }
            Some(t) if t.matches(&given) => Ok(Ok(())),
            Some(_) => refuse("wrong token"),
        }
    }
}

/// Takes turns with the connection's other workers: read a frame, serve it, reply.
/// Waking another worker for every frame would cost a context switch or two per
/// request, so the reader goes on reading after serving a request itself, and wakes a
/// worker only when frames queue up or a request may take long; the watcher covers
/// the rest.
fn worker<F: FileSystemExt + Send + Sync>(conn: &Conn<F>) {
    let mut groups = Vec::new();
    let mut msg = vec![0u8; wire::MAX_MESSAGE];
    let mut out = vec![0u8; BUFFER_SIZE];
    let mut sink = match SpliceSink::new() {
        Ok(sink) => Some(sink),
        Err(e) => {
            log::debug!("connection {}: READ data will be copied: {e}", conn.name);
            None
        }
    };
    let mut watcher = false;
    while !conn.closed.load(Ordering::Acquire) {
        let mut reader = match conn.reader.try_lock() {
            Ok(r) => r,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => {
                watcher = conn.wait_turn();
                continue;
            }
        };
        if std::mem::take(&mut watcher) {
            // This reader may be held up as well: another worker takes the watch.
            conn.wake.notify_one();
        }
        let msg = match wire::read_request(&mut *reader, &mut groups, &mut msg) {
            Ok(Some(len)) => &mut msg[..len],
            Ok(None) => return conn.close(None),
            Err(e) => return conn.close(Some(e)),
        };
        let head = InHeader::decode(&mut Reader::new(msg)).ok();
        let opcode = head.map_or(0, |h| h.opcode);
        let queued = !reader.buffer().is_empty();
        drop(reader);
        if queued || may_take_long(opcode) {
            conn.wake.notify_one();
        }
        let len = serve(&conn.session, &groups, head, msg, &mut out, sink.as_mut());
        let mut w = conn.writer.lock().unwrap_or_else(|e| e.into_inner());
        let sent = w
            .write_all(&out[..len])
            .and_then(|()| send_held(&mut sink, len, &mut out, &w));
        if let Err(e) = sent {
            drop(w);
            return conn.close(Some(e));
        }
    }
}

/// READ data a worker splices at most: a READ of `max_pages` (1 MiB).
const SPLICE_BYTES: usize = 1 << 20;
/// An unaligned range of n bytes spans one page more than n / 4096.
const PAGE: usize = 4096;

/// READ data spliced from the file into pipes (two where the system limits a pipe to
/// 1 MiB), to be spliced on to the socket.
struct SpliceSink {
    pipes: Vec<platform::SplicePipe>,
}

impl SpliceSink {
    fn new() -> io::Result<SpliceSink> {
        let mut pipes: Vec<platform::SplicePipe> = Vec::new();
        while pipes.iter().map(|p| p.size() - PAGE).sum::<usize>() < SPLICE_BYTES {
            if pipes.len() == 2 {
                break;
            }
            pipes.push(platform::SplicePipe::new(SPLICE_BYTES + PAGE)?);
        }
        Ok(SpliceSink { pipes })
    }

    fn held(&self) -> usize {
        self.pipes.iter().map(|p| p.held()).sum()
    }

    fn discard(&mut self) {
        self.pipes.iter_mut().for_each(|p| p.discard());
    }
}

impl RangeSink for SpliceSink {
    fn capacity(&self) -> usize {
        self.pipes.iter().map(|p| p.size() - PAGE).sum()
    }

    fn take(&mut self, file: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<usize> {
        let mut got = 0;
        for pipe in &mut self.pipes {
            let room = pipe.size() - PAGE;
            while got < len && pipe.held() < room {
                let want = (len - got).min(room - pipe.held());
                match pipe.fill_from_file(file, offset + got as u64, want) {
                    Ok(0) => return Ok(got),
                    Ok(n) => got += n,
                    Err(e) => {
                        self.discard();
                        return Err(e);
                    }
                }
            }
        }
        Ok(got)
    }
}

/// Sends on the READ data the sink holds for the `len`-byte reply just written from
/// `out`. Where the socket refuses spliced data, copies it through `out` and stops
/// splicing.
fn send_held(
    sink: &mut Option<SpliceSink>,
    len: usize,
    out: &mut [u8],
    stream: &Stream,
) -> io::Result<()> {
    let Some(s) = sink.as_mut() else {
        return Ok(());
    };
    let held = s.held();
    if held == 0 {
        return Ok(());
    }
    let declared = out
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    if len < OutHeader::SIZE || declared != Some((len + held) as u32) {
        // Not the reply the data was taken for (an error after taking, a panic).
        s.discard();
        return Ok(());
    }
    for pipe in &mut s.pipes {
        match pipe.drain_to_stream(stream.as_fd()) {
            Ok(()) => {}
            Err(e) if s.held() == held && e.raw_os_error() == Some(libc::EINVAL) => {
                log::debug!("this socket takes no spliced data ({e}); copying READ data");
                let mut n = 0;
                for pipe in &mut s.pipes {
                    n += pipe.take_into(&mut out[n..])?;
                }
                *sink = None;
                return (&*stream).write_all(&out[..n]);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Serves one message (whose header is `head`, if it has one) under `groups`;
/// returns the length of the reply in `out`.
fn serve<F: FileSystemExt + Send + Sync>(
    session: &Session<Arc<F>>,
    groups: &[u32],
    head: Option<InHeader>,
    msg: &mut [u8],
    out: &mut [u8],
    sink: Option<&mut SpliceSink>,
) -> usize {
    if let Some(h) = head {
        // Other connections share the filesystem: DESTROY ends only this session.
        if h.opcode == opcode::DESTROY && session.minor() > 0 {
            return reply::empty(out, h.unique).unwrap_or(0);
        }
    }
    let sink = sink.map(|s| s as &mut dyn RangeSink);
    creds::with_forwarded_groups(groups, || session.handle_with(msg, out, sink)).reply
}
