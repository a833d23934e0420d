//! The job process's side of the launch contract
//! (`weir_common::launch`): a job binary calls [`enter_cluster`] once its
//! graph is compiled, and [`exit_for_redeployment`] when a cluster run
//! failed. Everything a job binary does differently because a worker
//! launched it is here, not in the user API.

use std::sync::Arc;
use std::time::Duration;

use tonic::transport::Channel;
use weir_common::JobGraph;
use weir_common::launch::{
    EXIT_ENDED_BY_LEADER, EXIT_LEASE_LOST, EXIT_RESTART, EXIT_RESTORE_FAILED, EXIT_WORKER_GONE, JobProcessEnv,
    LEASE_DURATION, LEASE_RENEW_INTERVAL, PLAN_OUTPUT_ENV,
};
use weir_proto::rpc;
use weir_proto::v1 as pb;
use weir_proto::v1::worker_client::WorkerClient;

use crate::JobError;
use crate::exchange::{Network, Placement};
use crate::job::RestartStrategy;

/// Why a job binary cannot take its part in the cluster.
#[derive(Debug)]
pub enum EntryError {
    /// The job is not the one submitted, or its plan cannot be written.
    InvalidJob(String),
    /// Joining the deployment failed.
    Exchange(String),
}

/// Chooses the job process's mode from its environment:
/// - plan mode writes the graph to the file named by `WEIR_PLAN_OUTPUT`
///   and ends the process (planning is all such a run does);
/// - task mode refuses a graph other than the submitted one, ends the
///   process when its worker is gone, serves this process's exchange and
///   waits for the rest of the deployment (the coordinator answers once
///   every process joined), returning where this process stands;
/// - otherwise the job runs locally (`None`).
pub fn enter_cluster(graph: &JobGraph, job: &str) -> Result<Option<Arc<Placement>>, EntryError> {
    if let Some(path) = std::env::var_os(PLAN_OUTPUT_ENV) {
        let path = std::path::PathBuf::from(path);
        std::fs::write(&path, graph.encode()).map_err(|error| {
            EntryError::InvalidJob(format!("plan mode: cannot write the job graph to '{}': {error}", path.display()))
        })?;
        std::process::exit(0);
    }
    let env = JobProcessEnv::from_lookup(|name| std::env::var(name).ok())
        .map_err(|error| EntryError::Exchange(error.to_string()))?;
    let Some(env) = env else { return Ok(None) };
    check_graph(graph, &env.graph_hash)?;
    watch_worker(env.worker_pid);
    hold_lease(&env);
    join_deployment(&env, job).map(Some).map_err(EntryError::Exchange)
}

fn check_graph(graph: &JobGraph, expected: &str) -> Result<(), EntryError> {
    let planned = graph.fingerprint();
    if planned != expected {
        return Err(EntryError::InvalidJob(format!(
            "this binary builds a job graph ({planned}) other than the one submitted ({expected}): \
             it was rebuilt or runs with other arguments; submit it again"
        )));
    }
    Ok(())
}

fn join_deployment(env: &JobProcessEnv, job: &str) -> Result<Arc<Placement>, String> {
    let process = env.process_index as usize;
    let network = Network::bind(&env.exchange_host)?;
    let (run_id, slice_process) = network.join(&env.coordinator, &env.job_id, env.attempt, process)?;
    tracing::info!(job, process, %run_id, exchange = %network.address(), "joined the job's deployment");
    let failure_times_ms = env.failure_times_ms.clone();
    Ok(Arc::new(Placement { run_id, process, failure_times_ms, slice_process, network }))
}

/// Renews the process's lease with its worker, and ends the process when
/// the lease lapses (no renewal for [`LEASE_DURATION`]: the worker froze or
/// died) or the worker no longer runs this deployment. The coordinator
/// declares a silent worker lost only after a longer heartbeat timeout, so
/// a job never runs in two places at once.
fn hold_lease(env: &JobProcessEnv) {
    let (url, job, attempt) = (env.worker_url.clone(), env.job_id.clone(), env.attempt);
    let _ = std::thread::Builder::new().name("lease".into()).spawn(move || {
        match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime.block_on(renew_until_lost(&url, &job, attempt)),
            Err(error) => lease_lost(&format!("cannot run the lease renewal: {error}")),
        }
    });
}

