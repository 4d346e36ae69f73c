//! Starting and stopping the server: bad arguments fail fast with a message
//! naming the offending path; signals and external unmounts end it cleanly.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;
use nix::sys::signal::Signal;

fn expect_refusal(src: &Path, mnt: &Path, culprit: &Path) {
    let args: [&OsStr; 3] = ["mount".as_ref(), src.as_os_str(), mnt.as_os_str()];
    let (st, err) = run_ownfs_to_exit(&args, &[mnt], STOP_TIMEOUT);
    assert!(
        !st.success(),
        "ownfs mount {} {} must fail; stderr:\n{err}",
        src.display(),
        mnt.display()
    );
    assert!(
        err.contains(&*culprit.to_string_lossy()),
        "stderr must name {}; got ({}):\n{err}",
        culprit.display(),
        describe(&st)
    );
    assert!(
        !err.contains("panicked"),
        "ownfs panicked instead of reporting:\n{err}"
    );
}

#[test]
fn missing_src_is_refused() {
    let s = Scratch::new("nosrc");
    let src = s.path("does-not-exist");
    let mnt = s.dir("mnt");
    expect_refusal(&src, &mnt, &src);
    assert!(mounts_at(&mnt).is_empty(), "nothing may be mounted at MNT");
}

#[test]
fn src_that_is_a_file_is_refused() {
    let s = Scratch::new("filesrc");
    let src = s.path("plain-file");
    fs::write(&src, b"not a directory").unwrap();
    let mnt = s.dir("mnt");
    expect_refusal(&src, &mnt, &src);
    assert!(mounts_at(&mnt).is_empty(), "nothing may be mounted at MNT");
}

#[test]
fn missing_mnt_is_refused() {
    let s = Scratch::new("nomnt");
    let src = s.dir("src");
    let mnt = s.path("no-such-mountpoint");
    expect_refusal(&src, &mnt, &mnt);
    assert!(!mnt.exists(), "MNT must not be created");
}

#[test]
fn busy_mnt_is_refused() {
    let m = Mount::new(&[]);
    fs::write(m.mnt.join("marker"), b"first").unwrap();
    let other_src = m.scratch.dir("s/src2");
    fs::write(other_src.join("marker"), b"second").unwrap();

    expect_refusal(&other_src, &m.mnt, &m.mnt);

    let here: Vec<_> = mounts_at(&m.mnt);
    assert_eq!(here.len(), 1, "exactly one mount at MNT: {here:#?}");
    assert_eq!(
        fs::read(m.mnt.join("marker")).unwrap(),
        b"first",
        "the first mount must still be the one serving MNT"
    );
    assert!(m.is_mounted());
}

fn signal_unmounts(sig: Signal) {
    let mut m = Mount::new(&[]);
    fs::write(m.mnt.join("f"), b"data").unwrap();
    let st = m.stop(sig);
    assert_eq!(
        st.code(),
        Some(0),
        "ownfs after {sig}: {}; stderr:\n{}",
        describe(&st),
        m.stderr()
    );
    assert!(
        mounts_at(&m.mnt).is_empty(),
        "MNT still mounted after {sig}: {:#?}",
        mounts_at(&m.mnt)
    );
    assert_eq!(fs::read(m.src.join("f")).unwrap(), b"data");
    assert!(
        fs::symlink_metadata(m.mnt.join("f")).is_err(),
        "MNT must be the plain empty directory again"
    );
}

#[test]
fn sigterm_unmounts_and_exits_zero() {
    signal_unmounts(Signal::SIGTERM);
}

#[test]
fn sigint_unmounts_and_exits_zero() {
    signal_unmounts(Signal::SIGINT);
}

#[test]
fn external_umount_ends_server() {
    let mut m = Mount::new(&[]);
    fs::write(m.mnt.join("f"), b"data").unwrap();
    let out = output_timeout(Command::new("umount").arg(&m.mnt), STOP_TIMEOUT);
    assert!(
        out.status.success(),
        "umount MNT: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = m.wait_exit(STOP_TIMEOUT).unwrap_or_else(|| {
        panic!(
            "ownfs still running {STOP_TIMEOUT:?} after an external umount; stderr:\n{}",
            m.stderr()
        )
    });
    assert_eq!(
        st.code(),
        Some(0),
        "ownfs after external umount: {}; stderr:\n{}",
        describe(&st),
        m.stderr()
    );
    assert!(mounts_at(&m.mnt).is_empty());
    assert_eq!(fs::read(m.src.join("f")).unwrap(), b"data");
}

/// The mount is `fuse.ownfs` with allow_other, and default_permissions unless
/// `--no-default-permissions`; other users can reach it.
#[test]
fn mount_options_and_allow_other() {
    for (extra, want_dp) in [(&[][..], true), (&["--no-default-permissions"][..], false)] {
        let m = Mount::new(extra);
        let e = m.entry();
        assert_eq!(e.fstype, FSTYPE);
        assert!(
            e.options.iter().any(|o| o == "allow_other"),
            "{extra:?}: allow_other missing in {:?}",
            e.options
        );
        assert_eq!(
            e.options.iter().any(|o| o == "default_permissions"),
            want_dp,
            "{extra:?}: default_permissions in {:?}",
            e.options
        );
        fs::write(m.mnt.join("f"), b"for everyone").unwrap();
        chmod(&m.mnt.join("f"), 0o644);
        let mnt = m.mnt.clone();
        Caller::new(424_801, 424_802)
            .run(|| {
                let got = fs::read(mnt.join("f"))?;
                if got != b"for everyone" {
                    return Err(std::io::Error::other(format!("read {got:?}")));
                }
                fs::read_dir(&mnt)?.count();
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{extra:?}: another user reading MNT/f: {e}"));
    }
}
