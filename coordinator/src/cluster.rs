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
    /// The workers running its processes, by process index (empty when
    /// it is not deployed).
    #[serde(default)]
    pub workers: Vec<String>,
    /// The process hosting each slice.
    #[serde(default)]
    pub slice_process: Vec<u32>,
    /// Exchange addresses of the processes that joined, by process index.
    #[serde(skip)]
    pub joined: Vec<Option<String>>,
    /// Processes of the current deployment that started.
    #[serde(skip)]
    pub started: u32,
    /// Deployments so far.
    pub attempts: u32,
    /// Deployments lost to failures (lost workers or processes).
    #[serde(default)]
    pub losses: u32,
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

    /// Whether `attempt` is the job's current deployment (being deployed or
    /// running; a deployment given up leaves the job scheduling or ended).
    fn is_deployment(&self, attempt: u32) -> bool {
        self.attempts == attempt && matches!(self.state(), JobState::Deploying | JobState::Running)
    }

    /// Forgets the deployment; returns a cancellation for each of its processes.
    fn undeploy(&mut self) -> Vec<Command> {
        self.slice_process.clear();
        self.joined.clear();
        self.started = 0;
        let attempt = self.attempts;
        std::mem::take(&mut self.workers)
            .into_iter()
            .map(|worker| Command::Cancel { job: self.id.clone(), worker, attempt })
            .collect()
    }

    /// Ends the deployment after a lost process: the job is deployed again,
    /// unless it was deployed too often already.
    fn lost(&mut self, why: String) -> Vec<Command> {
        self.losses += 1;
        if self.losses > MAX_LOSSES {
            self.set(JobState::Failed, format!("{why}, and no attempt is left"));
        } else {
            self.set(JobState::Restarting, why);
        }
        self.undeploy()
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
            worker_id: self.workers.join(","),
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
    /// Deploy process `process` of job `job` (attempt `attempt`) onto `worker`.
    Deploy {
        /// The job.
        job: String,
        /// The process's index within the deployment.
        process: u32,
        /// The worker.
        worker: String,
        /// Which deployment this is.
        attempt: u32,
    },
    /// Stop the job's process of deployment `attempt` on `worker`.
    Cancel {
        /// The job.
        job: String,
        /// The worker.
        worker: String,
        /// The deployment.
        attempt: u32,
    },
}

