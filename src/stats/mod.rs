//! Live per-operation statistics, between the transports and the filesystem.
//!
//! [`Counted`] wraps any `FileSystem` and records, for every operation, the number of
//! requests, errors by errno and a latency histogram of the time spent in the
//! filesystem. Each thread writes counters of its own (a load and a store each, no
//! lock, no read-modify-write), and one request in [`TIMED_ONE_IN`] is timed.
//! [`control`] serves them on a Unix socket (`ownfs stats`) and logs them on SIGUSR1.

pub mod control;
mod counted;
mod render;

use std::cell::RefCell;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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
    CopyFileRange => "copy_file_range", Tmpfile => "tmpfile", Statx => "statx",
    Syncfs => "syncfs",
}

const OPS: usize = Op::ALL.len();
/// Errnos above this are counted as this one (Linux's largest is 133).
const MAX_ERRNO: usize = 140;
/// Four buckets per power of two of nanoseconds, up to 2^33 ns (8.6 s); slower
/// requests land in the last bucket.
const SUB_BITS: u32 = 2;
const BUCKETS: usize = (33 << SUB_BITS) as usize;
/// One request in this many of each operation on each thread is timed (the first
/// always): two clock reads cost more than all the counting.
pub const TIMED_ONE_IN: u64 = 8;

