//! Carrying out the cluster's decisions: the control loop that expires
//! silent workers and schedules waiting jobs a few times a second, and the
//! deployments and cancellations of job processes on workers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_common::CheckpointId;
use weir_common::checkpoint::layout;
use weir_proto::rpc;
use weir_proto::v1 as pb;
use weir_proto::v1::worker_client::WorkerClient;

use super::Shared;
use crate::cluster::{Command, Job};

/// Detects silent workers and deploys waiting jobs, a few times a second.
pub(super) async fn control_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let commands = expire_and_schedule(&shared);
        if commands.is_empty() {
            continue;
        }
        shared.persist();
        carry_out_all(&shared, commands);
    }
}

/// One round of the control loop's decisions.
fn expire_and_schedule(shared: &Shared) -> Vec<Command> {
    let mut cluster = shared.cluster();
    let (lost, mut commands) = cluster.expire_workers(Instant::now(), shared.config.heartbeat_timeout);
    for worker in lost {
        tracing::warn!(%worker, "worker lost: no heartbeat within the timeout");
    }
    cluster.requeue_restarting(Instant::now());
    commands.extend(cluster.schedule());
    commands
}

/// Carries out `commands` in the background, each on its own.
pub(super) fn carry_out_all(shared: &Arc<Shared>, commands: Vec<Command>) {
    for command in commands {
        tokio::spawn(carry_out(shared.clone(), command));
    }
}

/// Deploys a job onto a worker, or stops it there.
async fn carry_out(shared: Arc<Shared>, command: Command) {
    match command {
        Command::Deploy { job, process, worker, attempt } => deploy(shared, job, process, worker, attempt).await,
        Command::Cancel { job, worker, attempt } => cancel(&shared, job, &worker, attempt).await,
    }
}

async fn deploy(shared: Arc<Shared>, job: String, process: u32, worker: String, attempt: u32) {
    let Some((address, request)) = deploy_request(&shared, &job, process, &worker, attempt) else { return };
    let deployed = async {
        let channel =
            rpc::connect(&address).await.map_err(|error| (true, format!("cannot reach {address}: {error}")))?;
        // No short deadline: the worker downloads the job's binary inside
        // this call; keepalive notices a worker that is gone.
        WorkerClient::new(channel).deploy_job(request).await.map_err(|status| (false, status.message().to_owned()))
    };
    match deployed.await {
        Ok(_) => tracing::info!(%job, %worker, attempt, process, "job process deployed"),
        Err((unreachable, message)) => deployment_failed(shared, &job, attempt, &worker, unreachable, message).await,
    }
}

/// The worker's address and what to ask of it, while the worker and the
/// job are still known.
fn deploy_request(
    shared: &Shared,
    job: &str,
    process: u32,
    worker: &str,
    attempt: u32,
) -> Option<(String, pb::DeployJobRequest)> {
    let mut cluster = shared.cluster();
    let address = cluster.worker_address(worker)?.to_owned();
    let checkpoint_dir = shared.checkpoint_dir(job);
    // Looked up at the deployment, not when the job was requeued: a process
    // the coordinator lost track of may have checkpointed meanwhile.
    let latest = cluster.restore_source(job, attempt, |bad| {
        latest_checkpoint_except(&checkpoint_dir, bad).map(|path| path.to_string_lossy().into_owned())
    })?;
    let entry = cluster.job(job)?;
    let request = pb::DeployJobRequest {
        job_id: job.to_owned(),
        attempt,
        artifact_sha256: entry.artifact.clone(),
        args: process_args(&checkpoint_dir, latest, entry),
        graph_hash: entry.graph_hash.clone(),
        process_index: process,
        failure_times_ms: entry.failure_times_ms.clone(),
    };
    Some((address, request))
}

/// The job process's arguments: the engine's checkpoint flags (its newest
/// checkpoint, else the savepoint it was submitted with), then the job's own.
fn process_args(checkpoint_dir: &Path, latest: Option<String>, job: &Job) -> Vec<String> {
    let mut args = vec!["--checkpoint-dir".to_owned(), checkpoint_dir.to_string_lossy().into_owned()];
    if let Some(restore) = latest.or_else(|| job.restore_from.clone()) {
        args.extend(["--from-checkpoint".to_owned(), restore]);
    }
    args.extend(job.args.iter().cloned());
    args
}

