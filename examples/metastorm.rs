//! Metadata storm: create, stat and unlink N files, in one directory or spread over
//! DIRS subdirectories (a tree); prints seconds.
//! `metastorm DIR [N] [DIRS]` — used by the benchmark scripts to compare mounts side by side.

use std::fs::{self, File};
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: metastorm DIR [N] [DIRS]"));
    let n: usize = args.next().map(|s| s.parse().expect("N")).unwrap_or(10_000);
    let dirs: usize = args.next().map(|s| s.parse().expect("DIRS")).unwrap_or(1);
    let work = dir.join(format!("storm-{}", std::process::id()));
    fs::create_dir(&work).expect("mkdir");
    let subdirs: Vec<PathBuf> = if dirs > 1 {
        (0..dirs).map(|d| work.join(format!("d{d:04}"))).collect()
    } else {
        vec![work.clone()]
    };
    let names: Vec<PathBuf> = (0..n)
        .map(|i| subdirs[i % subdirs.len()].join(format!("f{i:06}")))
        .collect();
    let start = Instant::now();
    if dirs > 1 {
        for d in &subdirs {
            fs::create_dir(d).expect("mkdir");
        }
    }
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
    if dirs > 1 {
        for d in &subdirs {
            fs::remove_dir(d).expect("rmdir");
        }
    }
    let secs = start.elapsed().as_secs_f64();
    fs::remove_dir(&work).expect("rmdir");
    println!("{secs:.4}");
}
