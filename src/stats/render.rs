//! Snapshots as an aligned table for people and as JSON for programs.

use std::fmt::Write;

use super::{OpSnapshot, Snapshot, TIMED_ONE_IN};

/// Symbolic names of the errnos a file server answers with; others print as `E<n>`.
fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ETXTBSY => "ETXTBSY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::ESPIPE => "ESPIPE",
        libc::EROFS => "EROFS",
        libc::EMLINK => "EMLINK",
        libc::ERANGE => "ERANGE",
        libc::EDEADLK => "EDEADLK",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOLCK => "ENOLCK",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ELOOP => "ELOOP",
        libc::ENODATA => "ENODATA",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ESTALE => "ESTALE",
        libc::EDQUOT => "EDQUOT",
        libc::EINTR => "EINTR",
        _ => return format!("E{errno}"),
    };
    name.to_string()
}

fn duration(nanos: u64) -> String {
    match nanos {
        0..=9_999 => format!("{nanos}ns"),
        10_000..=9_999_999 => format!("{:.1}µs", nanos as f64 / 1e3),
        10_000_000..=9_999_999_999 => format!("{:.1}ms", nanos as f64 / 1e6),
        _ => format!("{:.1}s", nanos as f64 / 1e9),
    }
}

fn errnos(op: &OpSnapshot) -> String {
    let list: Vec<String> = op
        .errnos
        .iter()
        .map(|&(e, n)| format!("{}:{n}", errno_name(e)))
        .collect();
    list.join(",")
}

/// One row per operation that was called, busiest first.
pub fn table(snap: &Snapshot) -> String {
    let mut ops: Vec<&OpSnapshot> = snap.ops.iter().filter(|o| o.requests > 0).collect();
    ops.sort_by(|a, b| {
        b.requests
            .cmp(&a.requests)
            .then(a.op.name().cmp(b.op.name()))
    });
    let requests: u64 = ops.iter().map(|o| o.requests).sum();
    let errors: u64 = ops.iter().map(|o| o.errors).sum();
    let mut out = format!(
        "uptime {:.1}s, {requests} requests, {errors} errors (latency: time in the filesystem \
         of 1 in {TIMED_ONE_IN} requests)\n",
        snap.uptime.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "{:<14} {:>12} {:>9} {:>9} {:>9} {:>9}  errors by errno",
        "operation", "requests", "errors", "mean", "p50", "p99"
    );
    for o in ops {
        let line = format!(
            "{:<14} {:>12} {:>9} {:>9} {:>9} {:>9}  {}",
            o.op.name(),
            o.requests,
            o.errors,
            duration(o.mean_nanos()),
            duration(o.quantile_nanos(0.5)),
            duration(o.quantile_nanos(0.99)),
            errnos(o)
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// Every operation, called or not, with latencies in nanoseconds.
pub fn json(snap: &Snapshot) -> String {
    let mut out = format!("{{\"uptime_s\":{:.3},\"ops\":{{", snap.uptime.as_secs_f64());
    for (i, o) in snap.ops.iter().enumerate() {
        let errnos: Vec<String> = o
            .errnos
            .iter()
            .map(|&(e, n)| format!("\"{}\":{n}", errno_name(e)))
            .collect();
        let _ = write!(
            out,
            "{}\"{}\":{{\"requests\":{},\"errors\":{},\"timed\":{},\"errnos\":{{{}}},\"mean_ns\":{},\"p50_ns\":{},\"p99_ns\":{}}}",
            if i == 0 { "" } else { "," },
            o.op.name(),
            o.requests,
            o.errors,
            o.timed,
            errnos.join(","),
            o.mean_nanos(),
            o.quantile_nanos(0.5),
            o.quantile_nanos(0.99)
        );
    }
    out.push_str("}}\n");
    out
}
