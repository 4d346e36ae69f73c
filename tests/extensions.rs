//! Operations newer than fuse-backend-rs's protocol 7.33, served by the protocol core
//! through real mounts: copy_file_range (a host copy, so xfs shares extents), O_TMPFILE
//! with a later linkat, and statx's birth time. The first two also through fuse-pipe
//! (`ownfs serve` + `ownfs client`), which carries every opcode the kernel sends.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::*;

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
}

/// An xfs filesystem (reflinks on) on a loop image, mounted on `dir`.
fn mount_xfs(image: &Path, dir: &Path) {
    let f = fs::File::create(image).expect("image");
    f.set_len(300 << 20).expect("size image");
    ok(Command::new("mkfs.xfs")
        .args(["-q", "-m", "reflink=1"])
        .arg(image));
    ok(Command::new("mount")
        .args(["-o", "loop"])
        .arg(image)
        .arg(dir));
}

/// The extent flags filefrag reports for `p` on the host.
fn host_extents(p: &Path) -> String {
    ok(Command::new("filefrag").arg("-v").arg(p))
}

/// copy_file_range(2) on `mnt` of a 4 MiB file: the host's copy shares extents on xfs.
fn reflink_copy(mnt: &Path, src: &Path) {
    let data = pattern(4 << 20);
    fs::write(mnt.join("a"), &data).unwrap();
    // xfs_io's copy_range is copy_file_range(2) on the mount, nothing else.
    ok(Command::new("xfs_io")
        .arg("-f")
        .arg("-c")
        .arg(format!(
            "copy_range -s 0 -d 0 -l {} {}",
            data.len(),
            mnt.join("a").display()
        ))
        .arg(mnt.join("b")));
    assert_eq!(
        fs::read(mnt.join("b")).unwrap(),
        data,
        "copy through the mount"
    );
    assert_eq!(fs::read(src.join("b")).unwrap(), data, "copy on the host");
    // A copy the kernel made by reading and writing would own its blocks; the host's
    // copy_file_range on one xfs shares them.
    let extents = host_extents(&src.join("b"));
    assert!(
        extents.contains("shared"),
        "SRC/b shares no extents with SRC/a:\n{extents}"
    );
}

#[test]
fn copy_file_range_through_the_mount_reflinks_on_xfs() {
    let scratch = Scratch::new("ext-xfs");
    let image = scratch.path("xfs.img");
    let m = Mount::start_with(&[], |src| mount_xfs(&image, src)).unwrap_or_else(|e| panic!("{e}"));
    reflink_copy(&m.mnt, &m.src);
}

#[test]
fn copy_file_range_through_the_pipe_reflinks_on_xfs() {
    let scratch = Scratch::new("ext-pipe-xfs");
    let image = scratch.path("xfs.img");
    let p = Pipe::start_with(&[], &[], |src| mount_xfs(&image, src));
    reflink_copy(&p.mnt, &p.src);
}

#[test]
fn copy_file_range_copies_between_files_on_any_host_filesystem() {
    let m = Mount::new(&[]);
    let data = pattern(300_000);
    fs::write(m.mnt.join("a"), &data).unwrap();
    // Part of a into the middle of an existing b.
    fs::write(m.mnt.join("b"), vec![b'x'; 1000]).unwrap();
    ok(Command::new("xfs_io")
        .arg("-c")
        .arg(format!(
            "copy_range -s 100 -d 500 -l 200000 {}",
            m.mnt.join("a").display()
        ))
        .arg(m.mnt.join("b")));
    let mut want = vec![b'x'; 500];
    want.extend_from_slice(&data[100..200_100]);
    assert_eq!(fs::read(m.src.join("b")).unwrap(), want);
    assert_eq!(fs::metadata(m.mnt.join("b")).unwrap().len(), 200_500);
}

/// Opens an unnamed file in argv[1], writes to it, then names it argv[2].
/// os.link would link the /proc symlink itself; linkat(AT_SYMLINK_FOLLOW) is the
/// documented way to name an O_TMPFILE file.
const TMPFILE_SCRIPT: &str = r#"
import ctypes, os, sys
fd = os.open(sys.argv[1], os.O_TMPFILE | os.O_RDWR, 0o640)
os.write(fd, b'unnamed until linked')
assert not os.listdir(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, AT_SYMLINK_FOLLOW = -100, 0x400
src = ('/proc/self/fd/%d' % fd).encode()
if libc.linkat(AT_FDCWD, src, AT_FDCWD, sys.argv[2].encode(), AT_SYMLINK_FOLLOW):
    sys.exit('linkat: ' + os.strerror(ctypes.get_errno()))
os.close(fd)
"#;

/// An O_TMPFILE file made in `mnt`/d by uid 4242, then named by linkat: `host_owner`
/// owns it on the host.
fn tmpfile_then_linkat(mnt: &Path, src: &Path, host_owner: (u32, u32), what: &str) {
    fs::create_dir(mnt.join("d")).unwrap();
    chmod(&mnt.join("d"), 0o777);
    ok(Caller::new(4242, 4343)
        .command("python3")
        .arg("-c")
        .arg(TMPFILE_SCRIPT)
        .arg(mnt.join("d"))
        .arg(mnt.join("d/named")));
    for (p, owner) in [
        (mnt.join("d/named"), (4242, 4343)),
        (src.join("d/named"), host_owner),
    ] {
        let what = format!("{} ({what})", p.display());
        assert_eq!(fs::read(&p).unwrap(), b"unnamed until linked", "{what}");
        let md = fs::metadata(&p).unwrap();
        assert_eq!(
            (md.uid(), md.gid(), md.nlink()),
            (owner.0, owner.1, 1),
            "{what}"
        );
    }
    let md = fs::metadata(mnt.join("d/named")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o640, "mode through the mount ({what})");
}

#[test]
fn o_tmpfile_then_linkat_through_the_mount() {
    // Root: the host file belongs to the caller. Rootless: the host file is the
    // server's and the caller's ownership is the virtual one the mount shows.
    for (extra, host_owner) in [(&[][..], (4242, 4343)), (&["--rootless"][..], (0, 0))] {
        let m = Mount::new(extra);
        tmpfile_then_linkat(&m.mnt, &m.src, host_owner, &format!("{extra:?}"));
    }
}

#[test]
fn o_tmpfile_then_linkat_through_the_pipe() {
    for (extra, host_owner) in [(&[][..], (4242, 4343)), (&["--rootless"][..], (0, 0))] {
        let p = Pipe::start(extra, &[]);
        tmpfile_then_linkat(&p.mnt, &p.src, host_owner, &format!("pipe {extra:?}"));
    }
}

#[test]
fn statx_shows_the_birth_time() {
    let m = Mount::new(&[]);
    fs::write(m.mnt.join("f"), b"x").unwrap();
    let birth = |p: &Path| ok(Command::new("stat").args(["-c", "%W"]).arg(p));
    let host = birth(&m.src.join("f"));
    assert_ne!(
        host.trim(),
        "0",
        "the host filesystem of SRC records no birth time"
    );
    assert_eq!(
        birth(&m.mnt.join("f")),
        host,
        "birth time through the mount"
    );
}
