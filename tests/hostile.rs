//! Hostile clients at the protocol level, with no kernel in between to keep them honest.
//!
//! * Raw FUSE: messages built byte by byte go straight into the protocol core's
//!   handler (`Session::handle`, as every transport calls it) in front of a real `Passthrough`, root and
//!   rootless: dot names, bad names, unknown and forgotten node ids and handles,
//!   over-forgetting, extreme offsets and sizes, odd setattr and rename requests,
//!   links of directories, reserved xattrs, made-up readdir offsets, truncated and
//!   oversized messages, unknown opcodes, INIT twice (requests before INIT: their own
//!   test), and every
//!   operation on nodes that are symlinks pointing out of the share.
//! * fuse-pipe: the same raw FUSE messages in fuse-pipe frames to a running
//!   `ownfs serve` over its Unix socket (so they take the pipe's code path into the
//!   same core), plus what only the pipe has: client-chosen uniques, forwarded groups
//!   and malformed frames, which close only their own connection.
//!
//! Every case must get its proper errno (or success where that is the right answer),
//! within a time limit, without a panic, without touching anything outside SRC (a
//! canary file and directory next to it, compared in full after every case), and the
//! server must answer a good request afterwards. Framing errors that fuse-pipe's own
//! `bad_input_closes_only_that_connection` (tests/pipe.rs) already covers are not
//! repeated here.

mod common;
mod fuse_raw;

use std::ffi::CString;
use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::{self as unix_fs, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use common::*;
use fuse_raw::*;
use ownfs::creds::{CredentialPolicy, GroupSource};
use ownfs::fs::overlay::Rootless;
use ownfs::fs::{CachePolicy, Config, FileHandles, Passthrough};
use ownfs::platform;

const SECRET: &[u8] = b"canary secret\n";
/// Every name a case could smuggle out of SRC contains this, so a stray file is found.
const MARK: &str = "hostile-escape";

// ---------------------------------------------------------------------------
// The share and the canary next to it
// ---------------------------------------------------------------------------

/// What a file outside SRC looks like, in every respect an escape could change.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    path: PathBuf,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    content: Vec<u8>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn xattrs_of(p: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let f = fs::File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    let mut names = vec![0u8; 64 * 1024];
    let n = platform::listxattr(f.as_fd(), &mut names).expect("listxattr");
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let c = CString::new(name).unwrap();
        let mut v = vec![0u8; 64 * 1024];
        let len = platform::getxattr(f.as_fd(), &c, &mut v).expect("getxattr");
        out.push((name.to_vec(), v[..len].to_vec()));
    }
    out.sort();
    out
}

fn snapshot(dir: &Path, skip: &Path, out: &mut Vec<Seen>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p == skip {
            continue;
        }
        let m = fs::symlink_metadata(&p).unwrap();
        let content = if m.is_file() {
            fs::read(&p).unwrap()
        } else if m.file_type().is_symlink() {
            fs::read_link(&p)
                .unwrap()
                .into_os_string()
                .into_encoded_bytes()
        } else {
            Vec::new()
        };
        let xattrs = if m.is_file() || m.is_dir() {
            xattrs_of(&p)
        } else {
            Vec::new()
        };
        out.push(Seen {
            path: p.clone(),
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            nlink: m.nlink(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            content,
            xattrs,
        });
        if m.is_dir() {
            snapshot(&p, skip, out);
        }
    }
}

/// `base/canary`, `base/canary_dir/inner` and SRC = `base/src` with links out of it.
struct Fixture {
    scratch: Scratch,
    src: PathBuf,
    outside: Vec<Seen>,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        let scratch = Scratch::new(tag);
        let base = scratch.base.clone();
        let canary = base.join("canary");
        fs::write(&canary, SECRET).unwrap();
        fs::set_permissions(&canary, fs::Permissions::from_mode(0o640)).unwrap();
        let f = fs::File::options().write(true).open(&canary).unwrap();
        platform::setxattr(f.as_fd(), c"user.canary", b"keep", 0).unwrap();
        f.set_modified(UNIX_EPOCH + Duration::from_secs(1_000_000_000))
            .unwrap();
        drop(f);
        let cdir = scratch.dir("canary_dir");
        fs::write(cdir.join("inner"), SECRET).unwrap();

        let src = scratch.dir("src");
        fs::write(src.join("f"), b"hello world\n").unwrap();
        let f = fs::File::open(src.join("f")).unwrap();
        platform::setxattr(f.as_fd(), c"user.test", b"value", 0).unwrap();
        scratch.dir("src/d/sub");
        unix_fs::symlink(&canary, src.join("out_abs")).unwrap();
        unix_fs::symlink("../canary", src.join("out_rel")).unwrap();
        unix_fs::symlink("../canary_dir", src.join("out_dir")).unwrap();
        unix_fs::symlink("../../canary", src.join("d/up")).unwrap();
        let mut fx = Fixture {
            scratch,
            src,
            outside: Vec::new(),
        };
        fx.outside = fx.look_outside();
        fx
    }

    fn look_outside(&self) -> Vec<Seen> {
        let mut v = Vec::new();
        snapshot(&self.scratch.base, &self.src, &mut v);
        v
    }

    /// Differences outside SRC since the last call (then the new state is the baseline).
    fn escaped(&mut self) -> Option<String> {
        let now = self.look_outside();
        let mut diff = String::new();
        if now != self.outside {
            diff = format!(
                "outside SRC changed:\n before {:?}\n after  {:?}",
                self.outside, now
            );
            self.outside = now;
        }
        for dir in [self.scratch.base.parent().unwrap(), Path::new("/")] {
            for e in fs::read_dir(dir).unwrap().flatten() {
                if e.file_name().to_string_lossy().contains(MARK) {
                    let p = e.path();
                    diff += &format!("\n{} was created", p.display());
                    let _ = fs::remove_file(&p).or_else(|_| fs::remove_dir_all(&p));
                }
            }
        }
        (!diff.is_empty()).then_some(diff)
    }
}

fn passthrough(src: &Path, rootless: bool) -> Passthrough {
    passthrough_with(src, rootless, FileHandles::Prefer)
}

fn passthrough_with(src: &Path, rootless: bool, file_handles: FileHandles) -> Passthrough {
    let cfg = Config {
        root: src.to_path_buf(),
        cache: CachePolicy::Auto,
        writeback: false,
        creds: CredentialPolicy::new(!rootless, GroupSource::Proc),
        rootless: rootless.then(|| Rootless {
            default_uid: 0,
            default_gid: 0,
            server_uid: platform::geteuid(),
            server_gid: platform::getegid(),
            // As a server without CAP_CHOWN: ownership lives in the records only.
            try_host_chown: false,
            format: ownfs::fs::overlay::RecordFormat::Ownfs,
        }),
        posix_acl: false,
        uncached_metadata: false,
        read_only: false,
        backing: None,
        // A tiny fd cache: hostile requests also meet evicted, reopened inodes.
        file_handles,
        max_open_fds: Some(16),
    };
    Passthrough::new(cfg).expect("passthrough")
}

// ---------------------------------------------------------------------------
// Raw FUSE
// ---------------------------------------------------------------------------

/// What a case must get back.
#[derive(Clone, Copy, Debug)]
enum Expect {
    Ok,
    /// One of these errnos.
    Err(&'static [i32]),
    /// Success or one of these errnos (requests whose answer legitimately varies).
    OkOr(&'static [i32]),
    /// Nothing at all (forget, interrupt, a message too short to name its request).
    Silent,
    /// The transport closes the connection (a fuse-pipe frame over its limit).
    Closed,
    /// No such entry: ENOENT, or a negative entry the client may cache (node id 0).
    NoEntry,
}

#[derive(Default)]
struct Tally {
    cases: usize,
    crashes: usize,
    hangs: usize,
    escapes: usize,
    failures: Vec<String>,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.cases += o.cases;
        self.crashes += o.crashes;
        self.hangs += o.hangs;
        self.escapes += o.escapes;
    }
}

struct Suite {
    fx: Fixture,
    raw: Box<dyn Transport>,
    /// The `ownfs serve` behind a pipe suite.
    serve: Option<ServeProc>,
    mode: &'static str,
    t: Tally,
}

/// Nodes and handles of the fixture, as the server handed them out.
struct Nodes {
    f: u64,
    d: u64,
    sub: u64,
    out_abs: u64,
    out_rel: u64,
    out_dir: u64,
}

const NONE_SUCH: [u64; 4] = [0, 0xdead_beef, 1 << 48, u64::MAX];
const S_IFMT: u32 = libc::S_IFMT;

impl Suite {
    fn new(rootless: bool) -> Suite {
        let fx = Fixture::new(if rootless {
            "hostile-rl"
        } else {
            "hostile-root"
        });
        let raw = RawFuse::new(passthrough(&fx.src, rootless));
        Suite {
            fx,
            raw: Box::new(raw),
            serve: None,
            mode: if rootless { "rootless" } else { "root" },
            t: Tally::default(),
        }
    }

    fn fail(&mut self, what: &str, why: String) {
        self.t
            .failures
            .push(format!("[{}] {what}: {why}", self.mode));
    }

    /// One hostile case: send, check the answer, check nothing escaped, check the
    /// server still serves. Returns the reply when there is one.
    fn case(&mut self, what: &str, msg: Msg, expect: Expect) -> Option<Reply> {
        let (unique, outcome) = self.raw.send(&msg);
        self.judge(what, unique, outcome, expect)
    }

    /// Like `case`, for bytes that are not a well-formed message.
    fn case_bytes(&mut self, what: &str, bytes: Vec<u8>, unique: u64, expect: Expect) {
        let outcome = self.raw.send_bytes(bytes);
        self.judge(what, unique, outcome, expect);
    }

    fn judge(
        &mut self,
        what: &str,
        unique: u64,
        outcome: Outcome,
        expect: Expect,
    ) -> Option<Reply> {
        self.t.cases += 1;
        let mut reply = None;
        match (&outcome, expect) {
            (Outcome::Hung, _) => {
                self.t.hangs += 1;
                self.fail(what, "no answer within the limit".into());
            }
            (Outcome::Crashed, _) | (Outcome::Done(Handled::Panicked, _), _) => {
                self.t.crashes += 1;
                self.fail(what, "the server panicked".into());
            }
            (Outcome::Closed(_), Expect::Closed) => self.raw.reconnect(),
            (Outcome::Closed(why), _) => {
                self.fail(what, format!("the connection closed: {why}"));
                self.raw.reconnect();
            }
            (Outcome::Done(_, replies), Expect::Closed) => {
                self.fail(
                    what,
                    format!("{} replies, no closed connection", replies.len()),
                );
            }
            (Outcome::Done(_, replies), Expect::Silent) => {
                if !replies.is_empty() {
                    self.fail(
                        what,
                        format!("{} replies to a message that takes none", replies.len()),
                    );
                }
            }
            (Outcome::Done(..), _) => match expect_one_reply(unique, outcome) {
                Err(e) => self.fail(what, e),
                Ok(r) => {
                    let good = match expect {
                        Expect::Ok => r.errno == 0,
                        Expect::Err(list) => list.contains(&r.errno),
                        Expect::OkOr(list) => r.errno == 0 || list.contains(&r.errno),
                        Expect::NoEntry => {
                            r.errno == libc::ENOENT
                                || (r.errno == 0 && r.body.get(..8) == Some(&[0u8; 8][..]))
                        }
                        Expect::Silent | Expect::Closed => unreachable!(),
                    };
                    if !good {
                        let got = match r.errno {
                            0 => "success".to_string(),
                            e => std::io::Error::from_raw_os_error(e).to_string(),
                        };
                        self.fail(what, format!("expected {expect:?}, got {got}"));
                    }
                    reply = Some(r);
                }
            },
        }
        if let Some(diff) = self.fx.escaped() {
            self.t.escapes += 1;
            self.fail(what, diff);
        }
        self.still_serving(what);
        reply
    }

