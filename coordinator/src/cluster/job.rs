//! A submitted job as the coordinator remembers it, and its status.
//!
//! The job table (`jobs.json`) is a serialized `Vec<Job>`: fields without a
//! `serde(default)` must stay, and the status is stored as the number of the
//! wire's `JobState`, so tables written by any earlier version still load.

use serde::{Deserialize, Serialize};
use weir_proto::v1 as pb;

use super::Command;

/// How many times a job whose process was lost is deployed again.
pub const MAX_LOSSES: u32 = 5;

/// Where a job is in its life. The names are Flink's (`JobStatus`, and the
/// adaptive scheduler's `WaitingForResources`); the wire and the command line
/// call them by the wire's `JobState` names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "i32", into = "i32")]
pub enum JobStatus {
    /// Waiting for enough free slots (`SCHEDULING` on the wire): after its
    /// submission, after a restart, or after its workers were lost.
    #[default]
    WaitingForResources,
    /// Its processes are starting and joining each other.
    Deploying,
    /// Every process of its deployment started.
    Running,
    /// Its deployment ended and it will wait for slots again, to resume from
    /// its latest checkpoint.
    Restarting,
    /// Its leader process ended successfully.
    Finished,
    /// It failed for good; the job's message says why.
    Failed,
    /// Canceled by the user.
    Canceled,
}

impl JobStatus {
    /// Whether a job in this status has ended for good.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Finished | Self::Failed | Self::Canceled)
    }
}

impl From<JobStatus> for pb::JobState {
    fn from(status: JobStatus) -> Self {
        match status {
            JobStatus::WaitingForResources => Self::Scheduling,
            JobStatus::Deploying => Self::Deploying,
            JobStatus::Running => Self::Running,
            JobStatus::Restarting => Self::Restarting,
            JobStatus::Finished => Self::Finished,
            JobStatus::Failed => Self::Failed,
            JobStatus::Canceled => Self::Canceled,
        }
    }
}

/// A job status number that names no status (a job table edited by hand, or
/// written by a newer version).
#[derive(Debug, thiserror::Error)]
#[error("unknown job state {0} (known: 1 to 7)")]
pub struct UnknownJobStatus(i32);

impl TryFrom<i32> for JobStatus {
    type Error = UnknownJobStatus;

    fn try_from(number: i32) -> Result<Self, Self::Error> {
        let status = match pb::JobState::try_from(number) {
            Ok(pb::JobState::Scheduling) => Self::WaitingForResources,
            Ok(pb::JobState::Deploying) => Self::Deploying,
            Ok(pb::JobState::Running) => Self::Running,
            Ok(pb::JobState::Restarting) => Self::Restarting,
            Ok(pb::JobState::Finished) => Self::Finished,
            Ok(pb::JobState::Failed) => Self::Failed,
            Ok(pb::JobState::Canceled) => Self::Canceled,
            Ok(pb::JobState::Unspecified) | Err(_) => return Err(UnknownJobStatus(number)),
        };
        Ok(status)
    }
}

impl From<JobStatus> for i32 {
    fn from(status: JobStatus) -> Self {
        pb::JobState::from(status) as i32
    }
}

/// A deployment that ran when the coordinator restarted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unconfirmed {
    /// Its number.
    pub attempt: u32,
    /// Its workers by process index: only they may report on it.
    pub workers: Vec<String>,
}

/// A submitted job and what the coordinator must remember about it across
/// restarts of the coordinator. `Default` is a job just submitted: the
/// submission sets what it names, the rest starts empty.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Job {
    /// `job-` and 16 hex digits, unique per submission.
    pub id: String,
    /// The job graph's name.
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
    /// Where the job is in its life.
    pub state: JobStatus,
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
    /// When runs of the job failed and asked to run again (epoch ms, oldest
    /// first, the last 1,024): every deployment hands them to the job's leader,
    /// whose restart strategy decides on the next failure.
    #[serde(default)]
    pub failure_times_ms: Vec<u64>,
    /// The checkpoint the current deployment restores from, if any,
    /// chosen once for all of its processes (`Cluster::restore_source`).
    #[serde(default)]
    pub restoring_from: Option<String>,
    /// The deployment `restoring_from` was chosen for.
    #[serde(default)]
    pub restoring_attempt: u32,
    /// Checkpoints a deployment could not restore from: never used again.
    #[serde(default)]
    pub bad_checkpoints: Vec<String>,
    /// After a coordinator restart: the deployment that was running, whose
    /// end its worker may still report (a job that finished while the
    /// coordinator was away must not run again).
    #[serde(skip)]
    pub unconfirmed: Option<Unconfirmed>,
    /// Not deployed again before this: a lost worker's processes may run
    /// until their lease lapses.
    #[serde(skip)]
    pub not_before: Option<std::time::Instant>,
    /// Deployments lost to failures (lost workers or processes).
    #[serde(default)]
    pub losses: u32,
    /// Milliseconds since the epoch.
    pub submitted_at_ms: u64,
    /// Milliseconds since the epoch when it last started running.
    pub running_since_ms: u64,
}

