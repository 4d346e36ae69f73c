//! `ownfs` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use ownfs::creds::{CredentialPolicy, GroupSource};
use ownfs::fs::overlay::{RecordFormat, Rootless};
use ownfs::fs::{CachePolicy, Config, FileHandles, Passthrough};
use ownfs::platform;
use ownfs::sandbox;
use ownfs::sandbox::seccomp::{self, SeccompMode, Transport};
use ownfs::stats::control::{self, ControlSocket};
use ownfs::stats::{Counted, Stats};
#[cfg(target_os = "linux")]
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
    #[cfg(target_os = "linux")]
    Mount(MountArgs),
    /// List the entries of a rootless share that carry an ownership record.
    Owners(OwnersArgs),
    /// Write a rootless share as a tar archive with the owners, modes and types clients see.
    ExportTar(ExportTarArgs),
    /// Rewrite the ownership records of a rootless share in another xattr format, offline.
    ConvertRecords(ConvertRecordsArgs),
    /// Host side of fuse-pipe: serve SRC to guests that connect to the socket.
    Serve(ServeArgs),
    /// Guest side of fuse-pipe: mount MNT, forwarding every operation to a server.
    #[cfg(target_os = "linux")]
    Client(ClientArgs),
    /// vhost-user virtio-fs device for a VMM (QEMU vhost-user-fs-pci), like virtiofsd.
    Virtiofs(VirtiofsArgs),
    /// Per-operation statistics of a running server (requests, errors, latency).
    Stats(StatsQueryArgs),
    /// Write the man pages (ownfs.1, ownfs-SUBCOMMAND.1) into DIR (scripts/package.sh).
    #[command(hide = true)]
    Manpage { dir: PathBuf },
}

/// How a server applies ownership: shared by `mount`, `serve` and `virtiofs`.
#[derive(Args, Clone)]
struct OwnershipArgs {
    /// Virtualize ownership instead of applying it on the host (on by default without CAP_CHOWN).
    #[arg(long)]
    rootless: bool,
    /// Drop for good to UID:GID once the mount or socket is set up, before serving
    /// (implies --rootless).
    #[arg(long, value_name = "UID:GID", value_parser = parse_ids)]
    run_as: Option<(u32, u32)>,
    /// In rootless mode, host files owned by the server appear owned by UID:GID.
    #[arg(long, value_name = "UID:GID", value_parser = parse_ids, default_value = "0:0")]
    default_owner: (u32, u32),
    /// In rootless mode, the xattr that records owners of files and directories:
    /// `ownfs` (user.ownfs.stat), `containers` (user.containers.override_stat, as
    /// podman, buildah and libkrun use) or `fuse-overlayfs`
    /// (user.fuseoverlayfs.override_stat). All are read, this one first.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = RecordFormat::Ownfs)]
    record_format: RecordFormat,
}

impl OwnershipArgs {
    fn rootless(&self) -> bool {
        self.rootless || self.run_as.is_some() || !platform::has_cap_chown()
    }

    /// The overlay settings, read after privileges were dropped.
    fn config(&self, rootless: bool) -> Option<Rootless> {
        rootless.then(|| Rootless {
            default_uid: self.default_owner.0,
            default_gid: self.default_owner.1,
            server_uid: platform::geteuid(),
            server_gid: platform::getegid(),
            try_host_chown: platform::has_cap_chown(),
            format: self.record_format,
        })
    }
}

/// How a server confines itself: shared by `mount`, `serve` and `virtiofs`.
#[derive(Args, Clone)]
struct SandboxArgs {
    /// Confine the server to the shared directory [default: namespace where the
    /// server may create one, else chroot as root, else none]. `none` weakens the
    /// threat model: a compromised server can reach the whole host file tree.
    #[arg(long, value_enum, value_name = "MODE")]
    sandbox: Option<sandbox::Mode>,
    /// What the kernel does with a syscall outside the server's allow-list, once it
    /// serves: `kill` the process, `log` it and let it run, or `none` (no filter).
    /// `log` and `none` weaken the sandbox: use them only to debug. macOS has no
    /// seccomp: only `none` there.
    #[arg(long, value_enum, value_name = "ACTION", default_value_t = SeccompMode::DEFAULT)]
    seccomp: SeccompMode,
}

impl SandboxArgs {
    /// Installs the filter; called once setup is done, before any client is served.
    fn install(&self, transport: Transport) -> Result<(), String> {
        seccomp::install(transport, self.seccomp).map_err(|e| format!("seccomp: {e}"))
    }
}

/// How many host inodes the server keeps open, and how it reopens the others.
/// Live statistics of a server: shared by `mount`, `serve` and `virtiofs`.
#[derive(Args, Clone)]
struct StatsArgs {
    /// Control socket for `ownfs stats`, answering root and the server's user only
    /// [default: /run/ownfs/stats/<mountpoint or socket>.sock; for other users, under
    /// $XDG_RUNTIME_DIR].
    #[arg(long, value_name = "PATH")]
    stats_socket: Option<PathBuf>,
    /// Keep no per-operation statistics and open no control socket.
    #[arg(long, conflicts_with = "stats_socket")]
    no_stats: bool,
}

/// A server's counters and the control socket that answers for them (bound at setup,
/// answering once serving, its file removed when the server ends).
struct StatsService {
    stats: Arc<Stats>,
    socket: Option<ControlSocket>,
    file: Option<sandbox::SocketFile>,
}

