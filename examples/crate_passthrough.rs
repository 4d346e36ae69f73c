//! Benchmark peer: fuse-backend-rs's own `PassthroughFs` with its default settings,
//! served over our `/dev/fuse` transport and protocol core. "What you get without ownfs's filesystem."
//! Usage (as root): crate_passthrough SRC MNT   (serves until SIGTERM or unmount)

use fuse_backend_rs::passthrough::{Config, PassthroughFs};
use ownfs::platform;
use ownfs::transport::fusedev::{FuseMount, MountOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args: Vec<String> = std::env::args().collect();
    let [_, src, mnt] = args.as_slice() else {
        return Err("usage: crate_passthrough SRC MNT".into());
    };
    platform::block_server_signals()?;
    let fs = PassthroughFs::<()>::new(Config {
        root_dir: src.clone(),
        do_import: true,
        ..Default::default()
    })?;
    fs.import()?;
    let mut mount = FuseMount::mount(&MountOptions::new(src.into(), mnt.into()))?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let channels = mount.channels(threads).inspect_err(|_| {
        let _ = mount.unmount();
    })?;
    mount.serve_until_done(fs, channels)?;
    Ok(())
}
