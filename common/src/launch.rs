//! The contract between a worker and the job processes it launches, in one
//! place: the environment a job binary starts with, and what its exit code
//! tells the worker and the coordinator.
//!
//! A job binary runs in one of three modes, chosen by its environment:
//! - **local** (no variable below set): it runs the whole job itself;
//! - **plan** ([`PLAN_OUTPUT_ENV`]): it writes its job graph to a file and
//!   exits, which is how `weir submit` learns a job's graph;
//! - **task** ([`JobProcessEnv`], set by the worker that deploys it): it
//!   checks its graph against the submitted one, joins its deployment through
//!   the coordinator and runs its slices of the job.

use std::fmt;

/// Plan mode: the binary writes its job graph (protobuf) to this file and
/// exits with 0 instead of running.
pub const PLAN_OUTPUT_ENV: &str = "WEIR_PLAN_OUTPUT";
/// Task mode: the fingerprint of the submitted graph; the binary refuses to run a different one.
pub const GRAPH_HASH_ENV: &str = "WEIR_GRAPH_HASH";
/// Task mode: the pid of the worker that launched the process; the process
/// ends when its parent is no longer that worker.
pub const WORKER_PID_ENV: &str = "WEIR_WORKER_PID";
/// Task mode: the coordinator's URL, where the process joins its deployment.
pub const COORDINATOR_ENV: &str = "WEIR_COORDINATOR";
/// Task mode: the cluster's id of the job.
pub const JOB_ID_ENV: &str = "WEIR_JOB_ID";
/// Task mode: the deployment's number (1 for the first): the process joins
/// and renews its lease as a process of that deployment.
pub const ATTEMPT_ENV: &str = "WEIR_ATTEMPT";
/// Task mode: this process's index within the deployment; 0 leads.
pub const PROCESS_INDEX_ENV: &str = "WEIR_PROCESS_INDEX";
/// Task mode: the host the process serves its exchange on (the worker's bind address).
pub const EXCHANGE_HOST_ENV: &str = "WEIR_EXCHANGE_HOST";
/// Task mode: the URL of the worker that launched the process, where it
/// renews its lease.
pub const WORKER_URL_ENV: &str = "WEIR_WORKER_URL";
/// Task mode: when earlier runs of the job failed, epoch milliseconds
/// separated by commas, oldest first (the leader's restart strategy decides
/// on the next failure with them).
pub const FAILURE_TIMES_ENV: &str = "WEIR_FAILURE_TIMES";

/// Exit code of a job process whose run failed and should be deployed again
/// (from the latest checkpoint): the job's restart strategy allows it, or the
/// process is a follower that lost its leader.
pub const EXIT_RESTART: i32 = 75;
/// Exit code of a follower whose run the leader ended (it failed elsewhere):
/// the leader's own exit tells the coordinator what to do.
pub const EXIT_ENDED_BY_LEADER: i32 = 76;
/// Exit code of a job process that stopped because its worker is gone (as a
/// shell reports a process killed by SIGKILL).
pub const EXIT_WORKER_GONE: i32 = 137;
/// Exit code of a job's leader that could not restore from the checkpoint
/// it was given (a file missing or corrupt): the coordinator deploys the job
/// again from an older checkpoint, never from that one.
pub const EXIT_RESTORE_FAILED: i32 = 79;
/// Exit code of a job process whose lease lapsed or was refused: its worker
/// froze, died, or no longer runs this deployment.
pub const EXIT_LEASE_LOST: i32 = 78;

/// How long a job process's lease lasts without a renewal. The coordinator
/// declares a silent worker lost only after its heartbeat timeout, which
/// must be longer (the CLI refuses less than 2.5 s), so the processes of a
/// frozen worker have stopped before their job is deployed elsewhere.
pub const LEASE_DURATION: std::time::Duration = std::time::Duration::from_secs(2);
/// How often a job process renews its lease.
pub const LEASE_RENEW_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// What a worker tells a job process it deploys (task mode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobProcessEnv {
    /// The submitted graph's fingerprint.
    pub graph_hash: String,
    /// The launching worker's pid.
    pub worker_pid: u32,
    /// The coordinator's URL.
    pub coordinator: String,
    /// The cluster's id of the job.
    pub job_id: String,
    /// The deployment's number, from 1.
    pub attempt: u32,
    /// The process's index in the deployment; 0 leads.
    pub process_index: u32,
    /// Where the process serves its exchange.
    pub exchange_host: String,
    /// When earlier runs of the job failed (epoch ms, oldest first).
    pub failure_times_ms: Vec<u64>,
    /// The launching worker's URL, where the lease is renewed.
    pub worker_url: String,
}

