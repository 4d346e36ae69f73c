//! Concurrency: 8 users with different supplementary groups run a mixed workload at
//! the same time, each as its own process with its own credentials (numeric ids, no
//! passwd entries): create, chmod, chgrp, rename and unlink of their own files, and
//! attempts the kernel must refuse: chown to another uid, chmod/unlink/rename of
//! another user's file, creating in a directory without write permission (another
//! user's private directory, a root-owned one, a group directory of a group the
//! worker is not in), reading or writing a group file through a group the worker
//! does not have (and doing it through one it does have).
//!
//! Every worker logs the final state it intended for each of its files; afterwards
//! stat through the mount (and, for a root server, on SRC) must show exactly that,
//! no other file of the workers may exist, and the other users' files must be
//! untouched. Any refused operation that succeeded, or failed with another errno
//! than EPERM/EACCES, or any allowed one that failed, is a violation.
//!
//! `OWNFS_CONC_OPS` (default 300) sets operations per worker:
//! `OWNFS_CONC_OPS=5000 cargo test --release --test concurrency -- --ignored` is the
//! long run. Runs with the client kernel checking permissions (default_permissions)
//! and with only the host checking them (`--no-default-permissions`: the server's
//! per-request credentials decide). Each mode prints `concurrency[MODE]: 8 uids, N operations, ... 0 violations`.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{chown, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::*;

const GA: u32 = 425_300;
const GB: u32 = 425_301;
const GC: u32 = 425_302;
/// Group directories: (name, group, setgid).
const GROUP_DIRS: [(&str, u32, bool); 3] = [("ga", GA, true), ("gb", GB, false), ("gc", GC, false)];
const MODES: [u32; 10] = [
    0o600, 0o640, 0o644, 0o660, 0o664, 0o700, 0o750, 0o755, 0o604, 0o666,
];
const VICTIM: &[u8] = b"victim\n";

fn uid(i: usize) -> u32 {
    425_100 + i as u32
}

fn gid(i: usize) -> u32 {
    425_200 + i as u32
}

/// Supplementary groups of worker `i`: every subset of {GA, GB, GC}, one per worker.
fn groups(i: usize) -> Vec<u32> {
    [GA, GB, GC]
        .iter()
        .enumerate()
        .filter(|(b, _)| i & (1 << b) != 0)
        .map(|(_, g)| *g)
        .collect()
}

fn in_group(i: usize, g: u32) -> bool {
    g == gid(i) || groups(i).contains(&g)
}

#[derive(Clone, Debug, PartialEq)]
struct FileState {
    uid: u32,
    gid: u32,
    mode: u32,
}

struct Worker {
    i: usize,
    mnt: PathBuf,
    rng: Rng,
    files: BTreeMap<PathBuf, FileState>,
    n: u64,
    ops: u64,
    denied: u64,
    violations: Vec<String>,
}

