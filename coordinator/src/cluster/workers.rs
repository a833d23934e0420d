//! The worker registry: workers register with their address and slots and
//! stay known while they heartbeat (see [`Cluster::expire_workers`] for
//! what happens when they stop).

use std::time::Instant;

use super::Cluster;

/// A registered worker.
#[derive(Clone, Debug)]
pub struct Worker {
    /// Where its Worker service listens.
    pub address: String,
    /// Slots it offers.
    pub slots: u32,
    /// When it was last heard from.
    pub last_seen: Instant,
}

impl Cluster {
    /// Registers a worker; returns its id.
    pub fn register(&mut self, address: String, slots: u32, now: Instant) -> String {
        self.next_worker += 1;
        // The address in the id lets people (and tests) tell workers apart.
        let id = format!("worker-{}@{}", self.next_worker, address.trim_start_matches("http://"));
        self.workers.insert(id.clone(), Worker { address, slots, last_seen: now });
        id
    }

    /// A worker's heartbeat; false when the worker is unknown.
    pub fn heartbeat(&mut self, worker: &str, now: Instant) -> bool {
        match self.workers.get_mut(worker) {
            Some(entry) => {
                entry.last_seen = now;
                true
            }
            None => false,
        }
    }

    /// The address of a worker.
    pub fn worker_address(&self, worker: &str) -> Option<&str> {
        self.workers.get(worker).map(|entry| entry.address.as_str())
    }
}