/// A deployment the worker did not take: the cluster decides, and the rest
/// of the deployment is stopped.
async fn deployment_failed(
    shared: Arc<Shared>,
    job: &str,
    attempt: u32,
    worker: &str,
    unreachable: bool,
    message: String,
) {
    tracing::warn!(%job, %worker, %message, "deployment failed");
    let message = format!("deployment on {worker} failed: {message}");
    let cancels = shared.cluster().deploy_failed(job, attempt, worker, unreachable, message);
    shared.persist();
    for cancel in cancels {
        Box::pin(carry_out(shared.clone(), cancel)).await;
    }
}

/// Asks `worker` to stop the job's process of deployment `attempt`; a
/// worker that cannot be reached has lost it anyway.
async fn cancel(shared: &Shared, job: String, worker: &str, attempt: u32) {
    let address = shared.cluster().worker_address(worker).map(str::to_owned);
    if let Some(address) = address
        && let Ok(channel) = rpc::connect(&address).await
    {
        let request = pb::CancelJobProcessRequest { job_id: job, attempt };
        let _ = WorkerClient::new(channel)
            .cancel_job_process(rpc::with_deadline(request, rpc::CONTROL_CALL_DEADLINE))
            .await;
    }
}

/// The newest completed checkpoint (`chk-<n>` holding `_metadata`, see
/// `weir_common::checkpoint::layout`) of the newest deployment below `dir`
/// that completed one. Runs are named `<job>-<deployment>`: a stale run of
/// an older deployment that went on checkpointing (its numbers may pass the
/// newer run's) never wins over a newer deployment's checkpoints.
pub fn latest_checkpoint(dir: &Path) -> Option<PathBuf> {
    latest_checkpoint_except(dir, &[])
}

/// [`latest_checkpoint`], passing over the checkpoints in `bad` (paths a
/// deployment could not restore from).
fn latest_checkpoint_except(dir: &Path, bad: &[String]) -> Option<PathBuf> {
    let mut newest: Option<((u64, u64), PathBuf)> = None;
    for run in std::fs::read_dir(dir).ok()?.flatten() {
        let run_name = run.file_name().to_string_lossy().into_owned();
        let deployment = run_name.rsplit_once('-').and_then(|(_, number)| number.parse::<u64>().ok()).unwrap_or(0);
        for checkpoint in std::fs::read_dir(run.path()).into_iter().flatten().flatten() {
            let name = checkpoint.file_name().to_string_lossy().into_owned();
            let Some((CheckpointId(number), false)) = layout::parse_checkpoint_dir_name(&name) else { continue };
            let complete = checkpoint.path().join(layout::METADATA_FILE).exists()
                && !bad.iter().any(|path| Path::new(path) == checkpoint.path());
            let rank = (deployment, number);
            if complete && newest.as_ref().is_none_or(|(best, _)| rank > *best) {
                newest = Some((rank, checkpoint.path()));
            }
        }
    }
    newest.map(|(_, path)| path)
}

#[cfg(test)]
mod tests {
    use super::{latest_checkpoint, latest_checkpoint_except};

    #[test]
    fn the_latest_checkpoint_is_the_newest_deployments_highest_completed_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let runs = [("job-1-1", 3, true), ("job-1-1", 12, true), ("job-1-2", 7, true), ("job-1-2", 9, false)];
        for (run, checkpoint, complete) in runs {
            let path = dir.path().join(run).join(format!("chk-{checkpoint}"));
            std::fs::create_dir_all(&path).expect("dir");
            if complete {
                std::fs::write(path.join("_metadata"), b"metadata").expect("file");
            }
        }
        // Deployment 1's chk-12 is a stale run's: deployment 2 restored from an older one.
        assert_eq!(latest_checkpoint(dir.path()), Some(dir.path().join("job-1-2").join("chk-7")));
        // One that could not be restored from is passed over.
        let bad = dir.path().join("job-1-2").join("chk-7").to_string_lossy().into_owned();
        let next = latest_checkpoint_except(dir.path(), &[bad]);
        assert_eq!(next, Some(dir.path().join("job-1-1").join("chk-12")));
        assert_eq!(latest_checkpoint(&dir.path().join("missing")), None);
    }
}
