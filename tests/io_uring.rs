//! FUSE over io_uring (`--io-uring`) through real mounts. The kernel's fuse module
//! allows it only while `enable_uring` is set; these tests set it and put it back.
//! That the requests really took the rings is read from the kernel's own counters of
//! the server's rings (`CqTail` in /proc/PID/fdinfo).

mod common;

use std::fs;
use std::process::Command;
use std::sync::Mutex;

use common::*;

const ENABLE: &str = "/sys/module/fuse/parameters/enable_uring";

/// The parameter is global: one test at a time sets it, and puts it back.
static PARAM: Mutex<()> = Mutex::new(());

struct UringParam(String);

impl UringParam {
    fn set(on: bool) -> UringParam {
        let old = fs::read_to_string(ENABLE).unwrap_or_else(|e| {
            panic!("{ENABLE}: {e} (FUSE over io_uring needs Linux 6.14+ with CONFIG_FUSE_IO_URING)")
        });
        fs::write(ENABLE, if on { "1" } else { "0" }).expect("set enable_uring");
        UringParam(old.trim().to_string())
    }
}

impl Drop for UringParam {
    fn drop(&mut self) {
        let old = if self.0 == "Y" { "1" } else { "0" };
        let _ = fs::write(ENABLE, old);
    }
}

/// Requests the server's io_uring rings completed so far.
fn ring_completions(pid: i32) -> u64 {
    let mut total = 0;
    for fd in fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let is_ring =
            fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy().contains("io_uring"));
        if !is_ring {
            continue;
        }
        let info = fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        total += info
            .lines()
            .find_map(|l| l.strip_prefix("CqTail:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

/// The CPUs each ring thread of the server may run on (`Cpus_allowed_list`).
fn ring_thread_cpus(pid: i32) -> Vec<String> {
    let mut cpus = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let comm = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != "ownfs-uring" {
            continue;
        }
        let status = fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap_or_default();
        cpus.push(allowed.trim().to_string());
    }
    cpus.sort();
    cpus
}

#[test]
fn requests_go_through_the_rings() {
    let _one = PARAM.lock().unwrap_or_else(|e| e.into_inner());
    let _param = UringParam::set(true);
    for extra in [
        &["--io-uring", "on"][..],
        &["--io-uring", "on", "--rootless"][..],
    ] {
        let m = Mount::new(extra);
        let pid = m.pid().expect("server pid").as_raw();
        let before = ring_completions(pid);
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        fs::create_dir(m.mnt.join("d")).unwrap();
        fs::write(m.mnt.join("d/big"), &data).unwrap();
        for i in 0..100 {
            fs::write(m.mnt.join(format!("d/f{i}")), format!("{i}")).unwrap();
        }
        ok(Command::new("mv")
            .arg(m.mnt.join("d/f0"))
            .arg(m.mnt.join("d/moved")));
        ok(Command::new("rm").arg(m.mnt.join("d/f1")));
        let listing = ok(Command::new("ls").arg(m.mnt.join("d")));
        assert_eq!(
            listing.lines().count(),
            100,
            "{extra:?}: ls shows\n{listing}"
        );
        assert!(listing.lines().any(|l| l == "moved"), "{extra:?}");
        assert_eq!(fs::read(m.mnt.join("d/big")).unwrap(), data, "{extra:?}");
        assert_eq!(fs::read(m.src.join("d/big")).unwrap(), data, "{extra:?}");
        let size = ok(Command::new("stat")
            .args(["-c", "%s"])
            .arg(m.mnt.join("d/big")));
        assert_eq!(size.trim(), "3000000", "{extra:?}");
        // One thread per CPU queue, each on its own CPU: requests queue on the ring of
        // the caller's CPU, and a thread elsewhere costs a cross-CPU wake-up each.
        let cpus = ring_thread_cpus(pid);
        let mut single: Vec<u32> = cpus.iter().filter_map(|c| c.parse().ok()).collect();
        single.dedup();
        assert!(
            !cpus.is_empty() && single.len() == cpus.len(),
            "{extra:?}: ring threads may run on CPUs {cpus:?}, not one CPU each"
        );
        let done = ring_completions(pid) - before;
        assert!(
            done >= 300,
            "{extra:?}: only {done} requests completed on the server's io_uring rings"
        );
    }
}

#[test]
fn on_refuses_to_start_without_kernel_support() {
    let _one = PARAM.lock().unwrap_or_else(|e| e.into_inner());
    let _param = UringParam::set(false);
    let err = Mount::start(&["--io-uring", "on"]).err().expect("refused");
    assert!(err.contains("enable_uring"), "{err}");
    // `auto` falls back to /dev/fuse reads.
    let m = Mount::new(&["--io-uring", "auto"]);
    fs::write(m.mnt.join("f"), b"x").unwrap();
    assert_eq!(fs::read(m.src.join("f")).unwrap(), b"x");
    assert_eq!(ring_completions(m.pid().expect("pid").as_raw()), 0);
}