impl Worker {
    /// An operation that must succeed.
    fn allowed<T>(&mut self, what: String, r: io::Result<T>) -> Option<T> {
        self.ops += 1;
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.violations
                    .push(format!("{what}: allowed, but failed: {e}"));
                None
            }
        }
    }

    /// An operation the credentials forbid: must fail with `errno`.
    fn refused<T>(&mut self, what: String, errno: i32, r: io::Result<T>) {
        self.ops += 1;
        match r {
            Ok(_) => self
                .violations
                .push(format!("{what}: forbidden, but succeeded")),
            Err(e) if e.raw_os_error() == Some(errno) => self.denied += 1,
            Err(e) => self.violations.push(format!(
                "{what}: expected {}, got {e}",
                io::Error::from_raw_os_error(errno)
            )),
        }
    }

    fn other(&mut self) -> usize {
        (self.i + 1 + self.rng.below(7) as usize) % 8
    }

    fn create(&mut self, dir: &str, gid_of_new: u32) {
        self.n += 1;
        let p = self.mnt.join(dir).join(format!("w{}-{}", self.i, self.n));
        let mode = MODES[self.rng.below(MODES.len() as u64) as usize];
        let r = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&p)
            .and_then(|mut f| f.write_all(b"mine\n"));
        if self.allowed(format!("create {}", p.display()), r).is_some() {
            let st = FileState {
                uid: uid(self.i),
                gid: gid_of_new,
                mode,
            };
            self.files.insert(p, st);
        }
    }

    fn pick_own(&mut self) -> Option<PathBuf> {
        if self.files.is_empty() {
            return None;
        }
        let k = self.rng.below(self.files.len() as u64) as usize;
        self.files.keys().nth(k).cloned()
    }

    fn step(&mut self) {
        let i = self.i;
        match self.rng.below(14) {
            0 | 1 => self.create("shared", gid(i)),
            2 => {
                let (dir, g, setgid) = GROUP_DIRS[self.rng.below(3) as usize];
                if in_group(i, g) {
                    self.create(dir, if setgid { g } else { gid(i) });
                } else {
                    self.n += 1;
                    let p = self.mnt.join(dir).join(format!("w{i}-{}", self.n));
                    self.refused(
                        format!("create {} without group {g}", p.display()),
                        libc::EACCES,
                        fs::File::create(&p),
                    );
                }
            }
            3 => {
                if let Some(p) = self.pick_own() {
                    let mode = MODES[self.rng.below(MODES.len() as u64) as usize];
                    let r = fs::set_permissions(&p, fs::Permissions::from_mode(mode));
                    if self
                        .allowed(format!("chmod {mode:o} {}", p.display()), r)
                        .is_some()
                    {
                        self.files.get_mut(&p).unwrap().mode = mode;
                    }
                }
            }
            4 => {
                if let Some(p) = self.pick_own() {
                    let g = [gid(i), GA, GB, GC][self.rng.below(4) as usize];
                    let r = chown(&p, None, Some(g));
                    if in_group(i, g) {
                        if self
                            .allowed(format!("chgrp {g} {}", p.display()), r)
                            .is_some()
                        {
                            self.files.get_mut(&p).unwrap().gid = g;
                        }
                    } else {
                        self.refused(
                            format!("chgrp {g} {} (not a member)", p.display()),
                            libc::EPERM,
                            r,
                        );
                    }
                }
            }
            5 => {
                if let Some(p) = self.pick_own() {
                    let j = self.other();
                    self.refused(
                        format!("chown {} to uid {}", p.display(), uid(j)),
                        libc::EPERM,
                        chown(&p, Some(uid(j)), None),
                    );
                }
            }
            6 => {
                if let Some(p) = self.pick_own() {
                    self.n += 1;
                    let to = p.with_file_name(format!("w{i}-{}", self.n));
                    let r = fs::rename(&p, &to);
                    if self.allowed(format!("rename {}", p.display()), r).is_some() {
                        let st = self.files.remove(&p).unwrap();
                        self.files.insert(to, st);
                    }
                }
            }
            7 => {
                if let Some(p) = self.pick_own() {
                    if self
                        .allowed(format!("unlink {}", p.display()), fs::remove_file(&p))
                        .is_some()
                    {
                        self.files.remove(&p);
                    }
                }
            }
            8 => {
                let j = self.other();
                let v = self.mnt.join(format!("shared/victim{j}"));
                self.refused(
                    format!("chmod another user's {}", v.display()),
                    libc::EPERM,
                    fs::set_permissions(&v, fs::Permissions::from_mode(0o777)),
                );
                self.refused(
                    format!("unlink another user's {} (sticky)", v.display()),
                    libc::EPERM,
                    fs::remove_file(&v),
                );
                let to = self.mnt.join(format!("shared/stolen-{i}"));
                self.refused(
                    format!("rename another user's {} (sticky)", v.display()),
                    libc::EPERM,
                    fs::rename(&v, &to),
                );
                // Writable by everyone: writing is allowed, the owner stays.
                let r = fs::OpenOptions::new()
                    .append(true)
                    .open(&v)
                    .and_then(|mut f| f.write_all(b""));
                self.allowed(format!("open another user's 0666 {}", v.display()), r);
            }
            9 => {
                let j = self.other();
                self.n += 1;
                let p = self.mnt.join(format!("priv{j}/w{i}-{}", self.n));
                self.refused(
                    format!("create in another user's 0700 {}", p.display()),
                    libc::EACCES,
                    fs::File::create(&p),
                );
                self.create(&format!("priv{i}"), gid(i));
            }
            10 => {
                self.n += 1;
                let p = self.mnt.join(format!("ro/w{i}-{}", self.n));
                self.refused(
                    format!("create in root's 0755 {}", p.display()),
                    libc::EACCES,
                    fs::File::create(&p),
                );
                self.refused(
                    format!("mkdir in root's 0755 {}", p.display()),
                    libc::EACCES,
                    fs::create_dir(&p),
                );
            }
            11 => {
                for (dir, g, _) in GROUP_DIRS {
                    let p = self.mnt.join(format!("{dir}/secret"));
                    let r = fs::read(&p);
                    if in_group(i, g) {
                        if let Some(d) = self.allowed(format!("read {} as member", p.display()), r)
                        {
                            if d != b"group secret\n" {
                                self.violations.push(format!("{}: read {d:?}", p.display()));
                            }
                        }
                    } else {
                        self.refused(
                            format!("read {} (not in group {g})", p.display()),
                            libc::EACCES,
                            r,
                        );
                    }
                }
            }
            12 => {
                for (dir, g, _) in GROUP_DIRS {
                    let p = self.mnt.join(format!("{dir}/secret"));
                    self.refused(
                        format!("write {} (0640: no group write)", p.display()),
                        libc::EACCES,
                        fs::OpenOptions::new().append(true).open(&p),
                    );
                    let p = self.mnt.join(format!("{dir}/shared-log"));
                    let r = fs::OpenOptions::new()
                        .append(true)
                        .open(&p)
                        .and_then(|mut f| f.write_all(format!("{i}\n").as_bytes()));
                    if in_group(i, g) {
                        self.allowed(format!("append to {} as member", p.display()), r);
                    } else {
                        self.refused(
                            format!("append to {} (not in group {g})", p.display()),
                            libc::EACCES,
                            r,
                        );
                    }
                }
            }
            _ => {
                let j = self.other();
                let v = self.mnt.join(format!("shared/victim{j}"));
                let t = nix::sys::time::TimeSpec::new(1_000_000, 0);
                self.refused(
                    format!("set explicit times of another user's {}", v.display()),
                    libc::EPERM,
                    nix::sys::stat::utimensat(
                        None,
                        &v,
                        &t,
                        &t,
                        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
                    )
                    .map_err(io::Error::from),
                );
                let mut buf = Vec::new();
                let r = fs::File::open(&v).and_then(|mut f| f.read_to_end(&mut buf));
                self.allowed(format!("read another user's 0666 {}", v.display()), r);
            }
        }
    }

    fn report(&self, path: &Path) {
        let mut s = format!("{} {}\n", self.ops, self.denied);
        for (p, st) in &self.files {
            s.push_str(&format!(
                "F {} {} {} {:o}\n",
                p.display(),
                st.uid,
                st.gid,
                st.mode
            ));
        }
        for v in &self.violations {
            s.push_str(&format!("V {v}\n"));
        }
        fs::write(path, s).unwrap();
    }
}

