//! Kick and call notifiers. A Linux VMM sends eventfds; a VMM on another host sends
//! pipes (the read end for kick, the write end for call). Both take the same 8-byte
//! reads and writes, so one type of each serves either, chosen by nothing but the fd.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = OFlag::from_bits_retain(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// The driver's "buffers are available" signal, waited on with poll(2).
pub struct Kick(OwnedFd);

impl Kick {
    pub fn new(fd: OwnedFd) -> io::Result<Kick> {
        set_nonblocking(&fd)?;
        Ok(Kick(fd))
    }

    /// Consumes every pending kick: an eventfd gives one counter, a pipe one 8-byte
    /// write per kick, never merged, so read until nothing is left.
    pub fn drain(&self) -> io::Result<()> {
        let mut buf = [0u8; 64];
        loop {
            match nix::unistd::read(self.0.as_raw_fd(), &mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) => continue,
                Err(Errno::EAGAIN) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl AsFd for Kick {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// The device's "buffers are used" signal to the driver.
pub struct Call(OwnedFd);

impl Call {
    pub fn new(fd: OwnedFd) -> io::Result<Call> {
        set_nonblocking(&fd)?;
        Ok(Call(fd))
    }

    pub fn signal(&self) -> io::Result<()> {
        loop {
            return match nix::unistd::write(&self.0, &1u64.to_ne_bytes()) {
                Ok(_) => Ok(()),
                // A full pipe or a saturated eventfd: the driver has a signal pending.
                Err(Errno::EAGAIN) => Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) => Err(e.into()),
            };
        }
    }
}
