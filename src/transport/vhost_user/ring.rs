//! One virtqueue: its virtio-queue state, its call notifier and the chains it has
//! handed out, shared between the event loop (which pops chains) and the threads that
//! answer them (which return them).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use virtio_queue::{DescriptorChain, Queue, QueueT};

use super::memory::Memory;
use super::notifier::Call;

/// A request as the device hands it out: guest buffers in one memory snapshot.
pub type Chain = DescriptorChain<Arc<Memory>>;

pub struct RingState {
    pub queue: Queue,
    pub call: Option<Call>,
    /// Chains popped and not yet returned.
    inflight: usize,
}

pub struct Ring {
    pub index: usize,
    state: Mutex<RingState>,
    idle: Condvar,
}

impl Ring {
    pub fn new(index: usize, max_size: u16) -> Option<Ring> {
        Some(Ring {
            index,
            state: Mutex::new(RingState {
                queue: Queue::new(max_size).ok()?,
                call: None,
                inflight: 0,
            }),
            idle: Condvar::new(),
        })
    }

    /// The state; a thread that panicked holding it left nothing half-updated that
    /// virtio-queue relies on, so a poisoned lock is taken over.
    pub fn lock(&self) -> MutexGuard<'_, RingState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the next available chain, counting it in flight.
    pub fn pop(&self, mem: &Arc<Memory>) -> Option<Chain> {
        let mut state = self.lock();
        let chain = state.queue.pop_descriptor_chain(mem.clone())?;
        state.inflight += 1;
        Some(chain)
    }

    /// Returns chain `head` with `len` bytes written, and signals the driver if it asked.
    pub fn complete(&self, mem: &Memory, head: u16, len: u32) {
        let mut state = self.lock();
        state.inflight = state.inflight.saturating_sub(1);
        if state.inflight == 0 {
            self.idle.notify_all();
        }
        if let Err(e) = state.queue.add_used(mem, head, len) {
            log::error!("virtqueue {}: returning descriptor {head}: {e}", self.index);
            return;
        }
        match state.queue.needs_notification(mem) {
            Ok(true) => {
                if let Some(Err(e)) = state.call.as_ref().map(Call::signal) {
                    log::error!("virtqueue {}: signalling the driver: {e}", self.index);
                }
            }
            Ok(false) => {}
            Err(e) => log::error!("virtqueue {}: reading the used event: {e}", self.index),
        }
    }

    /// Waits until every chain handed out came back (or `limit` passed), then stops
    /// the queue. Returns where the driver should resume: the next available index.
    pub fn stop(&self, limit: Duration) -> u16 {
        let state = self.lock();
        let (mut state, timeout) = self
            .idle
            .wait_timeout_while(state, limit, |s| s.inflight > 0)
            .unwrap_or_else(|e| e.into_inner());
        if timeout.timed_out() {
            log::warn!(
                "virtqueue {}: stopped with {} requests still being answered",
                self.index,
                state.inflight
            );
        }
        state.queue.set_ready(false);
        state.queue.next_avail()
    }
}
