//! Metadata storm: create, stat and unlink N files in one directory; prints seconds.
//! `metastorm DIR [N]` — used by scripts/bench-metadata.sh to compare mounts side by side.

use std::fs::{self, File};
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: metastorm DIR [N]"));
    let n: usize = args.next().map(|s| s.parse().expect("N")).unwrap_or(10_000);
    let work = dir.join(format!("storm-{}", std::process::id()));
    fs::create_dir(&work).expect("mkdir");
    let names: Vec<PathBuf> = (0..n).map(|i| work.join(format!("f{i:06}"))).collect();
    let start = Instant::now();
    for p in &names {
        File::create(p).expect("create");
    }
    for p in &names {
        let m = fs::metadata(p).expect("stat");
        assert_eq!(m.len(), 0);
    }
    for p in &names {
        fs::remove_file(p).expect("unlink");
    }
    let secs = start.elapsed().as_secs_f64();
    fs::remove_dir(&work).expect("rmdir");
    println!("{secs:.4}");
}