    /// A good request or two after every case.
    fn still_serving(&mut self, after: &str) {
        if let Some(server) = &mut self.serve {
            if !server.alive() {
                self.t.crashes += 1;
                let log = server.stderr();
                self.fail(after, format!("the server died:\n{log}"));
                let rootless = self.mode.ends_with("rootless");
                let server = ServeProc::start(&self.fx, rootless);
                self.raw = Box::new(PipeFuse::new(&server.sock));
                self.serve = Some(server);
            }
        }
        let root = self.raw.call(&getattr(ROOT));
        match root {
            Ok(r) if r.errno == 0 && r.attr_mode() & S_IFMT == libc::S_IFDIR => {}
            other => return self.fail(after, format!("getattr of the root afterwards: {other:?}")),
        }
        match self.raw.call(&lookup(ROOT, b"f")) {
            Ok(r) if r.errno == 0 && r.entry_mode() & S_IFMT == libc::S_IFREG => {
                let _ = self.raw.send(&forget(r.entry_node(), 1));
            }
            other => self.fail(after, format!("lookup of f afterwards: {other:?}")),
        }
    }

    /// A setup step that must succeed; not a case.
    #[track_caller]
    fn ok(&mut self, msg: Msg) -> Reply {
        match self.raw.call(&msg) {
            Ok(r) if r.errno == 0 => r,
            other => panic!(
                "[{}] setup request (opcode {}) failed: {other:?}",
                self.mode, msg.opcode
            ),
        }
    }

    fn node(&mut self, parent: u64, name: &str) -> u64 {
        self.ok(lookup(parent, name.as_bytes())).entry_node()
    }

