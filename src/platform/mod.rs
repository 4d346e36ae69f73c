//! Operating-system seam. Everything that talks to the host kernel directly lives
//! behind this module, wrapped in safe functions; the rest of the crate has no `unsafe`.
//!
//! Both backends export the same names with the same meaning; where the OSes differ
//! the difference is named here (`O_PATH` pins an inode, `ENOATTR` is "no such
//! attribute", `SYMLINK_XATTRS` says whether a symlink can carry our record).

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;

#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
pub use macos::*;

pub mod xlate;

/// File type and mode bits as u32 (`mode_t` is 16 bits on macOS; the values are the
/// same on every Unix).
pub mod mode {
    pub const S_IFMT: u32 = 0o170000;
    pub const S_IFSOCK: u32 = 0o140000;
    pub const S_IFLNK: u32 = 0o120000;
    pub const S_IFREG: u32 = 0o100000;
    pub const S_IFBLK: u32 = 0o060000;
    pub const S_IFDIR: u32 = 0o040000;
    pub const S_IFCHR: u32 = 0o020000;
    pub const S_IFIFO: u32 = 0o010000;
    pub const S_ISUID: u32 = 0o4000;
    pub const S_ISGID: u32 = 0o2000;
}

/// `st_mode` of a host stat as u32.
#[allow(clippy::useless_conversion)] // u16 on macOS
pub fn st_mode(st: &stat64) -> u32 {
    u32::from(st.st_mode)
}

/// Sets `st_mode` (type and permission bits fit every host's `mode_t`).
#[allow(clippy::unnecessary_cast)] // a narrowing cast on macOS
pub fn set_st_mode(st: &mut stat64, mode: u32) {
    st.st_mode = mode as _;
}
