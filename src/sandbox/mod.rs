//! Confinement of a running server: what it may still do once it serves clients.
pub mod seccomp;
