//! The server must never act on anything outside SRC.
//!
//! What a client can and cannot send:
//!
//! * Symlinks are followed by the *client's* kernel: it asks the server for
//!   the link text (READLINK) and resolves it itself, relative to the mount.
//!   Opening `MNT/link` where the link points at `/x` therefore opens the
//!   client's `/x`; that is the expected semantic. What must never happen is
//!   the *server* following a link: reporting a link as the thing it points
//!   to (LOOKUP/GETATTR with stat instead of lstat), or applying an operation
//!   meant for the link node (lchown, utimensat with AT_SYMLINK_NOFOLLOW,
//!   lsetxattr, link, rename, unlink) to its target.
//!   To tell the two apart, SRC and MNT have different parents
//!   (`base/s/src`, `base/m/mnt`) and the canary lives at `SRC/../canary`
//!   while `MNT/../canary` does not exist: a relative link `../canary` means
//!   the canary only when the server resolves it, and a missing path when the
//!   client does.
//! * `chmod` of a symlink never reaches a file system on current kernels
//!   (the VFS answers EOPNOTSUPP), so it is not tested.
//! * `..` is resolved by the client's VFS; at the mount root it leaves the
//!   mount, and the kernel does not send LOOKUP("..") for path walks.
//! * A name containing '/' cannot be sent at all: the kernel splits paths at
//!   '/' before anything reaches the file system, so it is not tested.
//! * Hard links and renames across the mount boundary are refused by the
//!   kernel with EXDEV; tested so that a change in how ownfs is mounted (e.g.
//!   a bind of the wrong tree) would show.

mod common;

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{lchown, symlink, MetadataExt};
use std::path::{Path, PathBuf};