impl StatsArgs {
    /// Counters for the server of `target` (its mountpoint or socket), and its control
    /// socket, bound now: before the sandbox hides the runtime directory.
    fn bind(&self, target: Option<&std::path::Path>) -> Result<Option<StatsService>, String> {
        if self.no_stats {
            return Ok(None);
        }
        let default = target.and_then(control::socket_for);
        let bound = match (&self.stats_socket, default) {
            (Some(path), _) => Some(
                bind_control(path)
                    .map_err(|e| format!("--stats-socket {}: {e}", path.display()))?,
            ),
            (None, Some(path)) => bind_control(&path)
                .inspect_err(|e| {
                    log::warn!(
                        "statistics socket {}: {e}; `ownfs stats` will not reach this server",
                        path.display()
                    )
                })
                .ok(),
            (None, None) => {
                log::info!("no statistics socket (no default here): see --stats-socket");
                None
            }
        };
        let (socket, file) = bound.unzip();
        Ok(Some(StatsService {
            stats: Arc::new(Stats::new()),
            socket,
            file,
        }))
    }
}

fn bind_control(path: &std::path::Path) -> std::io::Result<(ControlSocket, sandbox::SocketFile)> {
    let socket = ControlSocket::bind(path)?;
    let file = sandbox::SocketFile::new(path)?;
    Ok((socket, file))
}

impl StatsService {
    fn counters(service: &Option<StatsService>) -> Option<Arc<Stats>> {
        service.as_ref().map(|s| s.stats.clone())
    }

    /// Starts answering SIGUSR1 and `ownfs stats`, once the server is confined and set up.
    fn start(service: &mut Option<StatsService>) {
        let Some(s) = service else { return };
        if let Err(e) = control::log_on_sigusr1(s.stats.clone()) {
            log::warn!("statistics on SIGUSR1: {e}");
        }
        let Some(socket) = s.socket.take() else {
            return;
        };
        let path = socket.path().display().to_string();
        match socket.serve(s.stats.clone()) {
            Ok(()) => log::info!("statistics: ownfs stats --socket {path}"),
            Err(e) => log::warn!("statistics socket {path}: {e}"),
        }
    }
}

impl Drop for StatsService {
    fn drop(&mut self) {
        if let Some(file) = &self.file {
            file.remove();
        }
    }
}

#[derive(Args)]
struct StatsQueryArgs {
    /// The server's mountpoint or socket path (as it was given to the server).
    #[arg(required_unless_present = "socket")]
    target: Option<PathBuf>,
    /// Its control socket, where it is not at the default place (see --stats-socket).
    #[arg(long, value_name = "PATH", conflicts_with = "target")]
    socket: Option<PathBuf>,
    /// Print JSON (latencies in nanoseconds) instead of a table.
    #[arg(long)]
    json: bool,
}

/// What names a pipe server to `ownfs stats`: its socket's absolute path, or its vsock
/// address in one spelling.
fn pipe_stats_target(address: &ownfs::socket::Address) -> Result<PathBuf, String> {
    use ownfs::socket::Address;
    match address {
        Address::Unix(path) => std::path::absolute(path).map_err(|e| format!("socket: {e}")),
        vsock => Ok(PathBuf::from(format!("/{vsock}"))),
    }
}

fn run_stats(args: StatsQueryArgs) -> Result<(), String> {
    let socket = match (args.socket, args.target) {
        (Some(socket), _) => socket,
        (None, Some(target)) => {
            let address = target.to_str().and_then(|t| t.parse().ok());
            let target = match address {
                Some(address) => pipe_stats_target(&address)?,
                None => std::path::absolute(&target)
                    .map_err(|e| format!("{}: {e}", target.display()))?,
            };
            control::socket_for(&target)
                .ok_or("no runtime directory for this user ($XDG_RUNTIME_DIR): pass --socket")?
        }
        (None, None) => return Err("a mountpoint, a socket or --socket is required".into()),
    };
    let out = control::query(&socket, args.json).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => format!(
            "no server answers on {} (is it running, with statistics on?)",
            socket.display()
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "{}: only root and the server's user may read its statistics",
            socket.display()
        ),
        _ => format!("{}: {e}", socket.display()),
    })?;
    print!("{out}");
    Ok(())
}

#[derive(Args, Clone)]
struct InodeArgs {
    /// How an inode whose fd was evicted is opened again: by file handle (needs
    /// CAP_DAC_READ_SEARCH and a filesystem that exports handles), or through its parent
    /// and name, checked to still be the same object (else ESTALE). `prefer` takes
    /// handles where they work; `mandatory` refuses to start without them.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = FileHandles::Prefer)]
    inode_file_handles: FileHandles,
    /// Most host inodes held open at once [default: half the fd limit]; 0 keeps every
    /// inode the client knows open, as many as the fd limit allows.
    #[arg(long, value_name = "N")]
    max_open_fds: Option<usize>,
}

/// Who served a rootless share, for the offline tools.
#[derive(Args, Clone)]
struct ShareIds {
    /// Host files owned by the server appear owned by UID:GID (as `mount --default-owner`).
    #[arg(long, value_name = "UID:GID", value_parser = parse_ids, default_value = "0:0")]
    default_owner: (u32, u32),
    /// The UID:GID the server ran as [default: the owner of SRC].
    #[arg(long, value_name = "UID:GID", value_parser = parse_ids)]
    server_owner: Option<(u32, u32)>,
    /// Which record xattr wins where an entry has both (as the server's --record-format).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = RecordFormat::Ownfs)]
    record_format: RecordFormat,
}

impl ShareIds {
    fn options(&self) -> ownfs::tools::Options {
        ownfs::tools::Options {
            default_owner: self.default_owner,
            server_owner: self.server_owner,
            format: self.record_format,
        }
    }
}

#[derive(Args, Clone)]
struct OwnersArgs {
    /// Host directory a rootless server shared.
    src: PathBuf,
    #[command(flatten)]
    ids: ShareIds,
}

