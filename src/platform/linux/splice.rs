//! A pipe that moves data between descriptors by reference (splice(2)): fuse-pipe
//! sends READ data from the file to the socket, and from the socket to /dev/fuse,
//! without copying it through user memory, and large requests from the client's
//! memory to its socket (vmsplice(2)).

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, splice, vmsplice, FcntlArg, OFlag, SpliceFFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// The smallest pipe worth having: the kernel's default.
const MIN_PIPE: usize = 64 * 1024;

pub struct SplicePipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes the pipe can hold (a whole number of pages).
    size: usize,
    /// Bytes it holds now.
    held: usize,
}

impl SplicePipe {
    /// A pipe of `want` bytes, or of the most the system allows a process without
    /// CAP_SYS_RESOURCE (`/proc/sys/fs/pipe-max-size`), halving down to 64 KiB.
    pub fn new(want: usize) -> io::Result<SplicePipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let mut ask = want.max(MIN_PIPE);
        let size = loop {
            let arg = FcntlArg::F_SETPIPE_SZ(i32::try_from(ask).unwrap_or(i32::MAX));
            match fcntl(write.as_raw_fd(), arg) {
                Ok(n) => break n as usize,
                Err(Errno::EPERM | Errno::EBUSY) if ask > MIN_PIPE => ask /= 2,
                Err(e) => return Err(e.into()),
            }
        };
        Ok(SplicePipe {
            read,
            write,
            size,
            held: 0,
        })
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn held(&self) -> usize {
        self.held
    }

    /// Moves up to `len` bytes of file `from` at `offset` into the pipe, never waiting
    /// for room; returns how many (0 at end of file).
    pub fn fill_from_file(
        &mut self,
        from: BorrowedFd<'_>,
        offset: u64,
        len: usize,
    ) -> io::Result<usize> {
        let mut off = i64::try_from(offset).map_err(|_| Errno::EINVAL)?;
        let n = splice(
            from,
            Some(&mut off),
            &self.write,
            None,
            len,
            SpliceFFlags::SPLICE_F_NONBLOCK,
        )?;
        self.held += n;
        Ok(n)
    }

    /// Moves up to `len` bytes from stream `from` into the pipe, waiting for the stream
    /// but never for room in the pipe. `Ok(None)`: the pipe is full.
    pub fn fill_from_stream(
        &mut self,
        from: BorrowedFd<'_>,
        len: usize,
    ) -> io::Result<Option<usize>> {
        loop {
            let flags = SpliceFFlags::SPLICE_F_NONBLOCK;
            match splice(from, None, &self.write, None, len, flags) {
                Ok(n) => {
                    self.held += n;
                    return Ok(Some(n));
                }
                // Either the stream has nothing yet or the pipe has no room: tell
                // which by waiting for the stream and trying once more.
                Err(Errno::EAGAIN) => {
                    wait_readable(from)?;
                    match splice(from, None, &self.write, None, len, flags) {
                        Ok(n) => {
                            self.held += n;
                            return Ok(Some(n));
                        }
                        Err(Errno::EAGAIN) => return Ok(None),
                        Err(Errno::EINTR) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Moves up to the pipe's free room of `bytes` into it by reference to this
    /// process's pages (vmsplice(2)); returns how many. Whoever reads the data later
    /// sees those pages as they are then: `bytes` must not change until it has.
    pub fn fill_from_memory(&mut self, bytes: &[u8]) -> io::Result<usize> {
        loop {
            match vmsplice(&self.write, &[IoSlice::new(bytes)], SpliceFFlags::empty()) {
                Ok(n) => {
                    self.held += n;
                    return Ok(n);
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Copies `bytes` into the pipe; they must fit in what it has room for.
    pub fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.held + bytes.len() > self.size {
            return Err(Errno::ENOBUFS.into());
        }
        let mut rest = bytes;
        while !rest.is_empty() {
            match nix::unistd::write(&self.write, rest) {
                Ok(n) => {
                    self.held += n;
                    rest = &rest[n..];
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Moves all the pipe holds to stream `to`, waiting for the stream as needed.
    pub fn drain_to_stream(&mut self, to: BorrowedFd<'_>) -> io::Result<()> {
        while self.held > 0 {
            match splice(&self.read, None, to, None, self.held, SpliceFFlags::empty()) {
                Ok(0) => return Err(Errno::EPIPE.into()),
                Ok(n) => self.held -= n,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Moves all the pipe holds to `to` in one call, as /dev/fuse takes a message.
    /// On failure the pipe is emptied; what it held is lost.
    pub fn drain_once_to(&mut self, to: BorrowedFd<'_>) -> io::Result<()> {
        let res = splice(&self.read, None, to, None, self.held, SpliceFFlags::empty());
        match res {
            Ok(n) if n == self.held => {
                self.held = 0;
                Ok(())
            }
            Ok(n) => {
                self.held -= n;
                self.discard();
                Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "message taken in part",
                ))
            }
            Err(e) => {
                self.discard();
                Err(e.into())
            }
        }
    }

    /// Reads what the pipe holds into the front of `buf` (the way out when data cannot
    /// move by reference); returns how many bytes.
    pub fn take_into(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.len() < self.held {
            return Err(Errno::ENOBUFS.into());
        }
        let mut got = 0;
        while self.held > 0 {
            match nix::unistd::read(self.read.as_raw_fd(), &mut buf[got..got + self.held]) {
                Ok(0) => return Err(Errno::EPIPE.into()),
                Ok(n) => {
                    got += n;
                    self.held -= n;
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(got)
    }

    /// Drops what the pipe holds.
    pub fn discard(&mut self) {
        let mut scratch = [0u8; 4096];
        while self.held > 0 {
            let want = self.held.min(scratch.len());
            match nix::unistd::read(self.read.as_raw_fd(), &mut scratch[..want]) {
                Ok(n) if n > 0 => self.held -= n,
                Err(Errno::EINTR) => {}
                // Cannot happen with our own pipe; a fresh pipe is the way out.
                _ => {
                    if let Ok(fresh) = SplicePipe::new(self.size) {
                        *self = fresh;
                    }
                    return;
                }
            }
        }
    }
}

/// Waits until `fd` has something to read (or is at end of stream or broken).
fn wait_readable(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    loop {
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}
