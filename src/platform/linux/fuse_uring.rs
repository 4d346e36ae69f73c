//! FUSE over io_uring (Linux 6.14+, protocol 7.42): one ring per CPU queue. Each ring
//! entry hands the kernel a header buffer and a payload buffer with
//! FUSE_IO_URING_CMD_REGISTER; a completion means a request sits in them, and
//! FUSE_IO_URING_CMD_COMMIT_AND_FETCH returns the answer and waits for the next one.
//!
//! The kernel writes into the buffers whenever a command is outstanding, including
//! after this process stopped looking: they are leaked, never freed or moved.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

/// `fuse_uring_cmd` values.
const CMD_REGISTER: u32 = 1;
const CMD_COMMIT_AND_FETCH: u32 = 2;
/// `struct fuse_uring_req_header`: in_out (128), op_in (128), ring_ent_in_out (32).
const IN_OUT: usize = 0;
const OP_IN: usize = 128;
const OP_IN_SIZE: usize = 128;
const ENT_IN_OUT: usize = 256;
const HEADER_SIZE: usize = 288;
/// `fuse_uring_ent_in_out` fields.
const COMMIT_ID: usize = ENT_IN_OUT + 8;
const PAYLOAD_SZ: usize = ENT_IN_OUT + 16;
const IN_HEADER: usize = 40;
const OUT_HEADER: usize = 16;
/// Room before each payload for a request's in-header and op struct, so the whole
/// request lies contiguous in memory without copying its payload.
const PREFIX: usize = IN_HEADER + OP_IN_SIZE;
/// The iovec count REGISTER expects (header, payload).
const IOV_SEGS: u32 = 2;

struct Entry {
    header: &'static mut [u8],
    /// PREFIX bytes, then the payload the kernel sees.
    buf: &'static mut [u8],
    /// Address of the leaked (header, payload) iovec pair REGISTER names.
    iov: u64,
    commit_id: u64,
    /// The command outstanding for this entry, to resubmit when the kernel asks.
    last: u32,
}

/// One queue's ring, owned by the thread that serves it.
pub struct FuseRing {
    ring: IoUring<squeue::Entry128, cqueue::Entry>,
    qid: u16,
    entries: Vec<Entry>,
}

fn leak(len: usize) -> &'static mut [u8] {
    Box::leak(vec![0u8; len].into_boxed_slice())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    (u64::from(u32_at(b, at + 4)) << 32) | u64::from(u32_at(b, at))
}

/// The 80-byte command area: `struct fuse_uring_cmd_req { flags, commit_id, qid }`.
fn cmd_req(qid: u16, commit_id: u64) -> [u8; 80] {
    let mut cmd = [0u8; 80];
    cmd[8..16].copy_from_slice(&commit_id.to_le_bytes());
    cmd[16..18].copy_from_slice(&qid.to_le_bytes());
    cmd
}

/// The possible CPUs: the kernel wants one queue for each before it uses any.
pub fn fuse_uring_queues() -> io::Result<usize> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    let last = text
        .trim()
        .rsplit([',', '-'])
        .next()
        .and_then(|n| n.parse::<usize>().ok())
        .ok_or_else(|| io::Error::other(format!("unreadable CPU list {text:?}")))?;
    Ok(last + 1)
}

/// Whether the fuse module lets servers use io_uring (`enable_uring`).
pub fn fuse_uring_enabled() -> bool {
    std::fs::read_to_string("/sys/module/fuse/parameters/enable_uring")
        .is_ok_and(|v| matches!(v.trim(), "Y" | "1"))
}

