//! Faults: the server is killed with SIGKILL under a mixed workload of several
//! processes running as several users, then started again.
//!
//! Each worker creates files (write + fsync), chmods, chowns or chgrps them, makes
//! directories and symlinks (lchown'd by root) and renames files, each in its own
//! directory, and appends a line to a log outside the mount after each operation
//! returned. After the restart:
//! * every file whose fsync returned has exactly its content, through the mount and
//!   on SRC; every logged chmod/chown/rename shows; an operation that never returned
//!   shows either its old or its new state;
//! * every ownership record in SRC (the `user.ownfs.stat` xattrs and the symlink
//!   sidecar file) decodes, and `ownfs owners SRC` reads the share;
//! * local mount: the mount dies with the server (callers get ENOTCONN or
//!   ECONNABORTED), a new server
//!   mounts again; fuse-pipe: the client stays mounted, every operation either
//!   succeeds or fails with EIO/ESTALE, none waits longer than the client's timeout,
//!   and work goes on once the new server is up.
//!
//! `OWNFS_FAULT_KILLS` (default 2 local, 3 pipe) sets the number of kills;
//! `OWNFS_FAULT_KILLS=20 cargo test --release --test faults -- --ignored` is the long
//! run. Each mode prints `faults[MODE]: ...`.

mod common;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{lchown, symlink, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::*;
use ownfs::fs::record::{Record, LEN as RECORD_LEN};
use ownfs::platform;

/// (uid, gid, supplementary groups) of the workers.
const WORKERS: [(u32, u32, &[u32]); 4] = [
    (0, 0, &[0]),
    (424_921, 424_920, &[424_920, 424_925]),
    (424_922, 424_920, &[424_920]),
    (424_923, 424_923, &[]),
];
/// Seconds a pipe request waits for a server before EIO.
const PIPE_TIMEOUT: u64 = 10;
const CREATE_MODE: u32 = 0o640;
/// What callers of a local mount get once its server died.
const LOCAL_GONE: &[i32] = &[libc::ENOTCONN, libc::ECONNABORTED];

fn content(worker: usize, round: usize, n: u64) -> Vec<u8> {
    let seed = (worker as u64) << 40 | (round as u64) << 32 | n;
    let len = 1 + (seed.wrapping_mul(2_654_435_761) % 48_000) as usize;
    pattern(len, seed)
}

fn mode_for(n: u64) -> u32 {
    0o600 | ((n % 8) << 3) as u32 | (n / 8 % 8) as u32
}

/// What a worker saw, besides its log.
struct Outcome {
    /// Operations that failed with an errno the mode allows.
    failed: u64,
    /// Operations that failed with any other errno: `op errno`.
    bad: Vec<String>,
    slowest: Duration,
}

/// One worker: loops until `deadline` (or, on a local mount, until the mount is gone).
fn worker(
    idx: usize,
    round: usize,
    dir: &Path,
    log: &Path,
    out: &Path,
    deadline: Instant,
    allowed: &[i32],
) {
    let (uid, _, groups) = WORKERS[idx];
    let mut logf = fs::OpenOptions::new().append(true).open(log).unwrap();
    let mut res = Outcome {
        failed: 0,
        bad: Vec::new(),
        slowest: Duration::ZERO,
    };
    let mut note = |line: String| logf.write_all(line.as_bytes()).unwrap();
    let mut gone = false;
    let mut n = 0u64;
    while Instant::now() < deadline && !gone {
        n += 1;
        let f = dir.join(format!("f{round}-{n}"));
        let mut step = |what: &str, r: io::Result<()>, res: &mut Outcome, t: Instant| -> bool {
            res.slowest = res.slowest.max(t.elapsed());
            match r {
                Ok(()) => true,
                Err(e) => {
                    let errno = e.raw_os_error().unwrap_or(-1);
                    // The local mount is gone: ENOTCONN, or ECONNABORTED for a request
                    // that was in flight when the connection was aborted.
                    if allowed == LOCAL_GONE && allowed.contains(&errno) {
                        gone = true;
                    }
                    if allowed.contains(&errno) {
                        res.failed += 1;
                    } else {
                        res.bad.push(format!("{what} {}: {e}", f.display()));
                    }
                    false
                }
            }
        };
        let data = content(idx, round, n);
        let t = Instant::now();
        let r = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(CREATE_MODE)
            .open(&f)
            .and_then(|mut h| {
                h.write_all(&data)?;
                h.sync_all()
            });
        if !step("create+write+fsync", r, &mut res, t) {
            continue;
        }
        note(format!("F {n} {}\n", data.len()));

        let mode = mode_for(n);
        let t = Instant::now();
        if !step(
            "chmod",
            fs::set_permissions(&f, fs::Permissions::from_mode(mode)),
            &mut res,
            t,
        ) {
            continue;
        }
        note(format!("M {n} {mode:o}\n"));

        // Root gives files away; the others change the group to one of theirs.
        let (to_uid, to_gid) = if uid == 0 {
            let w = WORKERS[1 + (n % 3) as usize];
            (Some(w.0), Some(w.1))
        } else if !groups.is_empty() {
            (None, Some(groups[(n % groups.len() as u64) as usize]))
        } else {
            (None, None)
        };
        if to_uid.is_some() || to_gid.is_some() {
            let t = Instant::now();
            if !step(
                "chown",
                std::os::unix::fs::chown(&f, to_uid, to_gid),
                &mut res,
                t,
            ) {
                continue;
            }
            note(format!(
                "O {n} {} {}\n",
                to_uid.map_or(-1, i64::from),
                to_gid.map_or(-1, i64::from)
            ));
        }
        if n.is_multiple_of(4) {
            let d = dir.join(format!("d{round}-{n}"));
            let t = Instant::now();
            if step("mkdir", fs::create_dir(&d), &mut res, t) {
                note(format!("D {n}\n"));
            }
            let s = dir.join(format!("s{round}-{n}"));
            let t = Instant::now();
            if step("symlink", symlink(format!("f{round}-{n}"), &s), &mut res, t) {
                note(format!("S {n}\n"));
                if uid == 0 {
                    let t = Instant::now();
                    if step(
                        "lchown",
                        lchown(&s, Some(424_929), Some(424_929)),
                        &mut res,
                        t,
                    ) {
                        note(format!("T {n}\n"));
                    }
                }
            }
        }
        if n.is_multiple_of(3) {
            let t = Instant::now();
            let r = fs::rename(&f, dir.join(format!("r{round}-{n}")));
            if step("rename", r, &mut res, t) {
                note(format!("R {n}\n"));
            }
        }
    }
    let mut s = format!("{} {}\n", res.failed, res.slowest.as_millis());
    for b in &res.bad {
        s.push_str(b);
        s.push('\n');
    }
    fs::write(out, s).unwrap();
}

/// Checks one worker's files against its log; returns how many fsynced files it
/// checked, and appends every mismatch to `lost`.
fn verify_worker(
    mnt_dir: &Path,
    src_dir: &Path,
    idx: usize,
    round: usize,
    log: &str,
    lost: &mut Vec<String>,
) -> u64 {
    #[derive(Default)]
    struct Want {
        len: usize,
        mode: Option<u32>,
        owner: Option<(i64, i64)>,
        renamed: bool,
        dir: bool,
        link: bool,
        link_owned: bool,
    }
    let mut files: BTreeMap<u64, Want> = BTreeMap::new();
    for line in log.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let n: u64 = f[1].parse().unwrap();
        let w = files.entry(n).or_default();
        match f[0] {
            "F" => w.len = f[2].parse().unwrap(),
            "M" => w.mode = Some(u32::from_str_radix(f[2], 8).unwrap()),
            "O" => w.owner = Some((f[2].parse().unwrap(), f[3].parse().unwrap())),
            "R" => w.renamed = true,
            "D" => w.dir = true,
            "S" => w.link = true,
            "T" => w.link_owned = true,
            other => panic!("log line {other}"),
        }
    }
    let (uid, gid, _) = WORKERS[idx];
    let mut checked = 0;
    for (n, w) in &files {
        if w.len == 0 {
            continue;
        }
        checked += 1;
        let name = |p: &str| format!("{p}{round}-{n}");
        let pick = |base: &Path| {
            let (f, r) = (base.join(name("f")), base.join(name("r")));
            if w.renamed || (!f.exists() && r.exists()) {
                r
            } else {
                f
            }
        };
        let (via_mnt, on_src) = (pick(mnt_dir), pick(src_dir));
        let want = content(idx, round, *n);
        assert_eq!(want.len(), w.len);
        for p in [&via_mnt, &on_src] {
            match fs::read(p) {
                Ok(got) if got == want => {}
                Ok(got) => lost.push(format!(
                    "{}: {} bytes, fsynced {} bytes of other content",
                    p.display(),
                    got.len(),
                    want.len()
                )),
                Err(e) => lost.push(format!("{}: fsynced, now {e}", p.display())),
            }
        }
        let Ok(md) = fs::symlink_metadata(&via_mnt) else {
            continue;
        };
        let mode = md.mode() & 0o7777;
        let mode_ok = match w.mode {
            Some(m) => mode == m,
            None => mode == CREATE_MODE || mode == mode_for(*n),
        };
        if !mode_ok {
            lost.push(format!(
                "{}: mode {mode:o}, log {:?}",
                via_mnt.display(),
                w.mode
            ));
        }
        let owner = (i64::from(md.uid()), i64::from(md.gid()));
        if let Some((wu, wg)) = w.owner {
            let want = (
                if wu < 0 { i64::from(uid) } else { wu },
                if wg < 0 { i64::from(gid) } else { wg },
            );
            if owner != want {
                lost.push(format!(
                    "{}: owner {owner:?}, chowned to {want:?}",
                    via_mnt.display()
                ));
            }
        }
        if w.dir && !mnt_dir.join(name("d")).is_dir() {
            lost.push(format!("{}: mkdir returned, directory missing", name("d")));
        }
        if w.link {
            match fs::read_link(mnt_dir.join(name("s"))) {
                Ok(t) if t == Path::new(&name("f")) => {}
                r => lost.push(format!("{}: symlink returned, now {r:?}", name("s"))),
            }
            if w.link_owned && owner_of_link(&mnt_dir.join(name("s"))) != (424_929, 424_929) {
                lost.push(format!("{}: lchown returned, owner not applied", name("s")));
            }
        }
    }
    checked
}