fn setup(mnt: &Path) {
    let mk = |rel: &str, owner: (u32, u32), mode: u32| {
        let p = mnt.join(rel);
        fs::create_dir(&p).unwrap();
        chown(&p, Some(owner.0), Some(owner.1)).unwrap();
        chmod(&p, mode);
    };
    chmod(mnt, 0o755);
    mk("shared", (0, 0), 0o1777);
    mk("ro", (0, 0), 0o755);
    for (dir, g, setgid) in GROUP_DIRS {
        mk(dir, (0, g), if setgid { 0o2770 } else { 0o770 });
        let s = mnt.join(format!("{dir}/secret"));
        fs::write(&s, b"group secret\n").unwrap();
        chown(&s, Some(0), Some(g)).unwrap();
        chmod(&s, 0o640);
        let l = mnt.join(format!("{dir}/shared-log"));
        fs::write(&l, b"").unwrap();
        chown(&l, Some(0), Some(g)).unwrap();
        chmod(&l, 0o660);
    }
    for i in 0..8 {
        mk(&format!("priv{i}"), (uid(i), gid(i)), 0o700);
        let v = mnt.join(format!("shared/victim{i}"));
        fs::write(&v, VICTIM).unwrap();
        chown(&v, Some(uid(i)), Some(gid(i))).unwrap();
        chmod(&v, 0o666);
    }
}