use common::*;
use nix::fcntl::AtFlags;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::stat::{fstatat, utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use ownfs::platform;

const SECRET: &[u8] = b"canary secret\n";
const CANARY_MTIME: i64 = 1_000_000_000;

struct Fixture {
    m: Mount,
    canary: PathBuf,
    secret: PathBuf,
}

/// Snapshot of everything about the canary that a stray operation could
/// change.
#[derive(Debug, PartialEq)]
struct CanaryState {
    entries: Vec<String>,
    content: Vec<u8>,
    uid: u32,
    gid: u32,
    mode: u32,
    nlink: u64,
    mtime: (i64, i64),
    atime: (i64, i64),
    dir_uid: u32,
    dir_mode: u32,
    xattrs: Vec<u8>,
}

fn llistxattr(p: &Path) -> Vec<u8> {
    let mut buf = vec![0u8; 65536];
    let n = platform::llistxattr_path(&cstr(p), &mut buf)
        .unwrap_or_else(|e| panic!("llistxattr {}: {e}", p.display()));
    buf.truncate(n);
    buf
}

fn lgetxattr(p: &Path, name: &str) -> io::Result<Vec<u8>> {
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    let len = platform::lgetxattr_path(&cstr(p), &n, &mut buf)?;
    buf.truncate(len);
    Ok(buf)
}

fn lsetxattr(p: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let n = CString::new(name).unwrap();
    platform::lsetxattr_path(&cstr(p), &n, value, 0)
}

fn utimens_nofollow(p: &Path, atime: i64, mtime: i64) -> io::Result<()> {
    utimensat(
        None,
        p,
        &TimeSpec::new(atime, 0),
        &TimeSpec::new(mtime, 0),
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io::Error::from)
}

impl Fixture {
    fn new(extra: &[&str]) -> Fixture {
        let m = Mount::new(extra);
        let canary = m.scratch.dir("s/canary");
        let secret = canary.join("secret");
        fs::write(&secret, SECRET).unwrap();
        chmod(&secret, 0o640);
        utimens_nofollow(&secret, CANARY_MTIME, CANARY_MTIME).unwrap();
        assert_eq!(m.src.join("../canary").canonicalize().unwrap(), canary);
        assert!(
            fs::symlink_metadata(m.mnt.join("../canary")).is_err(),
            "fixture: MNT/../canary must not exist"
        );

        // Links in SRC, made on the host.
        symlink("../canary", m.src.join("rel_dir")).unwrap();
        symlink("../canary/secret", m.src.join("rel_file")).unwrap();
        symlink(&canary, m.src.join("abs_dir")).unwrap();
        symlink(&secret, m.src.join("abs_file")).unwrap();
        fs::create_dir(m.src.join("sub")).unwrap();
        chmod(&m.src.join("sub"), 0o755);
        symlink("../../canary/secret", m.src.join("sub/rel_up2")).unwrap();
        Fixture { m, canary, secret }
    }

    fn canary_state(&self) -> CanaryState {
        let mut entries: Vec<String> = fs::read_dir(&self.canary)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        entries.sort();
        // Read first: the read may update atime once (relatime), the stat
        // below then sees a stable value.
        let content = fs::read(&self.secret).unwrap();
        let md = fs::symlink_metadata(&self.secret).unwrap();
        let dmd = fs::symlink_metadata(&self.canary).unwrap();
        CanaryState {
            entries,
            content,
            uid: md.uid(),
            gid: md.gid(),
            mode: md.mode(),
            nlink: md.nlink(),
            mtime: (md.mtime(), md.mtime_nsec()),
            atime: (md.atime(), md.atime_nsec()),
            dir_uid: dmd.uid(),
            dir_mode: dmd.mode(),
            xattrs: llistxattr(&self.secret),
        }
    }

    fn initial_state(&self) -> CanaryState {
        let s = self.canary_state();
        assert_eq!(s.entries, ["secret"]);
        assert_eq!(s.content, SECRET);
        assert_eq!((s.uid, s.gid, s.mode & 0o7777, s.nlink), (0, 0, 0o640, 1));
        assert_eq!(s.mtime, (CANARY_MTIME, 0));
        s
    }
}

const LINKS: [(&str, &str); 5] = [
    ("rel_dir", "../canary"),
    ("rel_file", "../canary/secret"),
    ("abs_dir", ""),
    ("abs_file", ""),
    ("sub/rel_up2", "../../canary/secret"),
];

fn link_target(f: &Fixture, name: &str, rel: &str) -> PathBuf {
    match name {
        "abs_dir" => f.canary.clone(),
        "abs_file" => f.secret.clone(),
        _ => PathBuf::from(rel),
    }
}

/// LOOKUP/GETATTR/READDIR must describe the link itself, never its target,
/// and READLINK must return the stored text unchanged.
#[test]
fn links_to_outside_are_reported_as_links() {
    let f = Fixture::new(&[]);
    let before = f.initial_state();
    let canary_ino = fs::metadata(&f.canary).unwrap().ino();
    let secret_ino = fs::metadata(&f.secret).unwrap().ino();
    for (name, rel) in LINKS {
        let p = f.m.mnt.join(name);
        let md = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("lstat MNT/{name}: {e}"));
        assert!(
            md.file_type().is_symlink(),
            "MNT/{name} must be a symlink, got {:?}",
            md.file_type()
        );
        let host = fs::symlink_metadata(f.m.src.join(name)).unwrap();
        assert_eq!(
            md.ino(),
            host.ino(),
            "inode number of MNT/{name} vs SRC/{name}"
        );
        assert_ne!(
            md.ino(),
            canary_ino,
            "MNT/{name} reports the canary dir's inode"
        );
        assert_ne!(
            md.ino(),
            secret_ino,
            "MNT/{name} reports the canary file's inode"
        );
        assert_eq!(md.len(), host.len(), "size of link MNT/{name}");
        assert_eq!(
            fs::read_link(&p).unwrap_or_else(|e| panic!("readlink MNT/{name}: {e}")),
            link_target(&f, name, rel),
            "readlink MNT/{name}"
        );
    }
    for dir in ["", "sub"] {
        for e in fs::read_dir(f.m.mnt.join(dir)).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "sub" {
                assert!(e.file_type().unwrap().is_dir());
            } else {
                assert!(
                    e.file_type().unwrap().is_symlink(),
                    "readdir type of {dir}/{name}: {:?}",
                    e.file_type().unwrap()
                );
            }
        }
    }
    assert_eq!(f.canary_state(), before);
}

