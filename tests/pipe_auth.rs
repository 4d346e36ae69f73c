//! fuse-pipe authentication (issue 12, holes 1 and 8): who may connect to `ownfs serve`.
//!
//! The socket file's mode and group, the SO_PEERCRED uid allow list (probed by raw
//! connections from a child process running as `nobody`), and the shared token
//! through real `ownfs client` mounts. Every refusal must close only that connection,
//! say why in the server's log, and leave the server serving the others.

mod common;
mod fuse_raw;

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::*;
use ownfs::transport::pipe::wire::{self, Hello, Welcome, WELCOME_FIXED_LEN};

/// nobody:nogroup.
const NOBODY: u32 = 65534;
/// A group for --socket-group; no /etc/group entry needed.
const SOCK_GROUP: u32 = 424_601;
const TOKEN: &str = "tok-5f0c9e1d7a3b46e2-only-in-the-token-file";
const WRONG_TOKEN: &str = "tok-0000000000000000-a-guess";

/// `ownfs serve` alone, on a fresh directory, with its log.
struct Serve {
    child: Option<Child>,
    sock: PathBuf,
    log: PathBuf,
    scratch: Scratch,
}

impl Serve {
    fn start(args: &[&str]) -> Serve {
        let scratch = Scratch::new("pipe-auth");
        let src = scratch.dir("src");
        fs::write(src.join("f"), b"data").unwrap();
        let sock = scratch.path("pipe.sock");
        let log = scratch.path("serve.log");
        let child = Command::new(ownfs_bin())
            .arg("serve")
            .arg(&src)
            .arg("--listen")
            .arg(format!("unix:{}", sock.display()))
            .args(args)
            // The assertions read info and warn lines.
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(&log))
            .spawn()
            .expect("spawn ownfs serve");
        let mut s = Serve {
            child: Some(child),
            sock,
            log,
            scratch,
        };
        // "serving" is logged once the socket has its final mode and group.
        let deadline = Instant::now() + READY_TIMEOUT;
        while !s.log().contains("serving ") {
            if let Some(st) = s.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("ownfs serve exited ({st}):\n{}", s.log());
            }
            assert!(Instant::now() < deadline, "not serving:\n{}", s.log());
            sleep(Duration::from_millis(20));
        }
        s
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Waits until the log has `what` (the server logs a refusal after closing).
    fn wait_log(&self, what: &str) -> String {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let log = self.log();
            if log.contains(what) {
                return log;
            }
            assert!(Instant::now() < deadline, "no '{what}' in the log:\n{log}");
            sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        stop_child(self.child.take(), None);
        if std::thread::panicking() {
            eprintln!("---- ownfs serve ----\n{}", self.log());
        }
        let _ = &self.scratch;
    }
}

/// What a raw client running as someone got from the server.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// connect(2) failed with this errno.
    ConnectFailed(i32),
    /// Connected, but the server hung up before any welcome.
    ClosedBeforeWelcome,
    /// Welcomed, and INIT was answered.
    Served,
}

const CLOSED: &str = "closed before the welcome";

/// Connects to `sock` as `who`, says hello and sends INIT.
fn session_as(who: &Caller, sock: &Path) -> Outcome {
    let sock = sock.to_path_buf();
    let r = who.run(move || {
        let mut s = UnixStream::connect(&sock)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        // A refused peer may be gone before this write lands.
        let _ = s.write_all(&wire::encode(&Hello::new(0, 0)));
        let mut fixed = [0u8; WELCOME_FIXED_LEN];
        match s.read_exact(&mut fixed) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                ) =>
            {
                return Err(io::Error::other(CLOSED));
            }
            Err(e) => panic!("reading the welcome: {e}"),
        }
        let w: Welcome = wire::decode(&fixed).expect("welcome decodes");
        let mut msg = vec![0u8; w.message_len.into()];
        s.read_exact(&mut msg)?;
        assert_eq!(
            w.status,
            wire::status::OK,
            "{}",
            String::from_utf8_lossy(&msg)
        );
        let init = fuse_raw::init(7, 33, 0).encode(7);
        s.write_all(&wire::request_frame(&[], &init))?;
        let mut out = [0u8; fuse_raw::OUT_HEADER_LEN];
        s.read_exact(&mut out)?;
        // fuse_out_header: len, error, unique.
        assert_eq!(out[4..8], [0; 4], "INIT refused: {out:?}");
        assert_eq!(u64::from_le_bytes(out[8..16].try_into().unwrap()), 7);
        Ok(())
    });
    match r {
        Ok(()) => Outcome::Served,
        Err(e) if e.to_string() == CLOSED => Outcome::ClosedBeforeWelcome,
        Err(e) => match e.raw_os_error() {
            Some(errno) => Outcome::ConnectFailed(errno),
            None => panic!("session as {who:?}: {e}"),
        },
    }
}

fn socket_stat(sock: &Path) -> fs::Metadata {
    let m = fs::symlink_metadata(sock).expect("stat the socket");
    assert!(m.file_type().is_socket());
    m
}