impl Job {
    pub(super) fn set(&mut self, state: JobStatus, message: impl Into<String>) {
        self.state = state;
        self.message = message.into();
    }

    /// Whether `attempt` is the job's current deployment (being deployed or
    /// running; a deployment given up leaves the job scheduling or ended).
    pub fn is_deployment(&self, attempt: u32) -> bool {
        self.attempts == attempt && matches!(self.state, JobStatus::Deploying | JobStatus::Running)
    }

    /// Slices of the job's deployment that `worker` hosts.
    pub(super) fn slices_on(&self, worker: &str) -> usize {
        let on_worker = |process: &&u32| self.workers.get(**process as usize).is_some_and(|host| host == worker);
        self.slice_process.iter().filter(on_worker).count()
    }

    /// A run failed at `now_ms` and asked to run again.
    pub(super) fn record_failure(&mut self, now_ms: u64) {
        self.failure_times_ms.push(now_ms);
        // As many as a job process reads (`weir_common::launch`).
        let excess = self.failure_times_ms.len().saturating_sub(1024);
        self.failure_times_ms.drain(..excess);
    }

    /// Forgets the deployment; returns a cancellation for each of its processes.
    pub(super) fn undeploy(&mut self) -> Vec<Command> {
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
    pub(super) fn lost(&mut self, why: String) -> Vec<Command> {
        self.losses += 1;
        if self.losses > MAX_LOSSES {
            self.set(JobStatus::Failed, format!("{why}, and no attempt is left"));
        } else {
            self.set(JobStatus::Restarting, why);
        }
        self.undeploy()
    }

    /// Whether the job has ended for good.
    pub fn is_terminal(&self) -> bool {
        self.state.is_terminal()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_keep_the_numbers_of_the_wire_job_state() {
        for number in 1..=7 {
            let status = JobStatus::try_from(number).expect("a known state");
            assert_eq!(i32::from(status), number);
        }
        assert_eq!(i32::from(JobStatus::WaitingForResources), pb::JobState::Scheduling as i32);
        for unknown in [0, 8, -1, i32::MAX] {
            let error = JobStatus::try_from(unknown).expect_err("not a state").to_string();
            assert!(error.contains(&format!("unknown job state {unknown}")), "{error}");
        }
    }

    #[test]
    fn a_job_table_entry_of_an_earlier_version_loads_and_is_written_back_alike() {
        // As written before the status had its own type: a number, and no
        // `workers`, `slice_process` or `losses` (added later, with defaults).
        let stored = r#"{"id":"job-1","name":"wordcount","artifact":"sha","args":["--parallelism","2"],
            "graph_hash":"hash","slots":2,"restore_from":null,"state":3,"message":"",
            "attempts":1,"submitted_at_ms":10,"running_since_ms":20}"#;
        let job: Job = serde_json::from_str(stored).expect("loads");
        assert_eq!(job.state, JobStatus::Running);
        let written = serde_json::to_value(&job).expect("serializes");
        assert_eq!(written["state"], serde_json::json!(3));
    }

    #[test]
    fn a_job_table_entry_with_an_unknown_state_is_rejected_clearly() {
        let stored = r#"{"id":"job-1","name":"n","artifact":"sha","args":[],"graph_hash":"h","slots":1,
            "restore_from":null,"state":42,"message":"","attempts":0,"submitted_at_ms":0,"running_since_ms":0}"#;
        let error = serde_json::from_str::<Job>(stored).expect_err("rejected").to_string();
        assert!(error.contains("unknown job state 42"), "{error}");
    }
}
