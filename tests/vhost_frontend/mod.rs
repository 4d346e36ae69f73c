//! A minimal vhost-user frontend and guest driver for tests: plays the VMM (messages
//! over the socket, guest memory shared as a descriptor) and the guest driver
//! (descriptor chains on split virtqueues). Notifiers are eventfds, as QEMU on Linux
//! sends, or pipes, as a VMM on macOS sends; memory is a plain file or a memfd.
#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{fence, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryMmap};

pub const MEM_SIZE: u64 = 4 << 20;
/// Where the VMM "maps" guest memory; the backend translates ring addresses with it.
pub const VMM_VA: u64 = 0x7f00_0000_0000;
pub const QUEUE_SIZE: u16 = 16;

pub const VERSION_1: u64 = 1 << 32;
pub const INDIRECT_DESC: u64 = 1 << 28;
pub const EVENT_IDX: u64 = 1 << 29;
pub const PROTOCOL_FEATURES: u64 = 1 << 30;
pub const PROTOCOL_MQ: u64 = 1 << 0;
pub const PROTOCOL_REPLY_ACK: u64 = 1 << 3;
pub const PROTOCOL_CONFIG: u64 = 1 << 9;
pub const PROTOCOL_CONFIGURE_MEM_SLOTS: u64 = 1 << 15;

const GET_FEATURES: u32 = 1;
const SET_FEATURES: u32 = 2;
const SET_OWNER: u32 = 3;
const SET_MEM_TABLE: u32 = 5;
const SET_VRING_NUM: u32 = 8;
const SET_VRING_ADDR: u32 = 9;
const SET_VRING_BASE: u32 = 10;
const SET_VRING_KICK: u32 = 12;
const SET_VRING_CALL: u32 = 13;
const GET_PROTOCOL_FEATURES: u32 = 15;
const SET_PROTOCOL_FEATURES: u32 = 16;
const GET_QUEUE_NUM: u32 = 17;
const SET_VRING_ENABLE: u32 = 18;
const NEED_REPLY: u32 = 0x8;

const VIRTQ_DESC_F_NEXT: u16 = 1;
const VIRTQ_DESC_F_WRITE: u16 = 2;

/// How the frontend notifies and shares memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// eventfds and a guest-memory file in the scratch directory (QEMU on Linux).
    Linux,
    /// pipes (kick: the device gets the read end; call: the write end) and a memfd,
    /// the way a VMM on macOS hands them over.
    Portable,
}

/// The frontend's side of the vhost-user socket.
pub struct Frontend {
    sock: UnixStream,
}

impl Frontend {
    pub fn connect(path: &Path) -> Frontend {
        Frontend {
            sock: UnixStream::connect(path).expect("connect to the vhost-user socket"),
        }
    }

    /// Sends one message with `fds` attached to its header.
    pub fn send(&mut self, request: u32, flags: u32, payload: &[u8], fds: &[BorrowedFd<'_>]) {
        let mut msg = Vec::new();
        msg.extend_from_slice(&request.to_le_bytes());
        msg.extend_from_slice(&(0x1 | flags).to_le_bytes());
        msg.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        msg.extend_from_slice(payload);
        let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let cmsg = [ControlMessage::ScmRights(&raw)];
        let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &cmsg };
        let iov = [std::io::IoSlice::new(&msg)];
        let n = sendmsg::<()>(self.sock.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None)
            .expect("sendmsg");
        if n < msg.len() {
            self.sock.write_all(&msg[n..]).expect("rest of the message");
        }
    }

