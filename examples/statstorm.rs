//! Stat storm: `statstorm DIR ROUNDS` stats every entry of DIR ROUNDS times and prints
//! the seconds taken. Used by the benchmark scripts to compare mounts side by side.

use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: statstorm DIR [ROUNDS]"));
    let rounds: usize = args
        .next()
        .map(|s| s.parse().expect("ROUNDS"))
        .unwrap_or(10);
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("readdir")
        .map(|e| e.expect("entry").path())
        .collect();
    names.sort();
    let start = Instant::now();
    let mut uids = 0u64;
    for _ in 0..rounds {
        for p in &names {
            let m = std::fs::symlink_metadata(p).expect("stat");
            uids += u64::from(std::os::unix::fs::MetadataExt::uid(&m));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    // Print the uid sum too so the stats cannot be optimised away.
    println!("{secs:.4} {uids}");
}
