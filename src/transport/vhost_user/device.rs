//! The connection to one VMM: vhost-user messages set the device up, kicks make it
//! serve. Socket and kicks are polled together on the calling thread.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use virtio_queue::QueueT;
use vm_memory::GuestAddress;

use super::memory::{MemoryMap, RegionDesc, REGION_DESC_SIZE};
use super::message::{self as msg, Message, RecvError};
use super::notifier::{Call, Kick};
use super::pool::{self, Pool};
use super::ring::Ring;
use super::Backend;

/// Rings a device may have: poll(2) takes them from a fixed array, with the socket.
const MAX_RINGS: usize = 8;
/// How long GET_VRING_BASE waits for requests still being answered.
const STOP_WAIT: Duration = Duration::from_secs(10);

const VHOST_USER_F_PROTOCOL_FEATURES: u64 = 1 << 30;
const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;
/// Protocol feature bit of REPLY_ACK.
const PROTOCOL_REPLY_ACK: u64 = 1 << 3;

/// What the device offers and how it serves.
#[derive(Clone, Debug)]
pub struct DeviceConfig {
    /// Virtio features offered (GET_FEATURES).
    pub features: u64,
    /// vhost-user protocol features offered (GET_PROTOCOL_FEATURES).
    pub protocol_features: u64,
    /// Queues of the device, at most 8.
    pub num_queues: usize,
    /// The largest queue the VMM may set up.
    pub max_queue_size: u16,
    /// Memory regions the VMM may add (GET_MAX_MEM_SLOTS).
    pub max_mem_slots: u64,
    /// Worker threads answering chains; 0 answers them on the polling thread.
    pub thread_pool_size: usize,
}

/// A message the device turned down.
enum Refusal {
    /// Acknowledged as a failure if asked; the connection goes on.
    Refused(String),
    /// The connection cannot go on (broken framing, a reply we cannot give).
    Fatal(io::Error),
}

impl From<io::Error> for Refusal {
    fn from(e: io::Error) -> Self {
        Refusal::Fatal(e)
    }
}

fn refused<T>(why: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal::Refused(why.into()))
}

struct Device {
    sock: UnixStream,
    config: DeviceConfig,
    backend: Arc<dyn Backend>,
    pool: Option<Pool>,
    features: u64,
    protocol: u64,
    memory: MemoryMap,
    rings: Vec<Arc<Ring>>,
    kicks: Vec<Option<Kick>>,
    enabled: Vec<bool>,
}

/// Serves the VMM on `sock` until it disconnects (`Ok`) or breaks the protocol (`Err`).
pub fn serve_connection(
    sock: UnixStream,
    backend: Arc<dyn Backend>,
    config: &DeviceConfig,
) -> io::Result<()> {
    let n = config.num_queues;
    if n == 0 || n > MAX_RINGS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a vhost-user device has 1 to {MAX_RINGS} queues, not {n}"),
        ));
    }
    let mut rings = Vec::with_capacity(n);
    for i in 0..n {
        let ring = Ring::new(i, config.max_queue_size).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "queue size must be a power of 2",
            )
        })?;
        rings.push(Arc::new(ring));
    }
    let pool = match config.thread_pool_size {
        0 => None,
        t => Some(Pool::start(t, &backend)?),
    };
    let mut dev = Device {
        sock,
        config: config.clone(),
        backend,
        pool,
        features: 0,
        protocol: 0,
        memory: MemoryMap::default(),
        rings,
        kicks: (0..n).map(|_| None).collect(),
        enabled: vec![false; n],
    };
    dev.run()
}

impl Device {
    fn run(&mut self) -> io::Result<()> {
        loop {
            let (socket, kicked, hung_up) = self.wait()?;
            for i in 0..self.rings.len() {
                if hung_up & (1 << i) != 0 {
                    log::warn!("virtqueue {i}: the kick notifier was closed: queue stopped");
                    self.kicks[i] = None;
                } else if kicked & (1 << i) != 0 {
                    self.kicked(i);
                }
            }
            if !socket {
                continue;
            }
            match msg::recv(&mut self.sock) {
                Ok(m) => self.handle(m)?,
                Err(RecvError::Disconnected) => return Ok(()),
                Err(RecvError::Broken(e)) => {
                    return Err(io::Error::new(e.kind(), format!("vhost-user socket: {e}")))
                }
            }
        }
    }

