//! vhost-user virtio-fs device: a VMM (QEMU, cloud-hypervisor) connects to a Unix
//! socket, shares the guest's memory and virtqueues, and the guest kernel's FUSE
//! requests arrive as descriptor chains. Each chain's request is copied out of guest
//! memory, answered by the protocol core's [`Session`], and the answer copied back;
//! this module knows nothing of the filesystem behind it, and the vhost-user device
//! itself (src/transport/vhost_user/) knows nothing of FUSE.
//!
//! One VMM connection is served; when the VMM disconnects, [`serve`] returns.
//! VMMs that run virtio-fs in-process use [`VirtioFsHandler`] directly.

use std::cell::RefCell;
use std::io;
use std::io::{Read, Write};
use std::ops::Deref;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Arc;

use virtio_queue::DescriptorChain;
use vm_memory::{GuestMemory, GuestMemoryRegion};

use super::vhost_user::{self, Backend, Chain, DeviceConfig};
use crate::extension::FileSystemExt;
use crate::platform;
use crate::protocol::dispatch::{Session, SessionOptions, BUFFER_SIZE};

/// Queue 0 carries FORGET and INTERRUPT ("hiprio"), queue 1 every other request.
const NUM_QUEUES: usize = 2;
/// The largest split virtqueue the virtio spec allows; the VMM picks the real size.
const MAX_QUEUE_SIZE: u16 = 32768;
/// Memory regions a VMM may plug in (the number virtiofsd offers).
const MAX_MEM_SLOTS: u64 = 509;

// Virtio feature bits (virtio spec 1.2, 6 "Reserved Feature Bits").
const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << 28;
const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;
const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// vhost-user's own feature bit: protocol features may be negotiated.
const VHOST_USER_F_PROTOCOL_FEATURES: u64 = 1 << 30;

/// Virtio features offered to the VMM. Indirect descriptors and event-idx are handled
/// by virtio-queue; PROTOCOL_FEATURES unlocks the protocol feature negotiation.
pub const VIRTIO_FEATURES: u64 = VIRTIO_F_VERSION_1
    | VIRTIO_RING_F_INDIRECT_DESC
    | VIRTIO_RING_F_EVENT_IDX
    | VHOST_USER_F_PROTOCOL_FEATURES;

// vhost-user protocol feature bits (QEMU's docs/interop/vhost-user.rst).
const PROTOCOL_MQ: u64 = 1 << 0;
const PROTOCOL_REPLY_ACK: u64 = 1 << 3;
const PROTOCOL_CONFIGURE_MEM_SLOTS: u64 = 1 << 15;

/// vhost-user protocol features offered to the VMM.
///
/// - MQ: the VMM asks how many queues we have (hiprio + one request queue).
/// - REPLY_ACK: the VMM may ask for an acknowledgement of any message.
/// - CONFIGURE_MEM_SLOTS: memory hot-plug adds and removes single regions.
///
/// Never CONFIG: QEMU 7.1 to 8.0 crash on a vhost-user-fs backend that offers it, and the
/// tag comes from the VMM's command line anyway. No BACKEND_REQ: it is only needed for
/// DAX window mappings, which this backend does not do.
pub const PROTOCOL_FEATURES: u64 = PROTOCOL_MQ | PROTOCOL_REPLY_ACK | PROTOCOL_CONFIGURE_MEM_SLOTS;

/// `--print-capabilities` output, in the vhost-user backend JSON form libvirt reads
/// (QEMU's docs/interop/vhost-user.json). "separate-options": every option is its own
/// flag (`--shared-dir`, `--fd`, `--cache`, `--thread-pool-size`), there is no `-o`
/// list. No "migrate-precopy": ownfs cannot migrate a device's state.
pub const CAPABILITIES_JSON: &str = r#"{
  "type": "fs",
  "features": [
    "separate-options"
  ]
}
"#;

#[derive(Clone, Debug)]
pub struct VirtioFsOptions {
    /// Worker threads that run requests; 0 runs them on the queue thread itself.
    pub thread_pool_size: usize,
}

/// Creates the vhost-user socket at `path` (replacing a stale one), accessible to its
/// owner only; `group` additionally lets that group connect. The socket appears at
/// `path` only once its final owner and mode are set, so a VMM that waits for it
/// never meets it half set up.
pub fn bind_socket(path: &Path, group: Option<u32>) -> io::Result<UnixListener> {
    let mut staging = path.as_os_str().to_owned();
    staging.push(format!(".{}.new", std::process::id()));
    let staging = std::path::PathBuf::from(staging);
    let _ = std::fs::remove_file(&staging);
    // Whoever can connect to the socket acts as any guest user: never world-accessible.
    let old = platform::set_umask(0o077);
    let bound = UnixListener::bind(&staging);
    platform::set_umask(old);
    let listener = bound?;
    let publish = || {
        if let Some(gid) = group {
            use std::os::unix::fs::PermissionsExt;
            std::os::unix::fs::chown(&staging, None, Some(gid))?;
            std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o660))?;
        }
        std::fs::rename(&staging, path)
    };
    if let Err(e) = publish() {
        let _ = std::fs::remove_file(&staging);
        return Err(e);
    }
    Ok(listener)
}