    fn nodes(&mut self) -> Nodes {
        let d = self.node(ROOT, "d");
        Nodes {
            f: self.node(ROOT, "f"),
            d,
            sub: self.node(d, "sub"),
            out_abs: self.node(ROOT, "out_abs"),
            out_rel: self.node(ROOT, "out_rel"),
            out_dir: self.node(ROOT, "out_dir"),
        }
    }
}

const EINVAL: &[i32] = &[libc::EINVAL];
const EBADF: &[i32] = &[libc::EBADF];

fn long_name(n: usize) -> Vec<u8> {
    let mut v = MARK.as_bytes().to_vec();
    v.resize(n, b'x');
    v
}

/// Names no operation may accept, with the errno each must get.
fn bad_names() -> Vec<(String, Vec<u8>, &'static [i32])> {
    let esc = |s: &str| s.replace("M", MARK);
    vec![
        ("slash".into(), esc("a/M").into_bytes(), EINVAL),
        ("dotdot-slash".into(), esc("../M").into_bytes(), EINVAL),
        (
            "deep dotdot".into(),
            esc("../../../../M").into_bytes(),
            EINVAL,
        ),
        ("absolute".into(), esc("/tmp/M").into_bytes(), EINVAL),
        ("empty".into(), Vec::new(), &[libc::EINVAL, libc::ENOENT]),
        ("256 bytes".into(), long_name(256), &[libc::ENAMETOOLONG]),
        ("64 KiB".into(), long_name(65536), &[libc::ENAMETOOLONG]),
    ]
}

fn raw_fuse_cases(s: &mut Suite) {
    s.ok(init(7, 33, 0));
    let n = s.nodes();

    // ---- `.` and `..` ----
    for (what, parent, name, want) in [
        ("lookup .. of the root", ROOT, "..", ROOT),
        ("lookup . of the root", ROOT, ".", ROOT),
        ("lookup .. of a top directory", n.d, "..", ROOT),
        ("lookup .. of a subdirectory", n.sub, "..", n.d),
    ] {
        if let Some(r) = s.case(what, lookup(parent, name.as_bytes()), Expect::Ok) {
            if r.errno == 0 && r.entry_node() != want {
                s.fail(
                    what,
                    format!("got node {}, expected {want}", r.entry_node()),
                );
            }
        }
    }
    s.case(
        "lookup .. of a file",
        lookup(n.f, b".."),
        Expect::Err(&[libc::ENOTDIR]),
    );
    s.case(
        "lookup .. of a link out",
        lookup(n.out_dir, b".."),
        Expect::Err(&[libc::ENOTDIR]),
    );
    s.case(
        "lookup ... of the root",
        lookup(ROOT, b"..."),
        Expect::NoEntry,
    );
    s.case(
        "lookup through a link to a directory outside",
        lookup(n.out_dir, b"inner"),
        Expect::Err(&[libc::ENOTDIR]),
    );
    for name in [".", ".."] {
        let nb = name.as_bytes();
        let e = Expect::Err(EINVAL);
        s.case(&format!("mkdir {name}"), mkdir(ROOT, nb, 0o755), e);
        s.case(&format!("create {name}"), create(ROOT, nb, 0o2, 0o644), e);
        s.case(&format!("rmdir {name}"), rmdir(n.d, nb), e);
        s.case(&format!("unlink {name}"), unlink(n.d, nb), e);
        s.case(&format!("rename of {name}"), rename(n.d, nb, ROOT, b"x"), e);
        s.case(
            &format!("rename onto {name}"),
            rename(ROOT, b"f", n.d, nb),
            e,
        );
        s.case(&format!("link as {name}"), link(n.f, n.d, nb), e);
        s.case(&format!("symlink as {name}"), symlink(n.d, nb, b"f"), e);
    }

    // ---- names with '/', NUL, empty, too long ----
    for (what, name, errno) in bad_names() {
        s.case(
            &format!("lookup {what}"),
            lookup(ROOT, &name),
            Expect::Err(errno),
        );
        s.case(
            &format!("mkdir {what}"),
            mkdir(ROOT, &name, 0o755),
            Expect::Err(errno),
        );
        s.case(
            &format!("create {what}"),
            create(ROOT, &name, 0o2, 0o644),
            Expect::Err(errno),
        );
        s.case(
            &format!("mknod {what}"),
            mknod(ROOT, &name, libc::S_IFIFO | 0o644, 0),
            Expect::Err(errno),
        );
        s.case(
            &format!("symlink {what}"),
            symlink(ROOT, &name, b"f"),
            Expect::Err(errno),
        );
        s.case(
            &format!("link {what}"),
            link(n.f, ROOT, &name),
            Expect::Err(errno),
        );
        s.case(
            &format!("rename to {what}"),
            rename(ROOT, b"f", ROOT, &name),
            Expect::Err(errno),
        );
        s.case(
            &format!("rename from {what}"),
            rename(ROOT, &name, ROOT, b"x"),
            Expect::Err(errno),
        );
        s.case(
            &format!("rename2 to {what}"),
            rename2(ROOT, b"f", n.d, &name, libc::RENAME_NOREPLACE),
            Expect::Err(errno),
        );
        s.case(
            &format!("unlink {what}"),
            unlink(ROOT, &name),
            Expect::Err(errno),
        );
        s.case(
            &format!("rmdir {what}"),
            rmdir(ROOT, &name),
            Expect::Err(errno),
        );
    }
    s.case(
        "lookup of a 255-byte name",
        lookup(ROOT, &long_name(255)),
        Expect::NoEntry,
    );
    // A NUL ends a name: what follows it is never part of the path.
    let nul_name = format!("nul\0/../../{MARK}");
    s.case(
        "mkdir with NUL inside",
        mkdir(ROOT, nul_name.as_bytes(), 0o755),
        Expect::Ok,
    );
    s.case(
        "rmdir with NUL inside",
        rmdir(ROOT, nul_name.as_bytes()),
        Expect::Ok,
    );
    s.case(
        "lookup with NUL inside",
        lookup(ROOT, b"f\0/../../canary"),
        Expect::Ok,
    );
    s.case(
        "symlink target longer than PATH_MAX",
        symlink(ROOT, MARK.as_bytes(), &long_name(5000)),
        Expect::Err(&[libc::ENAMETOOLONG]),
    );
    s.case(
        "symlink to nothing",
        symlink(ROOT, MARK.as_bytes(), b""),
        Expect::Err(&[libc::ENOENT]),
    );
    // The share's reserved names at the root (rootless bookkeeping).
    s.case(
        "lookup of .ownfs-symlinks",
        lookup(ROOT, b".ownfs-symlinks"),
        Expect::NoEntry,
    );
    s.case(
        "create .ownfs-symlinks",
        create(ROOT, b".ownfs-symlinks", 0o2, 0o644),
        Expect::Err(&[libc::EPERM]),
    );
    s.case(
        "rename onto .ownfs-symlinks",
        rename(n.d, b"sub", ROOT, b".ownfs-symlinks.tmp"),
        Expect::Err(&[libc::EPERM]),
    );

    // ---- node ids never handed out, and forgotten ones ----
    for bogus in NONE_SUCH {
        let w = format!("node {bogus:#x}");
        s.case(
            &format!("getattr of {w}"),
            getattr(bogus),
            Expect::Err(EBADF),
        );
        s.case(
            &format!("lookup in {w}"),
            lookup(bogus, b"f"),
            Expect::Err(EBADF),
        );
        s.case(
            &format!("mkdir in {w}"),
            mkdir(bogus, MARK.as_bytes(), 0o755),
            Expect::Err(EBADF),
        );
        s.case(
            &format!("create in {w}"),
            create(bogus, MARK.as_bytes(), 0o2, 0o644),
            Expect::Err(EBADF),
        );
        s.case(
            &format!("open {w}"),
            open(bogus, libc::O_RDWR as u32),
            Expect::Err(EBADF),
        );
        s.case(&format!("opendir {w}"), opendir(bogus), Expect::Err(EBADF));
        s.case(
            &format!("setattr of {w}"),
            setattr(
                bogus,
                Setattr {
                    valid: fattr::MODE,
                    mode: 0o777,
                    ..Default::default()
                },
            ),
            Expect::Err(EBADF),
        );
        s.case(
            &format!("readlink of {w}"),
            readlink(bogus),
            Expect::Err(EBADF),
        );
        s.case(&format!("statfs of {w}"), statfs(bogus), Expect::Err(EBADF));
        s.case(&format!("access {w}"), access(bogus, 0), Expect::Err(EBADF));
        s.case(
            &format!("getxattr of {w}"),
            getxattr(bogus, b"user.test", 64),
            Expect::Err(EBADF),
        );
        s.case(
            &format!("listxattr of {w}"),
            listxattr(bogus, 4096),
            Expect::Err(EBADF),
        );
        s.case(
            &format!("setxattr of {w}"),
            setxattr(bogus, b"user.x", b"v", 1),
            Expect::Err(EBADF),
        );
        s.case(
            &format!("link of {w}"),
            link(bogus, ROOT, MARK.as_bytes()),
            Expect::Err(EBADF),
        );
        s.case(
            &format!("link into {w}"),
            link(n.f, bogus, MARK.as_bytes()),
            Expect::Err(EBADF),
        );
        s.case(
            &format!("rename into {w}"),
            rename(ROOT, b"f", bogus, b"f"),
            Expect::Err(EBADF),
        );
        s.case(
            &format!("unlink in {w}"),
            unlink(bogus, b"f"),
            Expect::Err(EBADF),
        );
        s.case(&format!("forget {w}"), forget(bogus, 1), Expect::Silent);
    }
    let gone = s.ok(create(ROOT, b"gone", libc::O_RDWR as u32, 0o644));
    let (gone_node, gone_fh) = (gone.entry_node(), gone.create_fh());
    s.ok(release(gone_node, gone_fh));
    s.case(
        "forget of a created file",
        forget(gone_node, 1),
        Expect::Silent,
    );
    s.case(
        "getattr of a forgotten node",
        getattr(gone_node),
        Expect::Err(EBADF),
    );
    s.case(
        "open of a forgotten node",
        open(gone_node, 0),
        Expect::Err(EBADF),
    );
    s.case(
        "forget of a forgotten node",
        forget(gone_node, 1),
        Expect::Silent,
    );
    if let Some(r) = s.case("lookup after forget", lookup(ROOT, b"gone"), Expect::Ok) {
        if r.errno == 0 && r.entry_node() == gone_node {
            s.fail(
                "lookup after forget",
                "a forgotten node id was handed out again".into(),
            );
        }
        s.ok(unlink(ROOT, b"gone"));
        let _ = s.raw.send(&forget(r.entry_node(), 1));
    }

    // ---- forgetting more than was looked up ----
    let f2 = s.node(ROOT, "f");
    s.case(
        "forget 1000 of a node looked up once more",
        forget(f2, 1000),
        Expect::Silent,
    );
    s.case(
        "getattr of the over-forgotten node",
        getattr(f2),
        Expect::Err(EBADF),
    );
    s.case(
        "forget u64::MAX of the root",
        forget(ROOT, u64::MAX),
        Expect::Silent,
    );
    s.case(
        "batch forget of the root, repeats, bogus ids",
        batch_forget(&[(ROOT, u64::MAX), (ROOT, 1), (0, 1), (u64::MAX, u64::MAX)]),
        Expect::Silent,
    );
    s.case(
        "getattr of the root after forgets",
        getattr(ROOT),
        Expect::Ok,
    );
    let n = s.nodes();

    // ---- handles never handed out, of other nodes, and released ----
    let fh = s.ok(open(n.f, libc::O_RDWR as u32)).open_fh();
    let dh = s.ok(opendir(n.d)).open_fh();
    for bogus in [0, 0xdead_beef, u64::MAX] {
        let w = format!("handle {bogus:#x}");
        s.case(
            &format!("read {w}"),
            read(n.f, bogus, 0, 16),
            Expect::Err(EBADF),
        );
        s.case(
            &format!("write {w}"),
            write(n.f, bogus, 0, 3, MARK.as_bytes()),
            Expect::Err(EBADF),
        );
        s.case(&format!("flush {w}"), flush(n.f, bogus), Expect::Err(EBADF));
        s.case(&format!("fsync {w}"), fsync(n.f, bogus), Expect::Err(EBADF));
        s.case(
            &format!("lseek {w}"),
            lseek(n.f, bogus, 0, libc::SEEK_END as u32),
            Expect::Err(EBADF),
        );
        s.case(
            &format!("fallocate {w}"),
            fallocate(n.f, bogus, 0, 1, 0),
            Expect::Err(EBADF),
        );
        s.case(
            &format!("release {w}"),
            release(n.f, bogus),
            Expect::Err(EBADF),
        );
        s.case(
            &format!("readdir {w}"),
            readdir(n.d, bogus, 0, 4096),
            Expect::Err(EBADF),
        );
        s.case(
            &format!("readdirplus {w}"),
            readdirplus(n.d, bogus, 0, 4096),
            Expect::Err(EBADF),
        );
        s.case(
            &format!("fsyncdir {w}"),
            fsyncdir(n.d, bogus),
            Expect::Err(EBADF),
        );
        s.case(
            &format!("releasedir {w}"),
            releasedir(n.d, bogus),
            Expect::Err(EBADF),
        );
        s.case(
            &format!("setattr size with {w}"),
            setattr(
                n.f,
                Setattr {
                    valid: fattr::SIZE | fattr::FH,
                    fh: bogus,
                    ..Default::default()
                },
            ),
            Expect::Err(EBADF),
        );
    }
    s.case(
        "read with the handle of another node",
        read(n.d, fh, 0, 16),
        Expect::Err(EBADF),
    );
    s.case(
        "readdir with the handle of another node",
        readdir(n.sub, dh, 0, 4096),
        Expect::Err(EBADF),
    );
    s.case(
        "readdir with a file handle",
        readdir(n.f, fh, 0, 4096),
        Expect::Err(&[libc::ENOTDIR]),
    );
    s.case(
        "read with a directory handle",
        read(n.d, dh, 0, 16),
        Expect::Err(&[libc::EISDIR]),
    );
    s.case(
        "write with a directory handle",
        write(n.d, dh, 0, 3, b"abc"),
        Expect::Err(&[libc::EBADF, libc::EISDIR]),
    );
    s.case(
        "setattr size with another node's handle",
        setattr(
            n.d,
            Setattr {
                valid: fattr::SIZE | fattr::FH,
                fh,
                ..Default::default()
            },
        ),
        Expect::Err(EBADF),
    );

    // ---- offsets and sizes ----
    let i64_max = i64::MAX as u64;
    s.case(
        "read at a negative offset",
        read(n.f, fh, u64::MAX, 16),
        Expect::Err(EINVAL),
    );
    s.case(
        "read at offset 2^62",
        read(n.f, fh, 1 << 62, 16),
        Expect::Ok,
    );
    s.case("read of 4 GiB", read(n.f, fh, 0, u32::MAX), Expect::Ok);
    s.case("read of 0 bytes", read(n.f, fh, 0, 0), Expect::Ok);
    s.case(
        "write at a negative offset",
        write(n.f, fh, u64::MAX, 3, b"abc"),
        Expect::Err(EINVAL),
    );
    s.case(
        "write at offset i64::MAX",
        write(n.f, fh, i64_max, 3, b"abc"),
        Expect::Err(&[libc::EFBIG, libc::EINVAL]),
    );
    if let Some(r) = s.case(
        "write whose size exceeds its data",
        write(n.f, fh, 100, 1 << 20, b"abc"),
        Expect::OkOr(EINVAL),
    ) {
        if r.errno == 0 && r.size_field() > 3 {
            s.fail(
                "write whose size exceeds its data",
                format!("claims {} bytes written", r.size_field()),
            );
        }
    }
    s.case("write of 0 bytes", write(n.f, fh, 0, 0, b""), Expect::Ok);
    s.case(
        "fallocate at a negative offset",
        fallocate(n.f, fh, u64::MAX, 1, 0),
        Expect::Err(EINVAL),
    );
    s.case(
        "fallocate of a negative length",
        fallocate(n.f, fh, 0, u64::MAX, 0),
        Expect::Err(EINVAL),
    );
    s.case(
        "fallocate of length 0",
        fallocate(n.f, fh, 0, 0, 0),
        Expect::Err(EINVAL),
    );
    s.case(
        "fallocate past the largest offset",
        fallocate(n.f, fh, i64_max, 1, 0),
        Expect::Err(&[libc::EFBIG, libc::EINVAL]),
    );
    s.case(
        "fallocate whose end overflows",
        fallocate(n.f, fh, 1 << 62, 1 << 62, 0),
        Expect::Err(&[libc::EFBIG, libc::EINVAL]),
    );
    s.case(
        "fallocate with every mode bit",
        fallocate(n.f, fh, 0, 1, u32::MAX),
        Expect::Err(&[libc::EOPNOTSUPP, libc::EINVAL]),
    );
    s.case(
        "lseek to a negative offset",
        lseek(n.f, fh, u64::MAX, 0),
        Expect::Err(EINVAL),
    );
    s.case(
        "lseek with whence 99",
        lseek(n.f, fh, 0, 99),
        Expect::Err(EINVAL),
    );
    s.case(
        "lseek SEEK_DATA past the end",
        lseek(n.f, fh, 1 << 40, libc::SEEK_DATA as u32),
        Expect::Err(&[libc::ENXIO]),
    );
    s.case(
        "copy_file_range onto its own range",
        copy_file_range(n.f, fh, n.f, fh, u64::MAX),
        Expect::Err(&[libc::EINVAL]),
    );
    let size = |size: u64| Setattr {
        valid: fattr::SIZE,
        size,
        ..Default::default()
    };
    s.case(
        "setattr to a negative size",
        setattr(n.f, size(u64::MAX)),
        Expect::Err(EINVAL),
    );
    s.case(
        "setattr to size i64::MAX",
        setattr(n.f, size(i64_max)),
        Expect::Err(&[libc::EFBIG, libc::EINVAL]),
    );
    s.case(
        "setattr size of a directory",
        setattr(n.d, size(0)),
        Expect::Err(&[libc::EISDIR]),
    );
    s.case(
        "setattr size of a link out",
        setattr(n.out_abs, size(0)),
        Expect::Err(EINVAL),
    );
    s.case(
        "setattr size of a relative link out",
        setattr(n.out_rel, size(0)),
        Expect::Err(EINVAL),
    );
    s.case(
        "readdir of 4 GiB",
        readdir(n.d, dh, 0, u32::MAX),
        Expect::OkOr(&[libc::ENOMEM, libc::EINVAL]),
    );
    s.case("readdir of 0 bytes", readdir(n.d, dh, 0, 0), Expect::Ok);

    // ---- setattr combinations ----
    s.case(
        "setattr with only unknown valid bits",
        setattr(
            n.f,
            Setattr {
                valid: 0xffff_0000,
                ..Default::default()
            },
        ),
        Expect::Ok,
    );
    s.case(
        "setattr atime and atime_now",
        setattr(
            n.f,
            Setattr {
                valid: fattr::ATIME | fattr::ATIME_NOW,
                atime: (5, 0),
                ..Default::default()
            },
        ),
        Expect::Ok,
    );
    s.case(
        "setattr with 2e9 nanoseconds",
        setattr(
            n.f,
            Setattr {
                valid: fattr::MTIME,
                mtime: (5, 2_000_000_000),
                ..Default::default()
            },
        ),
        Expect::Err(EINVAL),
    );
    s.case(
        "setattr of every bit with a bogus handle",
        setattr(
            n.f,
            Setattr {
                valid: u32::MAX,
                fh: 0xdead_beef,
                size: 1,
                ..Default::default()
            },
        ),
        Expect::Err(EBADF),
    );
    s.case(
        "setattr mode with file type bits",
        setattr(
            n.f,
            Setattr {
                valid: fattr::MODE,
                mode: libc::S_IFDIR | 0o644,
                ..Default::default()
            },
        ),
        Expect::Ok,
    );
    if let Some(r) = s.case(
        "getattr after a mode with type bits",
        getattr(n.f),
        Expect::Ok,
    ) {
        if r.errno == 0 && r.attr_mode() != libc::S_IFREG | 0o644 {
            s.fail(
                "mode with type bits",
                format!("mode is now {:o}", r.attr_mode()),
            );
        }
    }
    s.case(
        "setattr times of a link out",
        setattr(
            n.out_abs,
            Setattr {
                valid: fattr::MTIME | fattr::ATIME,
                mtime: (7, 0),
                atime: (7, 0),
                ..Default::default()
            },
        ),
        Expect::Ok,
    );
    s.case(
        "setattr mode of a link out",
        setattr(
            n.out_rel,
            Setattr {
                valid: fattr::MODE,
                mode: 0o777,
                ..Default::default()
            },
        ),
        Expect::OkOr(&[libc::EOPNOTSUPP]),
    );
    s.case(
        "setattr owner of a link out",
        setattr(
            n.out_abs,
            Setattr {
                valid: fattr::UID | fattr::GID,
                uid: 4242,
                gid: 4242,
                ..Default::default()
            },
        ),
        Expect::Ok,
    );

    // ---- every other operation on links that point out of SRC ----
    for (what, node) in [
        ("absolute link out", n.out_abs),
        ("relative link out", n.out_rel),
    ] {
        s.case(
            &format!("open {what} read-write"),
            open(node, (libc::O_RDWR | libc::O_TRUNC) as u32),
            Expect::Err(&[libc::ELOOP]),
        );
        s.case(
            &format!("open {what}"),
            open(node, libc::O_RDONLY as u32),
            Expect::Err(&[libc::ELOOP]),
        );
        s.case(
            &format!("opendir {what}"),
            opendir(node),
            Expect::Err(&[libc::ENOTDIR]),
        );
        s.case(
            &format!("getxattr of {what}"),
            getxattr(node, b"user.canary", 64),
            Expect::Err(&[libc::ENODATA]),
        );
        if let Some(r) = s.case(
            &format!("listxattr of {what}"),
            listxattr(node, 4096),
            Expect::Ok,
        ) {
            if r.body.windows(6).any(|w| w == b"canary") {
                s.fail(
                    &format!("listxattr of {what}"),
                    "lists the canary's xattrs".into(),
                );
            }
        }
        s.case(
            &format!("setxattr of {what}"),
            setxattr(node, b"user.canary", b"gone", 4),
            Expect::Err(&[libc::EPERM]),
        );
        s.case(
            &format!("removexattr of {what}"),
            removexattr(node, b"user.canary"),
            Expect::Err(&[libc::EPERM, libc::ENODATA]),
        );
        s.case(
            &format!("create below {what}"),
            create(node, MARK.as_bytes(), 0o2, 0o644),
            Expect::Err(&[libc::ENOTDIR]),
        );
        s.case(&format!("readlink of {what}"), readlink(node), Expect::Ok);
        s.case(
            &format!("access of {what}"),
            access(node, libc::W_OK as u32),
            Expect::OkOr(&[libc::EACCES]),
        );
        if let Some(r) = s.case(
            &format!("hard link of {what}"),
            link(node, ROOT, b"hardlink"),
            Expect::Ok,
        ) {
            if r.errno == 0 {
                if r.entry_mode() & S_IFMT != libc::S_IFLNK {
                    s.fail(
                        &format!("hard link of {what}"),
                        format!("linked a {:o}", r.entry_mode()),
                    );
                }
                s.ok(unlink(ROOT, b"hardlink"));
                let _ = s.raw.send(&forget(r.entry_node(), 1));
            }
        }
    }
    s.case(
        "mkdir below a link to a directory outside",
        mkdir(n.out_dir, MARK.as_bytes(), 0o755),
        Expect::Err(&[libc::ENOTDIR]),
    );
    s.case(
        "rename into a link to a directory outside",
        rename(ROOT, b"f", n.out_dir, MARK.as_bytes()),
        Expect::Err(&[libc::ENOTDIR]),
    );
    s.case(
        "rename of a link out",
        rename(n.d, b"up", n.d, b"up2"),
        Expect::Ok,
    );
    s.case(
        "rename it back",
        rename(n.d, b"up2", n.d, b"up"),
        Expect::Ok,
    );

    // ---- creating over the names of links out: never through them ----
    for link_name in ["out_abs", "out_rel"] {
        let lb = link_name.as_bytes();
        let trunc = (libc::O_RDWR | libc::O_TRUNC) as u32;
        s.case(
            &format!("create O_TRUNC over {link_name}"),
            create(ROOT, lb, trunc, 0o644),
            Expect::Err(&[libc::ELOOP, libc::EEXIST]),
        );
        s.case(
            &format!("mknod over {link_name}"),
            mknod(ROOT, lb, libc::S_IFREG | 0o644, 0),
            Expect::Err(&[libc::EEXIST]),
        );
        s.case(
            &format!("mkdir over {link_name}"),
            mkdir(ROOT, lb, 0o755),
            Expect::Err(&[libc::EEXIST]),
        );
        s.case(
            &format!("symlink over {link_name}"),
            symlink(ROOT, lb, b"f"),
            Expect::Err(&[libc::EEXIST]),
        );
    }
    s.case(
        "open O_CREAT|O_TRUNC of a link out",
        open(
            n.out_rel,
            (libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC) as u32,
        ),
        Expect::Err(&[libc::ELOOP]),
    );
    s.case(
        "create O_TMPFILE",
        create(
            ROOT,
            MARK.as_bytes(),
            (libc::O_RDWR | libc::O_TMPFILE) as u32,
            0o644,
        ),
        Expect::Err(&[libc::EINVAL, libc::EISDIR, libc::ENOTDIR]),
    );
    s.case(
        "open O_TMPFILE of a file",
        open(n.f, (libc::O_RDWR | libc::O_TMPFILE) as u32),
        Expect::Err(&[libc::EINVAL, libc::ENOTDIR]),
    );
    s.case(
        "open O_DIRECTORY of a file",
        open(n.f, libc::O_DIRECTORY as u32),
        Expect::Err(&[libc::ENOTDIR]),
    );
    if let Some(r) = s.case(
        "open O_PATH of a file",
        open(n.f, libc::O_PATH as u32),
        Expect::Ok,
    ) {
        if r.errno == 0 {
            let ph = r.open_fh();
            s.case(
                "read through an O_PATH handle",
                read(n.f, ph, 0, 16),
                Expect::Err(EBADF),
            );
            s.case(
                "write through an O_PATH handle",
                write(n.f, ph, 0, 3, b"abc"),
                Expect::Err(EBADF),
            );
            s.ok(release(n.f, ph));
        }
    }
    let ro = s.ok(open(n.f, libc::O_RDONLY as u32)).open_fh();
    s.case(
        "write through a read-only handle",
        write(n.f, ro, 0, 3, b"abc"),
        Expect::Err(EBADF),
    );
    s.case(
        "truncate through a read-only handle",
        setattr(
            n.f,
            Setattr {
                valid: fattr::SIZE | fattr::FH,
                fh: ro,
                ..Default::default()
            },
        ),
        Expect::Err(&[libc::EBADF, libc::EINVAL]),
    );
    s.ok(release(n.f, ro));
    s.case(
        "fallocate through a directory handle",
        fallocate(n.d, dh, 0, 1, 0),
        Expect::Err(&[libc::EBADF, libc::ENODEV, libc::EISDIR]),
    );
    s.case("readlink of a file", readlink(n.f), Expect::Err(EINVAL));
    s.case(
        "access with unknown mask bits",
        access(n.f, 0xff),
        Expect::Err(EINVAL),
    );

    // ---- renames ----
    s.case(
        "rename onto itself",
        rename(ROOT, b"f", ROOT, b"f"),
        Expect::Ok,
    );
    s.ok(mkdir(ROOT, b"mv", 0o755));
    s.case(
        "rename across directories",
        rename(ROOT, b"mv", n.d, b"mv"),
        Expect::Ok,
    );
    s.case(
        "rename back across directories",
        rename(n.d, b"mv", ROOT, b"mv"),
        Expect::Ok,
    );
    s.case(
        "rename a directory into its own subdirectory",
        rename(ROOT, b"d", n.sub, b"d"),
        Expect::Err(EINVAL),
    );
    s.case(
        "rename the root's parent",
        rename(ROOT, b"..", n.d, b"x"),
        Expect::Err(EINVAL),
    );
    s.case(
        "rename with every flag bit",
        rename2(ROOT, b"mv", ROOT, b"mv2", u32::MAX),
        Expect::Err(EINVAL),
    );
    s.case(
        "rename exchange with nothing",
        rename2(ROOT, b"mv", ROOT, b"nothing", libc::RENAME_EXCHANGE),
        Expect::Err(&[libc::ENOENT]),
    );
    s.case(
        "rename into a file",
        rename(ROOT, b"mv", n.f, b"x"),
        Expect::Err(&[libc::ENOTDIR]),
    );
    s.ok(rmdir(ROOT, b"mv"));

    // ---- hard links of directories ----
    s.case(
        "link of a directory",
        link(n.d, ROOT, MARK.as_bytes()),
        Expect::Err(&[libc::EPERM]),
    );
    s.case(
        "link of the root",
        link(ROOT, n.d, MARK.as_bytes()),
        Expect::Err(&[libc::EPERM]),
    );
    s.case(
        "link into a file",
        link(n.f, n.f, MARK.as_bytes()),
        Expect::Err(&[libc::ENOTDIR]),
    );

    // ---- extended attributes ----
    // Give f a rootless ownership record first (a no-op owner change elsewhere).
    s.ok(setattr(
        n.f,
        Setattr {
            valid: fattr::MODE,
            mode: 0o640,
            ..Default::default()
        },
    ));
    for name in ["user.ownfs.stat", "user.ownfs.future", "user.ownfs."] {
        let nb = name.as_bytes();
        s.case(
            &format!("getxattr {name}"),
            getxattr(n.f, nb, 4096),
            Expect::Err(&[libc::ENODATA]),
        );
        s.case(
            &format!("getxattr {name} size 0"),
            getxattr(n.f, nb, 0),
            Expect::Err(&[libc::ENODATA]),
        );
        s.case(
            &format!("getxattr {name} of the root"),
            getxattr(ROOT, nb, 4096),
            Expect::Err(&[libc::ENODATA]),
        );
        s.case(
            &format!("setxattr {name}"),
            setxattr(n.f, nb, b"forged", 6),
            Expect::Err(&[libc::EPERM]),
        );
        s.case(
            &format!("removexattr {name}"),
            removexattr(n.f, nb),
            Expect::Err(&[libc::EPERM]),
        );
    }
    for (what, size) in [("listxattr", 64 * 1024), ("listxattr size 0", 0)] {
        if let Some(r) = s.case(what, listxattr(n.f, size), Expect::Ok) {
            if r.body.windows(10).any(|w| w == b"user.ownfs") {
                s.fail(what, "lists the ownership record".into());
            }
            if size == 0 && r.errno == 0 && r.size_field() as usize != b"user.test\0".len() {
                s.fail(what, format!("counts {} bytes of names", r.size_field()));
            }
        }
    }
    s.case(
        "listxattr into 1 byte",
        listxattr(n.f, 1),
        Expect::Err(&[libc::ERANGE]),
    );
    s.case(
        "getxattr of 4 GiB",
        getxattr(n.f, b"user.test", u32::MAX),
        Expect::Ok,
    );
    s.case(
        "getxattr size 0",
        getxattr(n.f, b"user.test", 0),
        Expect::Ok,
    );
    s.case(
        "getxattr into 1 byte",
        getxattr(n.f, b"user.test", 1),
        Expect::Err(&[libc::ERANGE]),
    );
    s.case(
        "getxattr of an empty name",
        getxattr(n.f, b"", 64),
        Expect::Err(&[libc::ERANGE, libc::EINVAL, libc::ENODATA, libc::EOPNOTSUPP]),
    );
    s.case(
        "getxattr of a 300-byte name",
        getxattr(n.f, &long_name(300), 64),
        Expect::Err(&[libc::ERANGE]),
    );
    s.case(
        "getxattr without a namespace",
        getxattr(n.f, b"test", 64),
        Expect::Err(&[libc::EOPNOTSUPP]),
    );
    let big = vec![7u8; 70_000];
    s.case(
        "setxattr of 70 000 bytes",
        setxattr(n.f, b"user.big", &big, big.len() as u32),
        Expect::Err(&[libc::E2BIG, libc::ENOSPC]),
    );
    s.case(
        "setxattr whose size field lies",
        setxattr(n.f, b"user.x", b"abc", 10),
        Expect::Err(EINVAL),
    );
    s.case(
        "setxattr with every flag bit",
        setxattr_flags(n.f, b"user.x", b"abc", u32::MAX),
        Expect::Err(EINVAL),
    );
    s.case(
        "setxattr replace of nothing",
        setxattr_flags(n.f, b"user.x", b"abc", libc::XATTR_REPLACE as u32),
        Expect::Err(&[libc::ENODATA]),
    );
    s.case(
        "setxattr trusted.*",
        setxattr(n.f, b"trusted.hostile", b"x", 1),
        Expect::OkOr(&[libc::EPERM]),
    );
    s.case(
        "removexattr trusted.*",
        removexattr(n.f, b"trusted.hostile"),
        Expect::OkOr(&[libc::EPERM, libc::ENODATA]),
    );
    s.case(
        "setxattr security.*",
        setxattr(n.f, b"security.hostile", b"x", 1),
        Expect::OkOr(&[libc::EPERM, libc::EOPNOTSUPP]),
    );
    s.case(
        "removexattr security.*",
        removexattr(n.f, b"security.hostile"),
        Expect::OkOr(&[libc::EPERM, libc::ENODATA, libc::EOPNOTSUPP]),
    );
    s.case(
        "setxattr of a garbage ACL",
        setxattr(n.f, b"system.posix_acl_access", b"garbage", 7),
        Expect::Err(&[libc::EINVAL, libc::EOPNOTSUPP]),
    );

    // ---- readdir at offsets the server never returned ----
    for (what, offset) in [
        ("12345", 12345u64),
        ("2^62", 1 << 62),
        ("u64::MAX", u64::MAX),
    ] {
        s.case(
            &format!("readdir at offset {what}"),
            readdir(n.d, dh, offset, 4096),
            Expect::OkOr(EINVAL),
        );
        s.case(
            &format!("readdirplus at offset {what}"),
            readdirplus(n.d, dh, offset, 4096),
            Expect::OkOr(EINVAL),
        );
    }
    if let Some(r) = s.case(
        "readdir from the start after that",
        readdir(n.d, dh, 0, 4096),
        Expect::Ok,
    ) {
        let names = r.dirent_names(false);
        if !names.iter().any(|n| n == b"sub") {
            s.fail("readdir from the start", format!("no sub in {names:?}"));
        }
    }
    // Rootless: a symlink made through the server creates the hidden bookkeeping file.
    s.ok(symlink(ROOT, b"newlink", b"f"));
    let rh = s.ok(opendir(ROOT)).open_fh();
    for plus in [false, true] {
        let what = if plus {
            "readdirplus of the root"
        } else {
            "readdir of the root"
        };
        let m = if plus {
            readdirplus(ROOT, rh, 0, 64 * 1024)
        } else {
            readdir(ROOT, rh, 0, 64 * 1024)
        };
        if let Some(r) = s.case(what, m, Expect::Ok) {
            let names = r.dirent_names(plus);
            if names.iter().any(|n| n.starts_with(b".ownfs")) {
                s.fail(what, "lists the server's bookkeeping file".into());
            }
        }
    }
    s.ok(releasedir(ROOT, rh));
    s.ok(unlink(ROOT, b"newlink"));

    // ---- released handles ----
    s.ok(release(n.f, fh));
    s.ok(releasedir(n.d, dh));
    s.case(
        "read a released handle",
        read(n.f, fh, 0, 16),
        Expect::Err(EBADF),
    );
    s.case(
        "write a released handle",
        write(n.f, fh, 0, 3, b"abc"),
        Expect::Err(EBADF),
    );
    s.case(
        "fsync a released handle",
        fsync(n.f, fh),
        Expect::Err(EBADF),
    );
    s.case(
        "release a released handle",
        release(n.f, fh),
        Expect::Err(EBADF),
    );
    s.case(
        "readdir a released handle",
        readdir(n.d, dh, 0, 4096),
        Expect::Err(EBADF),
    );
    s.case(
        "releasedir a released handle",
        releasedir(n.d, dh),
        Expect::Err(EBADF),
    );

    // ---- identity still applies (root mode switches to the caller) ----
    if s.mode == "root" {
        s.case(
            "create in the root as nobody",
            create(ROOT, MARK.as_bytes(), 0o2, 0o644).caller(65534, 65534),
            Expect::Err(&[libc::EACCES]),
        );
    }

    // ---- truncated, lying and oversized messages ----
    let u = s.raw.take_unique();
    let good = lookup(ROOT, b"f").encode(u);
    let mut longer = good.clone();
    longer[..4].copy_from_slice(&((good.len() + 100) as u32).to_le_bytes());
    s.case_bytes(
        "length field longer than the message",
        longer,
        u,
        Expect::Err(EINVAL),
    );
    let u = s.raw.take_unique();
    let mut shorter = lookup(ROOT, b"f").encode(u);
    let shorter_len = (shorter.len() - 2) as u32;
    shorter[..4].copy_from_slice(&shorter_len.to_le_bytes());
    s.case_bytes(
        "length field shorter than the message",
        shorter,
        u,
        Expect::Err(EINVAL),
    );
    let u = s.raw.take_unique();
    s.case_bytes(
        "length field 0",
        lookup(ROOT, b"f").len(0).encode(u),
        u,
        Expect::Err(EINVAL),
    );
    let u = s.raw.take_unique();
    s.case_bytes(
        "length field u32::MAX",
        lookup(ROOT, b"f").len(u32::MAX).encode(u),
        u,
        Expect::Err(EINVAL),
    );
    let u = s.raw.take_unique();
    let mut cut = getattr(ROOT).encode(u);
    cut.truncate(24);
    let cut_len = cut.len() as u32;
    cut[..4].copy_from_slice(&cut_len.to_le_bytes());
    s.case_bytes(
        "message shorter than its header",
        cut,
        u,
        Expect::Err(EINVAL),
    );
    s.case_bytes(
        "8 bytes of nothing",
        vec![8, 0, 0, 0, 1, 0, 0, 0],
        0,
        Expect::Silent,
    );
    s.case_bytes("empty message", Vec::new(), 0, Expect::Silent);
    let short = |opcode: u32, body: &[u8]| Msg::new(opcode, ROOT, Body::new().bytes(body));
    s.case(
        "lookup name without NUL",
        short(op::LOOKUP, b"f"),
        Expect::Err(EINVAL),
    );
    s.case(
        "lookup with no name at all",
        short(op::LOOKUP, b""),
        Expect::Err(EINVAL),
    );
    s.case(
        "mkdir with a short op struct",
        short(op::MKDIR, &[1, 2, 3]),
        Expect::Err(EINVAL),
    );
    s.case(
        "mkdir name without NUL",
        short(op::MKDIR, b"\xed\x01\0\0\0\0\0\0abc"),
        Expect::Err(EINVAL),
    );
    s.case(
        "setattr with a short op struct",
        short(op::SETATTR, &[0; 10]),
        Expect::Err(EINVAL),
    );
    s.case(
        "getattr with no op struct",
        short(op::GETATTR, &[]),
        Expect::Err(EINVAL),
    );
    s.case(
        "read with a short op struct",
        Msg::new(op::READ, n.f, Body::new().u64(1)),
        Expect::Err(EINVAL),
    );
    s.case(
        "write with a short op struct",
        Msg::new(op::WRITE, n.f, Body::new().u64(1)),
        Expect::Err(EINVAL),
    );
    s.case(
        "symlink target without NUL",
        short(op::SYMLINK, format!("{MARK}\0f").as_bytes()),
        Expect::Err(EINVAL),
    );
    s.case(
        "symlink with one name",
        short(op::SYMLINK, format!("{MARK}\0").as_bytes()),
        Expect::Err(EINVAL),
    );
    s.case(
        "rename with one name",
        Msg::new(op::RENAME, ROOT, Body::new().u64(ROOT).name(b"f")),
        Expect::Err(EINVAL),
    );
    s.case(
        "rename new name without NUL",
        Msg::new(
            op::RENAME,
            ROOT,
            Body::new().u64(ROOT).name(b"f").bytes(MARK.as_bytes()),
        ),
        Expect::Err(EINVAL),
    );
    s.case(
        "rename2 with no op struct",
        short(op::RENAME2, &[]),
        Expect::Err(EINVAL),
    );
    s.case(
        "link with no names",
        Msg::new(op::LINK, ROOT, Body::new().u64(n.f)),
        Expect::Err(EINVAL),
    );
    s.case(
        "setxattr name without NUL",
        Msg::new(
            op::SETXATTR,
            n.f,
            Body::new().u32(1).u32(0).bytes(b"user.x"),
        ),
        Expect::Err(EINVAL),
    );
    s.case(
        "getxattr name without NUL",
        Msg::new(
            op::GETXATTR,
            n.f,
            Body::new().u32(1).u32(0).bytes(b"user.x"),
        ),
        Expect::Err(EINVAL),
    );
    s.case(
        "create with a short op struct",
        short(op::CREATE, &[0; 12]),
        Expect::Err(EINVAL),
    );
    s.case(
        "init with a short op struct",
        Msg::new(op::INIT, 0, Body::new().u32(7)),
        Expect::Err(EINVAL),
    );
    s.case(
        "init announcing flags2 it does not carry",
        init(7, 36, 1 << 30),
        Expect::Err(EINVAL),
    );
    s.case(
        "forget with a short op struct",
        Msg::new(op::FORGET, n.f, Body::new().u32(1)),
        Expect::Silent,
    );
    s.case(
        "batch forget claiming 2^32-1 entries",
        Msg::new(
            op::BATCH_FORGET,
            0,
            Body::new().u32(u32::MAX).u32(0).u64(n.f).u64(1),
        ),
        Expect::Silent,
    );
    s.case(
        "batch forget claiming more entries than it has",
        Msg::new(
            op::BATCH_FORGET,
            0,
            Body::new().u32(3).u32(0).u64(n.f).u64(0),
        ),
        Expect::Silent,
    );
    let huge = vec![b'a'; (1 << 20) + 8192];
    // Past fuse-pipe's frame limit: the server closes that connection instead.
    let over = |s: &Suite, e| {
        if huge.len() > s.raw.max_message() {
            Expect::Closed
        } else {
            e
        }
    };
    let e = over(s, Expect::Err(&[libc::ENOMEM, libc::ENAMETOOLONG]));
    s.case("1 MiB + 8 KiB lookup", lookup(ROOT, &huge), e);
    let e = over(s, Expect::Err(&[libc::ENOMEM, libc::EBADF]));
    s.case(
        "1 MiB + 8 KiB write",
        write(n.f, 0xdead, 0, huge.len() as u32, &huge),
        e,
    );

    // ---- opcodes the server does not know, and odd protocol sequences ----
    for (what, opcode, errno) in [
        ("opcode 0", 0, &[libc::ENOSYS, libc::ENOSYS]),
        ("opcode 999", 999, &[libc::ENOSYS, libc::ENOSYS]),
        ("opcode u32::MAX", u32::MAX, &[libc::ENOSYS, libc::ENOSYS]),
        ("POLL", op::POLL, &[libc::ENOSYS, libc::ENOSYS]),
        ("GETLK", op::GETLK, &[libc::ENOSYS, libc::ENOSYS]),
        ("SETLK", op::SETLK, &[libc::ENOSYS, libc::ENOSYS]),
        ("BMAP", op::BMAP, &[libc::ENOSYS, libc::ENOSYS]),
        ("IOCTL", op::IOCTL, &[libc::ENOTTY, libc::ENOSYS]),
        (
            "NOTIFY_REPLY",
            op::NOTIFY_REPLY,
            &[libc::ENOSYS, libc::ENOSYS],
        ),
        (
            "SETUPMAPPING without a DAX window",
            op::SETUPMAPPING,
            &[libc::EINVAL, libc::ENOSYS],
        ),
    ] {
        s.case(
            what,
            Msg::new(opcode, n.f, Body::new().bytes(&[0; 80])),
            Expect::Err(errno),
        );
    }
    // Opcodes past fuse-backend-rs's 7.33, with all-zero arguments.
    let zeros = |opcode| Msg::new(opcode, n.f, Body::new().bytes(&[0; 80]));
    s.case("SYNCFS", zeros(op::SYNCFS), Expect::Ok);
    s.case("STATX", zeros(op::STATX), Expect::Ok);
    s.case(
        "TMPFILE read-only, in a file",
        zeros(op::TMPFILE),
        Expect::Err(&[libc::EINVAL, libc::ENOTDIR]),
    );
    s.case(
        "INTERRUPT of nothing",
        Msg::new(op::INTERRUPT, 0, Body::new().u64(12345)),
        Expect::Silent,
    );
    s.case("INIT again", init(7, 33, 0), Expect::Ok);
    s.case(
        "INIT of major 6",
        init(6, 0, 0),
        Expect::Err(&[libc::EPROTO]),
    );
    s.case("INIT of major 8", init(8, 0, 0), Expect::Ok);
    s.case(
        "INIT of minor 0",
        init(7, 0, 0),
        Expect::Err(&[libc::EPROTO]),
    );
    s.case(
        "INIT with every flag",
        init(7, 33, !(1u32 << 30)),
        Expect::Ok,
    );
    s.case("DESTROY", Msg::new(op::DESTROY, 0, Body::new()), Expect::Ok);
    s.case("getattr after DESTROY", getattr(n.f), Expect::Ok);
    s.ok(init(7, 33, 0));
}

fn run_raw_fuse(rootless: bool) -> (Tally, String) {
    let mut s = Suite::new(rootless);
    raw_fuse_cases(&mut s);
    let line = format!(
        "hostile[raw-fuse {}]: {} cases, {} crashes, {} hangs, {} escapes",
        s.mode, s.t.cases, s.t.crashes, s.t.hangs, s.t.escapes
    );
    (std::mem::take(&mut s.t), line)
}

/// Runs `run` in every mode (root, then rootless), prints each mode's line and the
/// transport's total, and fails on any failed case.
fn in_every_mode(transport: &str, run: fn(bool) -> (Tally, String)) {
    let mut total = Tally::default();
    let mut failures = Vec::new();
    for rootless in [false, true] {
        let (t, line) = run(rootless);
        println!("{line}");
        total.add(&t);
        failures.extend(t.failures);
    }
    println!(
        "hostile[{transport}]: {} cases, {} crashes, {} hangs, {} escapes",
        total.cases, total.crashes, total.hangs, total.escapes
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        total.cases,
        failures.join("\n")
    );
}

#[test]
fn raw_fuse_hostile_client() {
    // The real server runs with umask 0 (the client kernel applied the caller's).
    platform::set_umask(0);
    in_every_mode("raw-fuse", run_raw_fuse);
}

// ---------------------------------------------------------------------------
// A panic inside the server, through the /dev/fuse message handler
// ---------------------------------------------------------------------------

/// getattr panics; everything else is the trait's default.
struct Grumpy;

impl ownfs::extension::FileSystemExt for Grumpy {}

impl fuse_backend_rs::api::filesystem::FileSystem for Grumpy {
    type Inode = u64;
    type Handle = u64;