/// How many times a job whose process was lost is deployed again.
pub const MAX_LOSSES: u32 = 5;

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
                let _ = job.undeploy();
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

    /// Every job, in id order.
    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
    }

    /// Slots of `worker` that no deployed job holds.
    fn free_slots(&self, worker: &str) -> u32 {
        let used: usize = self
            .jobs
            .values()
            .filter(|job| !job.is_terminal())
            .map(|job| {
                let processes: Vec<u32> =
                    (0..job.workers.len() as u32).filter(|process| job.workers[*process as usize] == worker).collect();
                job.slice_process.iter().filter(|process| processes.contains(process)).count()
            })
            .sum();
        self.workers.get(worker).map_or(0, |entry| entry.slots.saturating_sub(used as u32))
    }

    /// Deploys the waiting jobs that fit into the free slots, oldest
    /// submission first.
    pub fn schedule(&mut self) -> Vec<Command> {
        let mut waiting: Vec<(u64, String)> = self
            .jobs
            .values()
            .filter(|job| job.state() == JobState::Scheduling)
            .map(|job| (job.submitted_at_ms, job.id.clone()))
            .collect();
        waiting.sort();
        let mut commands = Vec::new();
        for (_, id) in waiting {
            let needed = self.jobs[&id].slots;
            // Emptiest workers first; a stable order among equals.
            let mut free: Vec<(String, u32)> = self
                .workers
                .keys()
                .map(|worker| (worker.clone(), self.free_slots(worker)))
                .filter(|(_, free)| *free > 0)
                .collect();
            free.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let total: u32 = free.iter().map(|(_, free)| free).sum();
            if total < needed {
                let slots: u32 = self.workers.values().map(|entry| entry.slots).sum();
                let job = self.jobs.get_mut(&id).expect("listed above");
                job.message = format!(
                    "waiting for {needed} free slots ({total} free; {} workers, {slots} slots in all)",
                    self.workers.len()
                );
                continue;
            }
            // Deal the slices round robin over the workers with room left.
            let mut workers: Vec<String> = Vec::new();
            let mut slice_process = Vec::with_capacity(needed as usize);
            let mut next = 0;
            let count = free.len();
            for _ in 0..needed {
                while free[next % count].1 == 0 {
                    next += 1;
                }
                let (worker, left) = &mut free[next % count];
                *left -= 1;
                next += 1;
                let process = match workers.iter().position(|known| known == worker) {
                    Some(process) => process,
                    None => {
                        workers.push(worker.clone());
                        workers.len() - 1
                    }
                };
                slice_process.push(process as u32);
            }
            let job = self.jobs.get_mut(&id).expect("listed above");
            job.attempts += 1;
            job.joined = vec![None; workers.len()];
            job.started = 0;
            job.slice_process = slice_process;
            job.set(JobState::Deploying, format!("deploying on {}", workers.join(", ")));
            for (process, worker) in workers.iter().enumerate() {
                commands.push(Command::Deploy {
                    job: id.clone(),
                    process: process as u32,
                    worker: worker.clone(),
                    attempt: job.attempts,
                });
            }
            job.workers = workers;
        }
        commands
    }

    /// Forgets workers silent for longer than `timeout`; their jobs are
    /// stopped everywhere and deployed again. Returns the lost workers and
    /// the cancellations to carry out.
    pub fn expire_workers(&mut self, now: Instant, timeout: Duration) -> (Vec<String>, Vec<Command>) {
        let lost: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, entry)| now.duration_since(entry.last_seen) > timeout)
            .map(|(id, _)| id.clone())
            .collect();
        let mut commands = Vec::new();
        for worker in &lost {
            self.workers.remove(worker);
            for job in self.jobs.values_mut().filter(|job| !job.is_terminal() && job.workers.contains(worker)) {
                let cancels = job.lost(format!("worker {worker} was lost"));
                commands.extend(cancels.into_iter().filter(|command| !command.targets(worker)));
            }
        }
        (lost, commands)
    }

    /// Jobs waiting to be deployed again go back to scheduling.
    pub fn requeue_restarting(&mut self) {
        for job in self.jobs.values_mut().filter(|job| job.state() == JobState::Restarting) {
            job.set(JobState::Scheduling, "restarting from its latest checkpoint");
        }
    }

    /// Process `process` of deployment `attempt` announced its exchange
    /// address. Returns every process's address once all have joined.
    pub fn join(&mut self, job: &str, attempt: u32, process: u32, address: String) -> Result<Option<Joined>, String> {
        let entry = self.jobs.get_mut(job).ok_or_else(|| format!("no job {job}"))?;
        if !entry.is_deployment(attempt) {
            return Err(format!("deployment {attempt} of job {job} was replaced or ended"));
        }
        let slot = entry
            .joined
            .get_mut(process as usize)
            .ok_or_else(|| format!("job {job} has no process {process} in deployment {attempt}"))?;
        *slot = Some(address);
        Ok(self.joined(job, attempt))
    }

    /// Every process's address, once all processes of deployment `attempt` joined.
    pub fn joined(&self, job: &str, attempt: u32) -> Option<Joined> {
        let entry = self.jobs.get(job).filter(|entry| entry.is_deployment(attempt))?;
        let addresses = entry.joined.iter().cloned().collect::<Option<Vec<String>>>()?;
        (!addresses.is_empty()).then(|| Joined {
            addresses,
            slice_process: entry.slice_process.clone(),
            run_id: format!("{}-{}", entry.id, attempt),
        })
    }

    /// The exchange address of the process leading `job`, once it joined.
    pub fn leader_address(&self, job: &str) -> Option<String> {
        self.jobs.get(job).filter(|entry| !entry.is_terminal()).and_then(|entry| entry.joined.first().cloned()?)
    }

    /// A job process started; the job runs once all of its deployment's have.
    pub fn process_started(&mut self, job: &str, attempt: u32, now_ms: u64) {
        let deploying = |entry: &&mut Job| entry.attempts == attempt && entry.state() == JobState::Deploying;
        if let Some(job) = self.jobs.get_mut(job).filter(deploying) {
            job.started += 1;
            if job.started as usize >= job.workers.len() {
                job.running_since_ms = now_ms;
                job.set(JobState::Running, "");
            }
        }
    }

    /// A job process ended with `code` (-1: killed by a signal). The leader's
    /// end decides: 0 finished, [`EXIT_RESTART`] deploy again (the job's
    /// restart strategy allowed it), anything else failed. A follower that
    /// lost its leader or was killed ends the deployment (deployed again
    /// while attempts are left); one that fails otherwise fails the job. Returns the cancellations of the rest of it.
    pub fn process_exited(&mut self, job: &str, attempt: u32, process: u32, code: i32, message: &str) -> Vec<Command> {
        let Some(job) = self.jobs.get_mut(job).filter(|entry| entry.is_deployment(attempt)) else {
            return Vec::new(); // A process of a deployment already given up.
        };
        let worker = job.workers.get(process as usize).cloned().unwrap_or_default();
        let others = |commands: Vec<Command>| -> Vec<Command> {
            commands.into_iter().filter(|command| !command.targets(&worker)).collect()
        };
        match (process, code) {
            (0, 0) => {
                job.set(JobState::Finished, "");
                others(job.undeploy())
            }
            // A follower leaves once the leader told it the job ended.
            (_, 0) | (1.., EXIT_ENDED_BY_LEADER) => Vec::new(),
            (1.., EXIT_RESTART) => others(job.lost(format!("process {process} lost the job's leader"))),
            (0, EXIT_RESTART) => {
                job.set(JobState::Restarting, format!("the run failed and is restarted: {}", message.trim()));
                others(job.undeploy())
            }
            (_, -1) => others(job.lost(format!("process {process} on {worker} was killed: {}", message.trim()))),
            // A process that ends before the deployment is whole never ran
            // the job: the deployment failed, not the job.
            _ if job.joined.iter().any(Option::is_none) => {
                others(job.lost(format!("process {process} on {worker} ended while joining: {}", message.trim())))
            }
            _ => {
                job.set(JobState::Failed, message.to_owned());
                others(job.undeploy())
            }
        }
    }

    /// Cancels a job; returns the cancellations of its processes, if it runs.
    pub fn cancel(&mut self, id: &str) -> Vec<Command> {
        let Some(job) = self.jobs.get_mut(id).filter(|job| !job.is_terminal()) else { return Vec::new() };
        job.set(JobState::Canceled, "canceled by the user");
        job.undeploy()
    }

    /// A deployment onto `worker` could not be carried out: the worker is
    /// forgotten (if it lives, its next heartbeat registers it again) and the
    /// job waits again (its other processes are stopped). A worker that
    /// refuses the deployment (it cannot start the process) counts as a
    /// loss of the job.
    pub fn deploy_failed(
        &mut self,
        id: &str,
        attempt: u32,
        worker: &str,
        unreachable: bool,
        message: String,
    ) -> Vec<Command> {
        if unreachable {
            self.workers.remove(worker);
        }
        let Some(job) = self.jobs.get_mut(id).filter(|job| job.is_deployment(attempt)) else {
            return Vec::new();
        };
        let mut cancels = if unreachable {
            job.set(JobState::Scheduling, message);
            job.undeploy()
        } else {
            job.lost(message)
        };
        cancels.retain(|command| !command.targets(worker));
        cancels
    }
}