fn owner_of_link(p: &Path) -> (u32, u32) {
    fs::symlink_metadata(p).map_or((u32::MAX, u32::MAX), |m| (m.uid(), m.gid()))
}

/// Decodes every ownership record in SRC; returns (records, corrupt descriptions).
fn check_records(src: &Path) -> (u64, Vec<String>) {
    let mut count = 0;
    let mut corrupt = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    let name = CString::new("user.ownfs.stat").unwrap();
    while let Some(p) = stack.pop() {
        let md = fs::symlink_metadata(&p).unwrap();
        if !md.file_type().is_symlink() {
            let c = cstr(&p);
            let mut buf = [0u8; 256];
            match platform::lgetxattr_path(&c, &name, &mut buf) {
                Ok(n) => {
                    count += 1;
                    let v = &buf[..n];
                    if v.len() != RECORD_LEN || Record::decode(v).is_err() {
                        corrupt.push(format!("{}: record {v:?}", p.display()));
                    }
                }
                Err(e) => {
                    if e.raw_os_error() != Some(libc::ENODATA) {
                        corrupt.push(format!("{}: lgetxattr: {e}", p.display()));
                    }
                }
            }
        }
        if md.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    // Symlink records: the store passes SQLite's own integrity check and every row decodes.
    let db = src.join(".ownfs-symlinks.d/records.sqlite");
    if db.exists() {
        let conn =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap();
        let verdict: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        if verdict != "ok" {
            corrupt.push(format!("symlink record store: {verdict}"));
        }
        let mut q = conn.prepare("SELECT record FROM symlinks").unwrap();
        for rec in q.query_map([], |r| r.get::<_, Vec<u8>>(0)).unwrap() {
            let rec = rec.unwrap();
            count += 1;
            if rec.len() != RECORD_LEN || Record::decode(&rec).is_err() {
                corrupt.push(format!("symlink record {rec:?}"));
            }
        }
    }
    // The offline tool reads the same share without complaint: its summary line alone.
    let mut owners = Command::new(ownfs_bin());
    owners.arg("owners").arg(src);
    let out = output_timeout(&mut owners, CHILD_TIMEOUT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let only_summary = stderr.lines().count() == 1 && stderr.starts_with("owners: ");
    if !out.status.success() || !only_summary {
        corrupt.push(format!(
            "ownfs owners: {}: {}",
            describe(&out.status),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    (count, corrupt)
}

struct Run {
    dirs: Vec<(PathBuf, PathBuf)>,
    logs: Vec<PathBuf>,
}

fn prepare(s: &Served) -> Run {
    let mnt = s.mnt();
    chmod(mnt, 0o755);
    let logs_dir = s.scratch().dir("logs");
    chmod(&logs_dir, 0o777);
    let mut dirs = Vec::new();
    let mut logs = Vec::new();
    for (i, (uid, gid, _)) in WORKERS.iter().enumerate() {
        let d = mnt.join(format!("w{i}"));
        fs::create_dir(&d).unwrap();
        std::os::unix::fs::chown(&d, Some(*uid), Some(*gid)).unwrap();
        chmod(&d, 0o755);
        dirs.push((d, s.src().join(format!("w{i}"))));
        let l = logs_dir.join(format!("w{i}"));
        fs::write(&l, b"").unwrap();
        chmod(&l, 0o666);
        logs.push(l);
    }
    Run { dirs, logs }
}

/// Starts the workers of `round`; they stop at `deadline`.
fn start_workers(
    s: &Served,
    run: &Run,
    round: usize,
    deadline: Instant,
    allowed: &'static [i32],
) -> Vec<(AsChild, PathBuf)> {
    let out_dir = s.scratch().dir(&format!("out{round}"));
    chmod(&out_dir, 0o777);
    WORKERS
        .iter()
        .enumerate()
        .map(|(i, (uid, gid, groups))| {
            let out = out_dir.join(format!("w{i}"));
            let (dir, log, o) = (run.dirs[i].0.clone(), run.logs[i].clone(), out.clone());
            let ch = Caller::new(*uid, *gid)
                .groups(groups)
                .umask(0)
                .spawn(move || {
                    worker(i, round, &dir, &log, &o, deadline, allowed);
                    Ok(())
                });
            (ch, out)
        })
        .collect()
}

/// Joins the workers; returns (allowed failures, slowest op) and the unexpected errors.
fn join_workers(workers: Vec<(AsChild, PathBuf)>, bad: &mut Vec<String>) -> (u64, Duration) {
    let (mut failed, mut slowest) = (0, Duration::ZERO);
    for (ch, out) in workers {
        ch.join().expect("worker");
        let text = fs::read_to_string(&out).unwrap();
        let mut lines = text.lines();
        let mut head = lines.next().unwrap().split(' ');
        failed += head.next().unwrap().parse::<u64>().unwrap();
        slowest = slowest.max(Duration::from_millis(head.next().unwrap().parse().unwrap()));
        bad.extend(lines.map(str::to_string));
    }
    (failed, slowest)
}

fn verify_all(run: &Run, rounds: usize, lost: &mut Vec<String>) -> u64 {
    let mut checked = 0;
    for (i, log) in run.logs.iter().enumerate() {
        let text = fs::read_to_string(log).unwrap();
        for round in 0..rounds {
            // A round's lines follow its `# round R` marker.
            let part: String = text
                .lines()
                .skip_while(|l| !l.starts_with(&format!("# round {round}")))
                .skip(1)
                .take_while(|l| !l.starts_with('#'))
                .map(|l| format!("{l}\n"))
                .collect();
            checked += verify_worker(&run.dirs[i].0, &run.dirs[i].1, i, round, &part, lost);
        }
    }
    checked
}

fn mark_round(run: &Run, round: usize) {
    for l in &run.logs {
        let mut f = fs::OpenOptions::new().append(true).open(l).unwrap();
        f.write_all(format!("# round {round}\n").as_bytes())
            .unwrap();
    }
}

/// Local mount: each round runs the workload, kills the server, waits for the
/// workers (they stop on ENOTCONN), restarts and checks.
fn local(mode: Mode, extra: &[&str], kills: usize) {
    let mut s = Served::start(mode, extra);
    let run = prepare(&s);
    let (mut bad, mut lost, mut corrupt) = (Vec::new(), Vec::new(), Vec::new());
    let (mut checked, mut records) = (0, 0);
    for round in 0..kills {
        mark_round(&run, round);
        let deadline = Instant::now() + Duration::from_secs(60);
        let workers = start_workers(&s, &run, round, deadline, LOCAL_GONE);
        sleep(Duration::from_millis(600 + 150 * round as u64));
        s.kill_server();
        join_workers(workers, &mut bad);
        s.restart_server();
        checked = verify_all(&run, round + 1, &mut lost);
        let (r, c) = check_records(s.src());
        records = r;
        corrupt.extend(c);
    }
    summary(&format!(
        "faults[{}{}]: {kills} kills survived, {checked} fsynced files checked, {} lost fsyncs \
         or operations, {records} records, {} corrupt records",
        mode.name(),
        extra.iter().map(|a| format!(" {a}")).collect::<String>(),
        lost.len(),
        corrupt.len()
    ));
    assert_survived(mode, &bad, &lost, &corrupt, checked);
    if mode.rootless() {
        assert!(
            records > 10,
            "only {records} records: nothing was virtualized"
        );
    }
}

/// Pipe: the client stays mounted while the server is killed `kills` times and
/// restarted; the workload runs throughout.
fn pipe(mode: Mode, kills: usize) {
    let timeout = PIPE_TIMEOUT.to_string();
    let mut s = Served::start(mode, &["--timeout", &timeout]);
    let run = prepare(&s);
    let (mut bad, mut lost) = (Vec::new(), Vec::new());
    mark_round(&run, 0);
    let period = Duration::from_millis(1300);
    let deadline = Instant::now() + period * kills as u32 + Duration::from_secs(1);
    let workers = start_workers(&s, &run, 0, deadline, &[libc::EIO, libc::ESTALE]);
    for _ in 0..kills {
        sleep(Duration::from_millis(700));
        s.kill_server();
        sleep(Duration::from_millis(300));
        s.restart_server();
        sleep(Duration::from_millis(300));
    }
    let (failed, slowest) = join_workers(workers, &mut bad);
    // Work goes on after the last restart: a fresh file through the mount.
    let after = s.mnt().join("w0/after-restarts");
    let r = bounded("a write after the restarts", Duration::from_secs(30), {
        let after = after.clone();
        move || fs::write(after, b"still working")
    });
    r.unwrap_or_else(|e| panic!("write after the restarts: {e}\n{}", s.logs()));
    let checked = verify_all(&run, 1, &mut lost);
    let (records, corrupt) = check_records(s.src());
    summary(&format!(
        "faults[{}]: {kills} kills survived, {checked} fsynced files checked, {} lost fsyncs or \
         operations, {records} records, {} corrupt records, {failed} operations failed with \
         EIO/ESTALE, slowest {:.1} s (timeout {PIPE_TIMEOUT} s)",
        mode.name(),
        lost.len(),
        corrupt.len(),
        slowest.as_secs_f64()
    ));
    assert!(
        slowest < Duration::from_secs(PIPE_TIMEOUT + 5),
        "an operation took {slowest:?} with a {PIPE_TIMEOUT} s timeout"
    );
    assert_survived(mode, &bad, &lost, &corrupt, checked);
}

/// What every mode must show after its kills: no unexpected error (`bad`), nothing
/// acknowledged and then lost, no corrupt record, and a workload that really ran.
fn assert_survived(mode: Mode, bad: &[String], lost: &[String], corrupt: &[String], checked: u64) {
    let m = mode.name();
    assert!(bad.is_empty(), "unexpected errors ({m}): {bad:#?}");
    assert!(lost.is_empty(), "lost after the kills ({m}): {lost:#?}");
    assert!(corrupt.is_empty(), "corrupt records ({m}): {corrupt:#?}");
    assert!(
        checked > 20,
        "only {checked} fsynced files: the workload did not run"
    );
}

fn kills(default: usize) -> usize {
    env_knob("OWNFS_FAULT_KILLS", default as u64) as usize
}

#[test]
fn faults_root_writeback() {
    local(Mode::Root, &["--writeback"], kills(2));
}

#[test]
fn faults_rootless() {
    local(Mode::Rootless, &[], kills(2));
}

#[test]
fn faults_pipe() {
    pipe(Mode::Pipe, kills(3));
}

#[test]
fn faults_pipe_rootless() {
    pipe(Mode::PipeRootless, kills(3));
}

/// The long run: `OWNFS_FAULT_KILLS` (default 20) kills in every mode.
#[test]
#[ignore]
fn faults_long() {
    let n = kills(20);
    local(Mode::Root, &["--writeback"], n);
    local(Mode::Rootless, &[], n);
    pipe(Mode::Pipe, n);
    pipe(Mode::PipeRootless, n);
}