/// One thread's counters of one operation. Only that thread writes them (a load and a
/// store, no read-modify-write); snapshots read them from any thread.
struct OpCounters {
    requests: AtomicU64,
    errors: AtomicU64,
    timed: AtomicU64,
    nanos: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

impl Default for OpCounters {
    fn default() -> Self {
        OpCounters {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            timed: AtomicU64::new(0),
            nanos: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl OpCounters {
    fn add_timed(&self, elapsed: Duration) {
        let nanos = elapsed.as_nanos().min(u128::from(u64::MAX)) as u64;
        bump(&self.timed, 1);
        bump(&self.nanos, nanos);
        bump(&self.buckets[bucket(nanos)], 1);
    }
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Ordering::Relaxed) + by, Ordering::Relaxed);
}

/// One thread's counters.
struct Shard {
    ops: [OpCounters; OPS],
}

/// Counters of one server, shared by its workers and its control socket.
pub struct Stats {
    id: usize,
    /// Every thread's shard, kept after the thread ends so its counts stay.
    shards: Mutex<Vec<Arc<Shard>>>,
    /// Errors are rarer than requests: one table, shared.
    errnos: Box<[[AtomicU64; MAX_ERRNO]; OPS]>,
    started: Instant,
}

impl Default for Stats {
    fn default() -> Self {
        static NEXT_ID: AtomicUsize = AtomicUsize::new(0);
        Stats {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            shards: Mutex::new(Vec::new()),
            errnos: Box::new(std::array::from_fn(|_| {
                std::array::from_fn(|_| AtomicU64::new(0))
            })),
            started: Instant::now(),
        }
    }
}

thread_local! {
    /// This thread's shard of each `Stats` it has recorded into, by id.
    static SHARDS: RefCell<Vec<(usize, Arc<Shard>)>> = const { RefCell::new(Vec::new()) };
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

    /// Runs `call` as one request of `op`, counting it, timing it if it is sampled,
    /// and counting its errno if it fails.
    #[inline]
    pub fn measure<T>(&self, op: Op, call: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        self.with_shard(|shard| {
            let c = &shard.ops[op as usize];
            let n = c.requests.load(Ordering::Relaxed);
            c.requests.store(n + 1, Ordering::Relaxed);
            let result = if n % TIMED_ONE_IN == 0 {
                let start = Instant::now();
                let result = call();
                c.add_timed(start.elapsed());
                result
            } else {
                call()
            };
            if let Err(e) = &result {
                bump(&c.errors, 1);
                let errno = e.raw_os_error().unwrap_or(libc::EIO).max(0) as usize;
                self.errnos[op as usize][errno.min(MAX_ERRNO - 1)].fetch_add(1, Ordering::Relaxed);
            }
            result
        })
    }

    /// Runs `f` on this thread's shard, made on the thread's first request.
    #[inline]
    fn with_shard<R>(&self, f: impl FnOnce(&Shard) -> R) -> R {
        SHARDS.with(|shards| {
            if let Some((_, shard)) = shards.borrow().iter().find(|(id, _)| *id == self.id) {
                return f(shard);
            }
            let shard = self.new_shard();
            shards.borrow_mut().push((self.id, shard.clone()));
            f(&shard)
        })
    }

    /// Out of line: a shard is 50 KB, and building it in `with_shard`'s frame would make
    /// every request probe that much stack.
    #[cold]
    #[inline(never)]
    fn new_shard(&self) -> Arc<Shard> {
        let shard = Arc::new(Shard {
            ops: std::array::from_fn(|_| OpCounters::default()),
        });
        self.shards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(shard.clone());
        shard
    }

    /// Every counter, each read once (relaxed): a moment's picture, not a transaction.
    pub fn snapshot(&self) -> Snapshot {
        let shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        let ops = Op::ALL
            .iter()
            .map(|&op| {
                let mut s = OpSnapshot {
                    op,
                    requests: 0,
                    errors: 0,
                    timed: 0,
                    nanos: 0,
                    buckets: [0; BUCKETS],
                    errnos: Vec::new(),
                };
                for shard in shards.iter() {
                    let c = &shard.ops[op as usize];
                    s.requests += c.requests.load(Ordering::Relaxed);
                    s.errors += c.errors.load(Ordering::Relaxed);
                    s.timed += c.timed.load(Ordering::Relaxed);
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
    /// Requests that were timed (see [`TIMED_ONE_IN`]) and the time they spent in the
    /// filesystem.
    pub timed: u64,
    pub nanos: u64,
    buckets: [u64; BUCKETS],
    /// (errno, count), only those seen.
    pub errnos: Vec<(i32, u64)>,
}

impl OpSnapshot {
    /// Mean time in the filesystem of the timed requests.
    pub fn mean_nanos(&self) -> u64 {
        self.nanos / self.timed.max(1)
    }

    /// The latency below which a fraction `q` of the timed requests finished, to the
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
        stats.with_shard(|shard| {
            for i in 0..99 {
                shard.ops[Op::Lookup as usize].add_timed(Duration::from_nanos(1000 + i));
            }
            shard.ops[Op::Lookup as usize].add_timed(Duration::from_millis(5));
        });
        let snap = stats.snapshot();
        let lookup = &snap.ops[Op::Lookup as usize];
        assert_eq!(lookup.timed, 100);
        // 1024..1098 fill most of [1024, 1280): its middle.
        assert_eq!(lookup.quantile_nanos(0.5), 1152);
        assert!(lookup.quantile_nanos(0.999) >= 4_000_000);
    }

    #[test]
    fn every_request_and_errno_counts_and_one_in_n_is_timed() {
        let stats = Arc::new(Stats::new());
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let stats = stats.clone();
                std::thread::spawn(move || {
                    for i in 0..100 {
                        let _ = stats.measure(Op::Mkdir, || match i % 10 {
                            0 => Err(io::Error::from_raw_os_error(libc::EEXIST)),
                            _ => Ok(()),
                        });
                    }
                })
            })
            .collect();
        workers.into_iter().for_each(|w| w.join().unwrap());
        let snap = stats.snapshot();
        let mkdir = &snap.ops[Op::Mkdir as usize];
        assert_eq!((mkdir.requests, mkdir.errors), (300, 30));
        assert_eq!(mkdir.errnos, vec![(libc::EEXIST, 30)]);
        assert_eq!(mkdir.timed, 3 * 100_u64.div_ceil(TIMED_ONE_IN));
        assert!(snap
            .ops
            .iter()
            .all(|o| o.op == Op::Mkdir || o.requests == 0));
    }
}
