//! Operating-system seam. Everything that talks to the host kernel directly lives
//! behind this module, wrapped in safe functions; the rest of the crate has no `unsafe`.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;
