//! vhost-user virtio-fs device: a VMM (QEMU, cloud-hypervisor) connects to a Unix
//! socket, shares the guest's memory and virtqueues, and the guest kernel's FUSE
//! requests arrive as descriptor chains. Each chain's request is copied out of guest
//! memory, answered by the protocol core's [`Session`], and the answer copied back;
//! this module knows nothing of the filesystem behind it.
//!
//! One VMM connection is served; when the VMM disconnects, [`serve`] returns.

use std::cell::RefCell;
use std::io;
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost::vhost_user::Listener;
use vhost_user_backend::{VhostUserBackend, VhostUserDaemon, VringMutex, VringState, VringT};
use virtio_queue::{DescriptorChain, QueueT};
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

use crate::extension::FileSystemExt;
use crate::platform;
use crate::protocol::dispatch::{Session, SessionOptions, BUFFER_SIZE};

/// Queue 0 carries FORGET and INTERRUPT ("hiprio"), queue 1 every other request.
const NUM_QUEUES: usize = 2;
/// The largest split virtqueue the virtio spec allows; the VMM picks the real size.
const MAX_QUEUE_SIZE: usize = 32768;

// Virtio feature bits (virtio spec 1.2, 6 "Reserved Feature Bits").
const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << 28;
const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;
const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// Virtio features offered to the VMM. Indirect descriptors and event-idx are handled
/// by virtio-queue; PROTOCOL_FEATURES unlocks the protocol feature negotiation.
pub const VIRTIO_FEATURES: u64 = VIRTIO_F_VERSION_1
    | VIRTIO_RING_F_INDIRECT_DESC
    | VIRTIO_RING_F_EVENT_IDX
    | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();

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

/// vhost-user protocol features offered to the VMM.
///
/// - MQ: the VMM asks how many queues we have (hiprio + one request queue).
/// - REPLY_ACK: the VMM may ask for an acknowledgement of any message.
/// - CONFIGURE_MEM_SLOTS: memory hot-plug adds and removes single regions.
///
/// Never CONFIG: QEMU 7.1 to 8.0 crash on a vhost-user-fs backend that offers it, and the
/// tag comes from the VMM's command line anyway. No BACKEND_REQ: it is only needed for
/// DAX window mappings, which this backend does not do.
pub fn protocol_features() -> VhostUserProtocolFeatures {
    VhostUserProtocolFeatures::MQ
        | VhostUserProtocolFeatures::REPLY_ACK
        | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS
}

type Memory = GuestMemoryMmap<()>;
type Vring = VringMutex<GuestMemoryAtomic<Memory>>;
type Chain = DescriptorChain<Arc<Memory>>;

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
    let backend = Arc::new(FsBackend::new(Arc::new(session), opts)?);
    let mut daemon = VhostUserDaemon::new(
        "ownfs-vhost-user".to_string(),
        backend.clone(),
        GuestMemoryAtomic::new(Memory::new()),
    )
    .map_err(|e| io::Error::other(format!("creating the vhost-user device: {e}")))?;
    let mut listener = Listener::from(listener);
    daemon
        .start(&mut listener)
        .map_err(|e| io::Error::other(format!("accepting the VMM: {e}")))?;
    log::info!("VMM connected");
    let result = daemon.wait();
    for handler in daemon.get_epoll_handlers() {
        handler.send_exit_event();
    }
    backend.shutdown();
    match result {
        Ok(()) => Ok(()),
        Err(vhost_user_backend::Error::HandleRequest(
            vhost::vhost_user::Error::Disconnected | vhost::vhost_user::Error::PartialMessage,
        )) => Ok(()),
        Err(e) => Err(io::Error::other(format!("vhost-user connection: {e}"))),
    }
}

/// A descriptor chain that a worker answers, with the queue its reply goes to.
struct Job {
    chain: Chain,
    vring: Vring,
}

struct FsBackend<F: FileSystemExt + Sync> {
    server: Arc<Session<F>>,
    mem: RwLock<Option<GuestMemoryAtomic<Memory>>>,
    event_idx: AtomicBool,
    pool: Option<Pool>,
}

struct Pool {
    jobs: Mutex<Option<Sender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl<F: FileSystemExt + Send + Sync + 'static> FsBackend<F> {
    fn new(server: Arc<Session<F>>, opts: &VirtioFsOptions) -> io::Result<Self> {
        let pool = match opts.thread_pool_size {
            0 => None,
            n => Some(Pool::start(n, &server)?),
        };
        Ok(FsBackend {
            server,
            mem: RwLock::new(None),
            event_idx: AtomicBool::new(false),
            pool,
        })
    }

    /// Lets the pool's workers finish what they hold and exit.
    fn shutdown(&self) {
        if let Some(pool) = &self.pool {
            pool.stop();
        }
    }

    /// Takes every available chain off `vring` and has it answered.
    fn drain(&self, mem: &Arc<Memory>, vring: &Vring) {
        loop {
            let chain = vring
                .get_mut()
                .get_queue_mut()
                .pop_descriptor_chain(mem.clone());
            let Some(chain) = chain else { break };
            match &self.pool {
                Some(pool) => {
                    let job = Job {
                        chain,
                        vring: vring.clone(),
                    };
                    if let Err(job) = pool.submit(job) {
                        // The pool is gone (shutting down): answer here rather than leak.
                        complete(&self.server, job.chain, &job.vring);
                    }
                }
                None => complete(&self.server, chain, vring),
            }
        }
    }

