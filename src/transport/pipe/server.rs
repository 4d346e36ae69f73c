//! Host side of fuse-pipe: accepts connections and answers each request by calling
//! the `FileSystem` directly, with the forwarded caller identity.
//!
//! Per connection: one reader thread decodes frames and hands requests to a small
//! pool of workers, which run them concurrently and write replies under a lock.
//! Anything malformed ends that connection (logged); other connections carry on.
//! Nothing here touches `/dev/fuse`, so the server is portable to other hosts.

use std::ffi::CString;
use std::io::{self, BufReader, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use fuse_backend_rs::abi::fuse_abi::{CreateIn, FsOptions};
use fuse_backend_rs::api::filesystem::{
    Context, DirEntry, Entry, FileSystem, GetxattrReply, ListxattrReply,
};

use super::auth::{PeerPolicy, Token};
use super::host;
use super::wire::{
    self, dirent_cost, status, Caller, Dirent, Header, Hello, ReplyData, Request, Welcome,
    WireError, XattrOut, HEADER_LEN, HELLO_LEN,
};
use super::{Listener, Stream};
use crate::creds;
use crate::platform;
use crate::protocol::iobuf::{SliceReader, VecWriter};

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

/// One client connection, shared by its threads.
struct Conn {
    reader: Mutex<BufReader<Stream>>,
    writer: Mutex<Stream>,
    stream: Stream,
    closed: AtomicBool,
    name: String,
}

impl Conn {
    /// Ends the connection (once): logs why and wakes every thread of it.
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
    }
}

/// A random value per server process (see `Welcome::instance`).
fn new_instance_id() -> u64 {
    // getrandom, not /dev/urandom: inside the sandbox that path is a client's file.
    let random = crate::platform::random_u64();
    let mut v = *random.as_ref().unwrap_or(&0);
    if random.is_err() || v == 0 {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        v = (t.as_nanos() as u64) ^ (u64::from(std::process::id()) << 32) | 1;
    }
    v
}

