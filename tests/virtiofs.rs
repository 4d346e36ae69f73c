//! `ownfs virtiofs` without a VM: this test plays the VMM (the vhost-user frontend,
//! with guest memory in a shared file) and the guest driver (descriptor chains on a
//! split virtqueue carrying FUSE requests). It checks the negotiated features, real
//! replies and their used lengths, malformed chains, read-only shares, that guest
//! pids never bring host groups, and a clean exit when the VMM disconnects.
//! Real guests run in scripts/vm/.

mod common;
mod vhost_frontend;

use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use fuse_backend_rs::abi::fuse_abi::{
    CreateIn, EntryOut, InHeader, InitIn, InitOut, MkdirIn, OpenIn, OpenOut, OutHeader, ReadIn,
    WriteIn, WriteOut,
};
use vm_memory::{ByteValued, Bytes, GuestAddress};

use common::*;
use ownfs::platform;
use vhost_frontend::*;

/// A group the test caller is in on the host; no /etc/group entry needed.
const G: u32 = 424_701;
const U: u32 = 424_702;

/// How long the server may take to create its socket.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const REQ_BUF: u64 = 0x10_0000;
const REPLY_BUF: u64 = 0x20_0000;
const REPLY_LEN: u32 = 0x10_0000;

const FUSE_LOOKUP: u32 = 1;
const FUSE_MKDIR: u32 = 9;
const FUSE_OPEN: u32 = 14;
const FUSE_READ: u32 = 15;
const FUSE_INIT: u32 = 26;
const FUSE_GETATTR: u32 = 3;

/// `ownfs virtiofs` on a fresh share, with its stderr in a file.
struct Device {
    child: Option<Child>,
    sock: PathBuf,
    log: PathBuf,
    share: PathBuf,
    scratch: Scratch,
}

impl Device {
    fn start_with(extra: &[&str], prepare: impl FnOnce(&Path)) -> Device {
        let scratch = Scratch::new("virtiofs");
        let share = scratch.dir("share");
        prepare(&share);
        let sock = scratch.path("vhost.sock");
        let log = scratch.path("server.log");
        let child = Command::new(ownfs_bin())
            .arg("virtiofs")
            .arg("--socket-path")
            .arg(&sock)
            .arg("--shared-dir")
            .arg(&share)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn ownfs virtiofs");
        let mut dev = Device {
            child: Some(child),
            sock,
            log,
            share,
            scratch,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while !dev.sock.exists() {
            if let Some(st) = dev.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("ownfs virtiofs exited with {st}: {}", dev.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "no socket after {START_TIMEOUT:?}: {}",
                dev.stderr()
            );
            sleep(Duration::from_millis(20));
        }
        dev
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Waits for the server to exit by itself.
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server running");
        match wait_timeout(&mut child, STOP_TIMEOUT) {
            Some(st) => st,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "ownfs virtiofs still running {STOP_TIMEOUT:?} after the VMM left: {}",
                    self.stderr()
                );
            }
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = &self.scratch;
    }
}

/// A FUSE reply as the guest sees it: the used length and the bytes written.
struct Reply {
    used_len: u32,
    header: OutHeader,
    body: Vec<u8>,
}

/// Connects like QEMU on Linux: eventfd notifiers, guest memory in a file.
fn connect(dev: &Device) -> (Vmm, u64, u64) {
    Vmm::connect(&dev.sock, Shape::Linux, &dev.scratch.path("guest-mem"))
}

impl Vmm {
    /// Sends one FUSE request as (uid, gid, pid) and returns the reply.
    fn request(&mut self, opcode: u32, nodeid: u64, ids: (u32, u32, u32), args: &[&[u8]]) -> Reply {
        self.request_with_room(opcode, nodeid, ids, args, REPLY_LEN)
    }

    fn request_with_room(
        &mut self,
        opcode: u32,
        nodeid: u64,
        ids: (u32, u32, u32),
        args: &[&[u8]],
        room: u32,
    ) -> Reply {
        self.request_full(opcode, nodeid, ids, args, &[], room)
    }

