//! Seccomp allow-lists, one per transport: once a server is set up (mounted or
//! bound, privileges dropped), every syscall outside its list kills the process
//! (`kill`), is logged by the kernel (`log`), or nothing is filtered (`none`).
//!
//! The lists were taken from `strace -f` of every transport under pjdfstest, fsx and
//! the integration suites, plus the rare paths read from the code (exit, panic,
//! unmount, credential switching). The filter is built with rust-vmm's seccompiler.

use std::io;

/// What the kernel does with a syscall outside the allow-list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SeccompMode {
    /// Kill the whole process (SECCOMP_RET_KILL_PROCESS).
    Kill,
    /// Allow it but have the kernel log it (SECCOMP_RET_LOG: dmesg or audit).
    Log,
    /// No filter.
    None,
}

impl SeccompMode {
    /// `kill` where seccomp exists, `none` elsewhere.
    pub const DEFAULT: SeccompMode = if cfg!(target_os = "linux") {
        SeccompMode::Kill
    } else {
        SeccompMode::None
    };
}

/// Which server the allow-list is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `ownfs mount`: /dev/fuse.
    Mount,
    /// `ownfs serve`: fuse-pipe over a Unix or vsock socket.
    Serve,
    /// `ownfs virtiofs`: vhost-user device.
    Virtiofs,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Mount => "mount",
            Transport::Serve => "serve",
            Transport::Virtiofs => "virtiofs",
        }
    }
}

/// With this variable set, the server makes one syscall outside its allow-list right
/// after the filter is in place (`getpgid`, harmless), so a test can see from outside
/// that `kill` kills and `log` lets it through. It gives nothing the environment's
/// owner could not already do (kill the process).
pub const SELFTEST_ENV: &str = "OWNFS_SECCOMP_SELFTEST";

#[cfg(target_os = "linux")]
pub use linux::{allowed, install};

