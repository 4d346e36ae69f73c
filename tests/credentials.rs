//! Requests must run on the host with the caller's uid, gid and
//! supplementary groups, and one caller's credentials must never be used for
//! another caller's request.
//!
//! Every test runs once with the default options (the kernel checks
//! permissions first, `default_permissions`) and, where it matters, once with
//! `--no-default-permissions`, where only the host file system — and so only
//! the credentials the server switched to — decides.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{
    chown, symlink, DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt,
};
use std::path::{Path, PathBuf};

use common::*;
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::AccessFlags;
use ownfs::platform;

/// A group the test callers may or may not be in. No /etc/group entry needed.
const G: u32 = 424_201;
/// The primary group of the test caller (never G).
const P: u32 = 424_202;
/// Another group, unrelated to anything on disk.
const OTHER: u32 = 424_203;
/// The test caller.
const U: u32 = 424_301;

const NDP: &str = "--no-default-permissions";

/// Makes `name` in the mount root as root, owned by `uid:gid` with `mode`.
/// Done through the mount, so the kernel's cached attributes are current.
fn mkdir_owned(m: &Mount, name: &str, uid: u32, gid: u32, mode: u32) -> PathBuf {
    let d = m.mnt.join(name);
    fs::create_dir(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
    chown(&d, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown {}: {e}", d.display()));
    chmod(&d, mode);
    // Both views must agree before the test relies on them.
    let on_src = m.src.join(name);
    assert_eq!(owner(&on_src), (uid, gid), "owner of {}", on_src.display());
    assert_eq!(mode_of(&on_src), mode, "mode of {}", on_src.display());
    assert_eq!(owner(&d), (uid, gid), "owner of {}", d.display());
    assert_eq!(mode_of(&d), mode, "mode of {}", d.display());
    d
}

fn create_file(p: &Path) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(p)?;
    f.write_all(b"hello\n")?;
    Ok(())
}

fn read_dir_names(p: &Path) -> io::Result<Vec<String>> {
    let mut v = Vec::new();
    for e in fs::read_dir(p)? {
        v.push(e?.file_name().to_string_lossy().into_owned());
    }
    v.sort();
    Ok(v)
}

/// Asserts that `rel` has the given owner both through the mount and on SRC.
#[track_caller]
fn assert_owner_both(m: &Mount, rel: &str, want: (u32, u32)) {
    let via_mnt = owner(&m.mnt.join(rel));
    let on_src = owner(&m.src.join(rel));
    assert_eq!(on_src, want, "owner of {rel} on SRC (uid, gid)");
    assert_eq!(
        via_mnt, want,
        "owner of {rel} seen through the mount (uid, gid)"
    );
}

// ---------------------------------------------------------------------------
// Supplementary groups
// ---------------------------------------------------------------------------

fn supplementary_group_grants_access(extra: &[&str]) {
    let m = Mount::new(extra);
    let d = mkdir_owned(&m, "d", 0, G, 0o770);

    let with_g = Caller::new(U, P).groups(&[G]).umask(0o022);
    let other_groups = Caller::new(U, P).groups(&[P, OTHER]).umask(0o022);
    let no_groups = Caller::new(U, P).umask(0o022);

    // In G only through the supplementary list: allowed.
    with_g
        .run(|| create_file(&d.join("f1")))
        .expect("caller with supplementary group G creating d/f1 in root:G 0770");
    assert_owner_both(&m, "d/f1", (U, P));
    with_g
        .run(|| fs::create_dir(d.join("sub1")))
        .expect("caller with supplementary group G: mkdir d/sub1");
    assert_owner_both(&m, "d/sub1", (U, P));
    let names = with_g.run(|| {
        let n = read_dir_names(&d)?;
        if n != ["f1", "sub1"] {
            return Err(io::Error::other(format!("readdir d gave {n:?}")));
        }
        Ok(())
    });
    names.expect("caller with supplementary group G: readdir d");

    // Same uid and primary gid, but G not in the list: denied.
    assert_errno(
        other_groups.run(|| create_file(&d.join("f2"))),
        libc::EACCES,
        "caller without G (groups [P, OTHER]) creating d/f2",
    );
    assert_errno(
        no_groups.run(|| create_file(&d.join("f3"))),
        libc::EACCES,
        "caller without G (no groups) creating d/f3",
    );
    assert_errno(
        no_groups.run(|| fs::create_dir(d.join("sub3"))),
        libc::EACCES,
        "caller without G (no groups): mkdir d/sub3",
    );
    assert_errno(
        no_groups.run(|| read_dir_names(&d).map(drop)),
        libc::EACCES,
        "caller without G (no groups): readdir d",
    );
    for n in ["f2", "f3", "sub3"] {
        assert!(
            fs::symlink_metadata(m.src.join("d").join(n)).is_err(),
            "d/{n} must not exist on SRC after a denied create"
        );
    }

    // setgid directory: new entries take the directory's group.
    chmod(&d, 0o2770);
    assert_eq!(mode_of(&m.src.join("d")), 0o2770, "setgid bit on SRC/d");
    with_g
        .run(|| create_file(&d.join("f4")))
        .expect("caller with G creating d/f4 in setgid root:G 02770");
    assert_owner_both(&m, "d/f4", (U, G));
    with_g
        .run(|| fs::create_dir(d.join("sub4")))
        .expect("caller with G: mkdir d/sub4 in setgid dir");
    assert_owner_both(&m, "d/sub4", (U, G));
    assert_eq!(
        mode_of(&m.src.join("d/sub4")) & 0o2000,
        0o2000,
        "subdirectory of a setgid directory inherits setgid (SRC)"
    );
    assert_eq!(
        mode_of(&m.mnt.join("d/sub4")) & 0o2000,
        0o2000,
        "subdirectory of a setgid directory inherits setgid (mount)"
    );
    assert_errno(
        other_groups.run(|| create_file(&d.join("f5"))),
        libc::EACCES,
        "caller without G creating d/f5 in setgid dir",
    );
    assert!(fs::symlink_metadata(m.src.join("d/f5")).is_err());
}

#[test]
fn supplementary_group_grants_access_default_permissions() {
    supplementary_group_grants_access(&[]);
}

#[test]
fn supplementary_group_grants_access_no_default_permissions() {
    supplementary_group_grants_access(&[NDP]);
}

// ---------------------------------------------------------------------------
// Empty group list
// ---------------------------------------------------------------------------

/// A caller with no supplementary groups must not be granted anything through
/// group permission bits — neither through a group left over from an earlier
/// request on the same worker thread (`--threads 1`, the earlier request came
/// from a caller in G) nor through the server's own groups (root's group 0).
fn empty_groups_mean_no_groups(extra: &[&str]) {
    let mut args = vec!["--threads", "1"];
    args.extend_from_slice(extra);
    let m = Mount::new(&args);
    let gdir = mkdir_owned(&m, "gdir", 0, G, 0o070);
    let rdir = mkdir_owned(&m, "rdir", 0, 0, 0o070);

    let in_g = Caller::new(U, P).groups(&[G]);
    let in_root_group = Caller::new(U, P).groups(&[0]);
    let empty = Caller::new(U, P);

    // Positive controls, which also leave G / 0 behind on the worker thread
    // if the server fails to reset the group list.
    in_g.run(|| create_file(&gdir.join("by-g")))
        .expect("control: caller in G creates gdir/by-g");
    in_root_group
        .run(|| create_file(&rdir.join("by-0")))
        .expect("control: caller in group 0 creates rdir/by-0");

    for round in 0..3 {
        // Interleave: a privileged-by-group request right before each check.
        in_g.run(|| read_dir_names(&gdir).map(drop))
            .expect("control: caller in G lists gdir");
        assert_errno(
            empty.run(|| read_dir_names(&gdir).map(drop)),
            libc::EACCES,
            &format!("round {round}: caller with empty groups lists root:G 0070 gdir"),
        );
        assert_errno(
            empty.run(|| create_file(&gdir.join(format!("empty-{round}")))),
            libc::EACCES,
            &format!("round {round}: caller with empty groups creates in gdir"),
        );
        assert_errno(
            empty.run(|| fs::create_dir(gdir.join(format!("empty-d{round}")))),
            libc::EACCES,
            &format!("round {round}: caller with empty groups mkdirs in gdir"),
        );

        in_root_group
            .run(|| read_dir_names(&rdir).map(drop))
            .expect("control: caller in group 0 lists rdir");
        assert_errno(
            empty.run(|| read_dir_names(&rdir).map(drop)),
            libc::EACCES,
            &format!("round {round}: caller with empty groups lists root:root 0070 rdir"),
        );
        assert_errno(
            empty.run(|| create_file(&rdir.join(format!("empty-{round}")))),
            libc::EACCES,
            &format!("round {round}: caller with empty groups creates in rdir"),
        );
    }
    assert_eq!(read_dir_names(&m.src.join("gdir")).unwrap(), ["by-g"]);
    assert_eq!(read_dir_names(&m.src.join("rdir")).unwrap(), ["by-0"]);
}

#[test]
fn empty_groups_mean_no_groups_default_permissions() {
    empty_groups_mean_no_groups(&[]);
}

#[test]
fn empty_groups_mean_no_groups_no_default_permissions() {
    empty_groups_mean_no_groups(&[NDP]);
}

// ---------------------------------------------------------------------------
// No credential leaks between concurrent callers
// ---------------------------------------------------------------------------

const NPROC: u32 = 8;
const NFILES: u32 = 200;
const NDIRS: u32 = 20;
const NLINKS: u32 = 20;
const LEAK_UID: u32 = 424_400;
const LEAK_GID: u32 = 424_500;

/// Each of NPROC processes, all with different uid/gid, creates files,
/// directories and symlinks concurrently in a shared 01777 directory. Every
/// entry must end up owned by its creator.
fn no_credential_leak(extra: &[&str]) {
    let m = Mount::new(extra);
    let shared = mkdir_owned(&m, "shared", 0, 0, 0o1777);

    let mut gate = Gate::new();
    let mut kids = Vec::new();
    for i in 0..NPROC {
        let (uid, gid) = (LEAK_UID + i, LEAK_GID + i);
        let caller = Caller::new(uid, gid).groups(&[gid]).umask(0o022);
        let shared = shared.clone();
        let gate = &gate;
        kids.push(caller.spawn(move || {
            gate.wait()?;
            for j in 0..NFILES {
                let p = shared.join(format!("u{i}-f{j}"));
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(&p)?;
                f.write_all(format!("{i} {j}\n").as_bytes())?;
                // Check right away, through the mount, on the open file.
                let md = f.metadata()?;
                if (md.uid(), md.gid()) != (uid, gid) {
                    return Err(io::Error::other(format!(
                        "{}: fstat says {}:{}, created by {uid}:{gid}",
                        p.display(),
                        md.uid(),
                        md.gid()
                    )));
                }
                if j < NDIRS {
                    fs::DirBuilder::new()
                        .mode(0o755)
                        .create(shared.join(format!("u{i}-d{j}")))?;
                }
                if j < NLINKS {
                    symlink(format!("u{i}-f{j}"), shared.join(format!("u{i}-l{j}")))?;
                }
            }
            Ok(())
        }));
    }
    // Release all children at once.
    gate.open(NPROC as usize);
    let mut failures = Vec::new();
    for (i, k) in kids.into_iter().enumerate() {
        if let Err(e) = k.join() {
            failures.push(format!("caller {i}: {e}"));
        }
    }
    assert!(failures.is_empty(), "children failed: {failures:#?}");

    let mut wrong = Vec::new();
    let mut count = 0;
    for root in [&m.src, &m.mnt] {
        for e in fs::read_dir(root.join("shared")).expect("readdir shared") {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let i: u32 = name[1..name.find('-').unwrap()].parse().unwrap();
            let md = fs::symlink_metadata(e.path()).unwrap();
            let want = (LEAK_UID + i, LEAK_GID + i);
            if (md.uid(), md.gid()) != want {
                wrong.push(format!(
                    "{}: {}:{} (creator {}:{})",
                    e.path().display(),
                    md.uid(),
                    md.gid(),
                    want.0,
                    want.1
                ));
            }
            if root == &m.src {
                count += 1;
                if name.contains("-f") {
                    let mut s = String::new();
                    File::open(e.path())
                        .unwrap()
                        .read_to_string(&mut s)
                        .unwrap();
                    let j = &name[name.find("-f").unwrap() + 2..];
                    assert_eq!(s, format!("{i} {j}\n"), "content of {name}");
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} entries have the wrong owner, e.g. {:#?}",
        wrong.len(),
        &wrong[..wrong.len().min(20)]
    );
    assert_eq!(count, NPROC * (NFILES + NDIRS + NLINKS), "entries on SRC");
}

#[test]
fn no_credential_leak_between_concurrent_callers() {
    no_credential_leak(&["--threads", "8"]);
}

#[test]
fn no_credential_leak_between_concurrent_callers_no_default_permissions() {
    no_credential_leak(&["--threads", "4", NDP]);
}

/// Root keeps the worker threads busy with requests while unprivileged
/// callers hammer a directory only root may write to. If any worker served
/// an unprivileged request with root's credentials (or capabilities), a file
/// would appear. Only meaningful without default_permissions, where the
/// kernel does not pre-check.
#[test]
fn no_privilege_leak_from_root_requests() {
    let m = Mount::new(&["--threads", "4", NDP]);
    let locked = mkdir_owned(&m, "locked", 0, 0, 0o755);
    let busy = mkdir_owned(&m, "busy", 0, 0, 0o755);

    let mut gate = Gate::new();
    let mut kids = Vec::new();
    for i in 0..2u32 {
        let busy = busy.clone();
        let gate = &gate;
        kids.push((
            "root",
            Caller::root().spawn(move || {
                gate.wait()?;
                for j in 0..300 {
                    let p = busy.join(format!("r{i}-{j}"));
                    create_file(&p)?;
                    chown(&p, Some(1), Some(1))?;
                    fs::remove_file(&p)?;
                }
                Ok(())
            }),
        ));
    }
    for i in 0..4u32 {
        let locked = locked.clone();
        let gate = &gate;
        let c = Caller::new(LEAK_UID + i, LEAK_GID + i).groups(&[LEAK_GID + i]);
        kids.push((
            "unprivileged",
            c.spawn(move || {
                gate.wait()?;
                for j in 0..150 {
                    let p = locked.join(format!("u{i}-{j}"));
                    match create_file(&p) {
                        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {}
                        Err(e) => return Err(io::Error::other(format!("{}: {e}", p.display()))),
                        Ok(()) => {
                            return Err(io::Error::other(format!(
                                "{} created by an unprivileged caller",
                                p.display()
                            )))
                        }
                    }
                    match fs::create_dir(locked.join(format!("ud{i}-{j}"))) {
                        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {}
                        Err(e) => return Err(io::Error::other(format!("mkdir: {e}"))),
                        Ok(()) => return Err(io::Error::other("mkdir in locked succeeded")),
                    }
                    // chown of a root-owned directory must be refused too.
                    match chown(&locked, Some(LEAK_UID + i), None) {
                        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
                        Err(e) => return Err(io::Error::other(format!("chown: {e}"))),
                        Ok(()) => return Err(io::Error::other("chown of locked succeeded")),
                    }
                }
                Ok(())
            }),
        ));
    }
    gate.open(6);
    let mut failures = Vec::new();
    for (who, k) in kids {
        if let Err(e) = k.join() {
            failures.push(format!("{who}: {e}"));
        }
    }
    assert!(failures.is_empty(), "children failed: {failures:#?}");
    assert_eq!(
        read_dir_names(&m.src.join("locked")).unwrap(),
        Vec::<String>::new(),
        "nothing may appear in root-only SRC/locked"
    );
    assert_eq!(
        owner(&m.src.join("locked")),
        (0, 0),
        "SRC/locked still root's"
    );
}

// ---------------------------------------------------------------------------
// Group lists of unusual shape, per-thread credentials
// ---------------------------------------------------------------------------

/// A caller with a long supplementary list (G first, or G last after 1000
/// others) is still in G.
fn many_groups(extra: &[&str]) {
    let m = Mount::new(extra);
    let d = mkdir_owned(&m, "d", 0, G, 0o770);
    let filler: Vec<u32> = (0..1000).map(|i| 430_000 + i).collect();
    let mut g_last = filler.clone();
    g_last.push(G);
    let mut g_first = vec![G];
    g_first.extend_from_slice(&filler);

    Caller::new(U, P)
        .groups(&g_last)
        .run(|| create_file(&d.join("last")))
        .expect("caller with 1001 groups, G last");
    Caller::new(U, P)
        .groups(&g_first)
        .run(|| create_file(&d.join("first")))
        .expect("caller with 1001 groups, G first");
    assert_owner_both(&m, "d/last", (U, P));
    assert_owner_both(&m, "d/first", (U, P));
    assert_errno(
        Caller::new(U, P)
            .groups(&filler)
            .run(|| create_file(&d.join("none"))),
        libc::EACCES,
        "caller with 1000 groups, none of them G",
    );
}

#[test]
fn many_groups_default_permissions() {
    many_groups(&[]);
}

#[test]
fn many_groups_no_default_permissions() {
    many_groups(&[NDP]);
}

/// Credentials are per thread on Linux. Two threads of one process with
/// different uid/gid/groups (and a main thread that stays root) must each be
/// served with their own.
fn per_thread_credentials(extra: &[&str]) {
    let m = Mount::new(extra);
    let d = mkdir_owned(&m, "d", 0, G, 0o770);
    let dd = d.clone();
    Caller::root()
        .run(move || {
            let da = dd.clone();
            let a = std::thread::spawn(move || {
                platform::set_thread_credentials(U, P, &[G])?;
                create_file(&da.join("thread-a"))
            });
            let db = dd.clone();
            let b = std::thread::spawn(move || {
                platform::set_thread_credentials(U + 1, P, &[OTHER])?;
                create_file(&db.join("thread-b"))
            });
            let ra = a
                .join()
                .map_err(|_| io::Error::other("thread a panicked"))?;
            let rb = b
                .join()
                .map_err(|_| io::Error::other("thread b panicked"))?;
            ra.map_err(|e| io::Error::other(format!("thread a (in G): {e}")))?;
            match rb {
                Err(e) if e.raw_os_error() == Some(libc::EACCES) => {}
                other => {
                    return Err(io::Error::other(format!(
                        "thread b (not in G) expected EACCES, got {other:?}"
                    )))
                }
            }
            // The main thread is still root with groups [0].
            create_file(&dd.join("main"))
        })
        .expect("per-thread credentials");
    assert_owner_both(&m, "d/thread-a", (U, P));
    assert_owner_both(&m, "d/main", (0, 0));
    assert!(fs::symlink_metadata(m.src.join("d/thread-b")).is_err());
}

#[test]
fn per_thread_credentials_default_permissions() {
    per_thread_credentials(&[]);
}

#[test]
fn per_thread_credentials_no_default_permissions() {
    per_thread_credentials(&[NDP]);
}

// ---------------------------------------------------------------------------
// The host's permission rules apply to the caller, not to the server
// ---------------------------------------------------------------------------

fn access(p: &Path, mode: i32) -> io::Result<()> {
    nix::unistd::access(p, AccessFlags::from_bits_retain(mode)).map_err(io::Error::from)
}

/// utimensat(2) following symlinks; `None` sets both times to now (like a NULL `times`).
fn set_times(p: &Path, t: Option<i64>) -> io::Result<()> {
    let ts = t.map_or(TimeSpec::UTIME_NOW, |t| TimeSpec::new(t, 0));
    utimensat(None, p, &ts, &ts, UtimensatFlags::FollowSymlink).map_err(io::Error::from)
}

/// Everyday permission decisions made with the caller's credentials: opening
/// someone else's file for writing, truncating it, chmod/chown/utimes on it,
/// unlink/rename in a sticky directory, access(2).
fn host_rules_apply_to_caller(extra: &[&str]) {
    let m = Mount::new(extra);
    let root_file = m.mnt.join("root-file");
    fs::write(&root_file, b"root's").unwrap();
    chmod(&root_file, 0o644);
    let sticky = mkdir_owned(&m, "sticky", 0, 0, 0o1777);
    let d = mkdir_owned(&m, "d", 0, G, 0o750);

    let u = Caller::new(U, P).groups(&[P]).umask(0o022);
    let u2 = Caller::new(U + 1, P).groups(&[P]).umask(0o022);
    let u_in_g = Caller::new(U, P).groups(&[G]);

    // Someone else's 0644 file: readable, not writable.
    u.run(|| fs::read(&root_file).map(drop))
        .expect("read root's 0644 file");
    assert_errno(
        u.run(|| OpenOptions::new().write(true).open(&root_file).map(drop)),
        libc::EACCES,
        "open root's 0644 file for writing",
    );
    assert_errno(
        u.run(|| {
            OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&root_file)
                .map(drop)
        }),
        libc::EACCES,
        "open(O_TRUNC) root's 0644 file",
    );
    assert_errno(
        u.run(|| nix::unistd::truncate(&root_file, 0).map_err(io::Error::from)),
        libc::EACCES,
        "truncate(2) root's 0644 file",
    );
    assert_errno(
        u.run(|| fs::set_permissions(&root_file, fs::Permissions::from_mode(0o666))),
        libc::EPERM,
        "chmod root's file",
    );
    assert_errno(
        u.run(|| chown(&root_file, Some(U), None)),
        libc::EPERM,
        "chown root's file to self",
    );
    assert_errno(
        u.run(|| set_times(&root_file, Some(1_000_000))),
        libc::EPERM,
        "set explicit times on root's file",
    );
    assert_errno(
        u.run(|| set_times(&root_file, None)),
        libc::EACCES,
        "touch (times = now) root's 0644 file",
    );
    assert_eq!(fs::read(m.src.join("root-file")).unwrap(), b"root's");
    assert_eq!(mode_of(&m.src.join("root-file")), 0o644);
    assert_eq!(owner(&m.src.join("root-file")), (0, 0));

    // Sticky directory: U's file cannot be removed or renamed by U2.
    let mine = sticky.join("mine");
    u.run(|| create_file(&mine)).expect("U creates sticky/mine");
    assert_errno(
        u2.run(|| fs::remove_file(&mine)),
        libc::EPERM,
        "U2 unlinks U's file in a sticky dir",
    );
    assert_errno(
        u2.run(|| fs::rename(&mine, sticky.join("stolen"))),
        libc::EPERM,
        "U2 renames U's file in a sticky dir",
    );
    assert_errno(
        u2.run(|| fs::set_permissions(&mine, fs::Permissions::from_mode(0o666))),
        libc::EPERM,
        "U2 chmods U's file",
    );
    assert_owner_both(&m, "sticky/mine", (U, P));
    u.run(|| fs::rename(&mine, sticky.join("mine2")))
        .expect("U renames own file in a sticky dir");
    u.run(|| fs::remove_file(sticky.join("mine2")))
        .expect("U unlinks own file in a sticky dir");

    // access(2) / chdir with group permissions.
    u_in_g
        .run(|| access(&d, libc::R_OK | libc::X_OK))
        .expect("access(R|X) on root:G 0750 as member of G");
    assert_errno(
        u_in_g.run(|| access(&d, libc::W_OK)),
        libc::EACCES,
        "access(W) on root:G 0750 as member of G",
    );
    assert_errno(
        u.run(|| access(&d, libc::R_OK)),
        libc::EACCES,
        "access(R) on root:G 0750 as non-member",
    );
    assert_errno(
        u.run(|| access(&d, libc::X_OK)),
        libc::EACCES,
        "access(X) on root:G 0750 as non-member",
    );
    u_in_g
        .run(|| std::env::set_current_dir(&d))
        .expect("chdir into root:G 0750 as member of G");
    assert_errno(
        u.run(|| std::env::set_current_dir(&d)),
        libc::EACCES,
        "chdir into root:G 0750 as non-member",
    );
    assert_errno(
        Caller::root().run(|| access(&root_file, libc::X_OK)),
        libc::EACCES,
        "access(X) by root on a file with no x bit",
    );
}

#[test]
fn host_rules_apply_to_caller_default_permissions() {
    host_rules_apply_to_caller(&[]);
}

#[test]
fn host_rules_apply_to_caller_no_default_permissions() {
    host_rules_apply_to_caller(&[NDP]);
}

/// Privilege bits follow the caller's credentials: a write or truncate by a
/// user without CAP_FSETID strips setuid/setgid, and chmod g+s by a file
/// owner who is not in the file's group silently drops the setgid bit.
fn privilege_bits_follow_caller(extra: &[&str]) {
    let m = Mount::new(extra);
    let u = Caller::new(U, P).groups(&[P]);

    // root's 06777 file, modified by U (no CAP_FSETID): the bits must go.
    // All cases run before asserting, so a failure report shows each of them.
    let mut failures = Vec::new();
    for (i, how) in ["write", "truncate", "open-trunc", "append"]
        .iter()
        .enumerate()
    {
        let name = format!("suid-{i}");
        let f = m.mnt.join(&name);
        fs::write(&f, b"#!/bin/sh\n").unwrap();
        chmod(&f, 0o6777);
        assert_eq!(mode_of(&m.src.join(&name)), 0o6777);
        let what = format!("{how} by {U} to root's 06777 file");
        let r = u.run(|| {
            match *how {
                "write" => {
                    let mut h = OpenOptions::new().write(true).open(&f)?;
                    h.write_all(b"echo pwned\n")?;
                    h.sync_all()?;
                }
                "truncate" => {
                    let h = OpenOptions::new().write(true).open(&f)?;
                    h.set_len(3)?;
                }
                "open-trunc" => {
                    OpenOptions::new().write(true).truncate(true).open(&f)?;
                }
                _ => {
                    let mut h = OpenOptions::new().append(true).open(&f)?;
                    h.write_all(b"x")?;
                    h.sync_all()?;
                }
            }
            Ok(())
        });
        if let Err(e) = r {
            failures.push(format!("{what}: failed with {e}"));
            continue;
        }
        for (view, p) in [("SRC", m.src.join(&name)), ("mount", f.clone())] {
            let got = mode_of(&p);
            if got != 0o777 {
                failures.push(format!("{what}: mode via {view} is {got:o}, want 777"));
            }
        }
    }
    // root keeps them (CAP_FSETID), as on any local file system.
    let f = m.mnt.join("suid-root");
    fs::write(&f, b"#!/bin/sh\n").unwrap();
    chmod(&f, 0o6777);
    {
        let mut h = OpenOptions::new().append(true).open(&f).unwrap();
        h.write_all(b"true\n").unwrap();
        h.sync_all().unwrap();
    }
    let got = mode_of(&m.src.join("suid-root"));
    if got != 0o6777 {
        failures.push(format!("write by root: mode on SRC is {got:o}, want 6777"));
    }
    assert!(failures.is_empty(), "setuid/setgid handling: {failures:#?}");

    // chmod g+s on U's own file whose group is G.
    let f = m.mnt.join("gfile");
    fs::write(&f, b"x").unwrap();
    chown(&f, Some(U), Some(G)).unwrap();
    chmod(&f, 0o755);
    u.run(|| fs::set_permissions(&f, fs::Permissions::from_mode(0o2755)))
        .expect("owner chmods own file (not in its group)");
    assert_eq!(
        mode_of(&m.src.join("gfile")),
        0o755,
        "setgid must be dropped for an owner outside the file's group"
    );
    Caller::new(U, P)
        .groups(&[G])
        .run(|| fs::set_permissions(&f, fs::Permissions::from_mode(0o2755)))
        .expect("owner chmods own file (in its group)");
    assert_eq!(
        mode_of(&m.src.join("gfile")),
        0o2755,
        "setgid must be kept for an owner in the file's group"
    );
}

#[test]
fn privilege_bits_follow_caller_default_permissions() {
    privilege_bits_follow_caller(&[]);
}

#[test]
fn privilege_bits_follow_caller_no_default_permissions() {
    privilege_bits_follow_caller(&[NDP]);
}

#[test]
fn privilege_bits_follow_caller_writeback() {
    privilege_bits_follow_caller(&["--writeback"]);
}
