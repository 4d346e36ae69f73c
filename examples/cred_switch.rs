//! Measures one credential switch, with and without the per-thread cache, and the cost
//! of reading a caller's groups from /proc. Run as root:
//! `cargo run --release --example cred_switch`

use std::time::Instant;

use ownfs::creds::{self, CredentialPolicy, GroupSource};

const N: u32 = 200_000;

fn per_op(label: &str, n: u32, f: impl FnMut(u32)) -> f64 {
    let mut f = f;
    let start = Instant::now();
    for i in 0..n {
        f(i);
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(n);
    println!("{label:<58} {ns:>9.0} ns");
    ns
}

fn main() {
    if ownfs::platform::geteuid() != 0 {
        eprintln!("cred_switch: run as root (it switches fsuid/fsgid/groups)");
        std::process::exit(1);
    }
    let pid = std::process::id() as i32;
    let forwarded = CredentialPolicy::new(true, GroupSource::Forwarded);
    let groups = [2001u32, 2002, 2003];

    let cached = creds::with_forwarded_groups(&groups, || {
        per_op(
            "switch, same caller again (per-thread cache hit)",
            N,
            |_| {
                forwarded.enter(1000, 1000, pid).unwrap();
            },
        )
    });
    let before = creds::thread_switch_count();
    let uncached = creds::with_forwarded_groups(&groups, || {
        per_op("switch, alternating uid (setfsuid + read-back)", N, |i| {
            forwarded.enter(1000 + (i & 1), 1000, pid).unwrap();
        })
    });
    let real = creds::thread_switch_count() - before;
    // The first call may find the thread already on that caller.
    assert!(
        real + 1 >= u64::from(N),
        "every alternating switch must reach the kernel"
    );

    let full = creds::with_forwarded_groups(&groups, || {
        per_op(
            "switch, alternating uid, gid and groups (all three calls)",
            N / 4,
            |i| {
                let g = [2001 + (i & 1)];
                creds::with_forwarded_groups(&g, || {
                    forwarded
                        .enter(1000 + (i & 1), 1000 + (i & 1), pid)
                        .unwrap()
                });
            },
        )
    });
    let proc_policy = CredentialPolicy::new(true, GroupSource::Proc);
    let proc_cached = per_op(
        "switch with /proc groups, same caller (groups cached)",
        N,
        |_| {
            proc_policy.enter(1000, 1000, pid).unwrap();
        },
    );
    let proc_read = per_op("read /proc/<pid>/status Groups: (uncached)", N / 10, |_| {
        creds::read_proc_groups(pid).unwrap();
    });
    // Back to root for a clean exit.
    forwarded.enter(0, 0, 0).unwrap();
    println!(
        "summary: cached {cached:.0} ns, uid switch {uncached:.0} ns ({:.0}x), full switch {full:.0} ns, \
         /proc groups cached {proc_cached:.0} ns vs read {proc_read:.0} ns",
        uncached / cached.max(1.0)
    );
}