/// Every file named `w*` below the workers' directories in `root`.
fn worker_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in fs::read_dir(root).unwrap() {
        let d = d.unwrap().path();
        if !d.is_dir() {
            continue;
        }
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_name().to_string_lossy().starts_with('w') {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn run(mode: Mode, extra: &[&str], ops: u64) {
    let s = Served::start(mode, extra);
    let (mnt, src) = (s.mnt().to_path_buf(), s.src().to_path_buf());
    setup(&mnt);
    let reports = s.scratch().dir("reports");
    chmod(&reports, 0o777);
    let mut gate = Gate::new();
    let mut children = Vec::new();
    for i in 0..8 {
        let report = reports.join(format!("w{i}"));
        let gate = &gate;
        let m = mnt.clone();
        let ch = Caller::new(uid(i), gid(i))
            .groups(&groups(i))
            .umask(0)
            .spawn(move || {
                gate.wait()?;
                let mut w = Worker {
                    i,
                    mnt: m,
                    rng: Rng::new(i as u64 + 1),
                    files: BTreeMap::new(),
                    n: 0,
                    ops: 0,
                    denied: 0,
                    violations: Vec::new(),
                };
                for _ in 0..ops {
                    w.step();
                }
                w.report(&report);
                Ok(())
            });
        children.push(ch);
    }
    gate.open(8);
    for ch in children {
        ch.join().expect("worker");
    }

    let (mut total, mut denied, mut violations, mut checked) = (0, 0, Vec::new(), 0);
    let mut want = BTreeMap::new();
    for i in 0..8 {
        let text = fs::read_to_string(reports.join(format!("w{i}"))).unwrap();
        let mut lines = text.lines();
        let mut head = lines.next().unwrap().split(' ');
        total += head.next().unwrap().parse::<u64>().unwrap();
        denied += head.next().unwrap().parse::<u64>().unwrap();
        for l in lines {
            if let Some(v) = l.strip_prefix("V ") {
                violations.push(format!("worker {i} (uid {}): {v}", uid(i)));
            } else if let Some(f) = l.strip_prefix("F ") {
                let f: Vec<&str> = f.split(' ').collect();
                let st = FileState {
                    uid: f[1].parse().unwrap(),
                    gid: f[2].parse().unwrap(),
                    mode: u32::from_str_radix(f[3], 8).unwrap(),
                };
                want.insert(PathBuf::from(f[0]), st);
            }
        }
    }
    for (p, st) in &want {
        checked += 1;
        let rel = p.strip_prefix(&mnt).unwrap();
        let views: Vec<(&str, PathBuf)> = if mode.rootless() {
            vec![("MNT", p.clone())]
        } else {
            vec![("MNT", p.clone()), ("SRC", src.join(rel))]
        };
        for (side, q) in views {
            match fs::symlink_metadata(&q) {
                Ok(m) => {
                    let got = FileState {
                        uid: m.uid(),
                        gid: m.gid(),
                        mode: m.mode() & 0o7777,
                    };
                    if &got != st {
                        violations.push(format!(
                            "{side}/{}: {got:?}, intended {st:?}",
                            rel.display()
                        ));
                    }
                }
                Err(e) => violations.push(format!("{side}/{}: {e}", rel.display())),
            }
        }
    }
    for p in worker_files(&mnt) {
        if !want.contains_key(&p) {
            violations.push(format!("{} exists, but no worker has it", p.display()));
        }
    }
    for i in 0..8 {
        let v = mnt.join(format!("shared/victim{i}"));
        let m = fs::symlink_metadata(&v).unwrap();
        if (m.uid(), m.gid(), m.mode() & 0o7777) != (uid(i), gid(i), 0o666)
            || fs::read(&v).unwrap() != VICTIM
        {
            violations.push(format!("{} changed: {m:?}", v.display()));
        }
    }
    summary(&format!(
        "concurrency[{}{}]: 8 uids, {total} operations ({denied} correctly refused with \
         EPERM/EACCES), {checked} files' owner and mode checked, {} violations",
        mode.name(),
        if extra.is_empty() {
            ""
        } else {
            ", host checks only"
        },
        violations.len()
    ));
    assert!(violations.is_empty(), "{}: {violations:#?}", mode.name());
    assert!(denied > 0 && checked > 8, "the workload did not run");
}

fn ops() -> u64 {
    env_knob("OWNFS_CONC_OPS", 300)
}

const HOST_CHECKS: &[&str] = &["--no-default-permissions"];

#[test]
fn concurrency_root() {
    run(Mode::Root, &[], ops());
}

/// Without default_permissions only the host decides, with the groups the server
/// switched to for each request.
#[test]
fn concurrency_root_host_checks() {
    run(Mode::Root, HOST_CHECKS, ops());
}

#[test]
fn concurrency_rootless() {
    run(Mode::Rootless, &[], ops());
}

/// The host decides with the groups the client forwarded.
#[test]
fn concurrency_pipe_host_checks() {
    run(Mode::Pipe, HOST_CHECKS, ops());
}

/// The long run: `OWNFS_CONC_OPS` (default 5000) operations per worker, every mode.
#[test]
#[ignore]
fn concurrency_long() {
    let n = env_knob("OWNFS_CONC_OPS", 5000);
    for (mode, extra) in [
        (Mode::Root, &[][..]),
        (Mode::Root, HOST_CHECKS),
        (Mode::Rootless, &[]),
        (Mode::Pipe, &[]),
        (Mode::Pipe, HOST_CHECKS),
        (Mode::PipeRootless, &[]),
    ] {
        run(mode, extra, n);
    }
}