/// A relative link to `../canary` resolves (on the client) to `MNT/../canary`,
/// which does not exist. Any success means the server resolved it.
#[test]
fn relative_links_do_not_reach_outside() {
    let f = Fixture::new(&[]);
    let before = f.initial_state();
    let mnt = &f.m.mnt;
    for name in ["rel_file", "sub/rel_up2"] {
        assert_errno(
            fs::read(mnt.join(name)),
            libc::ENOENT,
            &format!("read MNT/{name}"),
        );
        assert_errno(
            fs::metadata(mnt.join(name)),
            libc::ENOENT,
            &format!("stat MNT/{name}"),
        );
        assert_errno(
            fs::OpenOptions::new().append(true).open(mnt.join(name)),
            libc::ENOENT,
            &format!("open MNT/{name} for append"),
        );
    }
    assert_errno(
        fs::read_dir(mnt.join("rel_dir")),
        libc::ENOENT,
        "readdir MNT/rel_dir",
    );
    assert_errno(
        fs::read(mnt.join("rel_dir/secret")),
        libc::ENOENT,
        "read MNT/rel_dir/secret",
    );
    assert_errno(
        fs::symlink_metadata(mnt.join("rel_dir/secret")),
        libc::ENOENT,
        "lstat MNT/rel_dir/secret",
    );
    assert_errno(
        fs::File::create(mnt.join("rel_dir/new")),
        libc::ENOENT,
        "create MNT/rel_dir/new",
    );
    assert_errno(
        fs::create_dir(mnt.join("rel_dir/newdir")),
        libc::ENOENT,
        "mkdir MNT/rel_dir/newdir",
    );
    assert_eq!(f.canary_state(), before);
    assert!(
        fs::symlink_metadata(f.m.scratch.path("m/canary")).is_err(),
        "nothing may be created at the client-side target either"
    );
}