    fn process_queue(&self, vring: &Vring) {
        let mem = match self.mem.read() {
            Ok(m) => m.as_ref().map(|m| m.memory().into_inner()),
            Err(_) => None,
        };
        let Some(mem) = mem else {
            log::warn!("queue kicked before the VMM sent a memory table: ignored");
            return;
        };
        if !self.event_idx.load(Ordering::Relaxed) {
            self.drain(&mem, vring);
            return;
        }
        // With event-idx, the driver only kicks again after we re-enable notifications:
        // drain until no chain slipped in while they were off.
        loop {
            if let Err(e) = vring.disable_notification() {
                log::error!("virtqueue: disabling notifications: {e}");
            }
            self.drain(&mem, vring);
            match vring.enable_notification() {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    log::error!("virtqueue: enabling notifications: {e}");
                    break;
                }
            }
        }
    }
}

impl Pool {
    fn start<F: FileSystemExt + Send + Sync + 'static>(
        n: usize,
        server: &Arc<Session<F>>,
    ) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let rx = rx.clone();
            let server = server.clone();
            let t = std::thread::Builder::new()
                .name(format!("ownfs-vfs-{i}"))
                .spawn(move || worker(&rx, &server))?;
            threads.push(t);
        }
        Ok(Pool {
            jobs: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
        })
    }

    fn submit(&self, job: Job) -> Result<(), Job> {
        let jobs = match self.jobs.lock() {
            Ok(j) => j,
            Err(_) => return Err(job),
        };
        match jobs.as_ref() {
            Some(tx) => tx.send(job).map_err(|e| e.0),
            None => Err(job),
        }
    }

    fn stop(&self) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        let threads = match self.threads.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(_) => return,
        };
        for t in threads {
            let _ = t.join();
        }
    }
}

fn worker<F: FileSystemExt + Sync>(jobs: &Mutex<Receiver<Job>>, server: &Session<F>) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => complete(server, job.chain, &job.vring),
            Err(_) => return,
        }
    }
}

/// Answers one chain and hands it back to the driver with the length of the reply.
fn complete<F: FileSystemExt + Sync>(server: &Session<F>, chain: Chain, vring: &Vring) {
    let head = chain.head_index();
    // A panic while serving one request must not take a worker (or the device) down.
    let run = || handle(server, &chain);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
        .unwrap_or_else(|_| Err("panicked while serving it".to_string()));
    let written = match result {
        Ok(n) => n,
        Err(e) => {
            // The driver still gets its buffers back; an empty reply fails that request.
            log::warn!("virtio-fs request (descriptor {head}): {e}");
            0
        }
    };
    let len = u32::try_from(written).unwrap_or(u32::MAX);
    let mut state = vring.get_mut();
    if let Err(e) = state.add_used(head, len) {
        log::error!("virtqueue: returning descriptor {head}: {e}");
        return;
    }
    signal_if_needed(&mut state);
}

fn signal_if_needed(state: &mut VringState<GuestMemoryAtomic<Memory>>) {
    match state.needs_notification() {
        Ok(true) => {
            if let Err(e) = state.signal_used_queue() {
                log::error!("virtqueue: signalling the guest: {e}");
            }
        }
        Ok(false) => {}
        Err(e) => log::error!("virtqueue: reading the used event: {e}"),
    }
}

thread_local! {
    /// Each serving thread's request and reply buffers, allocated on first use.
    static BUFFERS: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Runs one request. Returns the bytes of the reply, as written.
fn handle<F: FileSystemExt + Sync>(session: &Session<F>, chain: &Chain) -> Result<usize, String> {
    let mem = chain.memory();
    let mut reader = chain
        .clone()
        .reader(mem)
        .map_err(|e| format!("request buffers: {e}"))?;
    let mut writer = chain
        .clone()
        .writer(mem)
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

impl<F: FileSystemExt + Send + Sync + 'static> VhostUserBackend for FsBackend<F> {
    type Bitmap = ();
    type Vring = Vring;

    fn num_queues(&self) -> usize {
        NUM_QUEUES
    }

    fn max_queue_size(&self) -> usize {
        MAX_QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        VIRTIO_FEATURES
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        protocol_features()
    }

    fn set_event_idx(&self, enabled: bool) {
        self.event_idx.store(enabled, Ordering::Relaxed);
    }

    fn update_memory(&self, mem: GuestMemoryAtomic<Memory>) -> io::Result<()> {
        match self.mem.write() {
            Ok(mut m) => *m = Some(mem),
            Err(_) => return Err(io::Error::other("memory table lock poisoned")),
        }
        Ok(())
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        match new_event_consumer_and_notifier(EventFlag::NONBLOCK) {
            Ok(pair) => Some(pair),
            Err(e) => {
                log::error!("creating the queue thread's exit event: {e}");
                None
            }
        }
    }

    fn handle_event(
        &self,
        device_event: u16,
        evset: EventSet,
        vrings: &[Vring],
        _thread_id: usize,
    ) -> io::Result<()> {
        // An error here would stop the queue thread for good: log and carry on instead.
        if evset != EventSet::IN {
            log::warn!("virtqueue {device_event}: unexpected event {evset:?}");
            return Ok(());
        }
        match vrings.get(device_event as usize) {
            Some(vring) => self.process_queue(vring),
            None => log::warn!("event for unknown virtqueue {device_event}"),
        }
        Ok(())
    }
}
