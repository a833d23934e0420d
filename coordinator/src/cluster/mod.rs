//! The coordinator's view of the cluster, and its decisions, without I/O:
//! which workers are alive and how many slots they have free, which jobs
//! wait, where each runs, and what to do when a worker goes silent or a job
//! process ends. The server feeds it facts and carries out the deployments
//! and cancellations it asks for.
//!
//! A job needs as many slots as its widest vertex is parallel (slot sharing:
//! slot `i` hosts slice `i`, subtask `i` of every vertex). Its slices are
//! dealt round robin over the workers with free slots, emptiest first, so a
//! job spreads evenly; each worker that got slices runs one job process for
//! them (process 0 hosts slice 0 and leads the job). A job that does not fit
//! in the free slots of all workers together waits, visibly, in `SCHEDULING`.
//! The processes of a deployment find each other through the coordinator
//! (`join`); the deployment is one unit: when any of its processes is lost,
//! all of it is stopped and the job deployed again.
//!
//! By concern: `job` (a job and its status), `workers` (the worker
//! registry), `scheduling` (slot assignment), `deployment` (processes
//! joining and starting) and `failover` (lost workers, ended processes).

mod deployment;
mod failover;
mod job;
mod scheduling;
mod workers;

use std::collections::BTreeMap;
use std::time::Instant;

pub use deployment::Joined;
pub use job::{Job, JobStatus, MAX_LOSSES, Unconfirmed, UnknownJobStatus};
pub use workers::Worker;

/// What the server must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Deploy process `process` of job `job` (attempt `attempt`) onto `worker`.
    Deploy {
        /// The job's id.
        job: String,
        /// The process's index within the deployment.
        process: u32,
        /// The worker's id.
        worker: String,
        /// Which deployment this is.
        attempt: u32,
    },
    /// Stop the job's process of deployment `attempt` on `worker`.
    Cancel {
        /// The job's id.
        job: String,
        /// The worker's id.
        worker: String,
        /// The deployment whose process stops (a newer one on the same
        /// worker stays).
        attempt: u32,
    },
}

impl Command {
    fn targets(&self, worker: &str) -> bool {
        match self {
            Self::Deploy { worker: target, .. } | Self::Cancel { worker: target, .. } => target == worker,
        }
    }
}

/// The cluster's workers and jobs.
#[derive(Debug, Default)]
pub struct Cluster {
    workers: BTreeMap<String, Worker>,
    jobs: BTreeMap<String, Job>,
    next_worker: u64,
    /// After a restart: until then, jobs that were deployed wait for their
    /// workers to report how those deployments ended.
    recovery_hold: Option<Instant>,
}

impl Cluster {
    /// A cluster that remembers `jobs` (from the coordinator's data directory):
    /// jobs that were running go back to scheduling from their latest
    /// checkpoints (their workers stop the processes they ran when they find
    /// the new coordinator does not know them), but not before `hold_until`:
    /// until then a worker may report that a deployment finished while the
    /// coordinator was away, and such a job ends instead of running again.
    pub fn recovered(jobs: Vec<Job>, hold_until: Instant) -> Self {
        let mut cluster = Self { recovery_hold: Some(hold_until), ..Self::default() };
        for mut job in jobs {
            if !job.is_terminal() {
                let deployed = matches!(job.state, JobStatus::Deploying | JobStatus::Running);
                job.unconfirmed = deployed.then(|| Unconfirmed { attempt: job.attempts, workers: job.workers.clone() });
                let _ = job.undeploy();
                job.set(JobStatus::Restarting, "coordinator restarted");
            }
            cluster.jobs.insert(job.id.clone(), job);
        }
        cluster
    }

    /// Adds a submitted job, waiting for slots.
    pub fn submit(&mut self, mut job: Job) {
        job.set(JobStatus::WaitingForResources, "waiting for free slots");
        self.jobs.insert(job.id.clone(), job);
    }

    /// A job by id.
    pub fn job(&self, id: &str) -> Option<&Job> {
        self.jobs.get(id)
    }

    /// Every job, in id order.
    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
    }

    /// Cancels a job; returns the cancellations of its processes, if it runs.
    pub fn cancel(&mut self, id: &str) -> Vec<Command> {
        let Some(job) = self.jobs.get_mut(id).filter(|job| !job.is_terminal()) else { return Vec::new() };
        job.set(JobStatus::Canceled, "canceled by the user");
        job.undeploy()
    }
}

/// Jobs and deployments for the tests of every concern.
#[cfg(test)]
mod test_support {
    use super::{Command, Job};

    /// A job named `id` that needs `slots` slots, not yet submitted.
    pub(super) fn job(id: &str, slots: u32) -> Job {
        Job {
            id: id.into(),
            name: id.into(),
            artifact: "sha".into(),
            graph_hash: "hash".into(),
            slots,
            ..Job::default()
        }
    }

    /// The (worker, process) of every deployment among `commands`.
    pub(super) fn deployed(commands: &[Command]) -> Vec<(String, u32)> {
        commands
            .iter()
            .filter_map(|command| match command {
                Command::Deploy { worker, process, .. } => Some((worker.clone(), *process)),
                Command::Cancel { .. } => None,
            })
            .collect()
    }
}
