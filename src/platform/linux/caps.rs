//! Capability sets of the calling thread (capget/capset, version 3) and the
//! process-wide bounding set.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use super::cvt;

/// Capability numbers from <linux/capability.h> that the server reasons about.
pub mod cap {
    pub const CHOWN: u32 = 0;
    pub const DAC_OVERRIDE: u32 = 1;
    pub const DAC_READ_SEARCH: u32 = 2;
    pub const FOWNER: u32 = 3;
    pub const FSETID: u32 = 4;
    pub const SETGID: u32 = 6;
    pub const SETUID: u32 = 7;
    pub const SETPCAP: u32 = 8;
    pub const LINUX_IMMUTABLE: u32 = 9;
    pub const SYS_CHROOT: u32 = 18;
    pub const SYS_ADMIN: u32 = 21;
    pub const MKNOD: u32 = 27;
    pub const SETFCAP: u32 = 31;
    /// Highest capability number this build knows of (CAP_CHECKPOINT_RESTORE).
    pub const LAST: u32 = 40;
}

/// Bit mask of capability numbers.
pub const fn cap_mask(caps: &[u32]) -> u64 {
    let mut m = 0u64;
    let mut i = 0;
    while i < caps.len() {
        m |= 1 << caps[i];
        i += 1;
    }
    m
}

/// What a root caller acts with: the file capabilities the kernel itself drops and
/// restores with the fsuid (capabilities(7)), without CAP_MAC_OVERRIDE.
pub const FS_CAPS: u64 = cap_mask(&[
    cap::CHOWN,
    cap::DAC_OVERRIDE,
    cap::DAC_READ_SEARCH,
    cap::FOWNER,
    cap::FSETID,
    cap::LINUX_IMMUTABLE,
    cap::MKNOD,
]);

const VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct Header {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Effective, permitted and inheritable sets of the calling thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapSets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

fn join(d: &[Data; 2], f: impl Fn(&Data) -> u32) -> u64 {
    u64::from(f(&d[0])) | (u64::from(f(&d[1])) << 32)
}

/// The calling thread's capability sets.
pub fn thread_caps() -> io::Result<CapSets> {
    let mut hdr = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: a v3 header and room for its two data words; pid 0 is this thread.
    cvt(unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) as libc::c_int })?;
    Ok(CapSets {
        effective: join(&data, |d| d.effective),
        permitted: join(&data, |d| d.permitted),
        inheritable: join(&data, |d| d.inheritable),
    })
}

/// Sets the calling thread's capability sets (the kernel refuses any gain).
pub fn set_thread_caps(sets: CapSets) -> io::Result<()> {
    let mut hdr = Header {
        version: VERSION_3,
        pid: 0,
    };
    let split = |v: u64| [v as u32, (v >> 32) as u32];
    let (e, p, i) = (
        split(sets.effective),
        split(sets.permitted),
        split(sets.inheritable),
    );
    let data = [
        Data {
            effective: e[0],
            permitted: p[0],
            inheritable: i[0],
        },
        Data {
            effective: e[1],
            permitted: p[1],
            inheritable: i[1],
        },
    ];
    // SAFETY: a v3 header and two initialised data words; pid 0 is this thread.
    cvt(unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) as libc::c_int })
        .map(drop)
}

/// A root caller's effective set: the file capabilities plus setting file capabilities.
pub const ROOT_CALLER_CAPS: u64 = FS_CAPS | cap_mask(&[cap::SETFCAP]);
/// What switching to a caller needs: setfsuid, setfsgid and setgroups.
const SWITCH_CAPS: u64 = cap_mask(&[cap::SETUID, cap::SETGID]);

/// The process's permitted set once known (every thread shares it); `u64::MAX` = unread.
static PERMITTED: AtomicU64 = AtomicU64::new(u64::MAX);

fn permitted() -> io::Result<u64> {
    match PERMITTED.load(Ordering::Relaxed) {
        u64::MAX => {
            let p = thread_caps()?.permitted;
            PERMITTED.store(p, Ordering::Relaxed);
            Ok(p)
        }
        p => Ok(p),
    }
}

/// Makes `effective` (limited to what is permitted) this thread's effective set: one capset.
pub fn set_thread_effective(effective: u64) -> io::Result<()> {
    let permitted = permitted()?;
    set_thread_caps(CapSets {
        effective: effective & permitted,
        permitted,
        inheritable: 0,
    })
}

/// Before a credential switch: lets this thread change its fs ids and groups.
pub fn enable_id_switch() -> io::Result<()> {
    set_thread_effective(SWITCH_CAPS | ROOT_CALLER_CAPS)
}

/// After a credential switch to `uid`: a root caller keeps root's file capabilities,
/// any other caller acts with none at all.
pub fn settle_caller_caps(uid: u32) -> io::Result<()> {
    set_thread_effective(if uid == 0 { ROOT_CALLER_CAPS } else { 0 })
}

/// Runs `f` with `extra` added to this thread's effective set, then restores it.
pub fn with_extra_caps<R>(extra: u64, f: impl FnOnce() -> R) -> io::Result<R> {
    let before = thread_caps()?;
    if before.effective & extra == extra || before.permitted & extra == 0 {
        return Ok(f());
    }
    set_thread_caps(CapSets {
        effective: before.effective | (extra & before.permitted),
        ..before
    })?;
    let r = f();
    set_thread_caps(before)?;
    Ok(r)
}

/// Keeps only `keep` in this thread's permitted and effective sets, clears the
/// inheritable and ambient sets, and removes everything else from the bounding set, so
/// no later exec or thread can regain it. Threads started afterwards inherit the result.
pub fn restrict_capabilities(keep: u64) -> io::Result<()> {
    let sets = thread_caps()?;
    if sets.permitted & !keep != 0 && sets.permitted & (1 << cap::SETPCAP) != 0 {
        for c in 0..=cap::LAST {
            if keep & (1 << c) == 0 {
                // SAFETY: no memory effects; EINVAL for numbers this kernel lacks is fine.
                unsafe { libc::prctl(libc::PR_CAPBSET_DROP, c as libc::c_ulong, 0, 0, 0) };
            }
        }
    }
    // SAFETY: no memory effects.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    set_thread_caps(CapSets {
        effective: sets.effective & keep,
        permitted: sets.permitted & keep,
        inheritable: 0,
    })?;
    PERMITTED.store(sets.permitted & keep, Ordering::Relaxed);
    Ok(())
}

/// What a server that switches to its callers keeps (`restrict_capabilities`): acting as
/// any caller, switching, registering backing files and unmounting.
pub const SERVER_CAPS: u64 = ROOT_CALLER_CAPS | SWITCH_CAPS | cap_mask(&[cap::SYS_ADMIN]);
