//! The coordinator's view of the cluster, and its decisions, without I/O:
//! which workers are alive and how many slots they have free, which jobs
//! wait, where each runs, and what to do when a worker goes silent or a job
//! process ends. The server feeds it facts and carries out the deployments
//! and cancellations it asks for.
//!
//! A job runs as one job process on one worker, holding as many slots as its
//! widest vertex is parallel (slot sharing: a slot hosts one parallel slice of
//! the whole pipeline). A job that does not fit waits, visibly, in
//! `SCHEDULING` until a worker with enough free slots is there.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use weir_proto::v1::{JobInfo, JobState};

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

/// A submitted job and what the coordinator must remember about it across
/// restarts of the coordinator.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    /// Its id.
    pub id: String,
    /// Its name (the job graph's).
    pub name: String,
    /// The binary, by SHA-256.
    pub artifact: String,
    /// Arguments for the binary.
    pub args: Vec<String>,
    /// Fingerprint of the submitted graph.
    pub graph_hash: String,
    /// Slots it needs (its widest vertex's parallelism).
    pub slots: u32,
    /// The savepoint it was submitted with; a redeployment starts from the
    /// job's newest completed checkpoint instead, when there is one.
    pub restore_from: Option<String>,
    /// Its state, as `JobState as i32`.
    pub state: i32,
    /// Why it failed, or what it waits for.
    pub message: String,
    /// The worker running it.
    pub worker: Option<String>,
    /// Deployments so far.
    pub attempts: u32,
    /// Milliseconds since the epoch.
    pub submitted_at_ms: u64,
    /// Milliseconds since the epoch when it last started running.
    pub running_since_ms: u64,
}

impl Job {
    /// The job's state.
    pub fn state(&self) -> JobState {
        JobState::try_from(self.state).unwrap_or(JobState::Unspecified)
    }

    fn set(&mut self, state: JobState, message: impl Into<String>) {
        self.state = state as i32;
        self.message = message.into();
    }

    /// Whether the job has ended for good.
    pub fn is_terminal(&self) -> bool {
        matches!(self.state(), JobState::Finished | JobState::Failed | JobState::Canceled)
    }

    /// The job as the API reports it.
    pub fn info(&self) -> JobInfo {
        JobInfo {
            job_id: self.id.clone(),
            name: self.name.clone(),
            state: self.state,
            message: self.message.clone(),
            worker_id: self.worker.clone().unwrap_or_default(),
            slots: self.slots,
            attempts: self.attempts,
            submitted_at_ms: self.submitted_at_ms,
            running_since_ms: self.running_since_ms,
        }
    }
}

/// What the server must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Deploy job `job` (attempt `attempt`) onto `worker`.
    Deploy {
        /// The job.
        job: String,
        /// The worker.
        worker: String,
        /// Which deployment this is.
        attempt: u32,
    },
    /// Stop the job's process on `worker`.
    Cancel {
        /// The job.
        job: String,
        /// The worker.
        worker: String,
    },
}

/// How many times a job whose process was lost is deployed again.
pub const MAX_ATTEMPTS: u32 = 5;

/// The cluster's workers and jobs.
#[derive(Debug, Default)]
pub struct Cluster {
    workers: BTreeMap<String, Worker>,
    jobs: BTreeMap<String, Job>,
    next_worker: u64,
}

impl Cluster {
    /// A cluster that remembers `jobs` (from the coordinator's data directory):
    /// jobs that were running go back to scheduling from their latest
    /// checkpoints (their workers stop the processes they ran when they find
    /// the new coordinator does not know them).
    pub fn recovered(jobs: Vec<Job>) -> Self {
        let mut cluster = Self::default();
        for mut job in jobs {
            if !job.is_terminal() {
                job.worker = None;
                job.set(JobState::Restarting, "coordinator restarted");
            }
            cluster.jobs.insert(job.id.clone(), job);
        }
        cluster
    }

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

    /// Adds a submitted job, waiting for slots.
    pub fn submit(&mut self, mut job: Job) {
        job.set(JobState::Scheduling, "waiting for free slots");
        self.jobs.insert(job.id.clone(), job);
    }