    /// A request with a 7.38 extension area `ext` (whole 8-byte units) after its args.
    fn request_full(
        &mut self,
        opcode: u32,
        nodeid: u64,
        ids: (u32, u32, u32),
        args: &[&[u8]],
        ext: &[u8],
        room: u32,
    ) -> Reply {
        self.unique += 1;
        let body: Vec<u8> = [args.concat(), ext.to_vec()].concat();
        let header = InHeader {
            len: (std::mem::size_of::<InHeader>() + body.len()) as u32,
            opcode,
            unique: self.unique,
            nodeid,
            uid: ids.0,
            gid: ids.1,
            pid: ids.2,
            // total_extlen (in 8-byte units) is the low half of the last field.
            padding: (ext.len() / 8) as u32,
        };
        let mut req = header.as_slice().to_vec();
        req.extend_from_slice(&body);
        self.mem.write_slice(&req, GuestAddress(REQ_BUF)).unwrap();
        // Poison the reply area so stale bytes cannot pass for a reply.
        self.mem
            .write_slice(&vec![0xa5; room as usize], GuestAddress(REPLY_BUF))
            .unwrap();
        let used_len = self.submit(&[(REQ_BUF, req.len() as u32, false), (REPLY_BUF, room, true)]);
        let mut out = vec![0u8; used_len as usize];
        self.mem
            .read_slice(&mut out, GuestAddress(REPLY_BUF))
            .unwrap();
        let hdr_len = std::mem::size_of::<OutHeader>();
        let mut header = OutHeader::default();
        if out.len() >= hdr_len {
            header.as_mut_slice().copy_from_slice(&out[..hdr_len]);
        }
        Reply {
            used_len,
            header,
            body: out.get(hdr_len..).unwrap_or_default().to_vec(),
        }
    }

    fn init(&mut self) {
        let init = InitIn {
            major: 7,
            minor: 31,
            max_readahead: 128 << 10,
            flags: 0,
        };
        let r = self.request(FUSE_INIT, 0, (0, 0, 0), &[init.as_slice()]);
        r.check(0, self.unique);
        assert!(r.body.len() >= std::mem::size_of::<InitOut>());
    }
}

impl Reply {
    /// The used length is exactly the reply's own length, and the reply is ours.
    fn check(&self, errno: i32, unique: u64) {
        assert_eq!(self.header.unique, unique, "reply to another request");
        assert_eq!(
            self.used_len, self.header.len,
            "used length must be the bytes of the reply"
        );
        assert_eq!(self.header.error, -errno, "errno of the reply");
    }

    fn obj<T: ByteValued + Default>(&self) -> T {
        let mut v = T::default();
        let n = std::mem::size_of::<T>();
        assert!(self.body.len() >= n, "reply body too short");
        v.as_mut_slice().copy_from_slice(&self.body[..n]);
        v
    }
}