/// Operations on the link node must change the link (in SRC) and never the
/// canary it points to.
#[test]
fn operations_on_link_node_leave_target_alone() {
    let f = Fixture::new(&[]);
    let before = f.initial_state();
    let (mnt, src) = (&f.m.mnt, &f.m.src);

    // lchown
    for (i, name) in ["abs_file", "rel_file", "abs_dir", "rel_dir"]
        .iter()
        .enumerate()
    {
        let id = 424_600 + i as u32;
        lchown(mnt.join(name), Some(id), Some(id))
            .unwrap_or_else(|e| panic!("lchown MNT/{name}: {e}"));
        assert_eq!(owner(&src.join(name)), (id, id), "owner of link SRC/{name}");
        assert_eq!(owner(&mnt.join(name)), (id, id), "owner of link MNT/{name}");
        assert_eq!(f.canary_state(), before, "canary after lchown MNT/{name}");
    }

    // utimensat(AT_SYMLINK_NOFOLLOW)
    for (i, name) in ["abs_file", "rel_file", "sub/rel_up2"].iter().enumerate() {
        let t = 1_200_000_000 + i as i64 * 1000;
        utimens_nofollow(&mnt.join(name), t, t + 1)
            .unwrap_or_else(|e| panic!("utimensat(NOFOLLOW) MNT/{name}: {e}"));
        let host = fs::symlink_metadata(src.join(name)).unwrap();
        assert_eq!(
            (host.atime(), host.mtime()),
            (t, t + 1),
            "times of link SRC/{name}"
        );
        assert_eq!(
            f.canary_state(),
            before,
            "canary after utimensat MNT/{name}"
        );
    }

    // lsetxattr: user.* is not allowed on symlinks; trusted.* is for root.
    // Whether ownfs supports it or not, the canary must not get it.
    for name in ["abs_file", "rel_file"] {
        let key = format!("trusted.ownfs-it-{}", name.replace('/', "-"));
        let r = lsetxattr(&mnt.join(name), &key, b"x");
        assert_eq!(
            f.canary_state(),
            before,
            "canary after lsetxattr MNT/{name}: {r:?}"
        );
        if r.is_ok() {
            assert_eq!(
                lgetxattr(&src.join(name), &key).expect("xattr set on the link in SRC"),
                b"x"
            );
        }
        assert_errno(
            lgetxattr(&f.secret, &key),
            libc::ENODATA,
            "xattr on the canary",
        );
    }

    // link(2) does not follow: the new name must be the symlink itself.
    fs::hard_link(mnt.join("rel_file"), mnt.join("hl"))
        .expect("hard link of a symlink inside the mount");
    let hl = fs::symlink_metadata(src.join("hl")).unwrap();
    assert!(
        hl.file_type().is_symlink(),
        "SRC/hl must be the symlink, got {:?}",
        hl.file_type()
    );
    assert_eq!(
        hl.ino(),
        fs::symlink_metadata(src.join("rel_file")).unwrap().ino()
    );
    assert_eq!(
        f.canary_state(),
        before,
        "canary after link (nlink must stay 1)"
    );

    // rename moves the link, not the target.
    fs::rename(mnt.join("rel_file"), mnt.join("rel_file2")).expect("rename link");
    assert_eq!(
        fs::read_link(src.join("rel_file2")).unwrap(),
        Path::new("../canary/secret")
    );
    assert!(fs::symlink_metadata(src.join("rel_file")).is_err());
    fs::rename(mnt.join("abs_dir"), mnt.join("sub/abs_dir")).expect("rename dir link");
    assert!(fs::symlink_metadata(src.join("sub/abs_dir"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(f.canary_state(), before, "canary after rename");

    // unlink removes the link, not the target.
    for name in ["abs_file", "rel_file2", "sub/rel_up2", "hl"] {
        fs::remove_file(mnt.join(name)).unwrap_or_else(|e| panic!("unlink MNT/{name}: {e}"));
        assert!(
            fs::symlink_metadata(src.join(name)).is_err(),
            "SRC/{name} gone"
        );
    }
    // rmdir of a link to a directory is ENOTDIR and must not touch the target.
    assert_errno(
        fs::remove_dir(mnt.join("sub/abs_dir")),
        libc::ENOTDIR,
        "rmdir MNT/sub/abs_dir",
    );
    assert_eq!(f.canary_state(), before, "canary after unlink/rmdir");
}

/// Creating links through the mount stores the text verbatim and creates
/// nothing anywhere else.
#[test]
fn new_symlinks_are_stored_verbatim() {
    let f = Fixture::new(&[]);
    let before = f.initial_state();
    let targets = [
        "../canary/secret",
        "../../../../../../../../etc/passwd",
        "/etc/shadow",
        "a/../../b",
        "dangling",
    ];
    for (i, t) in targets.iter().enumerate() {
        let name = format!("new{i}");
        symlink(t, f.m.mnt.join(&name)).unwrap_or_else(|e| panic!("symlink {t}: {e}"));
        assert_eq!(fs::read_link(f.m.src.join(&name)).unwrap(), Path::new(t));
        assert_eq!(fs::read_link(f.m.mnt.join(&name)).unwrap(), Path::new(t));
        assert!(fs::symlink_metadata(f.m.src.join(&name))
            .unwrap()
            .file_type()
            .is_symlink());
    }
    assert_eq!(f.canary_state(), before);
}

/// `..` at the root is the client's business: it leaves the mount for the
/// mount point's parent, never SRC's parent, and the root lists SRC only.
#[test]
fn dotdot_and_root_listing() {
    let f = Fixture::new(&[]);
    let mnt_parent = fs::metadata(f.m.scratch.path("m")).unwrap();
    let src_parent = fs::metadata(f.m.scratch.path("s")).unwrap();
    for p in ["..", "sub/../..", "sub/../../mnt/.."] {
        let md = fs::metadata(f.m.mnt.join(p)).unwrap();
        assert_eq!(
            (md.dev(), md.ino()),
            (mnt_parent.dev(), mnt_parent.ino()),
            "MNT/{p}"
        );
        assert_ne!(
            (md.dev(), md.ino()),
            (src_parent.dev(), src_parent.ino()),
            "MNT/{p}"
        );
    }
    let root = fs::metadata(&f.m.mnt).unwrap();
    assert_eq!(
        root.ino(),
        fs::metadata(&f.m.src).unwrap().ino(),
        "the mount root is SRC"
    );
    let sub_dotdot = fs::metadata(f.m.mnt.join("sub/..")).unwrap();
    assert_eq!(
        (sub_dotdot.dev(), sub_dotdot.ino()),
        (root.dev(), root.ino())
    );

    let list = |p: &Path| {
        let mut v: Vec<Vec<u8>> = fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().as_bytes().to_vec())
            .collect();
        v.sort();
        v
    };
    assert_eq!(list(&f.m.mnt), list(&f.m.src));
    assert_eq!(list(&f.m.mnt.join("sub")), list(&f.m.src.join("sub")));
}

/// Hard links work inside the mount; across the boundary they (and renames)
/// are refused with EXDEV and nothing is created.
#[test]
fn hard_links_and_renames_stay_inside() {
    let f = Fixture::new(&[]);
    let before = f.initial_state();
    let (mnt, src) = (&f.m.mnt, &f.m.src);
    fs::write(mnt.join("a"), b"aaa").unwrap();
    fs::hard_link(mnt.join("a"), mnt.join("b")).expect("link MNT/a MNT/b");
    let (a, b) = (
        fs::metadata(src.join("a")).unwrap(),
        fs::metadata(src.join("b")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino(), "SRC/a and SRC/b are one inode");
    assert_eq!(a.nlink(), 2);
    assert_eq!(
        fs::metadata(mnt.join("a")).unwrap().nlink(),
        2,
        "nlink via mount"
    );
    assert_eq!(fs::read(mnt.join("b")).unwrap(), b"aaa");

    let outside = f.m.scratch.path("m/outside");
    assert_errno(
        fs::hard_link(mnt.join("a"), &outside),
        libc::EXDEV,
        "link MNT/a -> outside",
    );
    assert_errno(
        fs::hard_link(&f.secret, mnt.join("c")),
        libc::EXDEV,
        "link canary -> MNT/c",
    );
    assert_errno(
        fs::rename(mnt.join("a"), &outside),
        libc::EXDEV,
        "rename MNT/a -> outside",
    );
    assert_errno(
        fs::rename(&f.secret, mnt.join("c")),
        libc::EXDEV,
        "rename canary -> MNT/c",
    );
    assert!(fs::symlink_metadata(&outside).is_err());
    assert!(fs::symlink_metadata(src.join("c")).is_err());
    assert_eq!(f.canary_state(), before);
}

// ---------------------------------------------------------------------------
// File handles: the one way a client makes the kernel send LOOKUP("..")
// ---------------------------------------------------------------------------

/// A file handle (name_to_handle_at) of the inode at `p`, not following a final symlink.
struct Handle(platform::FileHandle);

impl Handle {
    fn of(p: &Path) -> io::Result<Handle> {
        // An O_PATH descriptor names the inode without opening it on the mount.
        let fd = platform::open_path(&cstr(p), libc::O_PATH | libc::O_NOFOLLOW)?;
        Ok(Handle(platform::file_handle(fd.as_fd())?))
    }

    fn open(&self, mount_fd: &fs::File, flags: i32) -> io::Result<fs::File> {
        platform::open_file_handle(mount_fd.as_fd(), &self.0, flags).map(fs::File::from)
    }
}

/// Evicts unused dentries and inodes system-wide. No sync(2): it would wait
/// on every other mount, including hung FUSE servers of failing tests.
fn drop_caches() {
    fs::write("/proc/sys/vm/drop_caches", b"2").expect("drop dentry and inode caches");
}

/// Opening a directory by handle after its dentries were evicted makes the
/// kernel rebuild the path with LOOKUP("..") requests. Each answer must stay
/// inside SRC: the reconnected directory must sit at MNT/a/b/c, its `..`
/// chain must end at the mount root, and nothing outside may be touched.
#[test]
fn file_handles_reconnect_inside_src() {
    use std::os::fd::AsRawFd;
    let f = Fixture::new(&[]);
    let before = f.initial_state();
    let (mnt, src) = (&f.m.mnt, &f.m.src);
    fs::create_dir_all(mnt.join("a/b/c")).unwrap();
    fs::write(mnt.join("a/b/c/file"), b"inside").unwrap();

    let hc = match Handle::of(&mnt.join("a/b/c")) {
        Ok(h) => h,
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
            eprintln!("file handles not supported by this mount; nothing to check");
            return;
        }
        Err(e) => panic!("name_to_handle_at MNT/a/b/c: {e}"),
    };
    let hfile = Handle::of(&mnt.join("a/b/c/file")).expect("name_to_handle_at file");
    let mount_fd = fs::File::open(mnt).unwrap();

    // An inotify watch pins the inode of c but not its dentry: after the
    // caches are dropped the server still knows c, the kernel no longer
    // knows where c is, and opening the handle makes it ask the server for
    // "..", one level at a time, until it reaches the root.
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC).expect("inotify_init1");
    inotify
        .add_watch(&mnt.join("a/b/c"), AddWatchFlags::IN_ATTRIB)
        .expect("inotify_add_watch");

    for round in 0..3 {
        drop_caches();
        match hc.open(&mount_fd, libc::O_RDONLY | libc::O_DIRECTORY) {
            Ok(dir) => {
                let md = dir.metadata().unwrap();
                assert_eq!(md.ino(), fs::metadata(src.join("a/b/c")).unwrap().ino());
                let path = fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd())).unwrap();
                assert_eq!(path, mnt.join("a/b/c"), "round {round}: reconnected path");
                let up = |rel: &str| {
                    let st = fstatat(Some(dir.as_raw_fd()), rel, AtFlags::empty())
                        .unwrap_or_else(|e| panic!("fstatat(c, {rel}): {e}"));
                    (st.st_dev, st.st_ino)
                };
                let ino = |p: PathBuf| {
                    let m = fs::metadata(p).unwrap();
                    (m.dev(), m.ino())
                };
                let mnt_dev = fs::metadata(mnt).unwrap().dev();
                assert_eq!(up(".."), (mnt_dev, ino(src.join("a/b")).1));
                assert_eq!(
                    up("../../.."),
                    (mnt_dev, ino(src.clone()).1),
                    "c/../../.. is the root"
                );
                assert_eq!(
                    up("../../../.."),
                    ino(f.m.scratch.path("m")),
                    "one more leaves the mount"
                );
            }
            Err(e) => panic!("round {round}: open_by_handle_at(MNT/a/b/c) with c pinned: {e}"),
        }
        match hfile.open(&mount_fd, libc::O_RDONLY) {
            Ok(mut file) => {
                let mut s = Vec::new();
                io::Read::read_to_end(&mut file, &mut s).unwrap();
                assert_eq!(s, b"inside", "round {round}: content by handle");
            }
            Err(e) => assert_eq!(
                e.raw_os_error(),
                Some(libc::ESTALE),
                "round {round}: open_by_handle_at(file) may only fail with ESTALE: {e}"
            ),
        }
        assert_eq!(f.canary_state(), before, "round {round}: canary");
    }
}