    /// A job by id.
    pub fn job(&self, id: &str) -> Option<&Job> {
        self.jobs.get(id)
    }

    /// Every job, oldest id first.
    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
    }

    fn free_slots(&self, worker: &str) -> u32 {
        let used: u32 = self
            .jobs
            .values()
            .filter(|job| !job.is_terminal() && job.worker.as_deref() == Some(worker))
            .map(|job| job.slots)
            .sum();
        self.workers.get(worker).map_or(0, |entry| entry.slots.saturating_sub(used))
    }

    /// Places waiting jobs, oldest first, on the worker with the most free
    /// slots that fits them.
    pub fn schedule(&mut self) -> Vec<Command> {
        let waiting: Vec<String> =
            self.jobs.values().filter(|job| job.state() == JobState::Scheduling).map(|job| job.id.clone()).collect();
        let mut commands = Vec::new();
        for id in waiting {
            let needed = self.jobs[&id].slots;
            let best = self
                .workers
                .keys()
                .map(|worker| (self.free_slots(worker), worker.clone()))
                .filter(|(free, _)| *free >= needed)
                .max_by_key(|(free, _)| *free);
            let Some((_, worker)) = best else {
                let total: u32 = self.workers.values().map(|entry| entry.slots).sum();
                let job = self.jobs.get_mut(&id).expect("listed above");
                job.message = format!(
                    "waiting for a worker with {needed} free slots ({} workers, {total} slots in all)",
                    self.workers.len()
                );
                continue;
            };
            let job = self.jobs.get_mut(&id).expect("listed above");
            job.attempts += 1;
            job.worker = Some(worker.clone());
            job.set(JobState::Deploying, format!("deploying on {worker}"));
            commands.push(Command::Deploy { job: id, worker, attempt: job.attempts });
        }
        commands
    }

    /// Workers silent for longer than `timeout` are dropped; their jobs go back
    /// to scheduling (from their latest checkpoint).
    pub fn expire_workers(&mut self, now: Instant, timeout: Duration) -> Vec<String> {
        let lost: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, entry)| now.duration_since(entry.last_seen) > timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for worker in &lost {
            self.workers.remove(worker);
            for job in self.jobs.values_mut().filter(|job| !job.is_terminal() && job.worker.as_ref() == Some(worker)) {
                job.worker = None;
                if job.attempts >= MAX_ATTEMPTS {
                    job.set(JobState::Failed, format!("worker {worker} was lost and no attempt is left"));
                } else {
                    job.set(JobState::Restarting, format!("worker {worker} was lost"));
                }
            }
        }
        lost
    }

    /// Jobs that lost their process go back to scheduling (the deployment
    /// starts them from their newest checkpoint, looked up then).
    pub fn requeue_restarting(&mut self) {
        for job in self.jobs.values_mut().filter(|job| job.state() == JobState::Restarting) {
            job.set(JobState::Scheduling, "restarting from its latest checkpoint");
        }
    }

    /// The process of `job` (deployment `attempt`) started on its worker.
    pub fn process_started(&mut self, job: &str, attempt: u32, now_ms: u64) {
        if let Some(job) = self.jobs.get_mut(job).filter(|entry| entry.attempts == attempt && !entry.is_terminal()) {
            job.running_since_ms = now_ms;
            job.set(JobState::Running, "");
        }
    }

    /// The process of `job` (deployment `attempt`) exited with `code`.
    pub fn process_exited(&mut self, job: &str, attempt: u32, code: i32, message: &str) {
        let Some(job) = self.jobs.get_mut(job).filter(|entry| entry.attempts == attempt) else {
            return; // An earlier deployment's process: already replaced.
        };
        if job.is_terminal() {
            return;
        }
        job.worker = None;
        match code {
            0 => job.set(JobState::Finished, ""),
            _ if job.attempts >= MAX_ATTEMPTS => job.set(JobState::Failed, message.to_owned()),
            // Killed by a signal: the process was lost, not the job's fault.
            -1 => job.set(JobState::Restarting, format!("its process was killed: {message}")),
            _ => job.set(JobState::Failed, message.to_owned()),
        }
    }

    /// Cancels a job; returns the command to stop its process, if it runs.
    pub fn cancel(&mut self, id: &str) -> Option<Command> {
        let job = self.jobs.get_mut(id).filter(|job| !job.is_terminal())?;
        let worker = job.worker.take();
        job.set(JobState::Canceled, "canceled by the user");
        worker.map(|worker| Command::Cancel { job: id.to_owned(), worker })
    }

    /// A deployment could not be carried out: the job waits again.
    pub fn deploy_failed(&mut self, id: &str, message: String) {
        if let Some(job) = self.jobs.get_mut(id).filter(|job| !job.is_terminal()) {
            job.worker = None;
            if job.attempts >= MAX_ATTEMPTS {
                job.set(JobState::Failed, message);
            } else {
                job.set(JobState::Scheduling, message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, slots: u32) -> Job {
        Job {
            id: id.into(),
            name: id.into(),
            artifact: "sha".into(),
            args: Vec::new(),
            graph_hash: "hash".into(),
            slots,
            restore_from: None,
            state: 0,
            message: String::new(),
            worker: None,
            attempts: 0,
            submitted_at_ms: 0,
            running_since_ms: 0,
        }
    }

    #[test]
    fn jobs_wait_for_slots_and_take_the_emptiest_worker() {
        let now = Instant::now();
        let mut cluster = Cluster::default();
        cluster.submit(job("a", 2));
        assert!(cluster.schedule().is_empty());
        assert!(cluster.job("a").is_some_and(|job| job.message.contains("2 free slots")));
        let small = cluster.register("w1".into(), 1, now);
        let big = cluster.register("w2".into(), 3, now);
        assert_eq!(cluster.schedule(), vec![Command::Deploy { job: "a".into(), worker: big.clone(), attempt: 1 }]);
        cluster.submit(job("b", 2));
        assert!(cluster.schedule().is_empty(), "one slot left on each worker");
        cluster.submit(job("c", 1));
        let placed = cluster.schedule();
        assert!(matches!(&placed[..], [Command::Deploy { job, .. }] if job == "c"));
        let _ = small;
    }

    #[test]
    fn a_lost_worker_sends_its_jobs_to_another_worker() {
        let now = Instant::now();
        let mut cluster = Cluster::default();
        let first = cluster.register("w1".into(), 2, now);
        cluster.submit(job("a", 2));
        cluster.schedule();
        cluster.process_started("a", 1, 5);
        assert_eq!(cluster.job("a").map(Job::state), Some(JobState::Running));
        let second = cluster.register("w2".into(), 2, now + Duration::from_secs(4));
        cluster.heartbeat(&second, now + Duration::from_secs(4));
        assert_eq!(cluster.expire_workers(now + Duration::from_secs(4), Duration::from_secs(3)), vec![first]);
        cluster.requeue_restarting();
        let placed = cluster.schedule();
        assert_eq!(placed, vec![Command::Deploy { job: "a".into(), worker: second, attempt: 2 }]);
        cluster.process_exited("a", 1, -1, "late report of the lost deployment");
        assert_eq!(cluster.job("a").map(Job::state), Some(JobState::Deploying), "stale reports are ignored");
        cluster.process_exited("a", 2, 0, "");
        assert_eq!(cluster.job("a").map(Job::state), Some(JobState::Finished));
    }

    #[test]
    fn a_failing_job_fails_and_a_killed_process_restarts() {
        let now = Instant::now();
        let mut cluster = Cluster::default();
        cluster.register("w1".into(), 4, now);
        cluster.submit(job("bad", 1));
        cluster.submit(job("killed", 1));
        cluster.schedule();
        cluster.process_exited("bad", 1, 1, "operator 'Map' failed");
        assert_eq!(cluster.job("bad").map(Job::state), Some(JobState::Failed));
        cluster.process_exited("killed", 1, -1, "signal 9");
        assert_eq!(cluster.job("killed").map(Job::state), Some(JobState::Restarting));
        assert_eq!(cluster.cancel("killed"), None, "not running: nothing to stop");
        assert_eq!(cluster.job("killed").map(Job::state), Some(JobState::Canceled));
    }
}