fn cname(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn lookup(vmm: &mut Vmm, parent: u64, name: &str, ids: (u32, u32, u32)) -> Reply {
    vmm.request(FUSE_LOOKUP, parent, ids, &[&cname(name)])
}

const ROOT: (u32, u32, u32) = (0, 0, 1);

#[test]
fn bad_arguments_give_clear_errors() {
    let scratch = Scratch::new("virtiofs-args");
    let share = scratch.dir("share");
    let file = scratch.path("file");
    fs::write(&file, b"x").unwrap();
    let sock = scratch.path("s.sock");
    let run = |args: &[&OsStr]| {
        let mut all: Vec<&OsStr> = vec![OsStr::new("virtiofs")];
        all.extend_from_slice(args);
        run_ownfs_to_exit(&all, &[], Duration::from_secs(30))
    };
    let s = |v: &'static str| OsStr::new(v);

    let (st, err) = run(&[s("--socket-path"), sock.as_os_str()]);
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(err.contains("--shared-dir"), "{err}");

    let (st, err) = run(&[s("--shared-dir"), share.as_os_str()]);
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(err.contains("--socket-path"), "{err}");

    let missing = scratch.path("missing");
    let (st, err) = run(&[
        s("--socket-path"),
        sock.as_os_str(),
        s("--shared-dir"),
        missing.as_os_str(),
    ]);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("No such file or directory"), "{err}");

    let (st, err) = run(&[
        s("--socket-path"),
        sock.as_os_str(),
        s("--shared-dir"),
        file.as_os_str(),
    ]);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("not a directory"), "{err}");

    // virtiofsd flags this server does not implement are refused, not ignored.
    for flag in [
        ["--cache", "metadata"],
        ["--tag", "x"],
        ["--xattrmap", ":map::user.virtiofs.:"],
    ] {
        let (st, err) = run(&[
            s("--socket-path"),
            sock.as_os_str(),
            s("--shared-dir"),
            share.as_os_str(),
            s(flag[0]),
            s(flag[1]),
        ]);
        assert_eq!(st.code(), Some(2), "{flag:?}: {err}");
        assert!(err.contains(flag[0]) || err.contains(flag[1]), "{err}");
    }

    let (st, err) = run(&[s("--fd"), s("0"), s("--shared-dir"), share.as_os_str()]);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("--fd 0"), "{err}");
    assert!(!sock.exists(), "no socket may be left behind");
}

#[test]
fn negotiates_serves_and_exits_when_the_vmm_leaves() {
    let mut dev = Device::start_with(&["--thread-pool-size", "2"], |share| {
        fs::write(share.join("hello.txt"), b"hello, guest\n").unwrap();
    });
    let meta = fs::metadata(&dev.sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o700,
        "only the socket's owner may connect"
    );

    let (mut vmm, features, protocol) = connect(&dev);
    assert_eq!(
        features,
        VERSION_1 | INDIRECT_DESC | EVENT_IDX | PROTOCOL_FEATURES,
        "VERSION_1, INDIRECT_DESC, EVENT_IDX, PROTOCOL_FEATURES"
    );
    assert_eq!(
        protocol,
        PROTOCOL_MQ | PROTOCOL_REPLY_ACK | PROTOCOL_CONFIGURE_MEM_SLOTS
    );
    assert_eq!(protocol & PROTOCOL_CONFIG, 0);

    vmm.init();
    let r = lookup(&mut vmm, 1, "hello.txt", ROOT);
    r.check(0, vmm.unique);
    let entry: EntryOut = r.obj();
    assert_eq!(entry.attr.size, 13);
    assert_eq!(r.used_len as usize, 16 + std::mem::size_of::<EntryOut>());

    let open = OpenIn {
        flags: libc::O_RDONLY as u32,
        fuse_flags: 0,
    };
    let r = vmm.request(FUSE_OPEN, entry.nodeid, ROOT, &[open.as_slice()]);
    r.check(0, vmm.unique);
    let fh = r.obj::<OpenOut>().fh;
    let read = ReadIn {
        fh,
        offset: 0,
        size: 4096,
        ..Default::default()
    };
    let r = vmm.request(FUSE_READ, entry.nodeid, ROOT, &[read.as_slice()]);
    r.check(0, vmm.unique);
    assert_eq!(
        r.body, b"hello, guest\n",
        "a short read is exactly the file"
    );
    assert_eq!(r.used_len, 16 + 13);

    // A miss is a negative entry (node id 0) the guest may cache for the entry timeout.
    let r = lookup(&mut vmm, 1, "absent", ROOT);
    r.check(0, vmm.unique);
    let miss: EntryOut = r.obj();
    assert_eq!(miss.nodeid, 0, "a lookup miss is a negative entry");
    assert_eq!(r.used_len as usize, 16 + std::mem::size_of::<EntryOut>());

    // A reply that does not fit the guest's buffer: nothing valid is claimed, and the
    // device keeps serving.
    let getattr = [0u8; 16];
    let r = vmm.request_with_room(FUSE_GETATTR, 1, ROOT, &[&getattr], 24);
    assert!(
        r.used_len == 0 || r.used_len == r.header.len,
        "used length {} for a reply that does not fit",
        r.used_len
    );

    // A descriptor outside guest memory: the chain comes back empty, nothing crashes.
    let used = vmm.submit(&[(MEM_SIZE + 0x1000, 64, false), (REPLY_BUF, 4096, true)]);
    assert_eq!(used, 0);
    // A chain with no room for any reply.
    let r = vmm.request_with_room(FUSE_GETATTR, 1, ROOT, &[&getattr], 0);
    assert_eq!(r.used_len, 0);
    assert!(dev.alive(), "the server must survive bad chains");

    let r = lookup(&mut vmm, 1, "hello.txt", ROOT);
    r.check(0, vmm.unique);

    // The device's statistics count what this guest asked.
    let table = ok(Command::new(ownfs_bin()).arg("stats").arg(&dev.sock));
    let counts = |op: &str| -> Vec<String> {
        let row = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(op));
        let row = row.unwrap_or_else(|| panic!("no {op} row in\n{table}"));
        row.split_whitespace().map(String::from).collect()
    };
    assert_eq!(counts("lookup")[1..3], ["3", "1"], "{table}");
    assert_eq!(
        counts("lookup").last().map(String::as_str),
        Some("ENOENT:1")
    );
    assert_eq!(counts("open")[1..3], ["1", "0"], "{table}");
    assert_eq!(counts("read")[1..3], ["1", "0"], "{table}");
    let control = ownfs::stats::control::socket_for(&std::path::absolute(&dev.sock).unwrap());

    drop(vmm);
    let st = dev.wait_exit();
    let log = dev.stderr();
    assert_eq!(st.code(), Some(0), "{log}");
    assert!(log.contains("the VMM disconnected: exiting"), "{log}");
    assert!(!dev.sock.exists(), "socket removed on exit");
    assert!(
        !control.unwrap().exists(),
        "statistics socket removed on exit"
    );
}