/// Where the processes of a deployment are, once all of them joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
    /// Exchange address of each process.
    pub addresses: Vec<String>,
    /// The process hosting each slice.
    pub slice_process: Vec<u32>,
    /// Names the run's channels and checkpoints in every process.
    pub run_id: String,
}

/// Exit code of a job process that asks for its job to be deployed again
/// (a leader whose restart strategy allows it, a follower that lost its leader).
pub const EXIT_RESTART: i32 = 75;

/// Exit code of a follower whose run the leader ended.
pub const EXIT_ENDED_BY_LEADER: i32 = 76;

impl Command {
    fn targets(&self, worker: &str) -> bool {
        match self {
            Self::Deploy { worker: target, .. } | Self::Cancel { worker: target, .. } => target == worker,
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
            workers: Vec::new(),
            slice_process: Vec::new(),
            joined: Vec::new(),
            started: 0,
            attempts: 0,
            losses: 0,
            submitted_at_ms: 0,
            running_since_ms: 0,
        }
    }

    fn deployed(commands: &[Command]) -> Vec<(String, u32)> {
        commands
            .iter()
            .filter_map(|command| match command {
                Command::Deploy { worker, process, .. } => Some((worker.clone(), *process)),
                Command::Cancel { .. } => None,
            })
            .collect()
    }

