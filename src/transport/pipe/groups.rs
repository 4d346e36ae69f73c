//! Supplementary groups of a guest caller, for the client to forward.
//!
//! The host cannot read the guest's `/proc`, so the client reads `Groups:` from
//! `/proc/<pid>/status` (via `creds::read_proc_groups`) and sends the list with the
//! request. Each FUSE worker thread keeps a small cache keyed by (pid, uid, gid) with
//! the same 100 ms time-to-live as the local mount's cache: a caller that changes
//! uid or gid misses it at once; a bare setgroups(2) is seen at most one TTL later.

use std::cell::RefCell;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::creds::read_proc_groups;

pub const TTL: Duration = Duration::from_millis(100);
const SLOTS: usize = 16;

struct Slot {
    pid: i32,
    uid: u32,
    gid: u32,
    fetched: Instant,
    groups: Arc<[u32]>,
}

#[derive(Default)]
struct Cache {
    slots: Vec<Slot>,
    next_victim: usize,
    hits: u64,
    misses: u64,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// The supplementary groups of process `pid` running as `uid:gid`.
pub fn groups_of(pid: i32, uid: u32, gid: u32) -> io::Result<Arc<[u32]>> {
    CACHE.with(|c| c.borrow_mut().get(pid, uid, gid, Instant::now()))
}

impl Cache {
    fn get(&mut self, pid: i32, uid: u32, gid: u32, now: Instant) -> io::Result<Arc<[u32]>> {
        if let Some(s) = self.slots.iter().find(|s| {
            s.pid == pid && s.uid == uid && s.gid == gid && now.duration_since(s.fetched) < TTL
        }) {
            self.hits += 1;
            return Ok(s.groups.clone());
        }
        self.misses += 1;
        let groups: Arc<[u32]> = read_proc_groups(pid)
            .map_err(|e| {
                log::warn!("cannot read the groups of pid {pid}: {e}");
                io::Error::from_raw_os_error(libc::EIO)
            })?
            .into();
        let slot = Slot {
            pid,
            uid,
            gid,
            fetched: now,
            groups: groups.clone(),
        };
        if let Some(i) = self.slots.iter().position(|s| s.pid == pid) {
            self.slots[i] = slot;
        } else if self.slots.len() < SLOTS {
            self.slots.push(slot);
        } else {
            self.slots[self.next_victim] = slot;
            self.next_victim = (self.next_victim + 1) % SLOTS;
        }
        Ok(groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caches_by_pid_uid_gid_for_a_ttl() {
        let me = std::process::id() as i32;
        let mut c = Cache::default();
        let t0 = Instant::now();
        let a = c.get(me, 1, 2, t0).unwrap();
        assert_eq!((c.hits, c.misses), (0, 1));
        let b = c.get(me, 1, 2, t0 + TTL / 2).unwrap();
        assert_eq!(a, b);
        assert_eq!((c.hits, c.misses), (1, 1));
        c.get(me, 1, 3, t0 + TTL / 2).unwrap();
        assert_eq!(c.misses, 2, "another gid misses");
        c.get(me, 1, 3, t0 + TTL * 2).unwrap();
        assert_eq!(c.misses, 3, "expired");
        assert_eq!(c.slots.len(), 1, "one slot per pid");
        assert!(c.get(0, 0, 0, t0).is_err(), "pid 0 has no /proc entry");
    }

    /// The numbers behind the cache (docs/protocol.md):
    /// `cargo test --release --lib pipe::groups -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn measure_cost() {
        let me = std::process::id() as i32;
        let n = 20_000;
        let t = Instant::now();
        for _ in 0..n {
            read_proc_groups(me).unwrap();
        }
        let uncached = t.elapsed() / n;
        let mut c = Cache::default();
        let t0 = Instant::now();
        let t = Instant::now();
        for _ in 0..n {
            c.get(me, 1, 2, t0).unwrap();
        }
        let cached = t.elapsed() / n;
        eprintln!("groups of a caller: /proc read {uncached:?}, cache hit {cached:?}");
    }
}