#[test]
fn serves_an_inherited_listening_socket() {
    let scratch = Scratch::new("virtiofs-fd");
    let share = scratch.dir("share");
    fs::write(share.join("f"), b"x").unwrap();
    let sock = scratch.path("inherited.sock");
    let log = scratch.path("server.log");
    let listener = UnixListener::bind(&sock).unwrap();
    let mut cmd = Command::new(ownfs_bin());
    cmd.args(["virtiofs", "--fd", "3", "--shared-dir"])
        .arg(&share)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap());
    // The command owns the listener; dropped after the spawn, it leaves the child the only holder.
    platform::command_with_fd_as(&mut cmd, OwnedFd::from(listener), 3);
    let child = cmd.spawn().expect("spawn ownfs virtiofs --fd");
    drop(cmd);
    let mut dev = Device {
        child: Some(child),
        sock,
        log,
        share,
        scratch,
    };
    let (mut vmm, _, _) = connect(&dev);
    vmm.init();
    let r = lookup(&mut vmm, 1, "f", ROOT);
    r.check(0, vmm.unique);
    drop(vmm);
    let st = dev.wait_exit();
    assert_eq!(st.code(), Some(0), "{}", dev.stderr());
}

#[test]
fn socket_group_may_connect() {
    let dev = Device::start_with(&["--socket-group", &G.to_string()], |_| {});
    let meta = fs::metadata(&dev.sock).unwrap();
    assert_eq!(meta.gid(), G);
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
}

