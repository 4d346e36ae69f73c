//! Capabilities of a root server (issue 12, hole 5): the process keeps only what serving
//! needs, and a worker thread acting for a non-root caller holds no effective capability
//! at all (setfsuid alone would leave CAP_SYS_RESOURCE, CAP_SYS_ADMIN and the rest).
//! Read from outside, in /proc/PID/task/TID/status, after real requests through a mount.

mod common;

use std::fs;
use std::path::Path;

use common::pipe::Pipe;
use common::*;

/// CAP_SYS_RESOURCE: ignores quotas and reserved blocks.
const CAP_SYS_RESOURCE: u64 = 1 << 24;
/// CAP_SYS_ADMIN: needed for backing files and unmounting, never for a caller.
const CAP_SYS_ADMIN: u64 = 1 << 21;

struct ThreadCaps {
    tid: String,
    fsuid: u32,
    eff: u64,
    prm: u64,
    bnd: u64,
}

fn hex_field(status: &str, key: &str) -> u64 {
    let v = status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in status"));
    u64::from_str_radix(v.trim(), 16).unwrap()
}

fn threads_of(pid: u32) -> Vec<ThreadCaps> {
    let mut out = Vec::new();
    for e in fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let Ok(status) = fs::read_to_string(e.path().join("status")) else {
            continue; // the thread ended meanwhile
        };
        let uids = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap();
        let fsuid = uids.split_whitespace().nth(3).unwrap().parse().unwrap();
        out.push(ThreadCaps {
            tid: e.file_name().to_string_lossy().into_owned(),
            fsuid,
            eff: hex_field(&status, "CapEff:"),
            prm: hex_field(&status, "CapPrm:"),
            bnd: hex_field(&status, "CapBnd:"),
        });
    }
    out
}

/// Creates a file through `mnt` as uid 65534, then checks every server thread.
fn check_server(pid: u32, mnt: &Path, mode: &str) {
    let out = Caller::new(65534, 65534).sh(&format!(
        "touch {0}/pub/by-nobody && stat -c %u {0}/pub/by-nobody",
        mnt.display()
    ));
    assert!(out.status.success(), "{mode}: touch as 65534: {out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "65534",
        "{mode}"
    );
    let threads = threads_of(pid);
    let acting: Vec<_> = threads.iter().filter(|t| t.fsuid == 65534).collect();
    assert!(
        !acting.is_empty(),
        "{mode}: no server thread acted as 65534"
    );
    for t in &threads {
        assert_eq!(
            t.bnd & CAP_SYS_RESOURCE,
            0,
            "{mode}: thread {} may regain CAP_SYS_RESOURCE",
            t.tid
        );
        assert_eq!(
            t.prm & CAP_SYS_RESOURCE,
            0,
            "{mode}: thread {} holds CAP_SYS_RESOURCE",
            t.tid
        );
        if t.fsuid != 0 {
            assert_eq!(
                t.eff, 0,
                "{mode}: thread {} acts as fsuid {} with CapEff {:x}",
                t.tid, t.fsuid, t.eff
            );
        } else {
            assert_eq!(t.eff & CAP_SYS_RESOURCE, 0, "{mode}: thread {}", t.tid);
        }
    }
    let caller_admin = threads
        .iter()
        .any(|t| t.fsuid != 0 && t.eff & CAP_SYS_ADMIN != 0);
    assert!(!caller_admin, "{mode}: a caller thread holds CAP_SYS_ADMIN");
    println!(
        "capabilities[{mode}]: {} threads, {} acting for uid 65534 with CapEff 0",
        threads.len(),
        acting.len()
    );
}

fn public_dir(src: &Path) {
    let d = src.join("pub");
    fs::create_dir(&d).unwrap();
    chmod(&d, 0o777);
}

#[test]
fn local_mount_workers_act_without_capabilities() {
    for extra in [&[][..], &["--no-default-permissions"][..]] {
        let m = Mount::start_with(extra, public_dir).unwrap();
        let pid = m.pid().expect("server pid").as_raw() as u32;
        check_server(pid, &m.mnt, &format!("mount {extra:?}"));
    }
}

#[test]
fn pipe_server_workers_act_without_capabilities() {
    let p = Pipe::start_with(&[], &[], public_dir);
    let pid = p.server.as_ref().expect("server").id();
    check_server(pid, &p.mnt, "pipe");
}