#[derive(Args, Clone)]
struct ExportTarArgs {
    /// Host directory a rootless server shared.
    src: PathBuf,
    /// Archive to write (`-`: standard output).
    out: PathBuf,
    #[command(flatten)]
    ids: ShareIds,
}

#[derive(Args, Clone)]
struct ConvertRecordsArgs {
    /// Host directory a rootless server shared (serve it with no server running).
    src: PathBuf,
    /// The format to convert to: `ownfs` (user.ownfs.stat), `containers`
    /// (user.containers.override_stat) or `fuse-overlayfs` (user.fuseoverlayfs.override_stat).
    #[arg(long, value_enum, value_name = "FORMAT")]
    to: RecordFormat,
    #[command(flatten)]
    ids: ShareIds,
}

#[cfg(target_os = "linux")]
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
    /// Let the client kernel cache writes (WRITEBACK_CACHE; turns kernel passthrough off).
    #[arg(long)]
    writeback: bool,
    /// Serve every read and write instead of letting the client kernel do them on the
    /// host file itself (kernel passthrough, on by default where the kernel and
    /// privileges allow it).
    #[arg(long)]
    no_passthrough: bool,
    /// FUSE over io_uring (Linux 6.14+): requests and answers through one ring per CPU
    /// instead of read(2) and write(2) on /dev/fuse. `auto` uses it when the kernel's
    /// fuse module allows it (/sys/module/fuse/parameters/enable_uring); `on` refuses to
    /// start without it.
    #[arg(long, value_enum, default_value_t = IoUringMode::Auto)]
    io_uring: IoUringMode,
    /// Attribute and entry caching in the client kernel.
    #[arg(long, value_enum, default_value_t = CachePolicy::Auto)]
    cache: CachePolicy,
    /// Mount options, comma separated (mount(8) style; see README).
    #[arg(short = 'o', value_delimiter = ',')]
    options: Vec<String>,
    #[command(flatten)]
    own: OwnershipArgs,
    #[command(flatten)]
    inodes: InodeArgs,
    #[command(flatten)]
    sandbox: SandboxArgs,
    #[command(flatten)]
    stats: StatsArgs,
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