/// A task-mode variable is missing or malformed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchError(String);

impl fmt::Display for LaunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task mode: {} (the worker that launches job processes sets it)", self.0)
    }
}

impl std::error::Error for LaunchError {}

impl JobProcessEnv {
    /// The variables to start the job process with.
    pub fn to_vars(&self) -> Vec<(&'static str, String)> {
        vec![
            (GRAPH_HASH_ENV, self.graph_hash.clone()),
            (WORKER_PID_ENV, self.worker_pid.to_string()),
            (COORDINATOR_ENV, self.coordinator.clone()),
            (JOB_ID_ENV, self.job_id.clone()),
            (ATTEMPT_ENV, self.attempt.to_string()),
            (PROCESS_INDEX_ENV, self.process_index.to_string()),
            (EXCHANGE_HOST_ENV, self.exchange_host.clone()),
            (WORKER_URL_ENV, self.worker_url.clone()),
            (FAILURE_TIMES_ENV, self.failure_times_ms.iter().map(u64::to_string).collect::<Vec<_>>().join(",")),
        ]
    }

    /// Reads task mode from `lookup` (the process environment in a job
    /// binary): `None` when the process was not launched by a worker.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, LaunchError> {
        if lookup(PROCESS_INDEX_ENV).is_none() {
            return Ok(None);
        }
        let var = |name: &str| lookup(name).ok_or_else(|| LaunchError(format!("{name} is not set")));
        let number = |name: &str| {
            let text = var(name)?;
            text.parse::<u32>().map_err(|_| LaunchError(format!("{name} is not a number: '{text}'")))
        };
        Ok(Some(Self {
            graph_hash: var(GRAPH_HASH_ENV)?,
            worker_pid: number(WORKER_PID_ENV)?,
            coordinator: var(COORDINATOR_ENV)?,
            job_id: var(JOB_ID_ENV)?,
            attempt: number(ATTEMPT_ENV)?,
            process_index: number(PROCESS_INDEX_ENV)?,
            exchange_host: lookup(EXCHANGE_HOST_ENV).unwrap_or_else(|| "127.0.0.1".into()),
            failure_times_ms: failure_times(lookup(FAILURE_TIMES_ENV).as_deref().unwrap_or(""))?,
            worker_url: var(WORKER_URL_ENV)?,
        }))
    }
}

/// Now, in milliseconds since the epoch: the clock of failure histories,
/// which the coordinator writes and the job's leader reads.
pub fn epoch_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// At most this many failure times are read: as many as the coordinator keeps.
const MAX_FAILURE_TIMES: usize = 1024;

fn failure_times(text: &str) -> Result<Vec<u64>, LaunchError> {
    let times: Vec<&str> = text.split(',').filter(|time| !time.is_empty()).collect();
    if times.len() > MAX_FAILURE_TIMES {
        return Err(LaunchError(format!("{FAILURE_TIMES_ENV} lists more than {MAX_FAILURE_TIMES} times")));
    }
    times
        .iter()
        .map(|time| time.parse().map_err(|_| LaunchError(format!("{FAILURE_TIMES_ENV} holds '{time}', not a time"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn sample() -> JobProcessEnv {
        JobProcessEnv {
            graph_hash: "ab12".into(),
            worker_pid: 4242,
            coordinator: "http://127.0.0.1:6123".into(),
            job_id: "job-1".into(),
            attempt: 2,
            process_index: 1,
            exchange_host: "10.0.0.5".into(),
            failure_times_ms: vec![1_700_000_000_000, 1_700_000_060_000],
            worker_url: "http://127.0.0.1:40001".into(),
        }
    }

    #[test]
    fn the_environment_round_trips() {
        let vars: HashMap<&str, String> = sample().to_vars().into_iter().collect();
        let read = JobProcessEnv::from_lookup(|name| vars.get(name).cloned()).expect("valid");
        assert_eq!(read, Some(sample()));
    }

    #[test]
    fn local_mode_has_no_process_index_and_bad_values_are_named() {
        assert_eq!(JobProcessEnv::from_lookup(|_| None), Ok(None));
        let mut vars: HashMap<&str, String> = sample().to_vars().into_iter().collect();
        vars.insert(ATTEMPT_ENV, "two".into());
        let error = JobProcessEnv::from_lookup(|name| vars.get(name).cloned()).expect_err("malformed");
        assert!(error.to_string().contains("WEIR_ATTEMPT is not a number: 'two'"), "{error}");
        vars.remove(JOB_ID_ENV);
        let error = JobProcessEnv::from_lookup(|name| vars.get(name).cloned()).expect_err("missing");
        assert!(error.to_string().contains("WEIR_JOB_ID is not set"), "{error}");
    }
}