/// Serves one VMM on `listener`: waits for it to connect, runs the device until it
/// disconnects, then returns `Ok(())`.
pub fn serve<F>(listener: UnixListener, fs: F, opts: &VirtioFsOptions) -> io::Result<()>
where
    F: FileSystemExt + Send + Sync + 'static,
{
    let handler = Arc::new(VirtioFsHandler::new(fs));
    let config = DeviceConfig {
        features: VIRTIO_FEATURES,
        protocol_features: PROTOCOL_FEATURES,
        num_queues: NUM_QUEUES,
        max_queue_size: MAX_QUEUE_SIZE,
        max_mem_slots: MAX_MEM_SLOTS,
        thread_pool_size: opts.thread_pool_size,
    };
    let (sock, _) = listener
        .accept()
        .map_err(|e| io::Error::new(e.kind(), format!("accepting the VMM: {e}")))?;
    log::info!("VMM connected");
    vhost_user::serve_connection(sock, handler, &config)
}

/// Answers virtio-fs requests from descriptor chains in guest memory: the whole
/// device minus the transport, for VMMs that run virtio-fs in-process.
///
/// Hand it every chain the guest driver puts on a virtio-fs queue (hiprio or request
/// queue alike); put the chain on the used ring with the length it returns, then
/// notify the guest as the queue asks.
///
/// ```no_run
/// use ownfs::transport::virtiofs::VirtioFsHandler;
/// use virtio_queue::{Queue, QueueT};
/// use vm_memory::GuestMemoryMmap;
///
/// fn serve_queue<F>(fs: &VirtioFsHandler<F>, queue: &mut Queue, mem: &GuestMemoryMmap)
/// where
///     F: ownfs::extension::FileSystemExt + Sync,
/// {
///     while let Some(chain) = queue.pop_descriptor_chain(mem) {
///         let head = chain.head_index();
///         let used = fs.answer(chain);
///         queue.add_used(mem, head, used).expect("used ring in guest memory");
///     }
///     // then: if queue.needs_notification(mem) is Ok(true), interrupt the guest
/// }
/// ```
///
/// The filesystem is any [`FileSystemExt`], typically [`crate::fs::Passthrough`];
/// `examples/embed_virtiofs.rs` runs one against a queue in plain memory.
pub struct VirtioFsHandler<F> {
    session: Session<F>,
}

impl<F: FileSystemExt + Sync> VirtioFsHandler<F> {
    pub fn new(fs: F) -> Self {
        // Guests carry no /proc the server could read groups from: the kernel sends the
        // caller's supplementary groups with each create (CREATE_SUPP_GROUP).
        let session = Session::new(
            fs,
            SessionOptions {
                passthrough: None,
                forward_create_groups: true,
                io_uring: false,
            },
        );
        VirtioFsHandler { session }
    }

    /// Answers the request in `chain`; returns the bytes written (the used length).
    /// A malformed chain gets an empty reply (0), which fails that request alone.
    pub fn answer<M, G>(&self, chain: DescriptorChain<M>) -> u32
    where
        M: Deref<Target = G> + Clone,
        G: GuestMemory + Sized,
        G::R: GuestMemoryRegion<B = ()>,
    {
        let head = chain.head_index();
        match handle(&self.session, chain) {
            Ok(n) => u32::try_from(n).unwrap_or(u32::MAX),
            Err(e) => {
                log::warn!("virtio-fs request (descriptor {head}): {e}");
                0
            }
        }
    }
}

impl<F: FileSystemExt + Send + Sync + 'static> Backend for VirtioFsHandler<F> {
    fn answer(&self, chain: Chain) -> u32 {
        VirtioFsHandler::answer(self, chain)
    }
}

thread_local! {
    /// Each serving thread's request and reply buffers, allocated on first use.
    static BUFFERS: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Runs one request. Returns the bytes of the reply, as written.
fn handle<F, M, G>(session: &Session<F>, chain: DescriptorChain<M>) -> Result<usize, String>
where
    F: FileSystemExt + Sync,
    M: Deref<Target = G> + Clone,
    G: GuestMemory + Sized,
    G::R: GuestMemoryRegion<B = ()>,
{
    let mem = chain.memory();
    let mut reader = chain
        .clone()
        .reader::<()>(mem)
        .map_err(|e| format!("request buffers: {e}"))?;
    let mut writer = chain
        .clone()
        .writer::<()>(mem)
        .map_err(|e| format!("reply buffers: {e}"))?;
    let len = reader.available_bytes();
    if len > BUFFER_SIZE {
        return Err(format!(
            "request of {len} bytes is larger than any FUSE message"
        ));
    }
    BUFFERS.with(|b| {
        let (msg, out) = &mut *b.borrow_mut();
        if msg.is_empty() {
            msg.resize(BUFFER_SIZE, 0);
            out.resize(BUFFER_SIZE, 0);
        }
        let msg = &mut msg[..len];
        reader
            .read_exact(msg)
            .map_err(|e| format!("reading the request: {e}"))?;
        // An answer never grows past the buffers the driver gave for it.
        let room = writer.available_bytes().min(out.len());
        let answer = session.handle(msg, &mut out[..room]);
        writer
            .write_all(&out[..answer.reply])
            .map_err(|e| format!("writing the reply: {e}"))?;
        Ok(answer.reply)
    })
}