    fn getattr(
        &self,
        _ctx: &fuse_backend_rs::api::filesystem::Context,
        _inode: u64,
        _handle: Option<u64>,
    ) -> std::io::Result<(libc::stat64, Duration)> {
        panic!("getattr of a grumpy filesystem");
    }
}

/// The kernel never sends a request before INIT; one that comes has no session to be
/// served in and gets EIO, and INIT still works afterwards.
#[test]
fn requests_before_init_are_refused_with_eio() {
    let fx = Fixture::new("hostile-preinit");
    let mut raw = RawFuse::uninitialized(passthrough(&fx.src, false));
    for (what, msg) in [("getattr", getattr(ROOT)), ("lookup", lookup(ROOT, b"f"))] {
        let r = raw
            .call(&msg)
            .unwrap_or_else(|e| panic!("{what} before INIT: {e}"));
        assert_eq!(r.errno, libc::EIO, "{what} before INIT");
    }
    assert_eq!(raw.call(&init(7, 33, 0)).expect("INIT").errno, 0);
    assert_eq!(raw.call(&getattr(ROOT)).expect("getattr").errno, 0);
}

#[test]
fn a_panic_while_serving_a_fuse_message_is_answered_with_eio() {
    let mut raw = RawFuse::new(Grumpy);
    let (unique, outcome) = raw.send(&getattr(ROOT));
    match &outcome {
        Outcome::Done(Handled::Panicked, replies) if replies.len() == 1 => {}
        other => panic!("expected a caught panic and one reply, got {other:?}"),
    }
    let r = expect_one_reply(
        unique,
        match outcome {
            Outcome::Done(_, replies) => Outcome::Done(Handled::Served, replies),
            o => o,
        },
    )
    .expect("a well-formed reply");
    assert_eq!(r.errno, libc::EIO);
    // The same server answers the next message (the trait's default statfs).
    let r = raw.call(&statfs(ROOT)).expect("statfs after the panic");
    assert_eq!(r.errno, 0);
}

// ---------------------------------------------------------------------------
// fuse-pipe: the same raw FUSE messages through a running `ownfs serve`
// ---------------------------------------------------------------------------

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};

