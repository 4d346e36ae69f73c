//! FUSE capabilities every ownfs `FileSystem` asks the kernel for at INIT.

use fuse_backend_rs::abi::fuse_abi::FsOptions;

/// Parallel lookups and readdir, 1 MiB requests, readdirplus for every listing (a
/// filesystem may add READDIRPLUS_AUTO), atomic O_TRUNC and NFS-style export. Without
/// these, fuse-backend-rs's defaults give 4 KiB writes.
#[cfg(target_os = "linux")]
pub fn base_options() -> FsOptions {
    FsOptions::ASYNC_READ
        | FsOptions::BIG_WRITES
        | FsOptions::MAX_PAGES
        | FsOptions::PARALLEL_DIROPS
        | FsOptions::DO_READDIRPLUS
        | FsOptions::ATOMIC_O_TRUNC
        | FsOptions::EXPORT_SUPPORT
}

/// macOS's FUSE ABI names fewer options; on a macOS host only the pipe server calls
/// INIT, and it forwards nothing but WRITEBACK from these.
#[cfg(not(target_os = "linux"))]
pub fn base_options() -> FsOptions {
    FsOptions::ASYNC_READ
        | FsOptions::BIG_WRITES
        | FsOptions::ATOMIC_O_TRUNC
        | FsOptions::EXPORT_SUPPORT
}