#[test]
fn socket_is_0600_by_default_and_0660_with_a_group() {
    let s = Serve::start(&[]);
    let m = socket_stat(&s.sock);
    assert_eq!(m.mode() & 0o7777, 0o600, "default socket mode");
    assert_eq!((m.uid(), m.gid()), (0, 0));
    assert!(
        s.log().contains("; socket 0600, peer uids 0"),
        "{}",
        s.log()
    );

    let group = SOCK_GROUP.to_string();
    let s = Serve::start(&["--socket-group", &group, "--allow-uid", "65534"]);
    let m = socket_stat(&s.sock);
    assert_eq!(m.mode() & 0o7777, 0o660, "--socket-group mode");
    assert_eq!(m.gid(), SOCK_GROUP);
    // The group gets in (and is served, as its uid is allowed); others do not.
    let member = Caller::new(NOBODY, SOCK_GROUP);
    assert_eq!(session_as(&member, &s.sock), Outcome::Served);
    let outsider = Caller::new(NOBODY, NOBODY);
    assert_eq!(
        session_as(&outsider, &s.sock),
        Outcome::ConnectFailed(libc::EACCES)
    );

    let s = Serve::start(&["--socket-mode", "0640"]);
    assert_eq!(socket_stat(&s.sock).mode() & 0o7777, 0o640, "--socket-mode");
}

#[test]
fn an_unprivileged_user_is_not_served_by_default() {
    let nobody = Caller::new(NOBODY, NOBODY);
    // Default flags: the socket mode stops it at connect.
    let mut s = Serve::start(&[]);
    assert_eq!(
        session_as(&nobody, &s.sock),
        Outcome::ConnectFailed(libc::EACCES)
    );
    assert_eq!(session_as(&Caller::root(), &s.sock), Outcome::Served);
    assert!(s.alive());

    // A world-accessible socket: SO_PEERCRED stops it before a byte is read.
    let mut s = Serve::start(&["--socket-mode", "0666"]);
    assert_eq!(socket_stat(&s.sock).mode() & 0o7777, 0o666);
    assert_eq!(session_as(&nobody, &s.sock), Outcome::ClosedBeforeWelcome);
    let log = s.wait_log("is not allowed");
    assert!(
        log.contains("peer uid 65534 (pid ") && log.contains("closing it"),
        "the log must name the refused peer:\n{log}"
    );
    assert!(!log.contains("client connected"), "{log}");
    // Root is still served, by the same server.
    assert_eq!(session_as(&Caller::root(), &s.sock), Outcome::Served);
    assert!(s.alive());
}

#[test]
fn an_allowed_uid_is_served() {
    let nobody = Caller::new(NOBODY, NOBODY);
    let mut s = Serve::start(&["--socket-mode", "0666", "--allow-uid", "65534"]);
    assert_eq!(session_as(&nobody, &s.sock), Outcome::Served);
    let log = s.wait_log("client connected");
    assert!(log.contains("uid 65534 pid "), "{log}");
    assert_eq!(session_as(&Caller::root(), &s.sock), Outcome::Served);
    // Another unprivileged uid is still refused.
    let tests_user = Caller::new(424_602, 424_602);
    assert_eq!(
        session_as(&tests_user, &s.sock),
        Outcome::ClosedBeforeWelcome
    );
    s.wait_log("peer uid 424602");
    assert!(s.alive());

    // `any` turns the check off.
    let s = Serve::start(&["--socket-mode", "0666", "--allow-uid", "any"]);
    assert_eq!(session_as(&tests_user, &s.sock), Outcome::Served);
    assert!(s.log().contains("--allow-uid any without --token-file"));
}

fn token_file(dir: &Scratch, name: &str, text: &str, mode: u32) -> PathBuf {
    let p = dir.path(name);
    fs::write(&p, text).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    p
}

