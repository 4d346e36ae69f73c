//! Embedding the virtio-fs device in a VMM process (the way libkrun runs virtio-fs):
//! no vhost-user socket, the VMM owns guest memory and the queue and hands each
//! descriptor chain to [`VirtioFsHandler::answer`].
//!
//! Here "guest memory" is anonymous memory of this process and the "guest driver"
//! writes FUSE INIT, LOOKUP, OPEN and READ requests onto a split virtqueue by hand.
//! Usage: embed_virtiofs [DIR]   (shares DIR, or a fresh directory in $TMPDIR)

use std::sync::atomic::{fence, Ordering};

use ownfs::creds::{CredentialPolicy, GroupSource};
use ownfs::fs::overlay::{RecordFormat, Rootless};
use ownfs::fs::{CachePolicy, Config, FileHandles, Passthrough};
use ownfs::platform;
use ownfs::transport::virtiofs::VirtioFsHandler;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const QUEUE_SIZE: u16 = 16;
const DESC: u64 = 0x0;
const AVAIL: u64 = 0x1000;
const USED: u64 = 0x2000;
const REQUEST: u64 = 0x10_000;
const REPLY: u64 = 0x20_000;
const REPLY_ROOM: u32 = 0x10_000;

/// The guest driver's half: one queue in guest memory, one chain at a time.
struct Driver {
    mem: GuestMemoryMmap,
    next_avail: u16,
    unique: u64,
}

impl Driver {
    /// Puts a request (header + args) and a reply buffer on the queue as one chain.
    fn offer(&mut self, opcode: u32, nodeid: u64, args: &[u8]) {
        self.unique += 1;
        let mut req = Vec::new();
        let len = 40 + args.len() as u32;
        req.extend_from_slice(&len.to_le_bytes());
        req.extend_from_slice(&opcode.to_le_bytes());
        req.extend_from_slice(&self.unique.to_le_bytes());
        req.extend_from_slice(&nodeid.to_le_bytes());
        // uid, gid, pid, total_extlen + padding
        req.extend_from_slice(&[0u8; 16]);
        req.extend_from_slice(args);
        self.mem.write_slice(&req, GuestAddress(REQUEST)).unwrap();
        // Descriptor 0: the request (device-readable), chained to 1: the reply room.
        let descs = [(REQUEST, len, 1u16, 1u16), (REPLY, REPLY_ROOM, 2u16, 0u16)];
        for (i, (addr, len, flags, next)) in descs.into_iter().enumerate() {
            let at = DESC + 16 * i as u64;
            self.mem.write_obj(addr, GuestAddress(at)).unwrap();
            self.mem.write_obj(len, GuestAddress(at + 8)).unwrap();
            self.mem.write_obj(flags, GuestAddress(at + 12)).unwrap();
            self.mem.write_obj(next, GuestAddress(at + 14)).unwrap();
        }
        let slot = u64::from(self.next_avail % QUEUE_SIZE);
        self.mem
            .write_obj(0u16, GuestAddress(AVAIL + 4 + 2 * slot))
            .unwrap();
        fence(Ordering::SeqCst);
        self.next_avail = self.next_avail.wrapping_add(1);
        self.mem
            .write_obj(self.next_avail, GuestAddress(AVAIL + 2))
            .unwrap();
    }

    /// The reply's error and body.
    fn reply(&self, used: u32) -> (i32, Vec<u8>) {
        let mut out = vec![0u8; used as usize];
        self.mem.read_slice(&mut out, GuestAddress(REPLY)).unwrap();
        let error = i32::from_le_bytes(out[4..8].try_into().unwrap());
        (error, out.split_off(16))
    }
}

/// The VMM's half: pops the chain, has ownfs answer it, returns it to the guest.
fn device_step<F>(fs: &VirtioFsHandler<F>, queue: &mut Queue, mem: &GuestMemoryMmap) -> u32
where
    F: ownfs::extension::FileSystemExt + Sync,
{
    let chain = queue
        .pop_descriptor_chain(mem)
        .expect("a chain on the queue");
    let head = chain.head_index();
    let used = fs.answer(chain);
    queue.add_used(mem, head, used).expect("used ring");
    // A real VMM now interrupts the guest if queue.needs_notification(mem) says so.
    used
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let given = std::env::args_os().nth(1);
    let dir = match &given {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            let d = std::env::temp_dir().join(format!("ownfs-embed-{}", std::process::id()));
            std::fs::create_dir_all(&d)?;
            std::fs::write(d.join("hello.txt"), b"hello from the host\n")?;
            d
        }
    };
    // Rootless, as on macOS: owners are recorded in xattrs, never applied on the host.
    let fs = Passthrough::new(Config {
        root: dir.clone(),
        cache: CachePolicy::Auto,
        writeback: false,
        creds: CredentialPolicy::new(false, GroupSource::Forwarded),
        rootless: Some(Rootless {
            default_uid: 0,
            default_gid: 0,
            server_uid: platform::geteuid(),
            server_gid: platform::getegid(),
            try_host_chown: false,
            format: RecordFormat::Ownfs,
        }),
        posix_acl: false,
        uncached_metadata: false,
        read_only: false,
        backing: None,
        file_handles: FileHandles::Never,
        max_open_fds: None,
    })?;
    let handler = VirtioFsHandler::new(fs);

    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)])?;
    let mut queue = Queue::new(QUEUE_SIZE)?;
    queue.try_set_desc_table_address(GuestAddress(DESC))?;
    queue.try_set_avail_ring_address(GuestAddress(AVAIL))?;
    queue.try_set_used_ring_address(GuestAddress(USED))?;
    queue.set_ready(true);
    let mut driver = Driver {
        mem: mem.clone(),
        next_avail: 0,
        unique: 0,
    };

    // INIT: major 7, minor 31, max_readahead, flags.
    let init: Vec<u8> = [7u32, 31, 128 << 10, 0]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    driver.offer(26, 0, &init);
    let (error, _) = driver.reply(device_step(&handler, &mut queue, &mem));
    println!("INIT: error {error}");

    driver.offer(1, 1, b"hello.txt\0");
    let (error, entry) = driver.reply(device_step(&handler, &mut queue, &mem));
    let nodeid = u64::from_le_bytes(entry[..8].try_into()?);
    println!("LOOKUP hello.txt: error {error}, node {nodeid}");

    // OPEN read-only: flags, open_flags.
    driver.offer(14, nodeid, &[0u8; 8]);
    let (error, open) = driver.reply(device_step(&handler, &mut queue, &mem));
    let fh = u64::from_le_bytes(open[..8].try_into()?);
    println!("OPEN: error {error}, handle {fh}");

    // READ: fh, offset, size, read_flags, lock_owner, flags, padding.
    let mut read = Vec::new();
    read.extend_from_slice(&fh.to_le_bytes());
    read.extend_from_slice(&0u64.to_le_bytes());
    read.extend_from_slice(&4096u32.to_le_bytes());
    read.extend_from_slice(&[0u8; 20]);
    driver.offer(15, nodeid, &read);
    let (error, data) = driver.reply(device_step(&handler, &mut queue, &mem));
    println!("READ: error {error}, {:?}", String::from_utf8_lossy(&data));
    if given.is_none() {
        drop(handler);
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