    /// Reads the reply to `request`: its payload.
    pub fn reply(&mut self, request: u32) -> Vec<u8> {
        let mut header = [0u8; 12];
        self.sock.read_exact(&mut header).expect("reply header");
        let word = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().unwrap());
        assert_eq!(word(0), request, "reply to another request");
        assert_eq!(word(4), 0x1 | 0x4, "reply flags: version 1 and REPLY");
        let mut payload = vec![0u8; word(8) as usize];
        self.sock.read_exact(&mut payload).expect("reply payload");
        payload
    }

    pub fn get_u64(&mut self, request: u32) -> u64 {
        self.send(request, 0, &[], &[]);
        let r = self.reply(request);
        u64::from_le_bytes(r.as_slice().try_into().expect("a u64 reply"))
    }

    pub fn set_u64(&mut self, request: u32, value: u64, fds: &[BorrowedFd<'_>]) {
        self.send(request, 0, &value.to_le_bytes(), fds);
    }

    /// Sends with NEED_REPLY and returns the acknowledgement (0 is success).
    pub fn acked(&mut self, request: u32, payload: &[u8], fds: &[BorrowedFd<'_>]) -> u64 {
        self.send(request, NEED_REPLY, payload, fds);
        let r = self.reply(request);
        u64::from_le_bytes(r.as_slice().try_into().expect("a u64 acknowledgement"))
    }

    pub fn vring_state(&mut self, request: u32, index: u32, num: u32) {
        let mut p = index.to_le_bytes().to_vec();
        p.extend_from_slice(&num.to_le_bytes());
        self.send(request, 0, &p, &[]);
    }

    /// The raw socket, to send malformed bytes.
    pub fn socket(&mut self) -> &mut UnixStream {
        &mut self.sock
    }
}

/// The driver's notifier pair for one queue: what it keeps of kick and call.
struct Notifiers {
    /// Written to kick.
    kick: OwnedFd,
    /// Read to take calls.
    call: OwnedFd,
}

/// One split virtqueue, as a guest driver lays it out in guest memory.
pub struct Queue {
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    notifiers: Notifiers,
    pub next_avail: u16,
    pub next_used: u16,
}

impl Queue {
    pub fn kick(&self) {
        nix::unistd::write(&self.notifiers.kick, &1u64.to_ne_bytes()).expect("kick");
    }

    /// Takes pending calls; returns whether there was one.
    pub fn take_calls(&self) -> bool {
        let mut buf = [0u8; 64];
        let mut any = false;
        while let Ok(n) = nix::unistd::read(self.notifiers.call.as_raw_fd(), &mut buf) {
            if n == 0 {
                break;
            }
            any = true;
        }
        any
    }
}

fn nonblocking(fd: &OwnedFd) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_retain(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL).unwrap());
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).unwrap();
}

fn eventfd() -> OwnedFd {
    use nix::sys::eventfd::{EfdFlags, EventFd};
    let efd = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC).unwrap();
    efd.as_fd().try_clone_to_owned().unwrap()
}

/// (what the driver keeps, what the device gets) for a kick and a call.
fn notifier_pairs(shape: Shape) -> (Notifiers, OwnedFd, OwnedFd) {
    match shape {
        Shape::Linux => {
            let (kick, call) = (eventfd(), eventfd());
            let dev_kick = kick.try_clone().unwrap();
            let dev_call = call.try_clone().unwrap();
            (Notifiers { kick, call }, dev_kick, dev_call)
        }
        Shape::Portable => {
            let (kick_rd, kick_wr) = nix::unistd::pipe().unwrap();
            let (call_rd, call_wr) = nix::unistd::pipe().unwrap();
            nonblocking(&call_rd);
            (
                Notifiers {
                    kick: kick_wr,
                    call: call_rd,
                },
                kick_rd,
                call_wr,
            )
        }
    }
}

fn memory_fd(shape: Shape, file_path: &Path) -> File {
    let file = match shape {
        Shape::Linux => File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(file_path)
            .expect("guest memory file"),
        Shape::Portable => {
            use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
            File::from(memfd_create(c"guest-ram", MemFdCreateFlag::MFD_CLOEXEC).expect("memfd"))
        }
    };
    file.set_len(MEM_SIZE).expect("size guest memory");
    file
}

/// The VMM and the guest driver in one: vhost-user frontend plus guest memory.
pub struct Vmm {
    pub frontend: Frontend,
    pub mem: GuestMemoryMmap,
    pub queues: Vec<Queue>,
    pub unique: u64,
    _mem_file: File,
}