    #[test]
    fn slices_spread_evenly_and_jobs_wait_for_enough_slots() {
        let now = Instant::now();
        let mut cluster = Cluster::default();
        cluster.submit(job("a", 4));
        assert!(cluster.schedule().is_empty());
        assert!(cluster.job("a").is_some_and(|job| job.message.contains("waiting for 4 free slots")));
        let w1 = cluster.register("w1".into(), 2, now);
        let w2 = cluster.register("w2".into(), 2, now);
        let w3 = cluster.register("w3".into(), 2, now);
        let placed = cluster.schedule();
        assert_eq!(deployed(&placed), vec![(w1.clone(), 0), (w2.clone(), 1), (w3.clone(), 2)]);
        let a = cluster.job("a").expect("submitted");
        assert_eq!(a.slice_process, vec![0, 1, 2, 0], "slices dealt round robin");
        cluster.submit(job("b", 3));
        assert!(cluster.schedule().is_empty(), "two slots are left");
        cluster.submit(job("c", 2));
        assert_eq!(deployed(&cluster.schedule()), vec![(w2, 0), (w3, 1)], "the emptiest workers");
    }

    #[test]
    fn processes_join_and_learn_where_every_slice_runs() {
        let now = Instant::now();
        let mut cluster = Cluster::default();
        cluster.register("w1".into(), 1, now);
        cluster.register("w2".into(), 1, now);
        cluster.submit(job("a", 2));
        cluster.schedule();
        assert_eq!(cluster.join("a", 1, 1, "h:2".into()), Ok(None), "process 0 is missing");
        assert!(cluster.join("a", 2, 0, "h:1".into()).is_err(), "another deployment");
        let joined = cluster.join("a", 1, 0, "h:1".into()).expect("known").expect("complete");
        assert_eq!(joined.addresses, vec!["h:1".to_owned(), "h:2".to_owned()]);
        assert_eq!(joined.slice_process, vec![0, 1]);
        assert_eq!(cluster.leader_address("a").as_deref(), Some("h:1"));
        cluster.process_started("a", 1, 5);
        assert_eq!(cluster.job("a").map(Job::state), Some(JobState::Deploying), "one process of two");
        cluster.process_started("a", 1, 6);
        assert_eq!(cluster.job("a").map(Job::state), Some(JobState::Running));
    }