#[cfg(target_os = "linux")]
fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(helper_form_args(std::env::args_os().collect()));
    let log_level = match &cli.command {
        Command::Virtiofs(args) => args.log_level.map(LogLevel::filter),
        _ => None,
    };
    init_logging(log_level);
    let result = match cli.command {
        #[cfg(target_os = "linux")]
        Command::Mount(args) => run_mount(args),
        Command::Owners(args) => run_owners(args),
        Command::ExportTar(args) => run_export_tar(args),
        Command::ConvertRecords(args) => run_convert_records(args),
        Command::Serve(args) => run_serve(args),
        #[cfg(target_os = "linux")]
        Command::Client(args) => run_client(args),
        Command::Virtiofs(args) => run_virtiofs(args),
        Command::Stats(args) => run_stats(args),
        Command::Manpage { dir } => write_manpages(&dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("ownfs: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// An explicit level wins over RUST_LOG; without one, RUST_LOG or `info`.
fn init_logging(level: Option<&str>) {
    let mut builder = match level {
        Some(level) => {
            let mut b = env_logger::Builder::new();
            b.parse_filters(level);
            b
        }
        None => env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")),
    };
    builder.format_timestamp_millis().init();
}

/// mount.fuse3 runs `ownfs SRC MNT -o OPTS` and expects it to detach once mounted;
/// rewrite that form into `ownfs mount --daemon SRC MNT -o OPTS`. Run as
/// `ownfs-virtiofsd` (a link), it is `ownfs virtiofs`: libvirt runs a virtiofsd binary
/// with no subcommand.
fn helper_form_args(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let argv0 = args.first().map(std::path::Path::new);
    if argv0.and_then(|p| p.file_name()) == Some(std::ffi::OsStr::new("ownfs-virtiofsd")) {
        args.insert(1, "virtiofs".into());
        return args;
    }
    let first = args.get(1).and_then(|a| a.to_str()).unwrap_or("");
    let is_subcommand = first == "help"
        || first.starts_with('-')
        || <Cli as clap::CommandFactory>::command()
            .get_subcommands()
            .any(|c| c.get_name() == first);
    if args.len() > 2 && !is_subcommand {
        args.insert(1, "mount".into());
        args.insert(2, "--daemon".into());
    }
    args
}

/// Applies `-o` options on top of the flags.
#[cfg(target_os = "linux")]
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
            ("passthrough", None) => args.no_passthrough = false,
            ("no_passthrough", None) => args.no_passthrough = true,
            ("io_uring", Some(v)) => {
                args.io_uring = <IoUringMode as clap::ValueEnum>::from_str(v, true)
                    .map_err(|_| format!("bad io_uring={v} (auto, on or off)"))?;
            }
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

/// `path` as an absolute, canonical directory, or a message naming it as `label`.
fn source_dir(path: &std::path::Path, label: &str) -> Result<PathBuf, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{label} {}: {e}", path.display()))?;
    if !meta.is_dir() {
        return Err(format!("{label} {} is not a directory", path.display()));
    }
    path.canonicalize()
        .map_err(|e| format!("{label} {}: {e}", path.display()))
}

/// Once set up, a root server keeps only the capabilities serving needs (SERVER_CAPS),
/// in every set including the bounding set; worker threads then lower their effective
/// set per caller (creds).
fn restrict_capabilities() -> Result<(), String> {
    #[cfg(target_os = "linux")]
    if platform::geteuid() == 0 {
        platform::restrict_capabilities(platform::SERVER_CAPS)
            .map_err(|e| format!("dropping capabilities: {e}"))?;
    }
    Ok(())
}

/// Every cached inode pins an fd: take all the fds the hard limit allows.
fn raise_fd_limit() {
    match platform::raise_nofile_limit() {
        Ok(n) => log::debug!("RLIMIT_NOFILE raised to {n}"),
        Err(e) => log::warn!("cannot raise RLIMIT_NOFILE: {e}"),
    }
}

#[cfg(target_os = "linux")]
fn run_mount(mut args: MountArgs) -> Result<(), String> {
    let src = source_dir(&args.src, "source")?;
    // Absolute: the server's cwd becomes /proc before it serves.
    let mnt = std::env::current_dir()
        .map(|cwd| cwd.join(&args.mnt))
        .map_err(|e| format!("current directory: {e}"))?;
    let mut mount_opts = MountOptions {
        default_permissions: !args.no_default_permissions,
        owner: args.own.run_as,
        ..MountOptions::new(src.clone(), mnt)
    };
    apply_options(&mut args, &mut mount_opts)?;

    let ready = if args.daemon {
        Some(platform::daemonize().map_err(|e| format!("detaching: {e}"))?)
    } else {
        None
    };

    raise_fd_limit();
    // The client kernel already applied the caller's umask.
    platform::set_umask(0);
    platform::block_server_signals().map_err(|e| format!("signal mask: {e}"))?;
    let stats_target = std::path::absolute(&args.mnt).map_err(|e| format!("mountpoint: {e}"))?;
    let mut stats = args.stats.bind(Some(&stats_target))?;

    let rootless = args.own.rootless();
    if rootless {
        if !mount_opts.default_permissions {
            log::warn!("rootless mounts always use default_permissions");
        }
        // The client kernel checks permissions against the virtual attributes.
        mount_opts.default_permissions = true;
    }
    let mut mount = FuseMount::mount(&mount_opts).map_err(|e| e.to_string())?;
    // Every step until the workers run unmounts again if it fails.
    let serving = (|| {
        let channels = mount
            .channels(args.threads)
            .map_err(|e| format!("opening worker channels: {e}"))?;
        // Rootless servers see every write so the overlay can clear set-id bits.
        let backing = if args.no_passthrough || rootless {
            None
        } else {
            let b = mount.offer_passthrough();
            Some(b.map_err(|e| format!("preparing kernel passthrough: {e}"))?)
        };
        offer_io_uring(&mut mount, args.io_uring)?;
        // Unmounting on the host needs a process left outside the sandbox and still
        // root; under seccomp an unprivileged server can no longer run fusermount3 either.
        let fusermount_helper =
            platform::geteuid() != 0 && args.sandbox.seccomp != SeccompMode::None;
        if args.own.run_as.is_some()
            || sandbox::may_confine(args.sandbox.sandbox)
            || fusermount_helper
        {
            mount
                .keep_unmount_helper()
                .map_err(|e| format!("starting the unmount helper: {e}"))?;
        }
        let confined = sandbox::enter(&sandbox::Request {
            mode: args.sandbox.sandbox,
            share: &src,
            new_net: true,
            drop_mount: Some(&mount_opts.mountpoint),
        })
        .map_err(|e| format!("sandbox: {e}"))?;
        if let Some((uid, gid)) = args.own.run_as {
            platform::drop_privileges(uid, gid)
                .map_err(|e| format!("dropping to {uid}:{gid}: {e}"))?;
            log::info!("running as {uid}:{gid}");
        }
        let switch = !rootless && platform::geteuid() == 0;
        restrict_capabilities()?;
        let cfg = Config {
            root: confined.root.clone(),
            cache: args.cache,
            writeback: args.writeback,
            creds: CredentialPolicy::new(switch, GroupSource::Proc),
            rootless: args.own.config(rootless),
            posix_acl: mount_opts.default_permissions,
            uncached_metadata: !mount_opts.default_permissions,
            read_only: mount_opts.read_only,
            backing,
            file_handles: args.inodes.inode_file_handles,
            max_open_fds: args.inodes.max_open_fds,
        };
        let fs = Passthrough::new(cfg).map_err(|e| format!("opening {}: {e}", src.display()))?;
        args.sandbox.install(Transport::Mount)?;
        mount
            .serve(Counted::new(fs, StatsService::counters(&stats)), channels)
            .map_err(|e| format!("starting workers: {e}"))
    })();
    let workers = serving.inspect_err(|_| {
        let _ = mount.unmount();
    })?;
    StatsService::start(&mut stats);
    if let Some(ready) = ready {
        ready.notify();
    }
    mount.run_until_done(workers).map_err(|e| e.to_string())
}

fn run_owners(args: OwnersArgs) -> Result<(), String> {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let progress = ownfs::tools::progress::Progress::stderr("owners");
    let res = ownfs::tools::owners::list(&args.src, &args.ids.options(), &mut out, &progress)
        .and_then(|n| out.flush().map(|()| n));
    if let Ok(n) = res {
        progress.finish(format_args!(
            "{n} of {} entries with a record",
            progress.entries()
        ));
    }
    match res {
        // `ownfs owners SRC | head` is fine.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.map(drop).map_err(|e| e.to_string()),
    }
}

fn run_convert_records(args: ConvertRecordsArgs) -> Result<(), String> {
    let progress = ownfs::tools::progress::Progress::stderr("convert-records");
    let sum = ownfs::tools::convert::convert(&args.src, &args.ids.options(), args.to, &progress)
        .map_err(|e| e.to_string())?;
    // The summary below is the one line: no timing line of its own.
    progress.clear();
    println!(
        "{}: {} records converted, {} already in that format, {} entries without a record {}, \
         {} unreadable records left as they are",
        args.src.display(),
        sum.converted,
        sum.kept,
        sum.tagged,
        if args.to.tags_every_inode() {
            "tagged"
        } else {
            "untagged"
        },
        sum.unreadable
    );
    Ok(())
}

fn run_export_tar(args: ExportTarArgs) -> Result<(), String> {
    let progress = ownfs::tools::progress::Progress::stderr("export-tar");
    let n = ownfs::tools::tar::export(&args.src, &args.out, &args.ids.options(), &progress)
        .map_err(|e| e.to_string())?;
    progress.finish(format_args!("{n} entries, {}", progress.bytes()));
    Ok(())
}

// ---- fuse-pipe (docs/protocol.md): `serve` on the host, `client` in the guest ----

#[derive(Args, Clone)]
struct ServeArgs {
    /// Host directory to share.
    src: PathBuf,
    /// unix:PATH, or vsock:PORT (vsock:CID:PORT binds one CID). Firecracker delivers a
    /// guest's connection to vsock port P at the host socket {uds_path}_{P}.
    #[arg(long, value_name = "ADDR")]
    listen: ownfs::socket::Address,
    #[command(flatten)]
    own: OwnershipArgs,
    #[command(flatten)]
    inodes: InodeArgs,
    #[command(flatten)]
    sandbox: SandboxArgs,
    #[command(flatten)]
    stats: StatsArgs,
    /// Worker threads per connection.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Attribute and entry caching in the client kernel.
    #[arg(long, value_enum, default_value_t = CachePolicy::Auto)]
    cache: CachePolicy,
    /// Unix socket: let this group (name or number) connect too; the socket becomes
    /// 0660 and owned by GROUP. WEAKENS security: members may connect (they are
    /// served only if --allow-uid lists their uid, or is `any`).
    #[arg(long, value_name = "GROUP")]
    socket_group: Option<String>,
    /// Unix socket: its mode, in octal [default: 0600, or 0660 with --socket-group].
    /// Anything beyond 0600 WEAKENS security: it lets more local users connect, leaving
    /// only the --allow-uid and --token-file checks in their way.
    #[arg(long, value_name = "OCTAL", value_parser = parse_mode)]
    socket_mode: Option<u32>,
    /// Unix socket: also serve peers with this uid (user name or number; repeatable).
    /// Root and the server's own uid are always served. `any` turns the peer check off
    /// and WEAKENS security: any local user who can open the socket can act as any uid
    /// on the share, root included. Not checked on vsock (no peer uid there).
    #[arg(long, value_name = "UID|any", value_parser = parse_allow_uid)]
    allow_uid: Vec<AllowUid>,
    /// Require every client to send the secret in FILE first (Unix and vsock).
    /// FILE must be a regular file owned by root or the server's user, with no access
    /// for group or others (chmod 600); one trailing newline is ignored. Read before
    /// dropping privileges; never logged. Without it, a vsock listener serves any
    /// process of any guest that can reach the port.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

/// An `--allow-uid` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AllowUid {
    Any,
    Uid(u32),
}

fn parse_allow_uid(s: &str) -> Result<AllowUid, String> {
    if s == "any" {
        return Ok(AllowUid::Any);
    }
    if let Ok(uid) = s.parse() {
        return Ok(AllowUid::Uid(uid));
    }
    match nix::unistd::User::from_name(s) {
        Ok(Some(u)) => Ok(AllowUid::Uid(u.uid.as_raw())),
        Ok(None) => Err(format!("unknown user '{s}' (a uid, a user name or 'any')")),
        Err(e) => Err(format!("looking up user '{s}': {e}")),
    }
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(format!(
            "bad mode '{s}': expected octal permission bits, e.g. 0600"
        )),
    }
}

#[cfg(target_os = "linux")]
#[derive(Args, Clone)]
struct ClientArgs {
    /// Where to mount the share.
    mnt: PathBuf,
    /// The server: vsock:CID:PORT (the host is CID 2) or unix:PATH.
    #[arg(long, value_name = "ADDR")]
    connect: ownfs::socket::Address,
    /// Threads reading the kernel's requests (replies are matched as they come, so
    /// many requests are in flight at once).
    #[arg(long, default_value_t = default_threads().max(4))]
    threads: usize,
    /// Leave permission checks to the host alone (ignored if the server is rootless).
    #[arg(long)]
    no_default_permissions: bool,
    /// Let the client kernel cache writes (WRITEBACK_CACHE).
    #[arg(long)]
    writeback: bool,
    /// Seconds a request waits while the server is unreachable before it fails with EIO
    /// (also the limit for the first connection).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    timeout: u64,
    /// Send the secret in FILE to a server that requires one (serve --token-file).
    /// FILE must be owned by root or by you, with no access for others and group
    /// access only for group root (chmod 600, or 640 root:root); else the client
    /// refuses to start.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

fn run_serve(args: ServeArgs) -> Result<(), String> {
    use ownfs::socket::{Address, Listener, SocketPerms};
    use ownfs::transport::pipe::auth::{PeerPolicy, Token, TokenFileAccess};
    use ownfs::transport::pipe::{server, wire};
    let src = source_dir(&args.src, "source")?;
    let group = args.socket_group.as_deref().map(parse_group).transpose()?;
    // Before dropping privileges: the file is root's or the server user's alone.
    let token = args
        .token_file
        .as_deref()
        .map(|p| {
            Token::read_file(p, TokenFileAccess::OwnerOnly)
                .map_err(|e| format!("--token-file {}: {e}", p.display()))
        })
        .transpose()?;
    let peers = if args.allow_uid.contains(&AllowUid::Any) {
        PeerPolicy::Any
    } else {
        let uids: Vec<u32> = args
            .allow_uid
            .iter()
            .filter_map(|a| match a {
                AllowUid::Uid(u) => Some(*u),
                AllowUid::Any => None,
            })
            .collect();
        PeerPolicy::with_defaults(&uids)
    };
    match &args.listen {
        Address::Vsock { .. } => {
            if token.is_none() {
                log::warn!(
                    "{} has no --token-file: ANY process in a guest that can reach this \
                     port, not only guest root, can connect and act as any uid on the share \
                     (root included); vsock has no peer uid to check",
                    args.listen
                );
            }
            if !args.allow_uid.is_empty()
                || args.socket_group.is_some()
                || args.socket_mode.is_some()
            {
                log::warn!(
                    "--allow-uid, --socket-group and --socket-mode apply to Unix sockets only"
                );
            }
        }
        Address::Unix(_) => {
            if peers == PeerPolicy::Any && token.is_none() {
                log::warn!(
                    "--allow-uid any without --token-file: every local user who can open \
                     the socket can act as any uid on the share (root included)"
                );
            }
            if group.is_some() && args.allow_uid.is_empty() {
                log::warn!(
                    "--socket-group without --allow-uid: group members can connect but only \
                     root and the server's uid are served"
                );
            }
        }
    }
    raise_fd_limit();
    // The client kernel already applied the caller's umask.
    platform::set_umask(0);
    platform::block_server_signals().map_err(|e| format!("signal mask: {e}"))?;
    let perms = SocketPerms::new(args.socket_mode, group);
    let auth = format!(
        "{}{}",
        match (&args.listen, &peers) {
            (Address::Vsock { .. }, _) => String::new(),
            (Address::Unix(_), PeerPolicy::Any) =>
                format!("; socket {:04o}, any peer uid", perms.mode),
            (Address::Unix(_), PeerPolicy::Uids(u)) => format!(
                "; socket {:04o}, peer uids {}",
                perms.mode,
                u.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
            ),
        },
        if token.is_some() {
            "; token required"
        } else {
            ""
        }
    );
    let listener = Listener::bind_with(&args.listen, perms)
        .map_err(|e| format!("listening on {}: {e}", args.listen))?;
    let socket_file = match listener.path().map(sandbox::SocketFile::new).transpose() {
        Ok(f) => f,
        Err(e) => return Err(format!("socket {}: {e}", args.listen)),
    };
    let mut stats = args.stats.bind(Some(&pipe_stats_target(&args.listen)?))?;
    let (fs, rootless) = build_served(
        &Served {
            src: &src,
            sandbox: &args.sandbox,
            own: &args.own,
            inodes: &args.inodes,
            cache: args.cache,
            // An accepted Unix socket works from an empty network namespace; vsock could
            // not be tested here, so a vsock listener keeps the host's.
            new_net: matches!(args.listen, ownfs::socket::Address::Unix(_)),
            // Used only when a client asks for it at init.
            writeback: true,
            // ACLs are the guest kernel's business; the host enforces them per request.
            posix_acl: false,
            read_only: false,
            transport: Transport::Serve,
        },
        socket_file.as_ref(),
    )?;
    let mut caps = wire::CAP_WRITEBACK;
    if rootless {
        caps |= wire::CAP_ROOTLESS;
    }
    let opts = server::ServeOptions {
        workers: args.threads.max(1),
        caps,
        peers,
        token,
        ..Default::default()
    };
    let server = server::PipeServer::new(
        Arc::new(Counted::new(fs, StatsService::counters(&stats))),
        opts,
    );
    StatsService::start(&mut stats);
    let acceptor = std::thread::Builder::new()
        .name("ownfs-pipe-accept".into())
        .spawn(move || server.run(&listener))
        .map_err(|e| format!("starting the accept thread: {e}"))?;
    log::info!(
        "serving {} on {}{}{auth}",
        src.display(),
        args.listen,
        if rootless { " (rootless)" } else { "" }
    );
    let result = loop {
        if let Some(sig) = platform::wait_termination_signal(200) {
            log::info!("signal {sig}: stopping");
            break Ok(());
        }
        if acceptor.is_finished() {
            break match acceptor.join() {
                Ok(Err(e)) => Err(format!("accepting connections: {e}")),
                _ => Err("the accept thread stopped".to_string()),
            };
        }
    };
    socket_file.iter().for_each(sandbox::SocketFile::remove);
    result
}

/// What `serve` and `virtiofs` choose differently about the filesystem they serve.
struct Served<'a> {
    src: &'a std::path::Path,
    sandbox: &'a SandboxArgs,
    own: &'a OwnershipArgs,
    inodes: &'a InodeArgs,
    cache: CachePolicy,
    /// Also unshare the network namespace.
    new_net: bool,
    writeback: bool,
    posix_acl: bool,
    read_only: bool,
    transport: Transport,
}

/// Confines the server to the share, drops to `--run-as`, builds the filesystem and
/// installs the seccomp filter, in that order, for a server whose socket is bound;
/// on failure the socket file is removed. Returns the filesystem and whether it is
/// rootless.
fn build_served(
    s: &Served<'_>,
    socket: Option<&sandbox::SocketFile>,
) -> Result<(Passthrough, bool), String> {
    let built = (|| {
        let confined = sandbox::enter(&sandbox::Request {
            mode: s.sandbox.sandbox,
            share: s.src,
            new_net: s.new_net,
            drop_mount: None,
        })
        .map_err(|e| format!("sandbox: {e}"))?;
        if let Some((uid, gid)) = s.own.run_as {
            platform::drop_privileges(uid, gid)
                .map_err(|e| format!("dropping to {uid}:{gid}: {e}"))?;
            log::info!("running as {uid}:{gid}");
        }
        let rootless = s.own.rootless();
        let switch = !rootless && platform::geteuid() == 0;
        restrict_capabilities()?;
        let cfg = Config {
            root: confined.root.clone(),
            cache: s.cache,
            writeback: s.writeback,
            // The pipe forwards the caller's groups; virtio-fs forwards none (see the
            // transport and README).
            creds: CredentialPolicy::new(switch, GroupSource::Forwarded),
            rootless: s.own.config(rootless),
            posix_acl: s.posix_acl,
            uncached_metadata: false,
            read_only: s.read_only,
            backing: None,
            file_handles: s.inodes.inode_file_handles,
            max_open_fds: s.inodes.max_open_fds,
        };
        let fs = Passthrough::new(cfg).map_err(|e| format!("opening {}: {e}", s.src.display()))?;
        s.sandbox.install(s.transport)?;
        Ok((fs, rootless))
    })();
    if built.is_err() {
        if let Some(f) = socket {
            f.remove();
        }
    }
    built
}

#[cfg(target_os = "linux")]
fn run_client(args: ClientArgs) -> Result<(), String> {
    use ownfs::transport::pipe::auth::{Token, TokenFileAccess};
    use ownfs::transport::pipe::{client, wire};
    let token = args
        .token_file
        .as_deref()
        .map(|p| {
            Token::read_file(p, TokenFileAccess::RootGroup)
                .map_err(|e| format!("--token-file {}: {e}", p.display()))
        })
        .transpose()?;
    raise_fd_limit();
    platform::block_server_signals().map_err(|e| format!("signal mask: {e}"))?;
    let conn = client::Client::start(client::ClientOptions {
        addr: args.connect.clone(),
        timeout: std::time::Duration::from_secs(args.timeout.max(1)),
        writeback: args.writeback,
        token,
    })
    .map_err(|e| format!("{}: {e}", args.connect))?;
    let rootless = conn.server_caps() & wire::CAP_ROOTLESS != 0;
    if rootless && args.no_default_permissions {
        log::warn!("the server is rootless: using default_permissions");
    }
    let mount_opts = MountOptions {
        // A rootless server's owners are virtual: only the client kernel can check them.
        default_permissions: !args.no_default_permissions || rootless,
        ..MountOptions::new(PathBuf::from(args.connect.to_string()), args.mnt.clone())
    };
    let mut mount = FuseMount::mount(&mount_opts).map_err(|e| e.to_string())?;
    let workers = mount
        .channels(1)
        .and_then(|mut fds| {
            let device = fds
                .pop()
                .ok_or_else(|| std::io::Error::other("no FUSE channel"))?;
            conn.serve(device, args.threads, !mount_opts.default_permissions)
        })
        .map_err(|e| format!("starting the FUSE threads: {e}"));
    let workers = workers.inspect_err(|_| {
        let _ = mount.unmount();
    })?;
    mount.run_until_done(workers).map_err(|e| e.to_string())
}

// ---- virtio-fs: a vhost-user device backend, flag-compatible with virtiofsd ----

#[derive(Args, Clone)]
struct VirtiofsArgs {
    /// vhost-user socket to create and listen on (the VMM connects to it).
    #[arg(long, value_name = "PATH", required_unless_present_any = ["fd", "print_capabilities"])]
    socket_path: Option<PathBuf>,
    /// Serve on this already-listening Unix socket, inherited from the caller, instead.
    #[arg(long, value_name = "FD", conflicts_with_all = ["socket_path", "socket_group"])]
    fd: Option<i32>,
    /// Let this group (name or number) connect to the socket as well as its owner.
    #[arg(long, value_name = "GROUP")]
    socket_group: Option<String>,
    /// Host directory to share.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "print_capabilities"
    )]
    shared_dir: Option<PathBuf>,
    /// Print the device's capabilities as vhost-user backend JSON (what libvirt reads)
    /// and exit.
    #[arg(long)]
    print_capabilities: bool,
    /// Worker threads that run requests; 0 runs them on the virtqueue thread.
    #[arg(long, value_name = "N", default_value_t = 0)]
    thread_pool_size: usize,
    /// Attribute and entry caching in the guest kernel.
    #[arg(long, value_enum, default_value_t = CachePolicy::Auto)]
    cache: CachePolicy,
    /// Let the guest kernel cache writes (WRITEBACK_CACHE).
    #[arg(long)]
    writeback: bool,
    /// Offer POSIX ACLs (FUSE_POSIX_ACL, the default): the guest kernel enforces them
    /// and refreshes the mode an ACL change implies (cp -p sets modes that way).
    #[arg(long, overrides_with = "no_posix_acl")]
    posix_acl: bool,
    /// Do not offer POSIX ACLs: a mode set through an ACL then shows in the guest only
    /// after the attribute timeout.
    #[arg(long, overrides_with = "posix_acl")]
    no_posix_acl: bool,
    /// Refuse every change to the share with EROFS.
    #[arg(long)]
    readonly: bool,
    /// Log level (RUST_LOG syntax also works through the environment).
    #[arg(long, value_enum, value_name = "LEVEL")]
    log_level: Option<LogLevel>,
    #[command(flatten)]
    own: OwnershipArgs,
    #[command(flatten)]
    inodes: InodeArgs,
    #[command(flatten)]
    sandbox: SandboxArgs,
    #[command(flatten)]
    stats: StatsArgs,
}

