//! Worker threads that answer chains off the event loop (`--thread-pool-size`).

use std::io;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::ring::{Chain, Ring};
use super::Backend;

struct Job {
    chain: Chain,
    ring: Arc<Ring>,
}

pub struct Pool {
    jobs: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    pub fn start(n: usize, backend: &Arc<dyn Backend>) -> io::Result<Pool> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let rx = rx.clone();
            let backend = backend.clone();
            let t = std::thread::Builder::new()
                .name(format!("ownfs-vfs-{i}"))
                .spawn(move || worker(&rx, backend.as_ref()))?;
            threads.push(t);
        }
        Ok(Pool {
            jobs: Some(tx),
            threads,
        })
    }

    /// Queues `chain`; hands it back if the workers are gone.
    pub fn submit(&self, chain: Chain, ring: &Arc<Ring>) -> Result<(), Chain> {
        let job = Job {
            chain,
            ring: ring.clone(),
        };
        match &self.jobs {
            Some(tx) => tx.send(job).map_err(|e| e.0.chain),
            None => Err(job.chain),
        }
    }
}

impl Drop for Pool {
    /// Lets the workers finish what they hold, then joins them.
    fn drop(&mut self) {
        self.jobs.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn worker(jobs: &Mutex<Receiver<Job>>, backend: &dyn Backend) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => answer(backend, job.chain, &job.ring),
            Err(_) => return,
        }
    }
}

/// Answers one chain and returns it to its ring.
pub fn answer(backend: &dyn Backend, chain: Chain, ring: &Ring) {
    let head = chain.head_index();
    // A panic while serving one request must not take a worker (or the device) down.
    let run = || backend.answer(chain.clone());
    let len = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|_| {
        log::warn!("virtio request (descriptor {head}): panicked while serving it");
        0
    });
    ring.complete(chain.memory(), head, len);
}
