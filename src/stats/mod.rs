//! Live per-operation statistics, between the transports and the filesystem.
//!
//! [`Counted`] wraps any `FileSystem` and records, for every operation, the number of
//! requests, errors by errno and a latency histogram of the time spent in the
//! filesystem. Counters live in per-thread shards of relaxed atomics: a request pays
//! two clock reads and a few uncontended additions, never a lock.
//! [`control`] serves them on a Unix socket (`ownfs stats`) and logs them on SIGUSR1.

pub mod control;
mod counted;
mod render;

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use counted::Counted;

macro_rules! ops {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// A filesystem operation, named as the FUSE opcode it answers.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Op { $($variant),* }

        impl Op {
            pub const ALL: &'static [Op] = &[$(Op::$variant),*];

            pub fn name(self) -> &'static str {
                match self { $(Op::$variant => $name),* }
            }
        }
    };
}

ops! {
    Init => "init", Destroy => "destroy", Lookup => "lookup", Forget => "forget",
    BatchForget => "batch_forget", Getattr => "getattr", Setattr => "setattr",
    Readlink => "readlink", Symlink => "symlink", Mknod => "mknod", Mkdir => "mkdir",
    Unlink => "unlink", Rmdir => "rmdir", Rename => "rename", Link => "link",
    Open => "open", Create => "create", Read => "read", Write => "write",
    Flush => "flush", Fsync => "fsync", Fallocate => "fallocate", Release => "release",
    Statfs => "statfs", Setxattr => "setxattr", Getxattr => "getxattr",
    Listxattr => "listxattr", Removexattr => "removexattr", Opendir => "opendir",
    Readdir => "readdir", Readdirplus => "readdirplus", Fsyncdir => "fsyncdir",
    Releasedir => "releasedir", Access => "access", Lseek => "lseek", Getlk => "getlk",
    Setlk => "setlk", Setlkw => "setlkw", Ioctl => "ioctl", Bmap => "bmap",
    Poll => "poll", Setupmapping => "setupmapping", Removemapping => "removemapping",
}

const OPS: usize = Op::ALL.len();
/// More worker threads than shards share shards (still correct, a little slower).
const SHARDS: usize = 16;
/// Errnos above this are counted as this one (Linux's largest is 133).
const MAX_ERRNO: usize = 140;
/// Four buckets per power of two of nanoseconds, up to 2^33 ns (8.6 s); slower
/// requests land in the last bucket.
const SUB_BITS: u32 = 2;
const BUCKETS: usize = (33 << SUB_BITS) as usize;