// ---------------------------------------------------------------------------
// The host changes SRC under the server's feet
// ---------------------------------------------------------------------------

fn at_create(dir: &fs::File, name: &str) -> io::Result<()> {
    let c = CString::new(name).unwrap();
    let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY;
    platform::openat(dir.as_fd(), &c, flags, 0o644).map(drop)
}

fn at_mkdir(dir: &fs::File, name: &str) -> io::Result<()> {
    let c = CString::new(name).unwrap();
    platform::mkdirat(dir.as_fd(), &c, 0o755)
}

fn at_symlink(dir: &fs::File, target: &str, name: &str) -> io::Result<()> {
    let t = CString::new(target).unwrap();
    let c = CString::new(name).unwrap();
    platform::symlinkat(&t, dir.as_fd(), &c)
}

/// A directory the client holds open is renamed on the host and its old name
/// replaced by a symlink to the canary. Requests for the open directory must
/// keep going to the directory itself (now `d.old`), never through the new
/// symlink — a server that remembers paths instead of inodes would write
/// into the canary.
fn host_swap_to_symlink(extra: &[&str]) {
    let f = Fixture::new(extra);
    let before = f.initial_state();
    let (mnt, src) = (&f.m.mnt, &f.m.src);
    for (name, target) in [
        ("d", "../canary".to_string()),
        ("e", f.canary.display().to_string()),
    ] {
        fs::create_dir(mnt.join(name)).unwrap();
        at_create(&fs::File::open(mnt.join(name)).unwrap(), "warmup").unwrap();
        let dir = fs::File::open(mnt.join(name)).unwrap();

        let old = format!("{name}.old");
        fs::rename(src.join(name), src.join(&old)).unwrap();
        symlink(&target, src.join(name)).unwrap();

        let results = [
            ("create x", at_create(&dir, "x")),
            ("mkdir y", at_mkdir(&dir, "y")),
            ("symlink z", at_symlink(&dir, "t", "z")),
        ];
        // The canary first: an escape matters more than a failed request.
        assert_eq!(
            f.canary_state(),
            before,
            "canary after requests on swapped MNT/{name}: {results:?}"
        );
        for (what, r) in results {
            r.unwrap_or_else(|e| panic!("{what} in the open MNT/{name}: {e}"));
        }
        for n in ["warmup", "x", "y", "z"] {
            assert!(
                fs::symlink_metadata(src.join(&old).join(n)).is_ok(),
                "{n} must be in SRC/{old}"
            );
        }
        let mut listed: Vec<String> = fs::read_dir(format!("/proc/self/fd/{}", {
            use std::os::fd::AsRawFd;
            dir.as_raw_fd()
        }))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
        listed.sort();
        assert_eq!(
            listed,
            ["warmup", "x", "y", "z"],
            "listing the open MNT/{name}"
        );

        // By path, the client may see the old dentry or the new link. With
        // the absolute link the client itself may legitimately follow it to
        // the canary (same host), so only the relative one is checked: its
        // client-side target, MNT/../canary, does not exist.
        if name == "e" {
            continue;
        }
        let r = fs::write(mnt.join(name).join("by-path"), b"p");
        assert_eq!(
            f.canary_state(),
            before,
            "canary after write to MNT/{name}/by-path: {r:?}"
        );
        if r.is_ok() {
            assert!(
                fs::symlink_metadata(src.join(&old).join("by-path")).is_ok(),
                "MNT/{name}/by-path succeeded, so it must be in SRC/{old}"
            );
        }
    }
}

#[test]
fn host_swap_to_symlink_default_cache() {
    host_swap_to_symlink(&[]);
}

#[test]
fn host_swap_to_symlink_cache_always() {
    host_swap_to_symlink(&["--cache", "always"]);
}

#[test]
fn host_swap_to_symlink_cache_never() {
    host_swap_to_symlink(&["--cache", "never"]);
}