/// `ownfs client` on a fresh mount point; it must fail at start-up. Returns stderr.
fn client_must_fail(p: &Pipe, extra: &[&str]) -> String {
    let mnt = p.scratch.dir(&format!("bad{}", extra.len()));
    let out = output_timeout(
        Command::new(ownfs_bin())
            .arg("client")
            .arg(&mnt)
            .arg("--connect")
            .arg(format!("unix:{}", p.sock.display()))
            .args(["--timeout", "5"])
            .args(extra),
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if ownfs_mounted_at(&mnt) {
        force_unmount(&mnt);
        panic!("a client with {extra:?} mounted:\n{err}");
    }
    assert!(!out.status.success(), "client {extra:?} succeeded:\n{err}");
    err
}

#[test]
fn token_is_required_and_never_logged() {
    let dir = Scratch::new("tokens");
    let good = token_file(&dir, "good", &format!("{TOKEN}\n"), 0o600);
    let wrong = token_file(&dir, "wrong", WRONG_TOKEN, 0o600);
    let good_s = good.to_str().unwrap();
    let p = Pipe::start_with(
        &["--token-file", good_s],
        &["--token-file", good_s],
        |src| fs::write(src.join("hello"), b"through the pipe").unwrap(),
    );
    let check_good = |n: u32| {
        let m = fs::metadata(p.mnt.join("hello")).expect("stat through the mount");
        assert_eq!(m.len(), 16);
        let f = p.mnt.join(format!("w{n}"));
        fs::write(&f, n.to_string()).unwrap();
        assert_eq!(fs::read_to_string(&f).unwrap(), n.to_string());
    };
    check_good(0);

    let err = client_must_fail(&p, &[]);
    assert!(
        err.contains("authentication failed") && err.contains("sent none"),
        "no token:\n{err}"
    );
    check_good(1);
    let err = client_must_fail(&p, &["--token-file", wrong.to_str().unwrap()]);
    assert!(
        err.contains("authentication failed: wrong token"),
        "wrong token:\n{err}"
    );
    check_good(2);

    let mut p = p;
    assert!(p.server_alive());
    let log = p.server_stderr();
    assert_eq!(
        log.matches("refused: authentication failed").count(),
        2,
        "both refusals are logged:\n{log}"
    );
    assert!(
        !log.contains(TOKEN),
        "the token leaked into the log:\n{log}"
    );
    assert!(
        !log.contains(WRONG_TOKEN),
        "a guess leaked into the log:\n{log}"
    );
    assert!(!p.client_stderr().contains(TOKEN));
}

#[test]
fn token_files_others_can_read_are_refused() {
    let dir = Scratch::new("tokens");
    let src = dir.dir("src");
    let sock = dir.path("s.sock");
    let serve = |tok: &Path| {
        run_ownfs_to_exit(
            &[
                "serve".as_ref(),
                src.as_os_str(),
                "--listen".as_ref(),
                format!("unix:{}", sock.display()).as_ref(),
                "--token-file".as_ref(),
                tok.as_os_str(),
            ],
            &[],
            Duration::from_secs(20),
        )
    };
    for (mode, text, why) in [
        (0o640, TOKEN, "mode 0640"),
        (0o604, TOKEN, "mode 0604"),
        (0o600, "\n", "empty"),
    ] {
        let t = token_file(&dir, "t", text, mode);
        let (st, err) = serve(&t);
        assert!(!st.success(), "serve started with a {why} token file");
        assert!(err.contains("--token-file") && err.contains(why), "{err}");
        assert!(!err.contains(TOKEN), "{err}");
        assert!(fs::symlink_metadata(&sock).is_err(), "a socket was created");
    }

    // The client allows group root but not others.
    let mnt = dir.dir("mnt");
    let client = |tok: &Path| {
        run_ownfs_to_exit(
            &[
                "client".as_ref(),
                mnt.as_os_str(),
                "--connect".as_ref(),
                format!("unix:{}", sock.display()).as_ref(),
                "--timeout".as_ref(),
                "2".as_ref(),
                "--token-file".as_ref(),
                tok.as_os_str(),
            ],
            &[&mnt],
            Duration::from_secs(20),
        )
    };
    let t = token_file(&dir, "t", TOKEN, 0o644);
    let (st, err) = client(&t);
    assert!(!st.success() && err.contains("--token-file") && err.contains("mode 0644"));
    // Past the file check, it fails only for want of a server.
    let t = token_file(&dir, "t", TOKEN, 0o640);
    let (st, err) = client(&t);
    assert!(!st.success() && !err.contains("--token-file"), "{err}");
    assert!(err.contains("cannot connect"), "{err}");
}

/// Runs `ownfs serve` on a vsock port until its log has `until` (or it exits), then
/// stops it; returns the log. Binding may fail where vsock is missing: the warning
/// comes before the bind.
fn vsock_serve_log(extra: &[&str], until: &str) -> String {
    let dir = Scratch::new("vsock");
    let src = dir.dir("src");
    let log = dir.path("serve.log");
    let port = 40_000 + std::process::id() % 20_000;
    let mut child = Command::new(ownfs_bin())
        .arg("serve")
        .arg(&src)
        .arg("--listen")
        .arg(format!("vsock:{port}"))
        .args(extra)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file(&log))
        .spawn()
        .expect("spawn ownfs serve");
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let text = fs::read_to_string(&log).unwrap_or_default();
        let exited = child.try_wait().unwrap().is_some();
        if text.contains(until) || exited || Instant::now() >= deadline {
            stop_child(Some(child), None);
            return fs::read_to_string(&log).unwrap_or_default();
        }
        sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_vsock_server_without_a_token_warns() {
    let log = vsock_serve_log(&[], "serving ");
    assert!(
        log.contains("WARN") && log.contains("has no --token-file: ANY process in a guest"),
        "{log}"
    );
    let dir = Scratch::new("tokens");
    let t = token_file(&dir, "t", TOKEN, 0o600);
    let log = vsock_serve_log(&["--token-file", t.to_str().unwrap()], "serving ");
    assert!(!log.contains("no --token-file"), "{log}");
    assert!(!log.contains(TOKEN), "{log}");
}
