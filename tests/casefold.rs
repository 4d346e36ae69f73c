//! Case-insensitive host directories: a Linux client must see `A` and `a` as two
//! names. An ext4 image with the casefold feature is loop-mounted inside SRC, one
//! directory in it gets `chattr +F`, and what stat, ls, open, rename and unlink see
//! through the ownfs mount is checked, next to a directory of the same volume that
//! does not fold case.
//!
//! Needs a kernel with ext4 casefold (CONFIG_UNICODE, /sys/fs/ext4/features/casefold);
//! on one without it there is nothing to mount: the test is `#[ignore]`d and
//! scripts/test.sh runs it only where the kernel has casefold, saying so loudly otherwise.

mod common;

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The loop-mounted casefold volume; lazily unmounted (ownfs may still hold it) and
/// its image removed when the test ends, panics included.
struct Volume {
    at: PathBuf,
    image: PathBuf,
}

impl Volume {
    fn mount(at: &Path) -> Volume {
        let image = PathBuf::from(format!("/tmp/ownfs-it-casefold-{}.img", std::process::id()));
        let img = image.to_str().unwrap().to_string();
        let img = img.as_str();
        run("truncate", &["-s", "32M", img]);
        run("mkfs.ext4", &["-q", "-F", "-O", "casefold", img]);
        fs::create_dir_all(at).unwrap();
        let v = Volume {
            at: at.to_path_buf(),
            image,
        };
        run("mount", &["-o", "loop", img, at.to_str().unwrap()]);
        v
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
        let _ = fs::remove_file(&self.image);
    }
}

fn kind(r: std::io::Result<impl Sized>) -> Option<ErrorKind> {
    r.err().map(|e| e.kind())
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Mounts ownfs with `extra` on a SRC holding the casefold volume (mounted first: a
/// sandboxed server sees only the mounts that exist when it starts), the volume's root
/// given to `owner`, and runs the checks.
fn check_casefold(extra: &[&str], owner: Option<u32>) {
    assert!(
        Path::new("/sys/fs/ext4/features/casefold").exists(),
        "this kernel has no ext4 casefold support (CONFIG_UNICODE)"
    );
    let mut vol = None;
    let m = Mount::start_with(extra, |src| {
        let v = Volume::mount(&src.join("vol"));
        if let Some(id) = owner {
            std::os::unix::fs::chown(src, Some(id), Some(id)).unwrap();
            std::os::unix::fs::chown(&v.at, Some(id), Some(id)).unwrap();
        }
        vol = Some(v);
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let _vol = vol;
    let host = m.src.join("vol/fold");
    fs::create_dir(&host).unwrap();
    run("chattr", &["+F", host.to_str().unwrap()]);
    fs::write(host.join("Upper"), b"upper").unwrap();
    fs::create_dir(m.src.join("vol/plain")).unwrap();
    if let Some(id) = owner {
        for p in [host.clone(), host.join("Upper"), m.src.join("vol/plain")] {
            std::os::unix::fs::chown(&p, Some(id), Some(id)).unwrap();
        }
    }

    let fold = m.mnt.join("vol/fold");
    // Only the stored spelling exists.
    assert_eq!(fs::read(fold.join("Upper")).unwrap(), b"upper");
    assert_eq!(
        kind(fs::metadata(fold.join("upper"))),
        Some(ErrorKind::NotFound)
    );
    assert_eq!(
        kind(fs::File::open(fold.join("UPPER"))),
        Some(ErrorKind::NotFound)
    );
    assert_eq!(names(&fold), ["Upper"]);

    // Creating another spelling fails instead of opening (and truncating) Upper.
    assert_eq!(
        kind(fs::write(fold.join("upper"), b"x")),
        Some(ErrorKind::AlreadyExists)
    );
    assert_eq!(
        kind(fs::create_dir(fold.join("UPPER"))),
        Some(ErrorKind::AlreadyExists)
    );
    assert_eq!(
        kind(std::os::unix::fs::symlink("t", fold.join("uPPER"))),
        Some(ErrorKind::AlreadyExists)
    );
    fs::write(fold.join("other"), b"other").unwrap();
    assert_eq!(
        kind(fs::hard_link(fold.join("other"), fold.join("upPer"))),
        Some(ErrorKind::AlreadyExists)
    );
    assert_eq!(
        kind(fs::rename(fold.join("other"), fold.join("UpPeR"))),
        Some(ErrorKind::AlreadyExists)
    );
    assert_eq!(
        kind(fs::remove_file(fold.join("upper"))),
        Some(ErrorKind::NotFound)
    );
    assert_eq!(fs::read(host.join("Upper")).unwrap(), b"upper");
    assert_eq!(names(&fold), ["Upper", "other"]);

    // Changing the case of one entry is a rename of that entry.
    fs::rename(fold.join("other"), fold.join("Other")).unwrap();
    assert_eq!(names(&fold), ["Other", "Upper"]);

    // A directory without +F on the same volume keeps both names.
    let plain = m.mnt.join("vol/plain");
    fs::write(plain.join("a"), b"1").unwrap();
    fs::write(plain.join("A"), b"2").unwrap();
    assert_eq!(names(&plain), ["A", "a"]);
    assert_eq!(fs::read(plain.join("a")).unwrap(), b"1");
}

// Ignored so that a kernel without casefold shows it as not run rather than passed;
// scripts/test.sh runs them with --ignored where /sys/fs/ext4/features/casefold exists,
// and the VM harness in its guest, whose kernel has it.
#[test]
#[ignore = "needs ext4 casefold (CONFIG_UNICODE); scripts/test.sh runs it where the kernel has it"]
fn case_insensitive_directories_keep_names_distinct() {
    check_casefold(&[], None);
}

#[test]
#[ignore = "needs ext4 casefold (CONFIG_UNICODE); scripts/test.sh runs it where the kernel has it"]
fn case_insensitive_directories_keep_names_distinct_rootless() {
    check_casefold(&["--run-as", "4201:4201"], Some(4201));
}
