//! One share served in one of the ways the reliability suites run on: a local mount
//! by a root server, a local mount by a rootless server, or the fuse-pipe (root or
//! rootless server, client mount on this machine). All have SRC at `base/s/src` and
//! MNT at `base/m/mnt`.

use std::io::Write;
use std::os::unix::fs::chown;
use std::path::Path;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::*;

/// The uid and gid a rootless server runs as (`--run-as`); SRC is given to it.
pub const ROOTLESS_ID: u32 = 424_900;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Root,
    Rootless,
    Pipe,
    PipeRootless,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Root => "root",
            Mode::Rootless => "rootless",
            Mode::Pipe => "pipe",
            Mode::PipeRootless => "pipe-rootless",
        }
    }

    pub fn rootless(self) -> bool {
        matches!(self, Mode::Rootless | Mode::PipeRootless)
    }

    pub fn is_pipe(self) -> bool {
        matches!(self, Mode::Pipe | Mode::PipeRootless)
    }
}

enum Inner {
    Local(Mount),
    Pipe(Pipe),
}

pub struct Served {
    pub mode: Mode,
    inner: Inner,
}

fn give_src_to_server(src: &Path) {
    chown(src, Some(ROOTLESS_ID), Some(ROOTLESS_ID))
        .unwrap_or_else(|e| panic!("chown {}: {e}", src.display()));
}

impl Served {
    /// Starts the server (and client); `extra` goes to `ownfs mount` or `ownfs client`.
    pub fn start(mode: Mode, extra: &[&str]) -> Served {
        Self::start_limited(mode, extra, None)
    }

    /// Like [`Served::start`], with `server_args` for the pipe server (`ownfs serve`);
    /// a local server takes them as its own.
    pub fn start_with_server_args(mode: Mode, server_args: &[&str]) -> Served {
        if !mode.is_pipe() {
            return Self::start(mode, server_args);
        }
        let run_as = format!("{ROOTLESS_ID}:{ROOTLESS_ID}");
        let mut args = server_args.to_vec();
        if mode.rootless() {
            args.extend(["--run-as", &run_as]);
        }
        let prepare = |src: &Path| {
            if mode.rootless() {
                give_src_to_server(src);
            }
        };
        Served {
            mode,
            inner: Inner::Pipe(Pipe::start_with(&args, &[], prepare)),
        }
    }

    /// Like [`Served::start`]; the server gets RLIMIT_NOFILE `nofile`.
    pub fn start_limited(mode: Mode, extra: &[&str], nofile: Option<u64>) -> Served {
        Self::start_limited_with(mode, extra, nofile, |_| {})
    }

    /// Like [`Served::start_limited`]; `prepare(SRC)` runs before the server starts.
    pub fn start_limited_with(
        mode: Mode,
        extra: &[&str],
        nofile: Option<u64>,
        prepare: impl FnOnce(&Path),
    ) -> Served {
        let run_as = format!("{ROOTLESS_ID}:{ROOTLESS_ID}");
        let prepare = |src: &Path| {
            if mode.rootless() {
                give_src_to_server(src);
            }
            prepare(src);
        };
        let inner = match mode {
            Mode::Root => Inner::Local(
                Mount::start_limited(extra, prepare, nofile).unwrap_or_else(|e| panic!("{e}")),
            ),
            Mode::Rootless => {
                let mut args = vec!["--run-as", &run_as];
                args.extend_from_slice(extra);
                Inner::Local(
                    Mount::start_limited(&args, prepare, nofile).unwrap_or_else(|e| panic!("{e}")),
                )
            }
            Mode::Pipe => Inner::Pipe(Pipe::start_limited(&[], extra, prepare, nofile)),
            Mode::PipeRootless => Inner::Pipe(Pipe::start_limited(
                &["--run-as", &run_as],
                extra,
                prepare,
                nofile,
            )),
        };
        Served { mode, inner }
    }

    pub fn src(&self) -> &Path {
        match &self.inner {
            Inner::Local(m) => &m.src,
            Inner::Pipe(p) => &p.src,
        }
    }

    pub fn mnt(&self) -> &Path {
        match &self.inner {
            Inner::Local(m) => &m.mnt,
            Inner::Pipe(p) => &p.mnt,
        }
    }

    /// What `ownfs stats` is given to find the server: its mountpoint, or for a pipe
    /// the server's socket.
    pub fn stats_target(&self) -> &Path {
        match &self.inner {
            Inner::Local(m) => &m.mnt,
            Inner::Pipe(p) => &p.sock,
        }
    }

    pub fn scratch(&self) -> &Scratch {
        match &self.inner {
            Inner::Local(m) => &m.scratch,
            Inner::Pipe(p) => &p.scratch,
        }
    }

    /// The process that serves SRC (for a pipe: `ownfs serve`).
    pub fn server_pid(&self) -> Pid {
        match &self.inner {
            Inner::Local(m) => m.pid().expect("server running"),
            Inner::Pipe(p) => Pid::from_raw(p.server.as_ref().expect("server running").id() as i32),
        }
    }

    /// True while the serving process has not exited.
    pub fn server_alive(&mut self) -> bool {
        match &mut self.inner {
            Inner::Local(m) => m.pid().is_some() && m.wait_exit(Duration::ZERO).is_none(),
            Inner::Pipe(p) => p.server_alive(),
        }
    }

    /// SIGKILL to the serving process, which is then reaped. A local mount dies with
    /// it (callers get ENOTCONN); a pipe client stays mounted and waits.
    pub fn kill_server(&mut self) {
        match &mut self.inner {
            Inner::Local(m) => {
                m.stop(Signal::SIGKILL);
            }
            Inner::Pipe(p) => p.kill_server(),
        }
    }

    /// Starts a new server after [`Served::kill_server`]: a local mount is unmounted
    /// and mounted again; a pipe client reconnects to the new server by itself.
    pub fn restart_server(&mut self) {
        match &mut self.inner {
            Inner::Local(m) => m.restart().unwrap_or_else(|e| panic!("{e}")),
            Inner::Pipe(p) => p.start_server(),
        }
    }

    /// What the server (and a pipe client) logged so far.
    pub fn logs(&self) -> String {
        match &self.inner {
            Inner::Local(m) => m.stderr(),
            Inner::Pipe(p) => format!(
                "-- serve --\n{}\n-- client --\n{}",
                p.server_stderr(),
                p.client_stderr()
            ),
        }
    }
}

/// Prints a result line that shows in `cargo test` output with or without
/// `--nocapture`: the test harness captures `eprintln!`, not writes to the stderr
/// handle itself.
pub fn summary(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// A number from the environment (the knobs for longer runs), or `default`.
pub fn env_knob(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: expected a number")),
        Err(_) => default,
    }
}

/// A small xorshift generator: reproducible workloads without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform enough in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
