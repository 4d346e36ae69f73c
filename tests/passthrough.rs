//! Kernel passthrough (FUSE_PASSTHROUGH, Linux 6.9+) through real mounts.
//!
//! Proof that the kernel does the I/O itself: with the server stopped (SIGSTOP), reads of
//! an already open file still complete. Without passthrough they would wait for the
//! server. (Writes are not part of that check: before a write the kernel may ask the
//! server whether the file carries privileges to drop, whenever its attributes expired.) The fallbacks (`--no-passthrough`,
//! rootless) must keep reads and writes correct.

mod common;

use std::fs;
use std::os::unix::fs::{chown, FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

/// Generous bound for I/O that must not need the server at all.
const NO_SERVER_TIMEOUT: Duration = Duration::from_secs(20);

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Writes through the mount, reads back through the mount and the host.
fn roundtrip(m: &Mount) {
    let data = pattern(3 << 20, 7);
    let through = m.mnt.join("roundtrip");
    fs::write(&through, &data).expect("write through the mount");
    assert_eq!(fs::read(&through).expect("read through the mount"), data);
    assert_eq!(fs::read(m.src.join("roundtrip")).expect("read host"), data);

    // Appends and partial overwrites through one open file.
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&through)
        .expect("open rw");
    f.write_all_at(b"overwritten", 1000).expect("pwrite");
    let mut buf = [0u8; 11];
    f.read_exact_at(&mut buf, 1000).expect("pread");
    assert_eq!(&buf, b"overwritten");
    drop(f);
    let host = fs::read(m.src.join("roundtrip")).expect("read host");
    assert_eq!(&host[1000..1011], b"overwritten");
    assert_eq!(host.len(), data.len());
}

#[test]
fn reads_of_open_files_do_not_reach_the_server() {
    let m = Mount::new(&[]);
    let host_data = pattern(1 << 20, 3);
    fs::write(m.src.join("f"), &host_data).expect("host write");
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.mnt.join("f"))
        .expect("open through the mount");
    m.signal(Signal::SIGSTOP);
    let (done, result) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        let read = f.read_exact_at(&mut buf, 512 * 1024).map(|_| buf);
        let _ = done.send(read);
        f // closing sends FLUSH to the server: not part of the check
    });
    let outcome = result.recv_timeout(NO_SERVER_TIMEOUT);
    m.signal(Signal::SIGCONT);
    let f = worker.join().expect("I/O thread");
    drop(f);
    let read = outcome.unwrap_or_else(|_| {
        panic!("a read of an open file waited for the stopped server: no passthrough")
    });
    assert_eq!(
        read.expect("read"),
        host_data[512 * 1024..512 * 1024 + 4096]
    );
    assert!(m.is_mounted());
}

#[test]
fn opens_of_one_file_share_passthrough() {
    let m = Mount::new(&[]);
    let path = m.mnt.join("shared");
    let writer = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&path)
        .expect("create");
    let reader = fs::File::open(&path).expect("open for reading");
    writer.write_all_at(b"first", 0).expect("write");
    let mut buf = [0u8; 5];
    reader.read_exact_at(&mut buf, 0).expect("read");
    assert_eq!(&buf, b"first");
    let appender = fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open O_APPEND");
    use std::io::Write;
    (&appender).write_all(b"+appended").expect("append");
    drop((writer, reader, appender));
    assert_eq!(fs::read(m.src.join("shared")).unwrap(), b"first+appended");
    // Truncating open after all closed, then mmap-style readers (cp uses read; python mmaps).
    fs::write(&path, b"short").expect("truncating rewrite");
    assert_eq!(fs::read(&path).unwrap(), b"short");
    let out = output_timeout(
        std::process::Command::new("python3").arg("-c").arg(format!(
            "import mmap,sys\nf=open({:?},'rb')\nm=mmap.mmap(f.fileno(),0,prot=mmap.PROT_READ)\nsys.stdout.write(m[:].decode())",
            path.display().to_string()
        )),
        CHILD_TIMEOUT,
    );
    assert!(out.status.success(), "mmap read failed: {out:?}");
    assert_eq!(out.stdout, b"short");
    // The last close gives the backing id back; a sandboxed worker must still be allowed to.
    let log = m.stderr();
    assert!(
        !log.contains("closing backing id"),
        "backing ids were not released:\n{log}"
    );
}

#[test]
fn no_passthrough_still_reads_and_writes() {
    let m = Mount::new(&["--no-passthrough"]);
    roundtrip(&m);
}

#[test]
fn passthrough_reads_and_writes() {
    let m = Mount::new(&[]);
    roundtrip(&m);
}

#[test]
fn writeback_mount_falls_back_to_served_io() {
    let m = Mount::new(&["--writeback"]);
    roundtrip(&m);
}

#[test]
fn rootless_mount_falls_back_to_served_io() {
    let m = Mount::start_with(&["--run-as", "4100:4100"], |src: &Path| {
        chown(src, Some(4100), Some(4100)).expect("chown src")
    })
    .unwrap_or_else(|e| panic!("{e}"));
    roundtrip(&m);
}