impl<F> PipeServer<F>
where
    F: FileSystem + Send + Sync + 'static,
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
            let (stream, peer) = match listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    log::error!("accept: {e}; retrying in 100 ms");
                    thread::sleep(Duration::from_millis(100));
                    continue;
                }
                Err(e) => return Err(e),
            };
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
    ///
    /// Leader/follower: the connection's threads take turns reading; whoever read a
    /// frame runs it and writes the reply while the next thread reads. A request
    /// costs no hand-off between threads, yet slow requests (fsync) do not hold up
    /// the ones behind them.
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
        let conn = match (stream.try_clone(), stream.try_clone()) {
            (Ok(r), Ok(w)) => Arc::new(Conn {
                reader: Mutex::new(BufReader::with_capacity(32 * 1024, r)),
                writer: Mutex::new(w),
                stream,
                closed: AtomicBool::new(false),
                name: name.to_string(),
            }),
            (Err(e), _) | (_, Err(e)) => {
                log::error!("connection {name}: {e}");
                return;
            }
        };
        let mut handles = Vec::new();
        for i in 1..self.opts.workers.max(1) {
            let me = self.clone();
            let conn = conn.clone();
            let h = thread::Builder::new()
                .name(format!("ownfs-pipe-w{i}"))
                .spawn(move || me.worker(&conn));
            match h {
                Ok(h) => handles.push(h),
                Err(e) => log::warn!("connection {name}: cannot start a worker: {e}"),
            }
        }
        self.worker(&conn);
        for h in handles {
            let _ = h.join();
        }
    }

    fn handshake(&self, stream: &Stream) -> io::Result<()> {
        stream.set_read_timeout(Some(self.opts.handshake_timeout))?;
        let mut b = [0u8; HELLO_LEN];
        (&*stream).read_exact(&mut b)?;
        let mut welcome = Welcome {
            version: wire::VERSION,
            status: status::OK,
            caps: self.opts.caps,
            required: 0,
            max_frame: wire::MAX_FRAME,
            instance: self.instance,
            message: String::new(),
        };
        let verdict = match Hello::decode(&b) {
            Err(_) => Err((
                status::BAD_MAGIC,
                "bad magic: not a fuse-pipe client".to_string(),
            )),
            Ok(h) if h.version != wire::VERSION => Err((
                status::BAD_VERSION,
                format!(
                    "protocol version {} not supported (server speaks {})",
                    h.version,
                    wire::VERSION
                ),
            )),
            Ok(h) if h.required & !self.opts.caps != 0 => Err((
                status::MISSING_CAPS,
                format!(
                    "client requires capabilities {:#x} the server lacks",
                    h.required & !self.opts.caps
                ),
            )),
            Ok(_) => self.check_token(stream, &b)?,
        };
        if let Err((code, msg)) = &verdict {
            welcome.status = *code;
            welcome.message = msg.clone();
        }
        (&*stream).write_all(&welcome.encode())?;
        stream.set_read_timeout(None)?;
        verdict.map_err(|(code, msg)| {
            let kind = match code {
                status::AUTH_FAILED => io::ErrorKind::PermissionDenied,
                _ => io::ErrorKind::InvalidData,
            };
            io::Error::new(kind, msg)
        })
    }

    /// Reads the token that follows the hello and judges it. The verdict's text goes
    /// to the client and to the log: it never contains the token.
    fn check_token(
        &self,
        stream: &Stream,
        hello: &[u8; HELLO_LEN],
    ) -> io::Result<Result<(), (u16, String)>> {
        let len = wire::hello_token_len(hello);
        let refuse = |why: &str| {
            Ok(Err((
                status::AUTH_FAILED,
                format!("authentication failed: {why}"),
            )))
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

    /// Reads one frame (as the current reader); `None` at a clean end of stream.
    fn read_frame(r: &mut BufReader<Stream>) -> io::Result<Option<(Header, Vec<u8>)>> {
        let mut hb = [0u8; HEADER_LEN];
        if !read_exact_or_eof(r, &mut hb)? {
            return Ok(None);
        }
        let h = Header::parse(&hb).map_err(bad)?;
        if h.is_reply() {
            return Err(bad(WireError::BadValue("reply frame sent to the server")));
        }
        let mut body = vec![0u8; h.body_len()];
        r.read_exact(&mut body).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "truncated frame: the stream ended inside a {}-byte body",
                    h.body_len()
                ),
            ),
            _ => e,
        })?;
        Ok(Some((h, body)))
    }

    fn forget(&self, caller: &Caller, items: Vec<(u64, u64)>) {
        let ctx = context(caller);
        match items.len() {
            0 => {}
            1 => self.fs.forget(&ctx, items[0].0.into(), items[0].1),
            _ => self.fs.batch_forget(
                &ctx,
                items.into_iter().map(|(n, c)| (n.into(), c)).collect(),
            ),
        }
    }

    fn worker(&self, conn: &Conn) {
        loop {
            if conn.closed.load(Ordering::Acquire) {
                return;
            }
            let next = {
                let mut r = conn.reader.lock().unwrap_or_else(|e| e.into_inner());
                if conn.closed.load(Ordering::Acquire) {
                    return;
                }
                Self::read_frame(&mut r)
            };
            let (h, body) = match next {
                Ok(Some(f)) => f,
                Ok(None) => return conn.close(None),
                Err(e) => return conn.close(Some(e)),
            };
            let (caller, req) = match Request::decode(h.op, &body) {
                Ok(r) => r,
                Err(e) => return conn.close(Some(bad(e))),
            };
            drop(body);
            if let Request::Forget { items } = req {
                self.forget(&caller, items);
                continue;
            }
            let frame = self.answer(h, &caller, req);
            let mut w = conn.writer.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = w.write_all(&frame) {
                drop(w);
                return conn.close(Some(e));
            }
        }
    }

    /// Runs one request and encodes its reply frame. A panic in the filesystem
    /// becomes an EIO reply: one bad request must not take its connection down.
    fn answer(&self, h: Header, caller: &Caller, req: Request) -> Vec<u8> {
        let run = || {
            creds::with_forwarded_groups(&caller.groups, || match req {
                Request::Read {
                    node,
                    handle,
                    offset,
                    size,
                    lock_owner,
                    flags,
                } => wire::encode_read_reply(h.id, size as usize, |buf| {
                    let limit = buf.len() + size as usize;
                    let mut w = VecWriter::append_to(std::mem::take(buf), limit);
                    let res = self.fs.read(
                        &context(caller),
                        node.into(),
                        handle.into(),
                        &mut w,
                        size,
                        offset,
                        lock_owner,
                        host::open_from_wire(flags),
                    );
                    *buf = w.buf;
                    res.map(drop).map_err(|e| host::errno_to_wire(&e))
                }),
                req => wire::encode_reply(h.op, h.id, &self.dispatch(caller, req)),
            })
        };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
            Ok(frame) => frame,
            Err(_) => {
                log::error!("request {} (op {}) panicked; answering EIO", h.id, h.op);
                wire::encode_reply(h.op, h.id, &Err(libc::EIO))
            }
        }
    }

    /// Runs one request against the filesystem and builds its reply.
    pub fn dispatch(&self, caller: &Caller, req: Request) -> Result<ReplyData, i32> {
        let ctx = context(caller);
        self.execute(&ctx, req).map_err(|e| host::errno_to_wire(&e))
    }

    fn execute(&self, ctx: &Context, req: Request) -> io::Result<ReplyData> {
        let fs = &*self.fs;
        let entry = |e: Entry| ReplyData::Entry(host::entry_to_wire(&e));
        Ok(match req {
            Request::Init { flags } => ReplyData::Init {
                flags: init(fs, flags)?,
            },
            Request::Lookup { parent, name } => {
                entry(fs.lookup(ctx, parent.into(), &cname(name)?)?)
            }
            Request::Forget { items } => {
                self.forget(&Caller::default(), items);
                ReplyData::None
            }
            Request::Getattr { node, handle } => {
                let (st, timeout) = fs.getattr(ctx, node.into(), handle.map(Into::into))?;
                ReplyData::Attr {
                    attr: host::attr_to_wire(&st),
                    timeout,
                }
            }
            Request::Setattr { node, handle, attr } => {
                let (st, valid) = host::setattr_from_wire(&attr);
                let (st, timeout) =
                    fs.setattr(ctx, node.into(), st, handle.map(Into::into), valid)?;
                ReplyData::Attr {
                    attr: host::attr_to_wire(&st),
                    timeout,
                }
            }
            Request::Readlink { node } => ReplyData::Bytes(fs.readlink(ctx, node.into())?),
            Request::Symlink {
                parent,
                name,
                target,
            } => entry(fs.symlink(ctx, &cname(target)?, parent.into(), &cname(name)?)?),
            Request::Mknod {
                parent,
                name,
                mode,
                rdev_major,
                rdev_minor,
                umask,
            } => entry(
                fs.mknod(
                    ctx,
                    parent.into(),
                    &cname(name)?,
                    mode,
                    wire::join_dev32(rdev_major, rdev_minor)
                        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?,
                    umask,
                )?,
            ),
            Request::Mkdir {
                parent,
                name,
                mode,
                umask,
            } => entry(fs.mkdir(ctx, parent.into(), &cname(name)?, mode, umask)?),
            Request::Unlink { parent, name } => {
                fs.unlink(ctx, parent.into(), &cname(name)?)?;
                ReplyData::None
            }
            Request::Rmdir { parent, name } => {
                fs.rmdir(ctx, parent.into(), &cname(name)?)?;
                ReplyData::None
            }
            Request::Rename {
                olddir,
                oldname,
                newdir,
                newname,
                flags,
            } => {
                fs.rename(
                    ctx,
                    olddir.into(),
                    &cname(oldname)?,
                    newdir.into(),
                    &cname(newname)?,
                    host::rename_from_wire(flags)?,
                )?;
                ReplyData::None
            }
            Request::Link {
                node,
                newparent,
                newname,
            } => entry(fs.link(ctx, node.into(), newparent.into(), &cname(newname)?)?),
            Request::Open {
                node,
                flags,
                open_in,
            } => {
                let (h, opts, _) = fs.open(
                    ctx,
                    node.into(),
                    host::open_from_wire(flags),
                    open_in_flags(open_in),
                )?;
                ReplyData::Open {
                    handle: h.map(Into::into),
                    options: host::open_options_to_wire(opts),
                }
            }
            Request::Create {
                parent,
                name,
                mode,
                umask,
                flags,
                open_in,
            } => {
                let args = CreateIn {
                    flags: host::open_from_wire(flags),
                    mode,
                    umask,
                    fuse_flags: open_in_flags(open_in),
                };
                let (e, h, opts, _) = fs.create(ctx, parent.into(), &cname(name)?, args)?;
                ReplyData::Create {
                    entry: host::entry_to_wire(&e),
                    handle: h.map(Into::into),
                    options: host::open_options_to_wire(opts),
                }
            }
            Request::Read {
                node,
                handle,
                offset,
                size,
                lock_owner,
                flags,
            } => {
                let mut w = VecWriter::new(size as usize);
                fs.read(
                    ctx,
                    node.into(),
                    handle.into(),
                    &mut w,
                    size,
                    offset,
                    lock_owner,
                    host::open_from_wire(flags),
                )?;
                ReplyData::Bytes(w.buf)
            }
            Request::Write {
                node,
                handle,
                offset,
                lock_owner,
                flags,
                write_flags,
                mut data,
            } => {
                let size = data.len() as u32;
                let delayed = write_flags & wire::write::CACHE != 0;
                let mut fuse_flags = 0;
                if delayed {
                    fuse_flags |= fuse_backend_rs::abi::fuse_abi::WRITE_CACHE;
                }
                // macOS's FUSE ABI has no such bit; the host clears set-id bits on write.
                #[cfg(target_os = "linux")]
                if write_flags & wire::write::KILL_SUIDGID != 0 {
                    fuse_flags |= fuse_backend_rs::abi::fuse_abi::WRITE_KILL_PRIV;
                }
                let mut r = SliceReader::new(&mut data);
                let n = fs.write(
                    ctx,
                    node.into(),
                    handle.into(),
                    &mut r,
                    size,
                    offset,
                    lock_owner,
                    delayed,
                    host::open_from_wire(flags),
                    fuse_flags,
                )?;
                ReplyData::Written(n as u32)
            }
            Request::Flush {
                node,
                handle,
                lock_owner,
            } => {
                fs.flush(ctx, node.into(), handle.into(), lock_owner)?;
                ReplyData::None
            }
            Request::Fsync {
                node,
                handle,
                datasync,
            } => {
                fs.fsync(ctx, node.into(), datasync, handle.into())?;
                ReplyData::None
            }
            Request::Fallocate {
                node,
                handle,
                mode,
                offset,
                length,
            } => {
                let mode = host::fallocate_from_wire(mode)?;
                fs.fallocate(ctx, node.into(), handle.into(), mode, offset, length)?;
                ReplyData::None
            }
            Request::Release {
                node,
                handle,
                flags,
                flush,
                flock_release,
                lock_owner,
            } => {
                fs.release(
                    ctx,
                    node.into(),
                    host::open_from_wire(flags),
                    handle.into(),
                    flush,
                    flock_release,
                    lock_owner,
                )?;
                ReplyData::None
            }
            Request::Statfs { node } => {
                ReplyData::Statfs(host::statfs_to_wire(&fs.statfs(ctx, node.into())?))
            }
            Request::Setxattr {
                node,
                name,
                value,
                flags,
            } => {
                let flags = host::xattr_from_wire(flags)?;
                fs.setxattr(ctx, node.into(), &cname(name)?, &value, flags)?;
                ReplyData::None
            }
            Request::Getxattr { node, name, size } => {
                let size = size.min(wire::MAX_DATA);
                ReplyData::Xattr(match fs.getxattr(ctx, node.into(), &cname(name)?, size)? {
                    GetxattrReply::Value(v) => XattrOut::Data(v),
                    GetxattrReply::Count(n) => XattrOut::Count(n),
                })
            }
            Request::Listxattr { node, size } => {
                let size = size.min(wire::MAX_DATA);
                ReplyData::Xattr(match fs.listxattr(ctx, node.into(), size)? {
                    ListxattrReply::Names(v) => XattrOut::Data(v),
                    ListxattrReply::Count(n) => XattrOut::Count(n),
                })
            }
            Request::Removexattr { node, name } => {
                fs.removexattr(ctx, node.into(), &cname(name)?)?;
                ReplyData::None
            }
            Request::Opendir { node, flags } => {
                let (h, opts) = fs.opendir(ctx, node.into(), host::open_from_wire(flags))?;
                ReplyData::Open {
                    handle: h.map(Into::into),
                    options: host::open_options_to_wire(opts),
                }
            }
            Request::Readdir {
                node,
                handle,
                offset,
                size,
                plus,
            } => ReplyData::Dir(self.readdir(ctx, node, handle, offset, size, plus)?),
            Request::Releasedir {
                node,
                handle,
                flags,
            } => {
                fs.releasedir(ctx, node.into(), host::open_from_wire(flags), handle.into())?;
                ReplyData::None
            }
            Request::Fsyncdir {
                node,
                handle,
                datasync,
            } => {
                fs.fsyncdir(ctx, node.into(), datasync, handle.into())?;
                ReplyData::None
            }
            Request::Access { node, mask } => {
                fs.access(ctx, node.into(), host::access_from_wire(mask)?)?;
                ReplyData::None
            }
            Request::Lseek {
                node,
                handle,
                offset,
                whence,
            } => ReplyData::Offset(fs.lseek(
                ctx,
                node.into(),
                handle.into(),
                offset,
                host::whence_from_wire(whence)?,
            )?),
        })
    }

    /// Collects entries while they fit in `size` bytes of a FUSE reply, so the client
    /// can replay all of them into its kernel's buffer of that size.
    fn readdir(
        &self,
        ctx: &Context,
        node: u64,
        handle: u64,
        offset: u64,
        size: u32,
        plus: bool,
    ) -> io::Result<Vec<Dirent>> {
        let mut out = Vec::new();
        let mut used = 0usize;
        let limit = size.min(wire::MAX_DATA) as usize;
        let mut add = |d: DirEntry, e: Option<Entry>| -> io::Result<usize> {
            let cost = dirent_cost(d.name.len(), plus);
            if used + cost > limit || d.name.len() > wire::MAX_NAME {
                return Ok(0);
            }
            used += cost;
            out.push(Dirent {
                ino: d.ino,
                offset: d.offset,
                dtype: d.type_ as u8,
                name: d.name.to_vec(),
                entry: e.as_ref().map(host::entry_to_wire),
            });
            Ok(cost)
        };
        if plus {
            self.fs.readdirplus(
                ctx,
                node.into(),
                handle.into(),
                size,
                offset,
                &mut |d, e| add(d, Some(e)),
            )?;
        } else {
            self.fs
                .readdir(ctx, node.into(), handle.into(), size, offset, &mut |d| {
                    add(d, None)
                })?;
        }
        Ok(out)
    }
}

