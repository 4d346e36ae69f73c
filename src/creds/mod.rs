//! Per-thread credentials: every request that creates or checks access runs on the
//! host with its caller's fsuid, fsgid and supplementary groups.
//!
//! Each worker thread remembers what it last applied, so consecutive requests from
//! the same caller cost no syscalls. Switches are verified; a request that cannot get
//! its caller's identity fails instead of running with the wrong one.

mod proc_groups;

use std::cell::RefCell;
use std::io;
use std::time::Duration;

use crate::platform;

pub use proc_groups::read_proc_groups;

/// Where a request's supplementary groups come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupSource {
    /// Read from the caller's `/proc/<pid>/status` (local mounts).
    Proc,
    /// Supplied by the transport for each request (see [`with_forwarded_groups`]).
    Forwarded,
}

/// Policy for switching credentials, fixed at start-up.
#[derive(Clone, Debug)]
pub struct CredentialPolicy {
    /// False when the server cannot switch (rootless): everything runs as the server.
    pub switch: bool,
    pub groups: GroupSource,
    /// How long a `/proc` groups answer is reused for the same (tid, uid, gid).
    pub proc_groups_ttl: Duration,
    server: Identity,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Identity {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
}

impl CredentialPolicy {
    pub fn new(switch: bool, groups: GroupSource) -> Self {
        CredentialPolicy {
            switch,
            groups,
            proc_groups_ttl: Duration::from_millis(proc_groups::DEFAULT_TTL_MS),
            server: Identity {
                uid: platform::geteuid(),
                gid: platform::getegid(),
                groups: Vec::new(),
            },
        }
    }

    /// Switches this thread to the caller's identity for one request.
    /// `pid == 0` is only "a caller we cannot see" (outside the mount's pid namespace,
    /// or a pipe client's claim): it runs as its uid and gid with no supplementary groups,
    /// never as the server.
    pub fn enter(&self, uid: u32, gid: u32, pid: i32) -> io::Result<CallerGuard> {
        if !self.switch {
            return Ok(CallerGuard { _private: () });
        }
        THREAD.with(|t| {
            let mut t = t.borrow_mut();
            let t = &mut *t;
            match self.groups {
                GroupSource::Forwarded => t.state.apply(uid, gid, &t.forwarded)?,
                GroupSource::Proc if pid <= 0 => t.state.apply(uid, gid, &[])?,
                GroupSource::Proc => {
                    let groups = t.proc_cache.get(pid, uid, gid, self.proc_groups_ttl)?;
                    t.state.apply(uid, gid, groups)?;
                }
            }
            Ok(CallerGuard { _private: () })
        })
    }

    /// Whether the caller (uid, gid, pid) has `target` as its group or one of its
    /// supplementary groups, from the same source its credentials come from.
    pub fn in_group(&self, uid: u32, gid: u32, pid: i32, target: u32) -> io::Result<bool> {
        if gid == target {
            return Ok(true);
        }
        THREAD.with(|t| {
            let mut t = t.borrow_mut();
            let t = &mut *t;
            match self.groups {
                GroupSource::Forwarded => Ok(t.forwarded.contains(&target)),
                GroupSource::Proc if pid <= 0 => Ok(false),
                GroupSource::Proc => Ok(t
                    .proc_cache
                    .get(pid, uid, gid, self.proc_groups_ttl)?
                    .contains(&target)),
            }
        })
    }

    /// Runs with the server's own identity until the guard drops, then restores
    /// whatever the thread had. For the documented exceptions only.
    pub fn as_server(&self) -> io::Result<ServerGuard> {
        if !self.switch {
            return Ok(ServerGuard { restore: None });
        }
        THREAD.with(|t| {
            let mut t = t.borrow_mut();
            let previous = t.state.applied.clone();
            let s = &self.server;
            t.state.apply(s.uid, s.gid, &s.groups)?;
            Ok(ServerGuard { restore: previous })
        })
    }
}

/// Proof that the thread runs with the caller's credentials. Dropping it leaves them
/// in place: the next request re-asserts its own, at no cost when it is the same caller.
pub struct CallerGuard {
    _private: (),
}

/// Temporary server identity; restores the previous credentials on drop.
pub struct ServerGuard {
    restore: Option<Identity>,
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        if let Some(prev) = self.restore.take() {
            THREAD.with(|t| {
                let mut t = t.borrow_mut();
                if let Err(e) = t.state.apply(prev.uid, prev.gid, &prev.groups) {
                    // The state stays unknown; the next request re-applies from scratch.
                    log::error!("restoring caller credentials failed: {e}");
                }
            });
        }
    }
}