struct OpCounters {
    requests: AtomicU64,
    errors: AtomicU64,
    nanos: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

impl Default for OpCounters {
    fn default() -> Self {
        OpCounters {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            nanos: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// One thread's counters, on cache lines of their own.
#[repr(align(128))]
struct Shard {
    ops: [OpCounters; OPS],
}

/// Counters of one server, shared by its workers and its control socket.
pub struct Stats {
    shards: Box<[Shard]>,
    /// Errors are rarer than requests: one unsharded table.
    errnos: Box<[[AtomicU64; MAX_ERRNO]; OPS]>,
    started: Instant,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            shards: (0..SHARDS)
                .map(|_| Shard {
                    ops: std::array::from_fn(|_| OpCounters::default()),
                })
                .collect(),
            errnos: Box::new(std::array::from_fn(|_| {
                std::array::from_fn(|_| AtomicU64::new(0))
            })),
            started: Instant::now(),
        }
    }
}

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    SHARD.with(|s| {
        let mut i = s.get();
        if i == usize::MAX {
            i = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
            s.set(i);
        }
        i
    })
}

/// The histogram bucket of a latency: exact below 4 ns, then four per power of two.
fn bucket(nanos: u64) -> usize {
    if nanos < (1 << SUB_BITS) {
        return nanos as usize;
    }
    let exp = 63 - nanos.leading_zeros();
    let sub = (nanos >> (exp - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    (((exp - SUB_BITS + 1) << SUB_BITS) as usize + sub as usize).min(BUCKETS - 1)
}

/// The smallest latency that falls in `bucket`.
fn bucket_floor(bucket: usize) -> u64 {
    let per = 1usize << SUB_BITS;
    if bucket < per {
        return bucket as u64;
    }
    let exp = (bucket / per) as u32 + SUB_BITS - 1;
    let sub = (bucket % per) as u64;
    ((per as u64) | sub) << (exp - SUB_BITS)
}

/// A latency representative of `bucket`: halfway to the next bucket.
fn bucket_middle(bucket: usize) -> u64 {
    if bucket + 1 >= BUCKETS {
        return bucket_floor(bucket);
    }
    let (low, high) = (bucket_floor(bucket), bucket_floor(bucket + 1));
    low + (high - low) / 2
}

impl Stats {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one request of `op` that took `elapsed` and failed with `errno` (if any).
    pub fn record(&self, op: Op, elapsed: Duration, errno: Option<i32>) {
        let c = &self.shards[shard_index()].ops[op as usize];
        let nanos = elapsed.as_nanos().min(u64::MAX as u128) as u64;
        c.requests.fetch_add(1, Ordering::Relaxed);
        c.nanos.fetch_add(nanos, Ordering::Relaxed);
        c.buckets[bucket(nanos)].fetch_add(1, Ordering::Relaxed);
        if let Some(errno) = errno {
            c.errors.fetch_add(1, Ordering::Relaxed);
            let slot = (errno.max(0) as usize).min(MAX_ERRNO - 1);
            self.errnos[op as usize][slot].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A consistent-enough copy of every counter (each is read once, relaxed).
    pub fn snapshot(&self) -> Snapshot {
        let ops = Op::ALL
            .iter()
            .map(|&op| {
                let mut s = OpSnapshot {
                    op,
                    requests: 0,
                    errors: 0,
                    nanos: 0,
                    buckets: [0; BUCKETS],
                    errnos: Vec::new(),
                };
                for shard in self.shards.iter() {
                    let c = &shard.ops[op as usize];
                    s.requests += c.requests.load(Ordering::Relaxed);
                    s.errors += c.errors.load(Ordering::Relaxed);
                    s.nanos += c.nanos.load(Ordering::Relaxed);
                    for (sum, b) in s.buckets.iter_mut().zip(&c.buckets) {
                        *sum += b.load(Ordering::Relaxed);
                    }
                }
                s.errnos = self.errnos[op as usize]
                    .iter()
                    .enumerate()
                    .map(|(errno, n)| (errno as i32, n.load(Ordering::Relaxed)))
                    .filter(|&(_, n)| n > 0)
                    .collect();
                s
            })
            .collect();
        Snapshot {
            uptime: self.started.elapsed(),
            ops,
        }
    }
}

/// Every operation's counters at one moment.
pub struct Snapshot {
    pub uptime: Duration,
    pub ops: Vec<OpSnapshot>,
}

pub struct OpSnapshot {
    pub op: Op,
    pub requests: u64,
    pub errors: u64,
    /// Total time spent in the filesystem.
    pub nanos: u64,
    buckets: [u64; BUCKETS],
    /// (errno, count), only those seen.
    pub errnos: Vec<(i32, u64)>,
}

impl OpSnapshot {
    /// The latency below which a fraction `q` of the requests finished, to the
    /// histogram's resolution (the middle of the bucket holding that request).
    pub fn quantile_nanos(&self, q: f64) -> u64 {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_middle(i);
            }
        }
        bucket_middle(BUCKETS - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_floors_round_trip() {
        let mut last = 0;
        for nanos in (0..100_000u64).chain([1 << 20, 1 << 30, u64::MAX]) {
            let b = bucket(nanos);
            assert!(b >= last, "bucket went back at {nanos}");
            last = b;
            assert!(bucket_floor(b) <= nanos, "floor above {nanos}");
        }
        for b in 0..BUCKETS {
            assert_eq!(bucket(bucket_floor(b)), b, "bucket {b}");
        }
        // Resolution: a bucket spans a quarter of its power of two.
        assert_eq!(bucket_floor(bucket(1000)), 896);
    }

    #[test]
    fn quantiles_and_errnos_follow_what_was_recorded() {
        let stats = Stats::new();
        for i in 0..99 {
            stats.record(Op::Lookup, Duration::from_nanos(1000 + i), None);
        }
        stats.record(Op::Lookup, Duration::from_millis(5), Some(libc::ENOENT));
        let snap = stats.snapshot();
        let lookup = &snap.ops[Op::Lookup as usize];
        assert_eq!((lookup.requests, lookup.errors), (100, 1));
        assert_eq!(lookup.errnos, vec![(libc::ENOENT, 1)]);
        // 1024..1098 fill most of [1024, 1280): its middle.
        assert_eq!(lookup.quantile_nanos(0.5), 1152);
        assert!(lookup.quantile_nanos(0.999) >= 4_000_000);
        assert!(snap
            .ops
            .iter()
            .all(|o| o.op == Op::Lookup || o.requests == 0));
    }
}