fn bad(e: WireError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("malformed frame: {e}"))
}

/// Like `read_exact`, but a clean end of stream before the first byte is `Ok(false)`.
fn read_exact_or_eof(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("truncated frame header ({got} of {} bytes)", buf.len()),
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn context(c: &Caller) -> Context {
    let mut ctx = Context::new();
    ctx.uid = c.uid;
    ctx.gid = c.gid;
    // Only a label here: credentials come from uid, gid and the forwarded groups.
    ctx.pid = i32::try_from(c.pid).unwrap_or(i32::MAX);
    ctx
}

/// INIT: the wire's flags offered to the filesystem, and what it granted.
#[cfg(target_os = "linux")]
fn init<F: FileSystem>(fs: &F, flags: u32) -> io::Result<u32> {
    let mut capable = FsOptions::empty();
    if flags & wire::init::WRITEBACK != 0 {
        capable |= FsOptions::WRITEBACK_CACHE;
    }
    let granted = fs.init(capable)? & capable;
    let mut out = 0;
    if granted.contains(FsOptions::WRITEBACK_CACHE) {
        out |= wire::init::WRITEBACK;
    }
    Ok(out)
}

/// macOS's FUSE ABI has no WRITEBACK_CACHE bit: the guest runs without it.
#[cfg(not(target_os = "linux"))]
fn init<F: FileSystem>(fs: &F, _flags: u32) -> io::Result<u32> {
    fs.init(FsOptions::empty())?;
    Ok(0)
}

fn cname(name: Vec<u8>) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn open_in_flags(w: u32) -> u32 {
    if w & wire::open_in::KILL_SUIDGID != 0 {
        fuse_backend_rs::abi::fuse_abi::FOPEN_IN_KILL_SUIDGID
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::stat64;

    /// getattr panics; everything else is the trait's default.
    struct Grumpy;

    impl FileSystem for Grumpy {
        type Inode = u64;
        type Handle = u64;

        fn getattr(
            &self,
            _ctx: &Context,
            _inode: u64,
            _handle: Option<u64>,
        ) -> io::Result<(stat64, Duration)> {
            panic!("getattr of a grumpy filesystem");
        }
    }

    fn header(op: u16, id: u64) -> Header {
        Header {
            len: 12,
            op,
            flags: 0,
            id,
        }
    }

    #[test]
    fn a_panicking_request_is_answered_with_eio() {
        let server = PipeServer::new(Arc::new(Grumpy), ServeOptions::default());
        let caller = Caller::default();
        let frame = server.answer(
            header(wire::op::GETATTR, 7),
            &caller,
            Request::Getattr {
                node: 1,
                handle: None,
            },
        );
        let h = Header::parse(frame[..HEADER_LEN].try_into().unwrap()).unwrap();
        assert_eq!((h.id, h.op, h.is_reply()), (7, wire::op::GETATTR, true));
        assert_eq!(
            wire::decode_reply(h.op, &frame[HEADER_LEN..]),
            Ok(Err(libc::EIO))
        );
        // The server still answers the next request (the trait's default statfs).
        let frame = server.answer(
            header(wire::op::STATFS, 8),
            &caller,
            Request::Statfs { node: 1 },
        );
        let got = wire::decode_reply(wire::op::STATFS, &frame[HEADER_LEN..]).unwrap();
        assert!(matches!(got, Ok(ReplyData::Statfs(s)) if s.namemax == 255));
        // Unsupported operations come back as the filesystem's errno.
        let frame = server.answer(
            header(wire::op::READLINK, 9),
            &caller,
            Request::Readlink { node: 1 },
        );
        assert_eq!(
            wire::decode_reply(wire::op::READLINK, &frame[HEADER_LEN..]),
            Ok(Err(libc::ENOSYS))
        );
    }
}