/// `--io-uring`.
#[cfg(target_os = "linux")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum IoUringMode {
    Auto,
    On,
    Off,
}

/// Sets up the io_uring queues `mode` asks for; `auto` falls back to /dev/fuse reads.
#[cfg(target_os = "linux")]
fn offer_io_uring(mount: &mut FuseMount, mode: IoUringMode) -> Result<(), String> {
    if mode == IoUringMode::Off {
        return Ok(());
    }
    if !platform::fuse_uring_enabled() {
        if mode == IoUringMode::On {
            return Err("--io-uring on: FUSE over io_uring is off in this kernel \
                 (needs Linux 6.14+ with CONFIG_FUSE_IO_URING, and as root: \
                 echo 1 > /sys/module/fuse/parameters/enable_uring)"
                .into());
        }
        return Ok(());
    }
    match mount.offer_io_uring() {
        Ok(()) => Ok(()),
        Err(e) if mode == IoUringMode::Auto => {
            log::warn!("FUSE over io_uring unavailable ({e}): serving /dev/fuse reads");
            Ok(())
        }
        Err(e) => Err(format!("--io-uring on: {e}")),
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
    Off,
}

impl LogLevel {
    fn filter(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
            LogLevel::Off => "off",
        }
    }
}

fn parse_group(group: &str) -> Result<u32, String> {
    if let Ok(gid) = group.parse() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(format!("unknown group '{group}'")),
        Err(e) => Err(format!("looking up group '{group}': {e}")),
    }
}

