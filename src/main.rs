//! `ownfs` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use fuse_backend_rs::api::server::Server;

use ownfs::creds::{CredentialPolicy, GroupSource};
use ownfs::fs::overlay::Rootless;
use ownfs::fs::{CachePolicy, Config, Passthrough};
use ownfs::platform;
use ownfs::transport::fusedev::{FuseMount, MountOptions};

#[derive(Parser)]
#[command(
    name = "ownfs",
    version,
    about = "Passthrough file server with exact POSIX ownership"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Mount SRC on MNT through /dev/fuse and serve it in the foreground.
    Mount(MountArgs),
}

#[derive(Args, Clone)]
struct MountArgs {
    /// Host directory to share.
    src: PathBuf,
    /// Where to mount it.
    mnt: PathBuf,
    /// Leave permission checks to the host alone, with the caller's credentials.
    #[arg(long)]
    no_default_permissions: bool,
    /// Worker threads, each with its own /dev/fuse fd.
    #[arg(long, default_value_t = default_threads())]
    threads: usize,
    /// Let the client kernel cache writes (WRITEBACK_CACHE).
    #[arg(long)]
    writeback: bool,
    /// Attribute and entry caching in the client kernel.
    #[arg(long, value_enum, default_value_t = CachePolicy::Auto)]
    cache: CachePolicy,
    /// Mount options, comma separated (mount(8) style; see README).
    #[arg(short = 'o', value_delimiter = ',')]
    options: Vec<String>,
    /// Virtualize ownership instead of applying it on the host (on by default without CAP_CHOWN).
    #[arg(long)]
    rootless: bool,
    /// Mount as root, then drop for good to UID:GID before serving (implies --rootless).
    #[arg(long, value_name = "UID:GID", value_parser = parse_ids)]
    run_as: Option<(u32, u32)>,
    /// In rootless mode, host files owned by the server appear owned by UID:GID.
    #[arg(long, value_name = "UID:GID", value_parser = parse_ids, default_value = "0:0")]
    default_owner: (u32, u32),
    /// Detach once mounted (used by the mount.fuse3 helper form).
    #[arg(long, hide = true)]
    daemon: bool,
}

fn parse_ids(s: &str) -> Result<(u32, u32), String> {
    let (u, g) = s.split_once(':').ok_or("expected UID:GID")?;
    let u = u.parse().map_err(|_| format!("bad uid '{u}'"))?;
    let g = g.parse().map_err(|_| format!("bad gid '{g}'"))?;
    Ok((u, g))
}

fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let cli = Cli::parse_from(helper_form_args(std::env::args_os().collect()));
    let result = match cli.command {
        Command::Mount(args) => run_mount(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("ownfs: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// mount.fuse3 runs `ownfs SRC MNT -o OPTS` and expects it to detach once mounted;
/// rewrite that form into `ownfs mount --daemon SRC MNT -o OPTS`.
fn helper_form_args(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let first = args.get(1).and_then(|a| a.to_str()).unwrap_or("");
    let is_subcommand = matches!(first, "mount" | "help") || first.starts_with('-');
    if args.len() > 2 && !is_subcommand {
        args.insert(1, "mount".into());
        args.insert(2, "--daemon".into());
    }
    args
}

/// Applies `-o` options on top of the flags.
fn apply_options(args: &mut MountArgs, mount: &mut MountOptions) -> Result<(), String> {
    for opt in args.options.clone() {
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt.as_str(), None),
        };
        match (key, value) {
            ("default_permissions", None) => mount.default_permissions = true,
            ("no_default_permissions", None) => mount.default_permissions = false,
            ("allow_other", None) => mount.allow_other = true,
            ("suid", None) => mount.suid = true,
            ("nosuid", None) => mount.suid = false,
            ("dev", None) => mount.dev = true,
            ("nodev", None) => mount.dev = false,
            ("ro", None) => mount.read_only = true,
            ("rw", None) => mount.read_only = false,
            ("exec", None) => mount.noexec = false,
            ("noexec", None) => mount.noexec = true,
            ("noatime", None) => mount.noatime = true,
            ("atime" | "relatime" | "strictatime", None) => mount.noatime = false,
            ("writeback", None) => args.writeback = true,
            ("threads", Some(v)) => {
                args.threads = v.parse().map_err(|_| format!("bad threads={v}"))?;
            }
            ("cache", Some(v)) => {
                args.cache = <CachePolicy as clap::ValueEnum>::from_str(v, true)
                    .map_err(|_| format!("bad cache={v} (never, auto or always)"))?;
            }
            // fstab-only options that mount(8) may pass along.
            (
                "defaults" | "auto" | "noauto" | "user" | "nouser" | "users" | "_netdev" | "nofail",
                None,
            ) => {}
            (k, _) if k.starts_with("x-") || k.starts_with("comment=") => {}
            _ => return Err(format!("unknown mount option '{opt}'")),
        }
    }
    Ok(())
}

fn run_mount(mut args: MountArgs) -> Result<(), String> {
    let src = &args.src;
    let meta = std::fs::metadata(src).map_err(|e| format!("source {}: {e}", src.display()))?;
    if !meta.is_dir() {
        return Err(format!("source {} is not a directory", src.display()));
    }
    let src = src
        .canonicalize()
        .map_err(|e| format!("source {}: {e}", src.display()))?;
    let mut mount_opts = MountOptions {
        source: src.clone(),
        mountpoint: args.mnt.clone(),
        default_permissions: !args.no_default_permissions,
        allow_other: true,
        suid: false,
        dev: false,
        read_only: false,
        noexec: false,
        noatime: false,
        owner: args.run_as,
    };
    apply_options(&mut args, &mut mount_opts)?;

    let ready = if args.daemon {
        Some(platform::daemonize().map_err(|e| format!("detaching: {e}"))?)
    } else {
        None
    };

    match platform::raise_nofile_limit() {
        Ok(n) => log::debug!("RLIMIT_NOFILE raised to {n}"),
        Err(e) => log::warn!("cannot raise RLIMIT_NOFILE: {e}"),
    }
    // The client kernel already applied the caller's umask.
    platform::set_umask(0);
    platform::block_termination_signals().map_err(|e| format!("signal mask: {e}"))?;

    let rootless = args.rootless || args.run_as.is_some() || !platform::has_cap_chown();
    if rootless {
        if !mount_opts.default_permissions {
            log::warn!("rootless mounts always use default_permissions");
        }
        // The client kernel checks permissions against the virtual attributes.
        mount_opts.default_permissions = true;
    }
    let mut mount = FuseMount::mount(&mount_opts).map_err(|e| e.to_string())?;
    let channels = match mount.channels(args.threads) {
        Ok(c) => c,
        Err(e) => {
            let _ = mount.unmount();
            return Err(format!("opening worker channels: {e}"));
        }
    };
    if let Some((uid, gid)) = args.run_as {
        if let Err(e) = platform::drop_privileges(uid, gid) {
            let _ = mount.unmount();
            return Err(format!("dropping to {uid}:{gid}: {e}"));
        }
        log::info!("running as {uid}:{gid}");
    }
    let switch = !rootless && platform::geteuid() == 0;
    let rootless_cfg = rootless.then(|| Rootless {
        default_uid: args.default_owner.0,
        default_gid: args.default_owner.1,
        server_uid: platform::geteuid(),
        server_gid: platform::getegid(),
        try_host_chown: platform::has_cap_chown(),
    });
    let cfg = Config {
        root: src.clone(),
        cache: args.cache,
        writeback: args.writeback,
        creds: CredentialPolicy::new(switch, GroupSource::Proc),
        rootless: rootless_cfg,
    };
    let fs = match Passthrough::new(cfg) {
        Ok(fs) => fs,
        Err(e) => {
            let _ = mount.unmount();
            return Err(format!("opening {}: {e}", src.display()));
        }
    };
    let server = Arc::new(Server::new(fs));
    let workers = match mount.serve(server, channels) {
        Ok(w) => w,
        Err(e) => {
            let _ = mount.unmount();
            return Err(format!("starting workers: {e}"));
        }
    };
    if let Some(ready) = ready {
        ready.notify();
    }

    loop {
        if let Some(sig) = platform::wait_termination_signal(200) {
            log::info!("signal {sig}: unmounting {}", mount.mountpoint().display());
            if let Err(e) = mount.unmount() {
                log::error!("unmount {}: {e}", mount.mountpoint().display());
            }
            break;
        }
        if workers.all_stopped() {
            log::info!("{} was unmounted", mount.mountpoint().display());
            break;
        }
    }
    // Workers see the connection end once the mount is gone; don't wait on stuck ones.
    for _ in 0..25 {
        if workers.all_stopped() {
            workers.join();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(40));
    }
    Ok(())
}