    /// Polls the socket and the kicks of running rings. Returns whether the socket is
    /// readable, and bitmasks of the rings kicked and of those whose kick hung up.
    fn wait(&self) -> io::Result<(bool, u32, u32)> {
        let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN); MAX_RINGS + 1];
        let mut ring_of = [0usize; MAX_RINGS + 1];
        let mut n = 1;
        for (i, kick) in self.kicks.iter().enumerate() {
            if let (Some(kick), true) = (kick, self.enabled[i]) {
                fds[n] = PollFd::new(kick.as_fd(), PollFlags::POLLIN);
                ring_of[n] = i;
                n += 1;
            }
        }
        loop {
            match poll(&mut fds[..n], PollTimeout::NONE) {
                Ok(_) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    let e = io::Error::from(e);
                    return Err(io::Error::new(
                        e.kind(),
                        format!("polling the vhost-user fds: {e}"),
                    ));
                }
            }
        }
        let revents = |fd: &PollFd| fd.revents().unwrap_or(PollFlags::empty());
        let socket = !revents(&fds[0]).is_empty();
        let (mut kicked, mut hung_up) = (0u32, 0u32);
        for (fd, &ring) in fds[1..n].iter().zip(&ring_of[1..n]) {
            let ev = revents(fd);
            if ev.contains(PollFlags::POLLIN) {
                kicked |= 1 << ring;
            } else if ev.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
                hung_up |= 1 << ring;
            }
        }
        Ok((socket, kicked, hung_up))
    }

    fn kicked(&mut self, i: usize) {
        if let Some(Err(e)) = self.kicks[i].as_ref().map(Kick::drain) {
            log::error!("virtqueue {i}: reading the kick notifier: {e}");
        }
        self.process(i);
    }

    /// Takes every available chain off ring `i` and has it answered.
    fn process(&self, i: usize) {
        if self.memory.is_empty() {
            log::warn!("virtqueue {i} kicked before the VMM sent a memory table: ignored");
            return;
        }
        let mem = self.memory.snapshot();
        let ring = &self.rings[i];
        let event_idx = self.features & VIRTIO_RING_F_EVENT_IDX != 0;
        loop {
            if event_idx {
                if let Err(e) = ring.lock().queue.disable_notification(mem.as_ref()) {
                    log::error!("virtqueue {i}: disabling notifications: {e}");
                }
            }
            while let Some(chain) = ring.pop(&mem) {
                let unserved = match &self.pool {
                    Some(pool) => pool.submit(chain, ring).err(),
                    None => Some(chain),
                };
                if let Some(chain) = unserved {
                    pool::answer(self.backend.as_ref(), chain, ring);
                }
            }
            // With event-idx the driver kicks again only once notifications are back
            // on: drain until no chain slipped in while they were off.
            if !event_idx {
                return;
            }
            match ring.lock().queue.enable_notification(mem.as_ref()) {
                Ok(true) => continue,
                Ok(false) => return,
                Err(e) => {
                    log::error!("virtqueue {i}: enabling notifications: {e}");
                    return;
                }
            }
        }
    }

    /// Starts ring `i` once it has a kick and is enabled.
    fn maybe_start(&mut self, i: usize) {
        if self.kicks[i].is_none() || !self.enabled[i] {
            return;
        }
        let mem = self.memory.snapshot();
        {
            let mut state = self.rings[i].lock();
            state
                .queue
                .set_event_idx(self.features & VIRTIO_RING_F_EVENT_IDX != 0);
            // virtio-queue checks only a ready queue.
            state.queue.set_ready(true);
            if !state.queue.is_valid(mem.as_ref()) {
                state.queue.set_ready(false);
                log::error!(
                    "virtqueue {i}: its size or addresses do not fit guest memory: not started"
                );
                return;
            }
        }
        log::debug!("virtqueue {i} started");
        // Chains may be waiting from before a stop.
        self.process(i);
    }

    fn handle(&mut self, m: Message) -> io::Result<()> {
        let request = m.request;
        log::debug!("vhost-user {} ({request})", msg::name(request));
        let wants_ack = m.needs_ack()
            && self.protocol & PROTOCOL_REPLY_ACK != 0
            && !Message::has_reply(request);
        let status = match self.apply(m) {
            Ok(()) => 0,
            Err(Refusal::Refused(why)) => {
                log::error!(
                    "vhost-user {} ({request}) refused: {why}",
                    msg::name(request)
                );
                1
            }
            Err(Refusal::Fatal(e)) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("vhost-user {} ({request}): {e}", msg::name(request)),
                ))
            }
        };
        if wants_ack {
            msg::reply_u64(&mut self.sock, request, status)?;
        }
        Ok(())
    }

    /// The ring named by a vring index word, rejecting indices past the device's queues.
    fn ring_index(&self, word: u64) -> Result<usize, Refusal> {
        let i = (word & msg::VRING_INDEX_MASK) as usize;
        if i >= self.rings.len() {
            return refused(format!("no virtqueue {i}"));
        }
        Ok(i)
    }

    fn apply(&mut self, mut m: Message) -> Result<(), Refusal> {
        match m.request {
            msg::GET_FEATURES => {
                msg::reply_u64(&mut self.sock, m.request, self.config.features)?;
            }
            msg::SET_FEATURES => {
                let features = m.u64()?;
                if features & !self.config.features != 0 {
                    return refused(format!("features {features:#x} were never offered"));
                }
                self.features = features;
            }
            msg::GET_PROTOCOL_FEATURES => {
                msg::reply_u64(&mut self.sock, m.request, self.config.protocol_features)?;
            }
            msg::SET_PROTOCOL_FEATURES => {
                let features = m.u64()?;
                if features & !self.config.protocol_features != 0 {
                    return refused(format!(
                        "protocol features {features:#x} were never offered"
                    ));
                }
                self.protocol = features;
            }
            msg::SET_OWNER => {}
            msg::RESET_OWNER => self.reset(),
            msg::GET_QUEUE_NUM => {
                msg::reply_u64(&mut self.sock, m.request, self.rings.len() as u64)?;
            }
            msg::GET_MAX_MEM_SLOTS => {
                msg::reply_u64(&mut self.sock, m.request, self.config.max_mem_slots)?;
            }
            msg::SET_MEM_TABLE => self.set_mem_table(&mut m)?,
            msg::ADD_MEM_REG => {
                let desc = single_region(&m)?;
                let Some(fd) = m.fds.pop() else {
                    return refused("ADD_MEM_REG without a descriptor");
                };
                if self.memory.len() as u64 >= self.config.max_mem_slots {
                    return refused("no memory slot left");
                }
                self.memory
                    .add(desc, fd)
                    .or_else(|e| refused(e.to_string()))?;
            }
            msg::REM_MEM_REG => {
                let desc = single_region(&m)?;
                self.memory
                    .remove(desc)
                    .or_else(|e| refused(e.to_string()))?;
            }
            msg::SET_VRING_NUM => {
                let (index, num) = m.vring_state()?;
                let i = self.ring_index(index.into())?;
                let size = u16::try_from(num).unwrap_or(0);
                if self.rings[i].lock().queue.try_set_size(size).is_err() {
                    return refused(format!(
                        "virtqueue {i}: size {num} is not a power of 2 up to {}",
                        self.config.max_queue_size
                    ));
                }
            }
            msg::SET_VRING_ADDR => self.set_vring_addr(&m)?,
            msg::SET_VRING_BASE => {
                let (index, num) = m.vring_state()?;
                let i = self.ring_index(index.into())?;
                let base = u16::try_from(num).unwrap_or(0);
                let mut state = self.rings[i].lock();
                state.queue.set_next_avail(base);
                state.queue.set_next_used(base);
            }
            msg::GET_VRING_BASE => {
                let (index, _) = m.vring_state()?;
                let i = self.ring_index(index.into()).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("GET_VRING_BASE of unknown virtqueue {index}"),
                    )
                })?;
                // The ring stops: no more kicks until the VMM sends a new one.
                self.kicks[i] = None;
                let next = self.rings[i].stop(STOP_WAIT);
                let mut state = [0u8; 8];
                state[..4].copy_from_slice(&index.to_le_bytes());
                state[4..].copy_from_slice(&u32::from(next).to_le_bytes());
                msg::reply(&mut self.sock, m.request, &state)?;
            }
            msg::SET_VRING_KICK => {
                let word = m.u64()?;
                let i = self.ring_index(word)?;
                if word & msg::VRING_NOFD != 0 {
                    return refused(format!(
                        "virtqueue {i}: polling mode (no kick notifier) is not supported"
                    ));
                }
                let Some(fd) = m.fds.pop() else {
                    return refused(format!(
                        "virtqueue {i}: SET_VRING_KICK without a descriptor"
                    ));
                };
                self.kicks[i] =
                    Some(Kick::new(fd).or_else(|e| refused(format!("kick notifier: {e}")))?);
                // Without protocol features a ring runs as soon as it has a kick.
                if self.features & VHOST_USER_F_PROTOCOL_FEATURES == 0 {
                    self.enabled[i] = true;
                }
                self.maybe_start(i);
            }
            msg::SET_VRING_CALL => {
                let word = m.u64()?;
                let i = self.ring_index(word)?;
                let call = match m.fds.pop() {
                    // No descriptor: the driver reads the used ring without being told.
                    _ if word & msg::VRING_NOFD != 0 => None,
                    Some(fd) => {
                        Some(Call::new(fd).or_else(|e| refused(format!("call notifier: {e}")))?)
                    }
                    None => {
                        return refused(format!(
                            "virtqueue {i}: SET_VRING_CALL without a descriptor"
                        ))
                    }
                };
                self.rings[i].lock().call = call;
            }
            msg::SET_VRING_ERR => {
                // Errors are never signalled: the descriptor is only closed.
                self.ring_index(m.u64()?)?;
            }
            msg::SET_VRING_ENABLE => {
                let (index, enable) = m.vring_state()?;
                let i = self.ring_index(index.into())?;
                if self.features & VHOST_USER_F_PROTOCOL_FEATURES == 0 {
                    return refused("SET_VRING_ENABLE without VHOST_USER_F_PROTOCOL_FEATURES");
                }
                self.enabled[i] = enable != 0;
                if self.enabled[i] {
                    self.maybe_start(i);
                } else {
                    self.rings[i].lock().queue.set_ready(false);
                }
            }
            other if Message::has_reply(other) => {
                return Err(Refusal::Fatal(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "unsupported request that expects a reply: closing the connection",
                )));
            }
            other => {
                return refused(format!(
                    "unsupported request {other} ({} bytes): ignored",
                    m.payload.len()
                ));
            }
        }
        Ok(())
    }

    fn set_mem_table(&mut self, m: &mut Message) -> Result<(), Refusal> {
        let count = m.u32_at(0)? as usize;
        if count > crate::platform::MAX_PASSED_FDS || m.payload.len() < 8 + count * REGION_DESC_SIZE
        {
            return Err(m.bad_size().into());
        }
        let mut descs = Vec::with_capacity(count);
        for k in 0..count {
            let at = 8 + k * REGION_DESC_SIZE;
            descs.push(
                RegionDesc::parse(&m.payload[at..at + REGION_DESC_SIZE])
                    .ok_or_else(|| m.bad_size())?,
            );
        }
        let fds = std::mem::take(&mut m.fds);
        self.memory
            .set_table(&descs, fds)
            .or_else(|e| refused(e.to_string()))
    }

    fn set_vring_addr(&mut self, m: &Message) -> Result<(), Refusal> {
        if m.payload.len() != 40 {
            return Err(m.bad_size().into());
        }
        let i = self.ring_index(m.u32_at(0)?.into())?;
        // Layout: index, flags, then the VMM addresses of descriptors, used and available rings.
        let translate = |at: usize, what: &str| -> Result<GuestAddress, Refusal> {
            let va = m.u64_at(at)?;
            match self.memory.vmm_to_guest(va) {
                Some(gpa) => Ok(GuestAddress(gpa)),
                None => refused(format!(
                    "virtqueue {i}: {what} at VMM address {va:#x} is outside guest memory"
                )),
            }
        };
        let desc = translate(8, "descriptor table")?;
        let used = translate(16, "used ring")?;
        let avail = translate(24, "available ring")?;
        let mut state = self.rings[i].lock();
        let q = &mut state.queue;
        if q.try_set_desc_table_address(desc).is_err()
            || q.try_set_used_ring_address(used).is_err()
            || q.try_set_avail_ring_address(avail).is_err()
        {
            return refused(format!("virtqueue {i}: misaligned ring addresses"));
        }
        Ok(())
    }

    /// Back to the state of a fresh connection (RESET_OWNER).
    fn reset(&mut self) {
        for (i, ring) in self.rings.iter().enumerate() {
            self.kicks[i] = None;
            self.enabled[i] = false;
            ring.stop(STOP_WAIT);
            let mut state = ring.lock();
            state.queue.reset();
            state.call = None;
        }
        self.features = 0;
        self.protocol = 0;
    }
}

fn single_region(m: &Message) -> Result<RegionDesc, Refusal> {
    // A u64 of padding, then the region.
    m.payload
        .get(8..8 + REGION_DESC_SIZE)
        .and_then(RegionDesc::parse)
        .ok_or_else(|| Refusal::Fatal(m.bad_size()))
}