impl Vmm {
    /// Connects and negotiates like QEMU; returns the offered (features, protocol
    /// features). `mem_path` is where a [`Shape::Linux`] guest-memory file goes.
    pub fn connect(sock: &Path, shape: Shape, mem_path: &Path) -> (Vmm, u64, u64) {
        let mut fe = Frontend::connect(sock);
        fe.send(SET_OWNER, 0, &[], &[]);
        let features = fe.get_u64(GET_FEATURES);
        // No EVENT_IDX: the driver here wants a call for every used buffer.
        fe.set_u64(
            SET_FEATURES,
            features & (VERSION_1 | INDIRECT_DESC | PROTOCOL_FEATURES),
            &[],
        );
        let protocol = fe.get_u64(GET_PROTOCOL_FEATURES);
        fe.set_u64(
            SET_PROTOCOL_FEATURES,
            protocol & (PROTOCOL_MQ | PROTOCOL_REPLY_ACK),
            &[],
        );
        assert_eq!(fe.get_u64(GET_QUEUE_NUM), 2, "hiprio + one request queue");

        let mem_file = memory_fd(shape, mem_path);
        let mem = GuestMemoryMmap::from_ranges_with_files([(
            GuestAddress(0),
            MEM_SIZE as usize,
            Some(FileOffset::new(mem_file.try_clone().unwrap(), 0)),
        )])
        .expect("map guest memory");
        let mut table = Vec::new();
        table.extend_from_slice(&1u32.to_le_bytes());
        table.extend_from_slice(&0u32.to_le_bytes());
        for w in [0, MEM_SIZE, VMM_VA, 0] {
            table.extend_from_slice(&w.to_le_bytes());
        }
        let ack = fe.acked(SET_MEM_TABLE, &table, &[mem_file.as_fd()]);
        assert_eq!(ack, 0, "SET_MEM_TABLE acknowledged");

        let mut queues = Vec::new();
        for q in 0..2u32 {
            let base = u64::from(q) * 0x1_0000;
            let (notifiers, dev_kick, dev_call) = notifier_pairs(shape);
            let queue = Queue {
                desc: base,
                avail: base + 0x1000,
                used: base + 0x2000,
                notifiers,
                next_avail: 0,
                next_used: 0,
            };
            fe.vring_state(SET_VRING_NUM, q, u32::from(QUEUE_SIZE));
            fe.vring_state(SET_VRING_BASE, q, 0);
            let mut addr = q.to_le_bytes().to_vec();
            addr.extend_from_slice(&0u32.to_le_bytes());
            for a in [queue.desc, queue.used, queue.avail, 0] {
                addr.extend_from_slice(&(VMM_VA + a).to_le_bytes());
            }
            fe.send(SET_VRING_ADDR, 0, &addr, &[]);
            fe.set_u64(SET_VRING_KICK, u64::from(q), &[dev_kick.as_fd()]);
            fe.set_u64(SET_VRING_CALL, u64::from(q), &[dev_call.as_fd()]);
            fe.vring_state(SET_VRING_ENABLE, q, 1);
            queues.push(queue);
        }
        let vmm = Vmm {
            frontend: fe,
            mem,
            queues,
            unique: 0,
            _mem_file: mem_file,
        };
        (vmm, features, protocol)
    }

    /// Puts a chain of (guest address, length, device-writable) on the request queue,
    /// kicks, and waits for it to come back. Returns the used length.
    pub fn submit(&mut self, descs: &[(u64, u32, bool)]) -> u32 {
        let mem = &self.mem;
        let q = &mut self.queues[1];
        for (i, &(addr, len, writable)) in descs.iter().enumerate() {
            let mut flags = if writable { VIRTQ_DESC_F_WRITE } else { 0 };
            if i + 1 < descs.len() {
                flags |= VIRTQ_DESC_F_NEXT;
            }
            let at = GuestAddress(q.desc + 16 * i as u64);
            mem.write_obj(addr, at).unwrap();
            mem.write_obj(len, GuestAddress(at.0 + 8)).unwrap();
            mem.write_obj(flags, GuestAddress(at.0 + 12)).unwrap();
            mem.write_obj((i + 1) as u16, GuestAddress(at.0 + 14))
                .unwrap();
        }
        let slot = u64::from(q.next_avail % QUEUE_SIZE);
        mem.write_obj(0u16, GuestAddress(q.avail + 4 + 2 * slot))
            .unwrap();
        fence(Ordering::SeqCst);
        q.next_avail = q.next_avail.wrapping_add(1);
        mem.write_obj(q.next_avail, GuestAddress(q.avail + 2))
            .unwrap();
        fence(Ordering::SeqCst);
        q.kick();

        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let used_idx: u16 = mem.read_obj(GuestAddress(q.used + 2)).unwrap();
            if used_idx != q.next_used {
                break;
            }
            assert!(Instant::now() < deadline, "no used buffer within 20 s");
            // Either the call notifier fires or we look again shortly.
            q.take_calls();
            sleep(Duration::from_millis(2));
        }
        fence(Ordering::SeqCst);
        let slot = u64::from(q.next_used % QUEUE_SIZE);
        let id: u32 = mem.read_obj(GuestAddress(q.used + 4 + 8 * slot)).unwrap();
        let len: u32 = mem
            .read_obj(GuestAddress(q.used + 4 + 8 * slot + 4))
            .unwrap();
        q.next_used = q.next_used.wrapping_add(1);
        assert_eq!(id, 0, "the used entry names the chain's head descriptor");
        len
    }
}
