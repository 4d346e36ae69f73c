//! Live statistics: after a scripted workload, `ownfs stats` (table and JSON) counts
//! exactly the requests the workload made, in every mode; SIGUSR1 logs the same
//! table; other users cannot read them; `--no-stats` opens no control socket.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};

const DIRS: usize = 37;
const NOT_EMPTY: usize = 5;
const MISSES: usize = 11;

/// mkdir DIRS+1 directories, rmdir a non-empty one NOT_EMPTY times, stat MISSES
/// names that do not exist (each a different name, so no negative entry helps).
fn workload(mnt: &Path) {
    for i in 0..DIRS {
        fs::create_dir(mnt.join(format!("d{i}"))).unwrap();
    }
    fs::create_dir(mnt.join("d0/inner")).unwrap();
    for _ in 0..NOT_EMPTY {
        assert_errno(fs::remove_dir(mnt.join("d0")), libc::ENOTEMPTY, "rmdir d0");
    }
    for i in 0..MISSES {
        assert_errno(
            fs::metadata(mnt.join(format!("missing{i}"))),
            libc::ENOENT,
            "stat missing",
        );
    }
}

fn stats(args: &[&str], target: &Path) -> String {
    ok(Command::new(ownfs_bin())
        .arg("stats")
        .args(args)
        .arg(target))
}

/// One field of the JSON reply, extracted by python3's json module.
fn json_field(json: &str, expr: &str) -> u64 {
    let script = format!("import json,sys; d=json.load(sys.stdin); print(d{expr})");
    let mut c = Command::new("python3");
    c.args(["-c", &script]);
    let out = run_with_stdin(&mut c, json.as_bytes());
    out.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{expr} in {json}: {out:?}: {e}"))
}

fn run_with_stdin(c: &mut Command, input: &[u8]) -> String {
    use std::io::Write;
    let mut child = c
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{c:?}: {}", describe(&out.status));
    lossy(&out.stdout)
}

/// The table's row for `op`: requests, errors, then the errno column.
fn row<'a>(table: &'a str, op: &str) -> Vec<&'a str> {
    let line = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(op))
        .unwrap_or_else(|| panic!("no {op} row in\n{table}"));
    line.split_whitespace().collect()
}

#[test]
fn counts_match_the_workload_in_every_mode() {
    for mode in [Mode::Root, Mode::Rootless, Mode::Pipe, Mode::PipeRootless] {
        let served = Served::start(mode, &[]);
        workload(served.mnt());

        let json = stats(&["--json"], served.stats_target());
        let ctx = format!("{} mode, JSON:\n{json}", mode.name());
        assert_eq!(
            json_field(&json, "['ops']['mkdir']['requests']"),
            DIRS as u64 + 1,
            "{ctx}"
        );
        assert_eq!(json_field(&json, "['ops']['mkdir']['errors']"), 0, "{ctx}");
        assert_eq!(
            json_field(&json, "['ops']['rmdir']['requests']"),
            NOT_EMPTY as u64,
            "{ctx}"
        );
        assert_eq!(
            json_field(&json, "['ops']['rmdir']['errnos']['ENOTEMPTY']"),
            NOT_EMPTY as u64,
            "{ctx}"
        );
        // Every mkdir looked its name up first, and found nothing.
        let misses = json_field(&json, "['ops']['lookup']['errnos']['ENOENT']");
        assert!(misses >= (MISSES + DIRS + 1) as u64, "{ctx}");
        assert!(json_field(&json, "['ops']['mkdir']['p99_ns']") > 0, "{ctx}");

        let table = stats(&[], served.stats_target());
        let mkdir = row(&table, "mkdir");
        assert_eq!(mkdir[1..3], [(DIRS + 1).to_string(), "0".into()], "{table}");
        let rmdir = row(&table, "rmdir");
        assert_eq!(
            rmdir[1..3],
            [NOT_EMPTY.to_string(), NOT_EMPTY.to_string()],
            "{table}"
        );
        assert_eq!(
            rmdir.last(),
            Some(&format!("ENOTEMPTY:{NOT_EMPTY}").as_str()),
            "{table}"
        );
        summary(&format!(
            "stats[{}]: {} mkdir, {misses} ENOENT lookups",
            mode.name(),
            mkdir[1]
        ));
    }
}

#[test]
fn sigusr1_logs_the_table() {
    // The report is an info line; this test's servers log at info.
    std::env::set_var("OWNFS_IT_LOG", "info");
    let served = Served::start(Mode::Root, &[]);
    workload(served.mnt());
    kill(served.server_pid(), Signal::SIGUSR1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = served.logs();
        if let Some(at) = logs.find("statistics:\n") {
            let report = &logs[at..];
            let mkdir = row(report, "mkdir");
            assert_eq!(mkdir[1], (DIRS + 1).to_string(), "{report}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no report after SIGUSR1:\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The server kept serving.
    fs::create_dir(served.mnt().join("after")).unwrap();
}

#[test]
fn only_root_and_the_server_user_may_read_them() {
    let served = Served::start(Mode::Root, &[]);
    let socket = ok(Command::new(ownfs_bin())
        .args(["stats", "--json"])
        .arg(served.mnt()));
    assert!(socket.contains("\"mkdir\""));
    let path = ownfs::stats::control::socket_for(&std::path::absolute(served.mnt()).unwrap())
        .expect("root has a runtime directory");
    let meta = fs::symlink_metadata(&path).unwrap();
    assert_eq!(mode_of(&path) & 0o777, 0o600, "{}", path.display());
    assert_eq!(owner(&path), (0, 0));
    assert!(std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()));
    let out = output_timeout(
        Caller::new(65534, 65534)
            .command(ownfs_bin())
            .args(["stats", "--socket"])
            .arg(&path),
        CHILD_TIMEOUT,
    );
    assert!(!out.status.success(), "nobody read the statistics");
    assert!(
        lossy(&out.stderr).contains("only root and the server's user"),
        "{}",
        lossy(&out.stderr)
    );
}

#[test]
fn no_stats_opens_no_control_socket() {
    let served = Served::start(Mode::Root, &["--no-stats"]);
    workload(served.mnt());
    let path = ownfs::stats::control::socket_for(&std::path::absolute(served.mnt()).unwrap())
        .expect("root has a runtime directory");
    assert!(
        fs::symlink_metadata(&path).is_err(),
        "{} exists",
        path.display()
    );
    let out = output_timeout(
        Command::new(ownfs_bin()).arg("stats").arg(served.mnt()),
        CHILD_TIMEOUT,
    );
    assert!(!out.status.success());
    assert!(
        lossy(&out.stderr).contains("no server answers"),
        "{}",
        lossy(&out.stderr)
    );
}

#[test]
fn the_socket_goes_away_with_the_server() {
    let served = Served::start(Mode::Pipe, &[]);
    let path =
        ownfs::stats::control::socket_for(&std::path::absolute(served.stats_target()).unwrap())
            .unwrap();
    assert!(
        fs::symlink_metadata(&path).is_ok(),
        "{} missing",
        path.display()
    );
    drop(served);
    assert!(
        fs::symlink_metadata(&path).is_err(),
        "{} left behind",
        path.display()
    );
}