fn run_virtiofs(args: VirtiofsArgs) -> Result<(), String> {
    use ownfs::transport::virtiofs::{self, VirtioFsOptions};
    if args.print_capabilities {
        print!("{}", virtiofs::CAPABILITIES_JSON);
        return Ok(());
    }
    let Some(shared_dir) = &args.shared_dir else {
        return Err("--shared-dir is required".into());
    };
    let src = source_dir(shared_dir, "shared dir")?;
    let group = args.socket_group.as_deref().map(parse_group).transpose()?;
    raise_fd_limit();
    platform::block_server_signals().map_err(|e| format!("signal mask: {e}"))?;
    let (listener, socket_path) = match (&args.socket_path, args.fd) {
        (_, Some(fd)) => {
            let l = platform::inherited_unix_listener(fd)
                .map_err(|e| format!("--fd {fd}: not a listening Unix socket: {e}"))?;
            (l, None)
        }
        (Some(path), None) => {
            let l = virtiofs::bind_socket(path, group)
                .map_err(|e| format!("socket {}: {e}", path.display()))?;
            (l, Some(path.clone()))
        }
        (None, None) => return Err("--socket-path or --fd is required".into()),
    };
    let socket_file = match socket_path.as_deref().map(sandbox::SocketFile::new) {
        Some(Err(e)) => return Err(format!("socket: {e}")),
        Some(Ok(f)) => Some(f),
        None => None,
    };
    // The guest kernel already applied the caller's umask.
    platform::set_umask(0);
    let stats_target = socket_path
        .as_deref()
        .map(std::path::absolute)
        .transpose()
        .map_err(|e| format!("socket: {e}"))?;
    let mut stats = args.stats.bind(stats_target.as_deref())?;
    let (fs, rootless) = build_served(
        &Served {
            src: &src,
            sandbox: &args.sandbox,
            own: &args.own,
            inodes: &args.inodes,
            cache: args.cache,
            // The vhost-user socket is already bound; the device never uses the network.
            new_net: true,
            // Offered only when the guest kernel supports it.
            writeback: args.writeback,
            // virtio-fs guests always mount with default_permissions, as POSIX_ACL needs.
            posix_acl: !args.no_posix_acl,
            read_only: args.readonly,
            transport: Transport::Virtiofs,
        },
        socket_file.as_ref(),
    )?;
    let served = Counted::new(fs, StatsService::counters(&stats));
    StatsService::start(&mut stats);
    let opts = VirtioFsOptions {
        thread_pool_size: args.thread_pool_size,
    };
    log::info!(
        "serving {} on {}{}{}; waiting for the VMM",
        src.display(),
        socket_path.as_ref().map_or_else(
            || format!("fd {}", args.fd.unwrap_or(-1)),
            |p| p.display().to_string()
        ),
        if rootless { " (rootless)" } else { "" },
        if args.readonly { " (read-only)" } else { "" },
    );
    let device = std::thread::Builder::new()
        .name("ownfs-vhost".into())
        .spawn(move || virtiofs::serve(listener, served, &opts))
        .map_err(|e| format!("starting the device thread: {e}"))?;
    let result = loop {
        if let Some(sig) = platform::wait_termination_signal(200) {
            log::info!("signal {sig}: stopping");
            break Ok(());
        }
        if device.is_finished() {
            break match device.join() {
                Ok(Ok(())) => {
                    log::info!("the VMM disconnected: exiting");
                    Ok(())
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("the device thread panicked".to_string()),
            };
        }
    };
    socket_file.iter().for_each(sandbox::SocketFile::remove);
    result
}

/// The man pages, generated from the clap definitions. Thread counts default to the CPU
/// count: the pages state the rule, not the number of the machine that built them.
fn write_manpages(dir: &std::path::Path) -> Result<(), String> {
    let cmd = <Cli as clap::CommandFactory>::command();
    #[cfg(target_os = "linux")]
    let cmd = {
        fn rule(arg: clap::Arg, rule: &str) -> clap::Arg {
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            arg.hide_default_value(true)
                .help(format!("{help} [default: {rule}]"))
        }
        cmd.mut_subcommand("mount", |c| {
            c.mut_arg("threads", |a| rule(a, "one per CPU"))
        })
        .mut_subcommand("client", |c| {
            c.mut_arg("threads", |a| rule(a, "one per CPU, at least 4"))
        })
    };
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    clap_mangen::generate_to(cmd, dir).map_err(|e| format!("man pages in {}: {e}", dir.display()))
}
