//! A fuse-pipe server and a client mount of it: `ownfs serve SRC --listen unix:SOCK`
//! on the "host" side, `ownfs client MNT --connect unix:SOCK` on the "guest" side,
//! both on this machine. SRC and MNT have different parents, as with [`Mount`].

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::*;

/// A pipe server and a client mount of it, on fresh directories.
/// How long `ownfs serve` may take to listen.
const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Pipe {
    pub src: PathBuf,
    pub mnt: PathBuf,
    pub sock: PathBuf,
    pub server: Option<Child>,
    pub client: Option<Child>,
    pub server_args: Vec<String>,
    pub client_args: Vec<String>,
    pub server_log: PathBuf,
    pub client_log: PathBuf,
    /// RLIMIT_NOFILE of the server ([`ownfs_command`]).
    pub server_nofile: Option<u64>,
    pub scratch: Scratch,
}

pub fn log_file(p: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
}

impl Pipe {
    pub fn start(server_args: &[&str], client_args: &[&str]) -> Pipe {
        Self::start_with(server_args, client_args, |_| {})
    }

    /// `prepare(SRC)` runs before the server starts.
    pub fn start_with(
        server_args: &[&str],
        client_args: &[&str],
        prepare: impl FnOnce(&Path),
    ) -> Pipe {
        Self::start_limited(server_args, client_args, prepare, None)
    }

    /// Like [`Pipe::start_with`], with the server's RLIMIT_NOFILE set to `nofile`.
    pub fn start_limited(
        server_args: &[&str],
        client_args: &[&str],
        prepare: impl FnOnce(&Path),
        nofile: Option<u64>,
    ) -> Pipe {
        let scratch = Scratch::new("pipe");
        let src = scratch.dir("s/src");
        let mnt = scratch.dir("m/mnt");
        prepare(&src);
        let mut p = Pipe {
            src,
            mnt,
            sock: scratch.path("pipe.sock"),
            server: None,
            client: None,
            server_args: server_args.iter().map(|s| s.to_string()).collect(),
            client_args: client_args.iter().map(|s| s.to_string()).collect(),
            server_log: scratch.path("serve.log"),
            client_log: scratch.path("client.log"),
            server_nofile: nofile,
            scratch,
        };
        p.start_server();
        p.start_client();
        p
    }

    pub fn start_server(&mut self) {
        let _ = fs::remove_file(&self.sock);
        let child = ownfs_command(self.server_nofile)
            .arg("serve")
            .arg(&self.src)
            .arg("--listen")
            .arg(format!("unix:{}", self.sock.display()))
            .args(&self.server_args)
            .env("RUST_LOG", server_log_level_pipe())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(&self.server_log))
            .spawn()
            .expect("spawn ownfs serve");
        self.server = Some(child);
        // Longer than the client's request timeouts the tests use (10 s): a restart
        // during a workload was seen to start listening only once a request that was
        // blocked in this process had timed out.
        let deadline = Instant::now() + SERVER_READY_TIMEOUT;
        while !fs::symlink_metadata(&self.sock).is_ok_and(|m| m.file_type().is_socket()) {
            if let Some(st) = self.server.as_mut().unwrap().try_wait().unwrap() {
                panic!("ownfs serve exited ({st}):\n{}", self.server_stderr());
            }
            assert!(
                Instant::now() < deadline,
                "ownfs serve did not listen within {SERVER_READY_TIMEOUT:?}:\n{}",
                self.server_stderr()
            );
            sleep(Duration::from_millis(20));
        }
    }

    pub fn start_client(&mut self) {
        let child = Command::new(ownfs_bin())
            .arg("client")
            .arg(&self.mnt)
            .arg("--connect")
            .arg(format!("unix:{}", self.sock.display()))
            .args(&self.client_args)
            .env("RUST_LOG", server_log_level_pipe())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(&self.client_log))
            .spawn()
            .expect("spawn ownfs client");
        self.client = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        while !ownfs_mounted_at(&self.mnt) {
            if let Some(st) = self.client.as_mut().unwrap().try_wait().unwrap() {
                panic!("ownfs client exited ({st}):\n{}", self.client_stderr());
            }
            assert!(
                Instant::now() < deadline,
                "ownfs client did not mount within {READY_TIMEOUT:?}:\n{}",
                self.client_stderr()
            );
            sleep(Duration::from_millis(20));
        }
    }

    pub fn server_stderr(&self) -> String {
        fs::read_to_string(&self.server_log).unwrap_or_default()
    }

    pub fn client_stderr(&self) -> String {
        fs::read_to_string(&self.client_log).unwrap_or_default()
    }

    pub fn kill_server(&mut self) {
        let mut child = self.server.take().expect("server running");
        let _ = child.kill();
        let _ = child.wait();
    }

    pub fn server_alive(&mut self) -> bool {
        matches!(self.server.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

pub fn server_log_level_pipe() -> String {
    std::env::var("OWNFS_IT_LOG").unwrap_or_else(|_| "info".to_string())
}

pub fn stop_child(child: Option<Child>, mnt: Option<&Path>) {
    let Some(mut child) = child else { return };
    if matches!(child.try_wait(), Ok(None)) {
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    }
    if wait_timeout(&mut child, STOP_TIMEOUT).is_none() {
        eprintln!("pid {} ignored SIGTERM; killing it", child.id());
        if let Some(m) = mnt {
            force_unmount(m);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        stop_child(self.client.take(), Some(&self.mnt));
        force_unmount(&self.mnt);
        stop_child(self.server.take(), None);
        if thread::panicking() || std::env::var_os("OWNFS_IT_LOG").is_some() {
            eprintln!("---- ownfs serve ----\n{}", self.server_stderr());
            eprintln!("---- ownfs client ----\n{}", self.client_stderr());
        }
        let _ = &self.scratch;
    }
}

/// Runs `f` on a thread and gives up after `limit` (the thread is left behind).
pub fn bounded<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
}

pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
