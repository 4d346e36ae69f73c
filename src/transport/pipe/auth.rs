//! Who may use a pipe server: the peer's uid on Unix sockets, and a shared token on
//! any listener (see `docs/security.md`).

use std::fmt;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::wire::MAX_TOKEN;
use crate::platform;

/// A shared secret. Its bytes are never printed: `Debug` shows only that it exists.
#[derive(Clone)]
pub struct Token(Vec<u8>);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Who, besides the file's owner, may have access to a token file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenFileAccess {
    /// Owner only (mode 0600 or 0400): the server's rule.
    OwnerOnly,
    /// Also group root: the client's rule (a guest's root-only files are often 0640 root:root).
    RootGroup,
}

impl Token {
    pub fn new(bytes: Vec<u8>) -> io::Result<Token> {
        if bytes.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the token is empty",
            ));
        }
        if bytes.len() > MAX_TOKEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the token is longer than {MAX_TOKEN} bytes"),
            ));
        }
        Ok(Token(bytes))
    }

    /// Reads a token file: a regular file owned by root or by this process's euid,
    /// with no access for others (and none for the group unless `access` allows group
    /// root). One trailing newline is not part of the token.
    pub fn read_file(path: &Path, access: TokenFileAccess) -> io::Result<Token> {
        let f = std::fs::File::open(path)?;
        // fstat of what was opened: no window between the check and the read.
        let meta = f.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let euid = platform::geteuid();
        if meta.uid() != 0 && meta.uid() != euid {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "owned by uid {}, not by root or uid {euid} (its owner could change and read it)",
                    meta.uid()
                ),
            ));
        }
        let mode = meta.mode() & 0o777;
        let group_ok = access == TokenFileAccess::RootGroup && meta.gid() == 0;
        let loose = if group_ok { mode & 0o007 } else { mode & 0o077 };
        if loose != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "mode {mode:04o} lets other users read or replace the token{}",
                    match access {
                        TokenFileAccess::OwnerOnly => " (chmod 600)",
                        TokenFileAccess::RootGroup => " (chmod 600, or 640 with group root)",
                    }
                ),
            ));
        }
        let mut bytes = Vec::new();
        f.take(MAX_TOKEN as u64 + 3).read_to_end(&mut bytes)?;
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        Token::new(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether `given` is this token, in time that depends only on the lengths.
    pub fn matches(&self, given: &[u8]) -> bool {
        constant_time_eq(given, &self.0)
    }
}

/// Compares every byte of `expected` whatever differs earlier, so the time taken says
/// nothing about how much of `given` was right (only its length can leak).
pub fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (i, e) in expected.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(!e);
        diff |= std::hint::black_box(g ^ e);
    }
    std::hint::black_box(diff) == 0
}

/// Which peers of a Unix socket are served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerPolicy {
    /// Every peer (`--allow-uid any`).
    Any,
    /// Only these uids.
    Uids(Vec<u32>),
}

impl PeerPolicy {
    /// Root and this process's euid (they could ptrace the server anyway), plus `extra`.
    pub fn with_defaults(extra: &[u32]) -> PeerPolicy {
        let mut uids = vec![0, platform::geteuid()];
        uids.extend_from_slice(extra);
        uids.sort_unstable();
        uids.dedup();
        PeerPolicy::Uids(uids)
    }

    /// `Ok` if the peer may be served, else the reason for the log.
    pub fn check(&self, peer: &platform::PeerCred) -> Result<(), String> {
        match self {
            PeerPolicy::Any => Ok(()),
            PeerPolicy::Uids(u) if u.contains(&peer.uid) => Ok(()),
            PeerPolicy::Uids(u) => Err(format!(
                "peer uid {} (pid {}) is not allowed (allowed uids: {}; see --allow-uid)",
                peer.uid,
                peer.pid
                    .map_or_else(|| "unknown".to_string(), |p| p.to_string()),
                u.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

impl Default for PeerPolicy {
    fn default() -> Self {
        PeerPolicy::with_defaults(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        for (g, e) in [
            (&b"abd"[..], &b"abc"[..]),
            (b"ab", b"abc"),
            (b"abcd", b"abc"),
            (b"", b"abc"),
            (b"\xff", b"\x00"),
        ] {
            assert!(!constant_time_eq(g, e), "{g:?} {e:?}");
        }
        let t = Token::new(b"s3cret".to_vec()).unwrap();
        assert!(t.matches(b"s3cret") && !t.matches(b"s3cre") && !t.matches(b""));
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
        assert!(Token::new(Vec::new()).is_err());
        assert!(Token::new(vec![b'x'; MAX_TOKEN + 1]).is_err());
    }

    #[test]
    fn peer_policy() {
        let p = PeerPolicy::with_defaults(&[65534]);
        let cred = |uid| platform::PeerCred {
            uid,
            gid: 0,
            pid: Some(7),
        };
        assert!(p.check(&cred(0)).is_ok());
        assert!(p.check(&cred(platform::geteuid())).is_ok());
        assert!(p.check(&cred(65534)).is_ok());
        let e = p.check(&cred(4242)).unwrap_err();
        assert!(e.contains("uid 4242") && e.contains("pid 7"), "{e}");
        assert!(PeerPolicy::Any.check(&cred(4242)).is_ok());
    }
}