#[test]
fn readonly_share_refuses_every_change() {
    let dev = Device::start_with(&["--readonly"], |share| {
        fs::write(share.join("f"), b"data").unwrap();
    });
    let (mut vmm, _, _) = connect(&dev);
    vmm.init();
    let mkdir = MkdirIn {
        mode: 0o755,
        umask: 0,
    };
    let r = vmm.request(FUSE_MKDIR, 1, ROOT, &[mkdir.as_slice(), &cname("d")]);
    r.check(libc::EROFS, vmm.unique);

    let entry: EntryOut = {
        let r = lookup(&mut vmm, 1, "f", ROOT);
        r.check(0, vmm.unique);
        r.obj()
    };
    for flags in [libc::O_WRONLY, libc::O_RDWR, libc::O_RDONLY | libc::O_TRUNC] {
        let open = OpenIn {
            flags: flags as u32,
            fuse_flags: 0,
        };
        let r = vmm.request(FUSE_OPEN, entry.nodeid, ROOT, &[open.as_slice()]);
        r.check(libc::EROFS, vmm.unique);
    }
    let open = OpenIn {
        flags: libc::O_RDONLY as u32,
        fuse_flags: 0,
    };
    let r = vmm.request(FUSE_OPEN, entry.nodeid, ROOT, &[open.as_slice()]);
    r.check(0, vmm.unique);
    assert!(!dev.share.join("d").exists());
    assert_eq!(fs::read(dev.share.join("f")).unwrap(), b"data");
}

/// A 7.45 guest kernel is offered CREATE_SUPP_GROUP and then sends the caller's
/// supplementary groups with each create: a member of a group-only directory's group
/// may create in it (no /proc of the guest's exists on the host to read them from).
#[test]
fn creates_carry_the_callers_supplementary_groups() {
    const INIT_EXT: u32 = 1 << 30;
    const CREATE_SUPP_GROUP_FLAGS2: u32 = 1 << 2;
    const FUSE_EXT_GROUPS: u32 = 32;
    let dev = Device::start_with(&[], |share| {
        let d = share.join("groupdir");
        fs::create_dir(&d).unwrap();
        std::os::unix::fs::chown(&d, Some(0), Some(G)).unwrap();
        chmod(&d, 0o070);
    });
    let (mut vmm, _, _) = connect(&dev);
    // init_in as of 7.36: major, minor, max_readahead, flags, flags2, 11 unused words.
    let mut init = Vec::new();
    for w in [7u32, 45, 128 << 10, INIT_EXT, CREATE_SUPP_GROUP_FLAGS2] {
        init.extend_from_slice(&w.to_le_bytes());
    }
    init.resize(64, 0);
    let r = vmm.request(FUSE_INIT, 0, (0, 0, 0), &[&init]);
    r.check(0, vmm.unique);
    let word = |at: usize| u32::from_le_bytes(r.body[at..at + 4].try_into().unwrap());
    assert_ne!(word(12) & INIT_EXT, 0, "INIT_EXT granted");
    assert_ne!(
        word(32) & CREATE_SUPP_GROUP_FLAGS2,
        0,
        "CREATE_SUPP_GROUP granted"
    );
    let dir: EntryOut = {
        let r = lookup(&mut vmm, 1, "groupdir", ROOT);
        r.check(0, vmm.unique);
        r.obj()
    };
    // fuse_ext_header {size 16, type GROUPS}, then fuse_supp_groups {nr 1, [G]}.
    let mut ext = Vec::new();
    for w in [16u32, FUSE_EXT_GROUPS, 1, G] {
        ext.extend_from_slice(&w.to_le_bytes());
    }
    let mkdir = MkdirIn {
        mode: 0o755,
        umask: 0o022,
    };
    let args = |name: &str| [mkdir.as_slice().to_vec(), cname(name)];
    let [a, b] = args("without");
    let r = vmm.request(FUSE_MKDIR, dir.nodeid, (U, U, 0), &[&a, &b]);
    r.check(libc::EACCES, vmm.unique);
    let [a, b] = args("member");
    let r = vmm.request_full(
        FUSE_MKDIR,
        dir.nodeid,
        (U, U, 0),
        &[&a, &b],
        &ext,
        REPLY_LEN,
    );
    r.check(0, vmm.unique);
    let md = fs::metadata(dev.share.join("groupdir/member")).unwrap();
    assert_eq!((md.uid(), md.is_dir()), (U, true));
    assert!(!dev.share.join("groupdir/without").exists());
}