async fn renew_until_lost(url: &str, job: &str, attempt: u32) {
    let mut renewed = std::time::Instant::now();
    let mut client = None;
    loop {
        tokio::time::sleep(LEASE_RENEW_INTERVAL).await;
        let answer = tokio::time::timeout(2 * LEASE_RENEW_INTERVAL, renew(url, job, attempt, &mut client)).await;
        match answer.ok().flatten() {
            Some(true) => renewed = std::time::Instant::now(),
            Some(false) => lease_lost("the worker no longer runs this deployment of the job"),
            None if renewed.elapsed() > LEASE_DURATION => {
                lease_lost(&format!("the worker at {url} did not renew the lease for {LEASE_DURATION:?}"));
            }
            None => {}
        }
    }
}

/// One renewal: whether the worker still runs the deployment, or `None`
/// when it did not answer.
async fn renew(url: &str, job: &str, attempt: u32, client: &mut Option<WorkerClient<Channel>>) -> Option<bool> {
    if client.is_none() {
        *client = rpc::connect(url).await.ok().map(WorkerClient::new);
    }
    let request = pb::RenewLeaseRequest { job_id: job.to_owned(), attempt };
    match client.as_mut()?.renew_lease(request).await {
        Ok(response) => Some(response.into_inner().current),
        Err(_) => {
            *client = None;
            None
        }
    }
}

fn lease_lost(why: &str) -> ! {
    tracing::error!(%why, "the job process's lease is lost; stopping");
    eprintln!("the job process's lease is lost: {why}; stopping");
    std::process::exit(EXIT_LEASE_LOST)
}

/// Ends this process when its worker (its parent) is gone, so a lost worker
/// leaves no job process running unseen.
fn watch_worker(worker: u32) {
    #[cfg(unix)]
    let _ = std::thread::Builder::new().name("worker watch".into()).spawn(move || {
        loop {
            if std::os::unix::process::parent_id() != worker {
                tracing::error!(worker, "the worker that launched this job process is gone; stopping");
                std::process::exit(EXIT_WORKER_GONE);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    #[cfg(not(unix))]
    let _ = worker;
}

/// A failed run of a cluster job: a follower leaves the decision to the
/// leader, unless the leader vanished (then the deployment is lost and the
/// coordinator deploys it again); the leader applies the job's restart
/// strategy (on the job's failure history, which the coordinator keeps, and
/// this failure) and, if it allows another run, exits with [`EXIT_RESTART`]
/// so that the coordinator deploys the job again from its latest
/// checkpoint. Otherwise it returns, and the error ends the process as usual.
pub fn exit_for_redeployment(placement: &Placement, restart: &RestartStrategy, error: &JobError) {
    if !placement.is_leader() {
        eprintln!("{error}");
        std::process::exit(if placement.network.leader_lost() { EXIT_RESTART } else { EXIT_ENDED_BY_LEADER });
    }
    // A savepoint that does not fit the job, or a graph that is not valid,
    // fails every deployment alike: the job fails.
    if matches!(error, JobError::Restore { .. } | JobError::InvalidGraph(_)) {
        return;
    }
    let mut failures = placement.failure_times_ms.clone();
    failures.push(weir_common::launch::epoch_ms());
    if let Some(delay) = restart.delay_after(&failures) {
        tracing::error!(%error, ?delay, "the run failed; the job will be deployed again");
        eprintln!("{error}");
        std::thread::sleep(delay);
        let bad_checkpoint = matches!(error, JobError::RestoreFailed { .. });
        std::process::exit(if bad_checkpoint { EXIT_RESTORE_FAILED } else { EXIT_RESTART });
    }
}