#[cfg(not(target_os = "linux"))]
pub fn install(_transport: Transport, mode: SeccompMode) -> io::Result<()> {
    match mode {
        SeccompMode::None => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "seccomp exists on Linux only: use --seccomp none",
        )),
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use super::*;
    use std::collections::BTreeMap;

    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };

    /// Threads, memory, signals, time and exit: what the Rust runtime, glibc and
    /// the worker pools need on every transport.
    const RUNTIME: &[i64] = &[
        // heap and thread stacks, guard pages, allocator trimming
        libc::SYS_brk,
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_mprotect,
        libc::SYS_madvise,
        // thread creation (glibc tries clone3, falls back to clone) and thread start
        libc::SYS_clone,
        libc::SYS_clone3,
        libc::SYS_set_robust_list,
        libc::SYS_rseq,
        libc::SYS_sigaltstack,
        libc::SYS_sched_getaffinity,
        libc::SYS_sched_yield,
        libc::SYS_prctl, // thread names (PR_SET_NAME), capability bounding by the caps code
        // locks, condvars, channels, joins
        libc::SYS_futex,
        // hash seeds
        libc::SYS_getrandom,
        // termination signals are blocked and collected with sigtimedwait
        libc::SYS_rt_sigaction,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigreturn,
        libc::SYS_rt_sigtimedwait,
        libc::SYS_restart_syscall,
        // timestamps (vDSO fallback), sleeps in the stop loops
        libc::SYS_clock_gettime,
        libc::SYS_clock_nanosleep,
        libc::SYS_nanosleep,
        // ids for logs and for abort() after a double panic
        libc::SYS_getpid,
        libc::SYS_gettid,
        libc::SYS_tgkill,
        // RLIMIT_NOFILE queries
        libc::SYS_prlimit64,
        // thread and process exit
        libc::SYS_exit,
        libc::SYS_exit_group,
    ];

    /// The passthrough file system: what serving requests on the share does
    /// (src/fs, src/platform/linux.rs), on every transport.
    const FILES: &[i64] = &[
        // data and log output
        libc::SYS_read,
        libc::SYS_readv,
        libc::SYS_pread64,
        libc::SYS_preadv,
        libc::SYS_preadv2,
        libc::SYS_write,
        libc::SYS_writev,
        libc::SYS_pwrite64,
        libc::SYS_pwritev,
        libc::SYS_pwritev2,
        libc::SYS_lseek,
        libc::SYS_copy_file_range,
        libc::SYS_syncfs,
        // opening relative to pinned O_PATH fds and through /proc/self/fd
        libc::SYS_openat,
        libc::SYS_openat2,
        libc::SYS_close,
        libc::SYS_dup,
        libc::SYS_dup3,
        libc::SYS_fcntl,
        // attributes and directory listing
        libc::SYS_fstat,
        libc::SYS_newfstatat,
        libc::SYS_statx,
        libc::SYS_fstatfs,
        libc::SYS_statfs,
        libc::SYS_getdents64,
        libc::SYS_readlinkat,
        libc::SYS_faccessat,
        libc::SYS_faccessat2,
        // namespace changes
        libc::SYS_mkdirat,
        libc::SYS_mknodat,
        libc::SYS_symlinkat,
        libc::SYS_linkat,
        libc::SYS_unlinkat,
        libc::SYS_renameat2,
        // Inodes evicted from the fd cache are named by handles the server made itself.
        libc::SYS_name_to_handle_at,
        libc::SYS_open_by_handle_at,
        // metadata changes
        libc::SYS_fchown,
        libc::SYS_fchownat,
        libc::SYS_fchmod,
        libc::SYS_fchmodat,
        libc::SYS_truncate,
        libc::SYS_ftruncate,
        libc::SYS_utimensat,
        libc::SYS_fallocate,
        libc::SYS_fsync,
        libc::SYS_fdatasync,
        libc::SYS_flock,
        // extended attributes: ACLs, rootless ownership records, client xattrs
        libc::SYS_getxattr,
        libc::SYS_lgetxattr,
        libc::SYS_fgetxattr,
        libc::SYS_setxattr,
        libc::SYS_lsetxattr,
        libc::SYS_fsetxattr,
        libc::SYS_listxattr,
        libc::SYS_llistxattr,
        libc::SYS_flistxattr,
        libc::SYS_removexattr,
        libc::SYS_lremovexattr,
        libc::SYS_fremovexattr,
        // FS_IOC_GETFLAGS (casefold), FUSE_DEV_IOC_BACKING_OPEN/CLOSE and _CLONE
        libc::SYS_ioctl,
        libc::SYS_umask,
        libc::SYS_fchdir, // the namespace sandbox works relative to the share's root
        // per-request caller credentials on the worker thread (src/creds)
        libc::SYS_setfsuid,
        libc::SYS_setfsgid,
        libc::SYS_setgroups,
        libc::SYS_getgroups,
        libc::SYS_capget,
        libc::SYS_capset,
        libc::SYS_getuid,
        libc::SYS_geteuid,
        libc::SYS_getgid,
        libc::SYS_getegid,
        libc::SYS_getresuid,
        libc::SYS_getresgid,
    ];

    /// Legacy x86_64 syscalls glibc and std still make where aarch64 has only the
    /// `*at` forms listed above.
    #[cfg(target_arch = "x86_64")]
    const LEGACY: &[i64] = &[
        libc::SYS_readlink, // std::fs::read_link of /proc/self/fd entries
        libc::SYS_chmod,    // chmod through /proc/self/fd
        libc::SYS_unlink,   // removing the socket at exit
        libc::SYS_poll,     // std's socket timeouts
        libc::SYS_renameat, // glibc's renameat2 without flags
    ];
    #[cfg(not(target_arch = "x86_64"))]
    const LEGACY: &[i64] = &[];

    /// `mount`: /dev/fuse reads and replies, unmounting at exit (directly as root,
    /// through the helper process after --run-as or fusermount3).
    const MOUNT: &[i64] = &[
        // the statistics control socket: accepting, peer checks, timeouts, replies
        libc::SYS_accept4,
        libc::SYS_getsockopt,
        libc::SYS_setsockopt,
        libc::SYS_sendto,
        libc::SYS_umount2,
        libc::SYS_wait4,
        libc::SYS_ppoll,
        libc::SYS_recvfrom,
        // FUSE over io_uring: answers out, requests in (the rings exist before the
        // sandbox; io_uring_setup stays forbidden)
        libc::SYS_io_uring_enter,
    ];

    /// `serve`: accepting connections, framed messages, peer checks, socket removal.
    const SERVE: &[i64] = &[
        libc::SYS_accept4,
        libc::SYS_recvfrom,
        libc::SYS_sendto,
        libc::SYS_recvmsg,
        libc::SYS_sendmsg,
        libc::SYS_shutdown,
        libc::SYS_setsockopt, // per-connection timeouts and send buffers
        libc::SYS_getsockopt, // SO_PEERCRED
        libc::SYS_getsockname,
        libc::SYS_getpeername,
        libc::SYS_ppoll,
        // READ data spliced from the file through a pipe to the socket
        libc::SYS_pipe2,
        libc::SYS_splice,
    ];

    /// `virtiofs`: one poll(2) loop over the vhost-user socket and the kick notifiers
    /// (eventfds or pipes: read and write), messages with passed fds, guest memory
    /// mapped from them (mmap, munmap), socket removal.
    const VIRTIOFS: &[i64] = &[
        libc::SYS_accept4,
        libc::SYS_recvfrom,
        libc::SYS_sendto,
        libc::SYS_recvmsg,
        libc::SYS_sendmsg,
        libc::SYS_shutdown,
        libc::SYS_getsockopt, // SO_PEERCRED
        libc::SYS_setsockopt, // statistics clients' timeouts
        libc::SYS_ppoll,
    ];

    /// The syscall numbers `transport` may make once the filter is in place.
    pub fn allowed(transport: Transport) -> Vec<i64> {
        let extra = match transport {
            Transport::Mount => MOUNT,
            Transport::Serve => SERVE,
            Transport::Virtiofs => VIRTIOFS,
        };
        let mut all: Vec<i64> = [RUNTIME, FILES, LEGACY, extra].concat();
        all.sort_unstable();
        all.dedup();
        all
    }

    pub(super) fn filter(transport: Transport, mode: SeccompMode) -> io::Result<BpfProgram> {
        let mismatch = match mode {
            SeccompMode::Kill => SeccompAction::KillProcess,
            SeccompMode::Log => SeccompAction::Log,
            SeccompMode::None => unreachable!("no filter for --seccomp none"),
        };
        let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(io::Error::other)?;
        // An empty rule list allows the syscall whatever its arguments.
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = allowed(transport)
            .into_iter()
            .map(|nr| (nr, Vec::new()))
            .collect();
        if transport == Transport::Mount {
            // FUSE io_uring queue threads move onto their CPU: the calling thread only.
            let own_thread = SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::Eq, 0);
            let rule = own_thread.and_then(|c| SeccompRule::new(vec![c]));
            rules.insert(
                libc::SYS_sched_setaffinity,
                vec![rule.map_err(io::Error::other)?],
            );
        }
        let filter = SeccompFilter::new(rules, mismatch, SeccompAction::Allow, arch)
            .map_err(io::Error::other)?;
        BpfProgram::try_from(filter).map_err(io::Error::other)
    }

    /// Sets no_new_privs and installs the allow-list of `transport` on every thread of
    /// the process (TSYNC); threads started later inherit it.
    pub fn install(transport: Transport, mode: SeccompMode) -> io::Result<()> {
        if mode == SeccompMode::None {
            log::warn!("seccomp is off (--seccomp none): every syscall stays open to the server");
            return Ok(());
        }
        let selftest = std::env::var_os(SELFTEST_ENV).is_some();
        let program = filter(transport, mode)?;
        crate::platform::set_no_new_privs()?;
        seccompiler::apply_filter_all_threads(&program).map_err(io::Error::other)?;
        log::info!(
            "seccomp: {} syscalls allowed for {}, others {}",
            allowed(transport).len(),
            transport.name(),
            match mode {
                SeccompMode::Kill => "kill the process",
                _ => "are logged by the kernel",
            }
        );
        if selftest {
            // getpgid is on no allow-list: `kill` ends here with SIGSYS.
            let r = nix::unistd::getpgid(None);
            log::warn!("{SELFTEST_ENV}: getpgid outside the allow-list returned {r:?}");
        }
        Ok(())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn lists_compile_and_exclude_dangerous_calls() {
        for t in [Transport::Mount, Transport::Serve, Transport::Virtiofs] {
            let list = allowed(t);
            for nr in [
                libc::SYS_execve,
                libc::SYS_execveat,
                libc::SYS_ptrace,
                libc::SYS_mount,
                libc::SYS_setuid,
                libc::SYS_setresuid,
                libc::SYS_unshare,
                libc::SYS_setns,
                libc::SYS_bpf,
                libc::SYS_getpgid,
            ] {
                assert!(!list.contains(&nr), "{} allows syscall {nr}", t.name());
            }
            // One compare-and-return per syscall at least, after the arch check.
            assert!(linux::filter(t, SeccompMode::Kill).unwrap().len() > list.len());
        }
    }
}