/// The pid in a request is the guest's: a host process with that pid and its groups
/// must never lend them to the request.
#[test]
fn guest_pids_never_bring_host_groups() {
    let dev = Device::start_with(&[], |share| {
        let d = share.join("groupdir");
        fs::create_dir(&d).unwrap();
        fs::write(d.join("f"), b"x").unwrap();
        std::os::unix::fs::chown(&d, Some(0), Some(G)).unwrap();
        chmod(&d, 0o070);
    });
    // A host process that is in G, whose pid the "guest" request carries.
    let mut host = Caller::new(U, U)
        .groups(&[G])
        .command("sleep")
        .arg("60")
        .spawn()
        .expect("spawn sleep");
    let host_pid = host.id();
    let (mut vmm, _, _) = connect(&dev);
    vmm.init();
    let dir: EntryOut = {
        let r = lookup(&mut vmm, 1, "groupdir", ROOT);
        r.check(0, vmm.unique);
        r.obj()
    };
    let r = lookup(&mut vmm, dir.nodeid, "f", (U, U, host_pid));
    let _ = host.kill();
    let _ = host.wait();
    r.check(libc::EACCES, vmm.unique);
    // The group as the primary group is honoured.
    let r = lookup(&mut vmm, dir.nodeid, "f", (U, G, host_pid));
    r.check(0, vmm.unique);
    assert_eq!(fs::metadata(dev.share.join("groupdir")).unwrap().gid(), G);
}

/// Issue 12, holes 2 and 3, from a hostile guest: host FIFOs and device nodes in the
/// share are never opened (a FIFO would stall the single virtqueue thread of the
/// default `--thread-pool-size 0`), and pid 0 runs as the uid it names, not as the server.
#[test]
fn a_hostile_guest_reaches_no_host_device_and_cannot_stall_the_device() {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    let dev = Device::start_with(&[], |share| {
        let rw = Mode::from_bits_truncate(0o666);
        mknod(&share.join("fifo"), SFlag::S_IFIFO, rw, 0).unwrap();
        mknod(&share.join("zero"), SFlag::S_IFCHR, rw, makedev(1, 5)).unwrap();
    });
    let (mut vmm, _, _) = connect(&dev);
    vmm.init();
    for (name, flags) in [("fifo", libc::O_RDONLY), ("zero", libc::O_RDWR)] {
        let entry: EntryOut = {
            let r = lookup(&mut vmm, 1, name, ROOT);
            r.check(0, vmm.unique);
            r.obj()
        };
        let open = OpenIn {
            flags: flags as u32,
            fuse_flags: 0,
        };
        let r = vmm.request(FUSE_OPEN, entry.nodeid, ROOT, &[open.as_slice()]);
        r.check(libc::EBADF, vmm.unique);
    }
    let mkdir = MkdirIn {
        mode: 0o755,
        umask: 0,
    };
    let r = vmm.request(
        FUSE_MKDIR,
        1,
        (65534, 65534, 0),
        &[mkdir.as_slice(), &cname("pid0-dir")],
    );
    r.check(libc::EACCES, vmm.unique);
    assert!(!dev.share.join("pid0-dir").exists());
    // Still serving.
    lookup(&mut vmm, 1, "zero", ROOT).check(0, vmm.unique);
}

