//! What counting costs one call, without FUSE around it: `stats_cost [CALLS]` calls
//! `getattr` of a filesystem that answers at once, bare, through `Counted` without
//! statistics, and through `Counted` with them, interleaved, on every CPU at once;
//! prints nanoseconds per call. Used by scripts/bench-stats.sh.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fuse_backend_rs::api::filesystem::{Context, FileSystem};
use ownfs::platform;
use ownfs::stats::{Counted, Stats};

/// A filesystem whose getattr costs nothing, so only the wrapper is measured.
struct Instant0;

impl FileSystem for Instant0 {
    type Inode = u64;
    type Handle = u64;

    fn getattr(
        &self,
        _ctx: &Context,
        inode: u64,
        _handle: Option<u64>,
    ) -> io::Result<(platform::stat64, Duration)> {
        let mut st = platform::zeroed_stat();
        st.st_ino = inode;
        Ok((st, Duration::ZERO))
    }
}

/// Nanoseconds per getattr through `fs`, `calls` per thread on `threads` threads.
fn per_call<F: FileSystem<Inode = u64, Handle = u64> + Send + Sync + 'static>(
    fs: &Arc<F>,
    calls: u64,
    threads: usize,
) -> f64 {
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let fs = fs.clone();
            std::thread::spawn(move || {
                let ctx = Context::default();
                let mut sum = 0u64;
                for i in 0..calls {
                    sum = sum.wrapping_add(fs.getattr(&ctx, i, None).map_or(0, |a| a.0.st_ino));
                }
                sum
            })
        })
        .collect();
    let sum: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    std::hint::black_box(sum);
    start.elapsed().as_nanos() as f64 / calls as f64
}

fn main() {
    let calls: u64 = std::env::args()
        .nth(1)
        .map_or(5_000_000, |s| s.parse().expect("CALLS"));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let bare = Arc::new(Instant0);
    let off = Arc::new(Counted::new(Instant0, None));
    let on = Arc::new(Counted::new(Instant0, Some(Arc::new(Stats::new()))));
    let (mut b, mut n, mut s) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        b.push(per_call(&bare, calls, threads));
        n.push(per_call(&off, calls, threads));
        s.push(per_call(&on, calls, threads));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (b, n, s) = (median(&mut b), median(&mut n), median(&mut s));
    println!(
        "getattr on {threads} threads, {calls} calls each, medians of 5: bare {b:.1} ns, \
         --no-stats {n:.1} ns, statistics {s:.1} ns per call (+{:.1} ns)",
        s - n
    );
}