/// Runs `f` with `groups` as the forwarded supplementary groups of the request.
/// An empty slice means "no groups", never "the server's groups".
pub fn with_forwarded_groups<R>(groups: &[u32], f: impl FnOnce() -> R) -> R {
    THREAD.with(|t| {
        let mut t = t.borrow_mut();
        t.forwarded.clear();
        t.forwarded.extend_from_slice(groups);
    });
    let r = f();
    THREAD.with(|t| t.borrow_mut().forwarded.clear());
    r
}

/// Runs `f` with the supplementary groups of local process `pid` running as `uid:gid`,
/// from this thread's `/proc` cache (a pipe client forwards them with each request).
pub fn with_proc_groups<R>(
    pid: i32,
    uid: u32,
    gid: u32,
    f: impl FnOnce(&[u32]) -> R,
) -> io::Result<R> {
    let ttl = Duration::from_millis(proc_groups::DEFAULT_TTL_MS);
    THREAD.with(|t| {
        let mut t = t.borrow_mut();
        t.proc_cache.get(pid, uid, gid, ttl).map(f)
    })
}

struct ThreadCreds {
    state: Applied,
    forwarded: Vec<u32>,
    proc_cache: proc_groups::Cache,
}

#[derive(Default)]
struct Applied {
    /// What this thread currently runs as; `None` when unknown.
    applied: Option<Identity>,
    switches: u64,
}

thread_local! {
    static THREAD: RefCell<ThreadCreds> = RefCell::new(ThreadCreds {
        state: Applied::default(),
        forwarded: Vec::new(),
        proc_cache: proc_groups::Cache::default(),
    });
}

impl Applied {
    fn apply(&mut self, uid: u32, gid: u32, groups: &[u32]) -> io::Result<()> {
        let (same_uid, same_gid, same_groups) = match &self.applied {
            Some(cur) => (cur.uid == uid, cur.gid == gid, cur.groups == groups),
            None => (false, false, false),
        };
        if same_uid && same_gid && same_groups {
            return Ok(());
        }
        self.switches += 1;
        // Mark unknown first: a failure half-way must never look like success.
        let mut ident = self.applied.take().unwrap_or(Identity {
            uid,
            gid,
            groups: Vec::new(),
        });
        // Only the parts that differ: each of these commits a new kernel cred.
        let res = (|| {
            platform::enable_id_switch()?;
            if !same_groups {
                platform::set_thread_groups(groups)?;
            }
            if !same_gid {
                platform::set_thread_fsgid(gid)?;
            }
            if !same_uid {
                platform::set_thread_fsuid(uid)?;
            }
            // setfsuid drops only the file capabilities: nothing else may act for a caller.
            platform::settle_caller_caps(uid)
        })();
        if let Err(e) = res {
            log::error!("cannot switch to uid {uid} gid {gid} groups {groups:?}: {e}");
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        ident.uid = uid;
        ident.gid = gid;
        if !same_groups {
            ident.groups.clear();
            ident.groups.extend_from_slice(groups);
        }
        self.applied = Some(ident);
        Ok(())
    }
}

/// How many real switches (syscall sets) this thread has made; for benchmarks.
pub fn thread_switch_count() -> u64 {
    THREAD.with(|t| t.borrow().state.switches)
}

/// Forgets what this thread applied, so the next switch really runs; for benchmarks.
pub fn forget_thread_state() {
    THREAD.with(|t| t.borrow_mut().state.applied = None);
}
