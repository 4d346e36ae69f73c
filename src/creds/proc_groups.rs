//! Supplementary groups of a local caller, from `/proc/<tid>/status`.
//!
//! Reading the file costs three syscalls and a parse, so each worker thread keeps a
//! small cache keyed by (tid, uid, gid) with a short time-to-live. A caller that drops
//! privileges changes uid or gid and so misses the cache; a bare setgroups(2) without
//! an id change is seen at most one TTL later.

use std::io::{self, Read};
use std::time::{Duration, Instant};

/// Reuse window for a cached answer. See the module comment for the trade-off.
pub const DEFAULT_TTL_MS: u64 = 100;
const SLOTS: usize = 16;

struct Slot {
    tid: i32,
    uid: u32,
    gid: u32,
    fetched: Instant,
    groups: Vec<u32>,
}

#[derive(Default)]
pub struct Cache {
    slots: Vec<Slot>,
    next_victim: usize,
    buf: Vec<u8>,
}

impl Cache {
    pub fn get(&mut self, tid: i32, uid: u32, gid: u32, ttl: Duration) -> io::Result<&[u32]> {
        let now = Instant::now();
        let hit = self.slots.iter().position(|s| {
            s.tid == tid && s.uid == uid && s.gid == gid && now.duration_since(s.fetched) < ttl
        });
        if let Some(i) = hit {
            return Ok(&self.slots[i].groups);
        }
        let idx = match self.slots.iter().position(|s| s.tid == tid) {
            Some(i) => i,
            None if self.slots.len() < SLOTS => {
                self.slots.push(Slot {
                    tid,
                    uid,
                    gid,
                    fetched: now,
                    groups: Vec::new(),
                });
                self.slots.len() - 1
            }
            None => {
                let i = self.next_victim;
                self.next_victim = (self.next_victim + 1) % SLOTS;
                i
            }
        };
        let slot = &mut self.slots[idx];
        slot.tid = tid;
        slot.uid = uid;
        slot.gid = gid;
        slot.fetched = now;
        if let Err(e) = read_into(tid, &mut self.buf, &mut slot.groups) {
            slot.tid = 0; // never a valid hit
            log::warn!("cannot read groups of pid {tid}: {e}");
            // Out of fds, the caller gets what the request itself would have got.
            let errno = match e.raw_os_error() {
                Some(n @ (libc::EMFILE | libc::ENFILE)) => n,
                _ => libc::EIO,
            };
            return Err(io::Error::from_raw_os_error(errno));
        }
        Ok(&slot.groups)
    }
}

/// The `Groups:` line of `/proc/<tid>/status`.
pub fn read_proc_groups(tid: i32) -> io::Result<Vec<u32>> {
    let mut buf = Vec::new();
    let mut groups = Vec::new();
    read_into(tid, &mut buf, &mut groups)?;
    Ok(groups)
}

fn read_into(tid: i32, buf: &mut Vec<u8>, groups: &mut Vec<u32>) -> io::Result<()> {
    if tid <= 0 {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    buf.clear();
    // Relative to the host's /proc descriptor: a sandboxed server's "/proc" is the share.
    let rel = std::ffi::CString::new(format!("{tid}/status"))
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut f = std::fs::File::from(crate::platform::open_proc_file(&rel, libc::O_RDONLY)?);
    f.read_to_end(buf)?;
    parse_groups(buf, groups)
}

fn parse_groups(status: &[u8], groups: &mut Vec<u32>) -> io::Result<()> {
    groups.clear();
    let line = status
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(b"Groups:"))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Groups: line"))?;
    for word in line
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
    {
        let gid = std::str::from_utf8(word)
            .ok()
            .and_then(|w| w.parse::<u32>().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad gid in Groups:"))?;
        groups.push(gid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_groups_line() {
        let mut g = Vec::new();
        parse_groups(
            b"Name:\tx\nGid:\t1\t1\t1\t1\nGroups:\t4 24 100 \nNgid:\t0\n",
            &mut g,
        )
        .unwrap();
        assert_eq!(g, vec![4, 24, 100]);
        parse_groups(b"Groups:\t\n", &mut g).unwrap();
        assert!(g.is_empty());
        assert!(parse_groups(b"Name:\tx\n", &mut g).is_err());
        assert!(parse_groups(b"Groups:\t4 x\n", &mut g).is_err());
    }

    #[test]
    fn reads_own_groups() {
        let g = read_proc_groups(std::process::id() as i32).unwrap();
        let mut expected: Vec<u32> = nix::unistd::getgroups()
            .unwrap()
            .into_iter()
            .map(|g| g.as_raw())
            .collect();
        expected.sort();
        let mut got = g.clone();
        got.sort();
        assert_eq!(got, expected);
    }
}