impl FuseRing {
    /// A ring for queue `qid` of the connection behind `device`, with `depth` entries
    /// of `payload` bytes each. Nothing is registered with FUSE yet (that waits for INIT).
    pub fn new(device: BorrowedFd<'_>, qid: u16, depth: usize, payload: usize) -> io::Result<Self> {
        let depth32 =
            u32::try_from(depth).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let ring = IoUring::<squeue::Entry128, cqueue::Entry>::builder()
            .setup_cqsize(depth32 * 2)
            .build(depth32)?;
        ring.submitter().register_files(&[device.as_raw_fd()])?;
        let entries = (0..depth)
            .map(|_| {
                let header = leak(HEADER_SIZE);
                let buf = leak(PREFIX + payload);
                let iov: &'static [libc::iovec; 2] = Box::leak(Box::new([
                    libc::iovec {
                        iov_base: header.as_mut_ptr().cast(),
                        iov_len: header.len(),
                    },
                    libc::iovec {
                        iov_base: buf[PREFIX..].as_mut_ptr().cast(),
                        iov_len: payload,
                    },
                ]));
                Entry {
                    header,
                    buf,
                    iov: iov.as_ptr() as u64,
                    commit_id: 0,
                    last: CMD_REGISTER,
                }
            })
            .collect();
        Ok(FuseRing { ring, qid, entries })
    }

    fn push(&mut self, sqe: squeue::Entry128) -> io::Result<()> {
        // SAFETY: every buffer the command names (iovecs, header, payload) is leaked:
        // it stays valid and in place for as long as the kernel may use it.
        let pushed = unsafe { self.ring.submission().push(&sqe) };
        pushed.map_err(|_| io::Error::other("FUSE io_uring submission queue full"))
    }

    /// Queues entry `idx`'s command again (REGISTER, or COMMIT_AND_FETCH of its
    /// answered request).
    fn submit_entry(&mut self, idx: usize, cmd: u32) -> io::Result<()> {
        let entry = &mut self.entries[idx];
        entry.last = cmd;
        let sqe = opcode::UringCmd80::new(types::Fixed(0), cmd)
            .cmd(cmd_req(self.qid, entry.commit_id))
            .addr(Some(entry.iov))
            .build()
            .user_data(idx as u64);
        // REGISTER names the two buffers; the kernel ignores both for COMMIT_AND_FETCH.
        self.push(with_len(sqe, IOV_SEGS))
    }

    /// Moves the calling thread onto this queue's CPU: the kernel queues a request on
    /// the ring of the CPU its caller runs on, and answering from another CPU costs a
    /// cross-CPU wake-up per request (5x slower metadata here, see docs/BENCHMARKS.md).
    pub fn pin_to_queue_cpu(&self) -> io::Result<()> {
        let mut cpus = nix::sched::CpuSet::new();
        cpus.set(usize::from(self.qid))?;
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpus)?;
        Ok(())
    }

    /// Hands every entry to the kernel. Call once INIT granted FUSE_OVER_IO_URING.
    pub fn register(&mut self) -> io::Result<()> {
        (0..self.entries.len()).try_for_each(|idx| self.submit_entry(idx, CMD_REGISTER))
    }

    /// Submits what is queued and waits for the next request; returns its entry.
    /// Fails once the connection is gone (ENOTCONN after an unmount).
    pub fn next_request(&mut self) -> io::Result<usize> {
        loop {
            let next = self.ring.completion().next();
            if let Some(cqe) = next {
                let idx = usize::try_from(cqe.user_data()).unwrap_or(usize::MAX);
                if idx >= self.entries.len() {
                    return Err(io::Error::other("completion for an unknown ring entry"));
                }
                match cqe.result() {
                    // Interrupted before the kernel took it: the same command again.
                    r if r == -libc::EINTR || r == -libc::EAGAIN => {
                        self.submit_entry(idx, self.entries[idx].last)?;
                        continue;
                    }
                    r if r < 0 => return Err(io::Error::from_raw_os_error(-r)),
                    _ => {}
                }
                let entry = &mut self.entries[idx];
                entry.commit_id = u64_at(entry.header, COMMIT_ID);
                return Ok(idx);
            }
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The request in entry `idx` as one contiguous message (in-header, op struct,
    /// payload), as `/dev/fuse` would have delivered it.
    pub fn request(&mut self, idx: usize) -> io::Result<&mut [u8]> {
        let bad = |why: &str| io::Error::other(format!("FUSE io_uring request: {why}"));
        let entry = self
            .entries
            .get_mut(idx)
            .ok_or_else(|| bad("no such entry"))?;
        let len = u32_at(entry.header, IN_OUT) as usize;
        let payload = u32_at(entry.header, PAYLOAD_SZ) as usize;
        let op_len = len
            .checked_sub(IN_HEADER + payload)
            .filter(|&n| n <= OP_IN_SIZE)
            .ok_or_else(|| bad("lengths disagree"))?;
        if PREFIX + payload > entry.buf.len() {
            return Err(bad("payload larger than its buffer"));
        }
        let start = PREFIX - op_len - IN_HEADER;
        entry.buf[start..start + IN_HEADER].copy_from_slice(&entry.header[..IN_HEADER]);
        entry.buf[PREFIX - op_len..PREFIX].copy_from_slice(&entry.header[OP_IN..OP_IN + op_len]);
        Ok(&mut entry.buf[start..PREFIX + payload])
    }

    /// Answers entry `idx`'s request with `reply` (out-header and body, as written to
    /// `/dev/fuse`) and asks for the next request; submitted by `next_request`.
    pub fn commit(&mut self, idx: usize, reply: &[u8]) -> io::Result<()> {
        let entry = self
            .entries
            .get_mut(idx)
            .ok_or_else(|| io::Error::other("no such entry"))?;
        let (head, body) = reply.split_at(reply.len().min(OUT_HEADER));
        let room = entry.buf.len() - PREFIX;
        if head.len() < OUT_HEADER || body.len() > room {
            return Err(io::Error::other("FUSE io_uring reply does not fit"));
        }
        entry.header[IN_OUT..IN_OUT + OUT_HEADER].copy_from_slice(head);
        entry.buf[PREFIX..PREFIX + body.len()].copy_from_slice(body);
        entry.header[PAYLOAD_SZ..PAYLOAD_SZ + 4]
            .copy_from_slice(&(body.len() as u32).to_le_bytes());
        self.submit_entry(idx, CMD_COMMIT_AND_FETCH)
    }
}

/// Sets the SQE's `len` (the iovec count), which the io-uring crate's UringCmd80
/// builder does not expose.
fn with_len(sqe: squeue::Entry128, len: u32) -> squeue::Entry128 {
    // SAFETY: Entry128 is #[repr(C)], exactly the kernel's 128-byte SQE; every bit
    // pattern of its bytes is a valid value of it.
    let mut bytes: [u8; 128] = unsafe { std::mem::transmute(sqe) };
    // struct io_uring_sqe: opcode, flags, ioprio, fd, off, addr, then `len` at 24.
    bytes[24..28].copy_from_slice(&len.to_le_bytes());
    // SAFETY: as above.
    unsafe { std::mem::transmute::<[u8; 128], squeue::Entry128>(bytes) }
}