    #[test]
    fn a_lost_worker_stops_the_whole_deployment_and_the_job_moves() {
        let now = Instant::now();
        let mut cluster = Cluster::default();
        let first = cluster.register("w1".into(), 1, now);
        let second = cluster.register("w2".into(), 1, now);
        cluster.submit(job("a", 2));
        cluster.schedule();
        let third = cluster.register("w3".into(), 2, now + Duration::from_secs(4));
        cluster.heartbeat(&second, now + Duration::from_secs(4));
        let (lost, cancels) = cluster.expire_workers(now + Duration::from_secs(4), Duration::from_secs(3));
        assert_eq!(lost, vec![first]);
        assert_eq!(cancels, vec![Command::Cancel { job: "a".into(), worker: second.clone(), attempt: 1 }]);
        cluster.requeue_restarting();
        let placed = cluster.schedule();
        assert_eq!(deployed(&placed), vec![(third, 0), (second, 1)]);
        assert!(cluster.process_exited("a", 1, 0, -1, "late report of the lost deployment").is_empty());
        assert_eq!(cluster.job("a").map(Job::state), Some(JobState::Deploying), "stale reports are ignored");
        cluster.process_exited("a", 2, 1, 0, "");
        assert_eq!(cluster.job("a").map(Job::state), Some(JobState::Deploying), "followers do not decide");
        cluster.process_exited("a", 2, 0, 0, "");
        assert_eq!(cluster.job("a").map(Job::state), Some(JobState::Finished));
    }

    #[test]
    fn a_follower_that_lost_its_leader_ends_the_deployment() {
        let now = Instant::now();
        let mut cluster = Cluster::default();
        let first = cluster.register("w1".into(), 1, now);
        cluster.register("w2".into(), 1, now);
        cluster.submit(job("a", 2));
        cluster.schedule();
        assert!(cluster.process_exited("a", 1, 1, EXIT_ENDED_BY_LEADER, "").is_empty());
        assert_eq!(cluster.job("a").map(Job::state), Some(JobState::Deploying), "the leader decides");
        let cancels = cluster.process_exited("a", 1, 1, EXIT_RESTART, "lost the leader");
        assert_eq!(cancels, vec![Command::Cancel { job: "a".into(), worker: first, attempt: 1 }]);
        assert_eq!(cluster.job("a").map(Job::state), Some(JobState::Restarting));
    }

    #[test]
    fn processes_of_a_deployment_given_up_change_nothing() {
        let now = Instant::now();
        let mut cluster = Cluster::default();
        let w1 = cluster.register("w1".into(), 1, now);
        cluster.register("w2".into(), 1, now);
        cluster.submit(job("a", 2));
        cluster.schedule();
        // Process 0's worker cannot be reached: the deployment is given up
        // while process 1 already runs; its late join and exit are ignored.
        cluster.deploy_failed("a", 1, &w1, true, "unreachable".into());
        assert!(cluster.join("a", 1, 1, "h:2".into()).is_err());
        assert!(cluster.process_exited("a", 1, 1, 1, "joining failed").is_empty());
        assert_eq!(cluster.job("a").map(Job::state), Some(JobState::Scheduling));
    }

    #[test]
    fn the_leader_decides_between_failing_and_restarting() {
        let now = Instant::now();
        let mut cluster = Cluster::default();
        cluster.register("w1".into(), 4, now);
        cluster.submit(job("bad", 1));
        cluster.submit(job("retry", 1));
        cluster.submit(job("killed", 1));
        cluster.submit(job("unjoined", 1));
        cluster.schedule();
        for id in ["bad", "retry", "killed"] {
            cluster.join(id, 1, 0, "h:1".into()).expect("deployed");
        }
        cluster.process_exited("unjoined", 1, 0, 1, "cannot reach the coordinator");
        assert_eq!(
            cluster.job("unjoined").map(Job::state),
            Some(JobState::Restarting),
            "a process that never joined failed its deployment, not the job"
        );
        cluster.process_exited("bad", 1, 0, 1, "operator 'Map' failed");
        assert_eq!(cluster.job("bad").map(Job::state), Some(JobState::Failed));
        cluster.process_exited("retry", 1, 0, EXIT_RESTART, "operator 'Map' failed");
        assert_eq!(cluster.job("retry").map(Job::state), Some(JobState::Restarting));
        cluster.process_exited("killed", 1, 0, -1, "signal 9");
        assert_eq!(cluster.job("killed").map(Job::state), Some(JobState::Restarting));
        assert!(cluster.cancel("killed").is_empty(), "not running: nothing to stop");
        assert_eq!(cluster.job("killed").map(Job::state), Some(JobState::Canceled));
    }
}