use ownfs::transport::pipe::wire;

struct ServeProc {
    child: Child,
    sock: PathBuf,
    log: PathBuf,
    /// Socket and log live here, away from the canary's directory.
    _run: Scratch,
}

impl ServeProc {
    fn start(fx: &Fixture, rootless: bool) -> ServeProc {
        let run = Scratch::new("hostile-pipe-run");
        let sock = run.path("serve.sock");
        let log = run.path("serve.log");
        let mut cmd = Command::new(ownfs_bin());
        cmd.arg("serve")
            .arg(&fx.src)
            .arg("--listen")
            .arg(format!("unix:{}", sock.display()));
        if rootless {
            cmd.arg("--rootless");
        }
        // One worker: replies come in request order (see `PipeFuse::send_bytes`).
        cmd.arg("--threads").arg("1");
        let child = cmd
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn ownfs serve");
        let mut p = ServeProc {
            child,
            sock,
            log,
            _run: run,
        };
        let deadline = std::time::Instant::now() + READY_TIMEOUT;
        while UnixStream::connect(&p.sock).is_err() {
            if let Some(st) = p.child.try_wait().unwrap() {
                panic!("ownfs serve exited ({st}):\n{}", p.stderr());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "ownfs serve did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        p
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ServeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_pipe(rootless: bool) -> (Tally, String) {
    let mut s = Suite::pipe(rootless);
    raw_fuse_cases(&mut s);
    pipe_frame_cases(&mut s);
    let line = format!(
        "hostile[{}]: {} cases, {} crashes, {} hangs, {} escapes",
        s.mode, s.t.cases, s.t.crashes, s.t.hangs, s.t.escapes
    );
    (std::mem::take(&mut s.t), line)
}

#[test]
fn pipe_hostile_client() {
    in_every_mode("pipe", run_pipe);
}

/// What only the pipe has: uniques chosen by a client, the frames around messages.
fn pipe_frame_cases(s: &mut Suite) {
    // ---- uniques: reuse, 0 and u64::MAX are just labels ----
    s.t.cases += 1;
    let sock = s.sock().to_path_buf();
    let mut c = PipeFuse::new(&sock);
    let mut burst = Vec::new();
    for (msg, unique) in [
        (getattr(ROOT), 77),
        (lookup(ROOT, b"f"), 77),
        (statfs(ROOT), 0),
        (statfs(ROOT), u64::MAX),
    ] {
        burst.extend(wire::request_frame(&[], &msg.encode(unique)));
    }
    let sent = c.stream().write_all(&burst);
    let mut seen = Vec::new();
    for _ in 0..4 {
        match c.read_reply() {
            Ok(Some(r)) => seen.push((
                u64::from_le_bytes(r[8..16].try_into().unwrap()),
                i32::from_le_bytes(r[4..8].try_into().unwrap()),
                r.len(),
            )),
            other => {
                s.fail("unique reuse", format!("{other:?}"));
                break;
            }
        }
    }
    seen.sort();
    // getattr_out is 104 bytes, entry_out 128, statfs_out 80; no errors.
    let want = vec![
        (0, 0, 16 + 80),
        (77, 0, 16 + 104),
        (77, 0, 16 + 128),
        (u64::MAX, 0, 16 + 80),
    ];
    if sent.is_err() || seen != want {
        s.fail(
            "unique reuse",
            format!("replies {seen:?}, expected {want:?}"),
        );
    }
    s.still_serving("unique reuse");

    // ---- forwarded groups: up to the limit are served, one more closes ----
    s.t.cases += 1;
    let groups: Vec<u32> = (0..wire::MAX_GROUPS).collect();
    let u = s.raw.take_unique();
    let mut c = PipeFuse::new(&sock);
    let served = c
        .send_frame(&groups, &getattr(ROOT).encode(u))
        .map_err(|e| e.to_string())
        .and_then(|()| c.read_reply());
    if !matches!(&served, Ok(Some(r)) if r[4..8] == [0; 4]) {
        s.fail("8192 groups", format!("{served:?}"));
    }
    s.still_serving("8192 groups");

    // ---- malformed frames: that connection closes, the others carry on ----
    let msg = getattr(ROOT).encode(2);
    let frame = |len: u32, count: u32, rest: &[u8]| {
        let mut f = len.to_le_bytes().to_vec();
        f.extend_from_slice(&count.to_le_bytes());
        f.extend_from_slice(rest);
        f
    };
    let too_many = wire::MAX_GROUPS + 1;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("8193 groups", frame(4 + 4 * too_many, too_many, &[])),
        ("a length shorter than its groups", frame(4, 1, &[0; 4])),
        ("a length of 2", frame(2, 0, &[])),
        (
            "a length past the limit",
            frame(wire::MAX_FRAME + 1, 0, &msg),
        ),
        ("a length of u32::MAX", frame(u32::MAX, 0, &msg)),
        (
            "a group count of u32::MAX",
            frame(wire::MAX_FRAME, u32::MAX, &msg),
        ),
    ];
    for (what, bytes) in cases {
        s.frame_closes(what, &bytes);
    }
    // A frame cut short by the end of the stream.
    let mut cut = wire::request_frame(&[], &msg);
    cut.truncate(cut.len() - 3);
    s.frame_closes("a frame cut short", &cut);
}

impl Suite {
    /// The same cases through `ownfs serve` (one worker, so replies come in order).
    fn pipe(rootless: bool) -> Suite {
        let fx = Fixture::new(if rootless {
            "hostile-pipe-rl"
        } else {
            "hostile-pipe"
        });
        let server = ServeProc::start(&fx, rootless);
        let raw = PipeFuse::new(&server.sock);
        Suite {
            fx,
            raw: Box::new(raw),
            serve: Some(server),
            mode: if rootless {
                "pipe rootless"
            } else {
                "pipe root"
            },
            t: Tally::default(),
        }
    }

    fn sock(&self) -> &Path {
        &self.serve.as_ref().expect("a pipe suite").sock
    }

    /// Bytes that must make the server close this connection, and only it.
    fn frame_closes(&mut self, what: &str, bytes: &[u8]) {
        self.t.cases += 1;
        let mut c = PipeFuse::new(self.sock());
        let _ = c.stream().write_all(bytes);
        let _ = c.stream().shutdown(std::net::Shutdown::Write);
        if !c.closed() {
            self.fail(what, "the connection stayed open".into());
        }
        self.still_serving(what);
    }
}

#[test]
fn pipe_requests_before_init_are_refused_with_eio() {
    let fx = Fixture::new("hostile-pipe-preinit");
    let server = ServeProc::start(&fx, false);
    let mut raw = PipeFuse::uninitialized(&server.sock);
    for (what, msg) in [("getattr", getattr(ROOT)), ("lookup", lookup(ROOT, b"f"))] {
        let r = raw
            .call(&msg)
            .unwrap_or_else(|e| panic!("{what} before INIT: {e}"));
        assert_eq!(r.errno, libc::EIO, "{what} before INIT");
    }
    assert_eq!(raw.call(&init(7, 33, 0)).expect("INIT").errno, 0);
    assert_eq!(raw.call(&getattr(ROOT)).expect("getattr").errno, 0);
}

// ---------------------------------------------------------------------------
// Trust boundaries (issue 12): each case names the hole it closes
// ---------------------------------------------------------------------------

const EBADF_ONLY: &[i32] = &[libc::EBADF];
const EACCES_ONLY: &[i32] = &[libc::EACCES];
const EPERM_ONLY: &[i32] = &[libc::EPERM];
/// `system.posix_acl_access` holding only user::rw-, group::---, other::rwx.
fn acl_value(user: u16, group: u16, other: u16) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm) in [(1u16, user), (4, group), (0x20, other)] {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&u32::MAX.to_le_bytes());
    }
    v
}

