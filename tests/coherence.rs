//! Attribute coherence in every host mode: `tests/coherence.sh` runs real programs
//! (`cp -p`, `cp -a`, `rsync -a`, `setfacl`, `install`, a non-owner write, `ln`, `mkdir`)
//! through the mount and checks with `stat` at once that the client shows what the
//! server did. The VM harness runs the same script over virtio-fs and vsock.

mod common;

use std::os::unix::fs::chown;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const RUN_AS: u32 = 4301;

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/coherence.sh")
}

/// Runs the script on `mnt` and fails with its report unless every check passed.
fn coherent(mnt: &Path, label: &str, rootless: bool) {
    let mut cmd = Command::new(script());
    if rootless {
        cmd.arg("--rootless");
    }
    let out = output_timeout(cmd.arg(mnt).arg(label), Duration::from_secs(120));
    let report = String::from_utf8_lossy(&out.stdout);
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && report.contains(" 0 failed"),
        "coherence.sh {label}:\n{report}{errors}"
    );
}

fn give_to_run_as(src: &Path) {
    chown(src, Some(RUN_AS), Some(RUN_AS)).expect("chown SRC");
}

#[test]
fn default_permissions() {
    let m = Mount::new(&[]);
    coherent(&m.mnt, "default", false);
}

#[test]
fn no_default_permissions() {
    let m = Mount::new(&["--no-default-permissions"]);
    coherent(&m.mnt, "ndp", false);
}

#[test]
fn writeback() {
    let m = Mount::new(&["--writeback"]);
    coherent(&m.mnt, "writeback", false);
}

#[test]
fn rootless() {
    let ids = format!("{RUN_AS}:{RUN_AS}");
    let m =
        Mount::start_with(&["--run-as", &ids], give_to_run_as).unwrap_or_else(|e| panic!("{e}"));
    coherent(&m.mnt, "rootless", true);
}

#[test]
fn pipe_root() {
    let p = Pipe::start(&[], &[]);
    coherent(&p.mnt, "pipe-root", false);
}

#[test]
fn pipe_rootless() {
    let ids = format!("{RUN_AS}:{RUN_AS}");
    let p = Pipe::start_with(&["--run-as", &ids], &[], give_to_run_as);
    coherent(&p.mnt, "pipe-rootless", true);
}

/// pjdfstest's open/05 test 7, by hand: a directory loses its search permission after
/// a caller has walked through it. With no default_permissions only the host decides,
/// so the caller's next walk must reach the host and be refused there.
fn walk_after_chmod_is_refused(mnt: &Path, label: &str) {
    let dir = mnt.join("d");
    let root = Caller::root();
    let nobody = Caller::new(65534, 65534);
    let setup = root.sh(&format!(
        "mkdir -m 0755 {0} && echo data >{0}/f && chmod 0644 {0}/f",
        dir.display()
    ));
    assert!(setup.status.success(), "{label}: setup: {setup:?}");
    let first = nobody.sh(&format!("cat {}/f", dir.display()));
    assert!(first.status.success(), "{label}: first read: {first:?}");
    let chmod = root.sh(&format!("chmod 0644 {}", dir.display()));
    assert!(chmod.status.success(), "{label}: chmod: {chmod:?}");
    let second = nobody.sh(&format!("cat {}/f", dir.display()));
    let errors = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success() && errors.contains("Permission denied"),
        "{label}: a walk through a 0644 directory was allowed: {second:?}"
    );
}

#[test]
fn no_default_permissions_walks_reach_the_host() {
    let m = Mount::new(&["--no-default-permissions"]);
    walk_after_chmod_is_refused(&m.mnt, "ndp");
}

#[test]
fn pipe_no_default_permissions_walks_reach_the_host() {
    let p = Pipe::start(&[], &["--no-default-permissions"]);
    walk_after_chmod_is_refused(&p.mnt, "pipe ndp");
}