/// The shape a VMM on macOS gives the device, forced on Linux: pipes as kick and call
/// notifiers (the device gets the read end of kick and the write end of call) and
/// guest memory as a memfd, shm-style. Every kind of request goes through.
#[test]
fn pipe_notifiers_and_memfd_memory_serve_requests() {
    const FUSE_CREATE: u32 = 35;
    const FUSE_WRITE: u32 = 16;
    const FUSE_OPENDIR: u32 = 27;
    const FUSE_READDIRPLUS: u32 = 44;
    let dev = Device::start_with(&["--thread-pool-size", "2"], |share| {
        fs::write(share.join("hello.txt"), b"hello, guest\n").unwrap();
    });
    let (mut vmm, features, _) =
        Vmm::connect(&dev.sock, Shape::Portable, &dev.scratch.path("unused"));
    assert_ne!(features & VERSION_1, 0);
    vmm.init();

    let r = lookup(&mut vmm, 1, "hello.txt", ROOT);
    r.check(0, vmm.unique);
    assert_eq!(r.obj::<EntryOut>().attr.size, 13);

    let create = CreateIn {
        flags: libc::O_RDWR as u32,
        mode: libc::S_IFREG | 0o640,
        umask: 0,
        fuse_flags: 0,
    };
    let r = vmm.request(
        FUSE_CREATE,
        1,
        ROOT,
        &[create.as_slice(), &cname("new.txt")],
    );
    r.check(0, vmm.unique);
    let entry: EntryOut = r.obj();
    assert_ne!(entry.nodeid, 0);
    let open: OpenOut = {
        let at = std::mem::size_of::<EntryOut>();
        let mut o = OpenOut::default();
        o.as_mut_slice()
            .copy_from_slice(&r.body[at..at + std::mem::size_of::<OpenOut>()]);
        o
    };

    let data = b"written through pipes and a memfd";
    let write = WriteIn {
        fh: open.fh,
        offset: 0,
        size: data.len() as u32,
        ..Default::default()
    };
    let r = vmm.request(FUSE_WRITE, entry.nodeid, ROOT, &[write.as_slice(), data]);
    r.check(0, vmm.unique);
    assert_eq!(r.obj::<WriteOut>().size as usize, data.len());

    let read = ReadIn {
        fh: open.fh,
        offset: 0,
        size: 4096,
        ..Default::default()
    };
    let r = vmm.request(FUSE_READ, entry.nodeid, ROOT, &[read.as_slice()]);
    r.check(0, vmm.unique);
    assert_eq!(r.body, data);

    let md = fs::metadata(dev.share.join("new.txt")).unwrap();
    assert_eq!((md.len(), md.mode() & 0o7777), (data.len() as u64, 0o640));
    assert_eq!(fs::read(dev.share.join("new.txt")).unwrap(), data);

    let r = vmm.request(FUSE_OPENDIR, 1, ROOT, &[OpenIn::default().as_slice()]);
    r.check(0, vmm.unique);
    let dir_fh = r.obj::<OpenOut>().fh;
    let list = ReadIn {
        fh: dir_fh,
        offset: 0,
        size: 8192,
        ..Default::default()
    };
    let r = vmm.request(FUSE_READDIRPLUS, 1, ROOT, &[list.as_slice()]);
    r.check(0, vmm.unique);
    let has = |name: &[u8]| r.body.windows(name.len()).any(|w| w == name);
    assert!(
        has(b"hello.txt") && has(b"new.txt"),
        "READDIRPLUS lists both files"
    );

    // A malformed chain (a descriptor outside guest memory) comes back empty.
    let used = vmm.submit(&[(MEM_SIZE + 0x1000, 64, false), (REPLY_BUF, 4096, true)]);
    assert_eq!(used, 0);
    let r = lookup(&mut vmm, 1, "new.txt", ROOT);
    r.check(0, vmm.unique);
    assert_eq!(r.obj::<EntryOut>().attr.size, data.len() as u64);
}