/// Records planted on the host by someone other than the server (hole 7), plus one
/// the server could have written (the positive control).
fn plant_records(src: &Path) {
    use ownfs::fs::record::Record;
    let forged = Record {
        uid: Some(77),
        gid: Some(77),
        mode: Some(0o4755),
        kind: None,
    };
    let put = |name: &str, owner: u32, mode: u32, rec: &Record| {
        let p = src.join(name);
        fs::write(&p, b"#!/bin/sh\n").unwrap();
        let f = fs::File::open(&p).unwrap();
        platform::setxattr(f.as_fd(), c"user.ownfs.stat", &rec.encode(), 0).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        unix_fs::chown(&p, Some(owner), Some(owner)).unwrap();
    };
    // A host user's own file, and a server file any host user may write.
    put("forged_other", 1234, 0o644, &forged);
    put("forged_shared", platform::geteuid(), 0o666, &forged);
    let honest = Record {
        uid: Some(4321),
        gid: None,
        mode: Some(0o640),
        kind: None,
    };
    put("honest", platform::geteuid(), 0o644, &honest);
}

fn raw_fuse_trust_cases(s: &mut Suite, rootless: bool) {
    let rw = libc::O_RDWR as u32;
    let ro = libc::O_RDONLY as u32;
    if !rootless {
        // Hole 2: host device nodes and FIFOs are never opened for a client.
        let dev = s.ok(mknod(
            ROOT,
            b"zero",
            libc::S_IFCHR | 0o666,
            libc::makedev(1, 5) as u32,
        ));
        let fifo = s.ok(mknod(ROOT, b"fifo", libc::S_IFIFO | 0o666, 0));
        s.case(
            "hole 2: open of a char device",
            open(dev.entry_node(), rw),
            Expect::Err(EBADF_ONLY),
        );
        s.case(
            "hole 2: open of a FIFO (would block)",
            open(fifo.entry_node(), ro),
            Expect::Err(EBADF_ONLY),
        );
        s.case(
            "hole 2: create (no O_EXCL) of an existing FIFO",
            create(ROOT, b"fifo", ro, 0o644),
            Expect::Err(EBADF_ONLY),
        );
        s.case(
            "hole 2: create (no O_EXCL) of an existing device",
            create(ROOT, b"zero", rw, 0o644),
            Expect::Err(EBADF_ONLY),
        );
        // Hole 3: pid 0 is not the server; it is the uid it names.
        let mut m = mkdir(ROOT, b"pid0-dir", 0o755).caller(65534, 65534);
        m.pid = 0;
        s.case(
            "hole 3: pid 0 as uid 65534 mkdir in a root 0755 dir",
            m,
            Expect::Err(EACCES_ONLY),
        );
        if s.fx.src.join("pid0-dir").exists() {
            s.fail("hole 3", "pid0-dir was created".into());
        }
        // Paths that run as the server: times through a handle. A read-only handle
        // of someone else's file is no licence to set its times.
        let f = s.node(ROOT, "f");
        let fh = s.ok(open(f, ro).caller(65534, 65534)).open_fh();
        let before = fs::metadata(s.fx.src.join("f")).unwrap().mtime();
        let times = Setattr {
            valid: fattr::MTIME | fattr::FH,
            fh,
            mtime: (12345, 0),
            ..Default::default()
        };
        s.case(
            "server paths: explicit mtime through a read-only handle",
            setattr(f, times).caller(65534, 65534),
            Expect::Err(&[libc::EPERM, libc::EACCES]),
        );
        if fs::metadata(s.fx.src.join("f")).unwrap().mtime() != before {
            s.fail(
                "server paths",
                "mtime changed through a read-only handle".into(),
            );
        }
        let _ = s.raw.send(&release(f, fh));
        return;
    }
    // Hole 4: a mode-only ACL is a chmod: only the owner may.
    let f = s.ok(create(ROOT, b"acl_f", rw, 0o600).caller(1000, 1000));
    let node = f.entry_node();
    let value = acl_value(6, 0, 7);
    s.case(
        "hole 4: ACL mode change by a non-owner",
        setxattr(node, b"system.posix_acl_access", &value, value.len() as u32).caller(2000, 2000),
        Expect::Err(EPERM_ONLY),
    );
    let mode = s.ok(getattr(node)).attr_mode() & 0o7777;
    if mode != 0o600 {
        s.fail(
            "hole 4",
            format!("mode became {mode:o} after a refused ACL"),
        );
    }
    s.case(
        "hole 4: ACL mode change by the owner",
        setxattr(node, b"system.posix_acl_access", &value, value.len() as u32).caller(1000, 1000),
        Expect::Ok,
    );
    let mode = s.ok(getattr(node)).attr_mode() & 0o7777;
    if mode != 0o607 {
        s.fail("hole 4", format!("owner's ACL gave mode {mode:o}, not 607"));
    }
    // Hole 6: CREATE without O_EXCL of an existing file checks its virtual permissions.
    s.ok(create(ROOT, b"private", rw, 0o600).caller(1000, 1000));
    s.case(
        "hole 6: create (no O_EXCL) of another user's 0600 file",
        create(ROOT, b"private", rw, 0o644).caller(2000, 2000),
        Expect::Err(EACCES_ONLY),
    );
    s.case(
        "hole 6: create (no O_EXCL) of one's own file",
        create(ROOT, b"private", rw, 0o644).caller(1000, 1000),
        Expect::Ok,
    );
    // Hole 7: records the server cannot vouch for are ignored.
    let me = platform::geteuid();
    for (name, uid, mode) in [
        ("forged_other", 1234, 0o644),
        ("forged_shared", 0, 0o666),
        ("honest", 4321, 0o640),
    ] {
        let r = s.ok(lookup(ROOT, name.as_bytes()));
        let got = (r.entry_uid(), r.entry_mode() & 0o7777);
        if got != (uid, mode) {
            s.fail(
                &format!("hole 7: {name}"),
                format!(
                    "seen as uid {} mode {:o}, expected uid {uid} mode {mode:o} (server uid {me})",
                    got.0, got.1
                ),
            );
        }
    }
}

#[test]
fn raw_fuse_trust_boundaries() {
    platform::set_umask(0);
    let mut failures = Vec::new();
    for rootless in [false, true] {
        let mut s = Suite::new(rootless);
        if rootless {
            plant_records(&s.fx.src);
        }
        raw_fuse_trust_cases(&mut s, rootless);
        println!("trust[raw-fuse {}]: {} cases", s.mode, s.t.cases);
        failures.extend(std::mem::take(&mut s.t.failures));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn pipe_trust_boundaries() {
    let mut failures = Vec::new();
    for rootless in [false, true] {
        let mut s = Suite::pipe(rootless);
        if rootless {
            plant_records(&s.fx.src);
        }
        raw_fuse_trust_cases(&mut s, rootless);
        println!("trust[{}]: {} cases", s.mode, s.t.cases);
        failures.extend(std::mem::take(&mut s.t.failures));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Hole 6: rootless mkdir and symlink find their new node again by name. A host process
/// swaps an older server-owned node in (RENAME_EXCHANGE) right after each create; the
/// caller must never become the owner of that older node.
#[test]
fn rootless_create_race_never_gives_away_an_older_node() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    platform::set_umask(0);
    let fx = Fixture::new("hostile-race");
    let src = fx.src.clone();
    // Older than the server's freshness window (one second plus a coarse clock tick).
    fs::create_dir(src.join("victim_dir")).unwrap();
    fs::write(src.join("victim_dir/marker"), b"victim").unwrap();
    unix_fs::symlink("victim-target", src.join("victim_link")).unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    let mut raw = RawFuse::new(passthrough(&src, true));
    // `armed` lets the attacker swap; after disarming, the test publishes `request` and
    // waits for it in `ack`, which the attacker writes only from a pass that saw the
    // disarm: no swap can then land while the test tidies up.
    let armed = Arc::new(AtomicBool::new(false));
    let request = Arc::new(AtomicU64::new(0));
    let ack = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let attacker = {
        let (armed, request, ack, stop, src) = (
            armed.clone(),
            request.clone(),
            ack.clone(),
            stop.clone(),
            src.clone(),
        );
        std::thread::spawn(move || {
            let dir = fs::File::open(&src).unwrap();
            let pairs = [(c"victim_dir", c"new_dir"), (c"victim_link", c"new_link")];
            while !stop.load(Ordering::SeqCst) {
                if armed.load(Ordering::SeqCst) {
                    for (a, b) in pairs {
                        let _ = platform::renameat2(
                            dir.as_fd(),
                            a,
                            dir.as_fd(),
                            b,
                            libc::RENAME_EXCHANGE,
                        );
                    }
                } else {
                    ack.store(request.load(Ordering::SeqCst), Ordering::SeqCst);
                    std::hint::spin_loop();
                }
            }
        })
    };
    let ids = |p: &Path| fs::symlink_metadata(p).map(|m| m.ino()).ok();
    let victim_dir_ino = ids(&src.join("victim_dir")).unwrap();
    let victim_link_ino = ids(&src.join("victim_link")).unwrap();
    let (mut tries, mut refused, mut given) = (0, 0, Vec::new());
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    while std::time::Instant::now() < deadline {
        tries += 1;
        armed.store(true, Ordering::SeqCst);
        let rd = raw.call(&mkdir(ROOT, b"new_dir", 0o755).caller(1000, 1000));
        let rl = raw.call(&symlink(ROOT, b"new_link", b"made-by-1000").caller(1000, 1000));
        armed.store(false, Ordering::SeqCst);
        request.store(tries, Ordering::SeqCst);
        while ack.load(Ordering::SeqCst) != tries {
            std::hint::spin_loop();
        }
        for (r, victim) in [(rd, victim_dir_ino), (rl, victim_link_ino)] {
            match r {
                Ok(r) if r.errno == 0 => {
                    if le_ino(&r) == victim {
                        given.push(format!("try {tries}: the caller got inode {victim}"));
                    }
                    let _ = raw.send(&forget(r.entry_node(), 1));
                }
                Ok(r) if r.errno == libc::EIO => refused += 1,
                other => given.push(format!("try {tries}: unexpected {other:?}")),
            }
        }
        // Put the victims back under their names and drop whatever else was made.
        for (victim, vname, nname) in [
            (victim_dir_ino, "victim_dir", "new_dir"),
            (victim_link_ino, "victim_link", "new_link"),
        ] {
            if ids(&src.join(nname)) == Some(victim) {
                fs::rename(src.join(nname), src.join(vname)).unwrap();
            } else if ids(&src.join(vname)) != Some(victim) {
                panic!("lost track of {vname}");
            }
            let n = src.join(nname);
            let _ = fs::remove_dir(&n).or_else(|_| fs::remove_file(&n));
        }
    }
    stop.store(true, Ordering::SeqCst);
    attacker.join().unwrap();
    // The victims' owners as the server shows them: never the racing caller.
    for name in [b"victim_dir".as_slice(), b"victim_link"] {
        let r = raw.call(&lookup(ROOT, name)).unwrap();
        if r.entry_uid() == 1000 {
            given.push(format!(
                "{} is now owned by uid 1000",
                String::from_utf8_lossy(name)
            ));
        }
    }
    println!(
        "create-race[rootless]: {tries} tries, the swap was caught {refused} times, {} give-aways",
        given.len()
    );
    assert!(given.is_empty(), "{}", given.join("\n"));
}

/// Host renames make A (which held B) live inside B, and a client that never forgets
/// looks A up there: each directory is now the other's last known place. Once both are
/// evicted, reopening either by place must end in ESTALE, not loop, recurse or deadlock.
#[test]
fn a_cycle_of_places_ends_in_estale() {
    let fx = Fixture::new("hostile-cycle");
    let src = fx.src.clone();
    fs::create_dir_all(src.join("A/B")).unwrap();
    for i in 0..64 {
        fs::write(src.join(format!("o{i}")), b"").unwrap();
    }
    let mut raw = RawFuse::new(passthrough_with(&src, true, FileHandles::Never));
    let a = raw.call(&lookup(ROOT, b"A")).unwrap().entry_node();
    let b = raw.call(&lookup(a, b"B")).unwrap().entry_node();
    fs::rename(src.join("A/B"), src.join("B")).unwrap();
    fs::rename(src.join("A"), src.join("B/A")).unwrap();
    let again = raw.call(&lookup(b, b"A")).unwrap();
    assert_eq!(again.entry_node(), a, "A looked up in B is the same node");
    for i in 0..64 {
        raw.call(&lookup(ROOT, format!("o{i}").as_bytes())).unwrap();
    }
    let r = raw
        .call(&getattr(b))
        .unwrap_or_else(|e| panic!("getattr through a cycle of places: {e}"));
    assert_eq!(r.errno, libc::ESTALE, "getattr through a cycle of places");
    println!("place-cycle: getattr through a cycle of places answered ESTALE");
}

/// Host inode number in a `fuse_entry_out` (its attr's ino).
fn le_ino(r: &Reply) -> u64 {
    u64::from_le_bytes(r.body[40..48].try_into().unwrap())
}

// ---------------------------------------------------------------------------
// Random and mutated messages through the protocol core, as every transport feeds it
// ---------------------------------------------------------------------------

/// Well-formed requests of every kind, on nodes and handles that may or may not exist.
fn template(rng: &mut served::Rng) -> Msg {
    let node = [ROOT, 2, 3, 4, 5, 0, u64::MAX][rng.below(7) as usize];
    let fh = rng.below(6);
    let name: &[u8] = [&b"a"[..], b"b", b"..", b".", b"d/e", b"", b"f"][rng.below(7) as usize];
    let len = [0u32, 1, 4096, 1 << 20, u32::MAX][rng.below(5) as usize];
    match rng.below(36) {
        0 => lookup(node, name),
        1 => forget(node, rng.below(3)),
        2 => batch_forget(&[(node, 1), (rng.below(9), 2)]),
        3 => getattr(node),
        4 => setattr(
            node,
            Setattr {
                valid: rng.next() as u32,
                size: rng.below(1 << 20),
                mode: rng.next() as u32,
                ..Default::default()
            },
        ),
        5 => readlink(node),
        6 => symlink(node, name, b"target"),
        7 => mknod(node, name, rng.next() as u32, rng.next() as u32),
        8 => mkdir(node, name, 0o755),
        9 => unlink(node, name),
        10 => rmdir(node, name),
        11 => rename2(node, name, rng.below(5), b"g", rng.next() as u32 & 7),
        12 => link(node, rng.below(5), name),
        13 => open(node, rng.next() as u32 & 0o3003),
        14 => opendir(node),
        15 => create(node, name, rng.next() as u32 & 0o3103, 0o644),
        16 => read(node, fh, rng.below(1 << 40), len),
        17 => readdir(node, fh, rng.below(8), len),
        18 => readdirplus(node, fh, rng.below(8), len),
        19 => write(node, fh, rng.below(1 << 20), 5, b"hello"),
        20 => release(node, fh),
        21 => releasedir(node, fh),
        22 => flush(node, fh),
        23 => fsync(node, fh),
        24 => statfs(node),
        25 => access(node, rng.next() as u32 & 7),
        26 => setxattr(node, b"user.x", b"v", 1),
        27 => getxattr(node, b"user.x", len),
        28 => listxattr(node, len),
        29 => fallocate(
            node,
            fh,
            rng.below(1 << 20),
            rng.below(1 << 20),
            rng.next() as u32 & 3,
        ),
        30 => lseek(node, fh, rng.below(4096), rng.below(5) as u32),
        31 => copy_file_range(node, fh, rng.below(5), rng.below(6), rng.below(1 << 20)),
        32 => init(7, [9, 33, 45][rng.below(3) as usize], rng.next() as u32),
        33 => Msg::new(op::STATX, node, Body::new().bytes(&[0; 24])),
        34 => Msg::new(
            op::TMPFILE,
            node,
            Body::new().u32(2).u32(0o600).u64(0).name(b"t"),
        ),
        _ => Msg::new(rng.next() as u32 % 60, node, Body::new().bytes(&[0; 40])),
    }
}

/// Flips, cuts or extends a message's bytes, sometimes fixing its length field again.
fn mutate(rng: &mut served::Rng, mut bytes: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.below(4) {
        match rng.below(4) {
            0 if !bytes.is_empty() => {
                let at = rng.below(bytes.len() as u64) as usize;
                bytes[at] ^= 1 << rng.below(8);
            }
            1 => bytes.truncate(rng.below(bytes.len() as u64 + 1) as usize),
            2 => bytes.extend((0..rng.below(64)).map(|_| rng.next() as u8)),
            _ => {}
        }
    }
    if rng.below(2) == 0 && bytes.len() >= 4 {
        let len = bytes.len() as u32;
        bytes[..4].copy_from_slice(&len.to_le_bytes());
    }
    bytes
}

/// Every answer the session gives is one well-formed reply to the message's own
/// request id (or none), whatever the message held; nothing outside the share changes;
/// the share still serves afterwards.
#[test]
fn random_and_mutated_messages_get_well_formed_answers() {
    use ownfs::protocol::dispatch::{Handled, Session, SessionOptions, BUFFER_SIZE};
    for rootless in [false, true] {
        let mut fx = Fixture::new(if rootless { "fuzz-rl" } else { "fuzz-root" });
        // The fixture's share: f, d/sub, and symlinks pointing out of it.
        let session = Session::new(passthrough(&fx.src, rootless), SessionOptions::default());
        let mut out = vec![0u8; BUFFER_SIZE];
        let mut rng = served::Rng::new(1 + u64::from(rootless));
        let mut msg = init(7, 45, 0).encode(1);
        assert!(session.handle(&mut msg, &mut out).reply > 0);
        for i in 0..20_000u64 {
            let template = template(&mut rng);
            let unique = i * 2 + 2;
            let mut bytes = template.encode(unique);
            if rng.below(3) == 0 {
                bytes = mutate(&mut rng, bytes);
            }
            let answer = session.handle(&mut bytes, &mut out);
            assert_ne!(answer.handled, Handled::Panicked, "message {i}: {bytes:?}");
            if answer.reply == 0 {
                continue;
            }
            let r = &out[..answer.reply];
            let word = |at: usize| u32::from_le_bytes(r[at..at + 4].try_into().unwrap());
            assert!(r.len() >= 16, "message {i}: {}-byte reply", r.len());
            assert_eq!(word(0) as usize, r.len(), "message {i}: length field");
            let error = word(4) as i32;
            assert!((-4095..=0).contains(&error), "message {i}: error {error}");
            if bytes.len() >= 16 {
                assert_eq!(
                    &r[8..16],
                    &bytes[8..16],
                    "message {i}: reply to another request"
                );
            }
        }
        if let Some(diff) = fx.escaped() {
            panic!("rootless={rootless}: {diff}");
        }
        let mut msg = init(7, 45, 0).encode(1);
        session.handle(&mut msg, &mut out);
        let mut msg = getattr(ROOT).encode(3);
        let answer = session.handle(&mut msg, &mut out);
        assert_eq!(&out[4..8], &[0; 4], "getattr of the root afterwards");
        assert!(answer.reply > 16);
    }
}