/// A broken vhost-user message ends the connection with a log line, not a panic.
#[test]
fn a_malformed_vhost_user_message_closes_the_connection() {
    let mut dev = Device::start_with(&[], |_| {});
    let (mut vmm, _, _) = connect(&dev);
    vmm.init();
    // Protocol version 0 in the flags.
    std::io::Write::write_all(vmm.frontend.socket(), &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        .unwrap();
    let st = dev.wait_exit();
    let log = dev.stderr();
    assert_eq!(st.code(), Some(1), "{log}");
    assert!(log.contains("unknown protocol version"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

/// Memory hot-plug: a region added with ADD_MEM_REG carries requests, and once
/// REM_MEM_REG takes it away a chain pointing there comes back empty.
#[test]
fn memory_regions_come_and_go() {
    use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
    use std::os::fd::AsFd;
    use vm_memory::{FileOffset, GuestMemoryMmap};
    const ADD_MEM_REG: u32 = 37;
    const REM_MEM_REG: u32 = 38;
    const GET_MAX_MEM_SLOTS: u32 = 36;
    const HOT: u64 = 0x1000_0000;
    const HOT_SIZE: u64 = 1 << 20;
    let dev = Device::start_with(&[], |share| fs::write(share.join("f"), b"x").unwrap());
    let (mut vmm, _, _) = Vmm::connect(&dev.sock, Shape::Portable, &dev.scratch.path("unused"));
    vmm.init();
    assert_eq!(vmm.frontend.get_u64(GET_MAX_MEM_SLOTS), 509);

    let file = File::from(memfd_create(c"hot", MemFdCreateFlag::MFD_CLOEXEC).unwrap());
    file.set_len(HOT_SIZE).unwrap();
    let hot = GuestMemoryMmap::<()>::from_ranges_with_files([(
        GuestAddress(HOT),
        HOT_SIZE as usize,
        Some(FileOffset::new(file.try_clone().unwrap(), 0)),
    )])
    .unwrap();
    let mut region = 0u64.to_le_bytes().to_vec();
    for w in [HOT, HOT_SIZE, VMM_VA + HOT, 0] {
        region.extend_from_slice(&w.to_le_bytes());
    }
    assert_eq!(vmm.frontend.acked(ADD_MEM_REG, &region, &[file.as_fd()]), 0);

    vmm.unique += 1;
    let name = cname("f");
    let header = InHeader {
        len: (std::mem::size_of::<InHeader>() + name.len()) as u32,
        opcode: FUSE_LOOKUP,
        unique: vmm.unique,
        nodeid: 1,
        ..Default::default()
    };
    let mut req = header.as_slice().to_vec();
    req.extend_from_slice(&name);
    hot.write_slice(&req, GuestAddress(HOT)).unwrap();
    let used = vmm.submit(&[(HOT, req.len() as u32, false), (HOT + 0x1000, 4096, true)]);
    let mut out = OutHeader::default();
    hot.read_slice(out.as_mut_slice(), GuestAddress(HOT + 0x1000))
        .unwrap();
    assert_eq!((out.unique, out.error), (vmm.unique, 0));
    assert_eq!(used, out.len, "a reply written into the hot-plugged region");

    assert_eq!(vmm.frontend.acked(REM_MEM_REG, &region, &[]), 0);
    let used = vmm.submit(&[(HOT, req.len() as u32, false), (HOT + 0x1000, 4096, true)]);
    assert_eq!(used, 0, "the removed region is gone");
    lookup(&mut vmm, 1, "f", ROOT).check(0, vmm.unique);
}

/// Requests the device cannot honour are acknowledged as failures (REPLY_ACK) and
/// logged; the device goes on serving.
#[test]
fn unsupported_requests_are_refused_and_the_device_goes_on() {
    const SET_VRING_KICK: u32 = 12;
    const SET_LOG_BASE: u32 = 6;
    let dev = Device::start_with(&[], |share| fs::write(share.join("f"), b"x").unwrap());
    let (mut vmm, _, _) = connect(&dev);
    vmm.init();
    // Polling mode: a kick without a descriptor.
    let nofd = (1u64 | 0x100).to_le_bytes();
    assert_ne!(vmm.frontend.acked(SET_VRING_KICK, &nofd, &[]), 0);
    // A ring the device does not have.
    assert_ne!(
        vmm.frontend.acked(SET_VRING_KICK, &7u64.to_le_bytes(), &[]),
        0
    );
    // A request this backend does not implement.
    assert_ne!(vmm.frontend.acked(SET_LOG_BASE, &[0u8; 16], &[]), 0);
    lookup(&mut vmm, 1, "f", ROOT).check(0, vmm.unique);
    let log = dev.stderr();
    assert!(log.contains("polling mode"), "{log}");
    assert!(log.contains("no virtqueue 7"), "{log}");
    assert!(log.contains("unsupported request 6"), "{log}");
}
