//! The gRPC `Coordinator` service: thin handlers that check the request,
//! convert between wire messages and the cluster's types, ask the cluster
//! (or the artifact store) and hand its commands to the deployer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status, Streaming};
use weir_common::checkpoint::layout;
use weir_proto::v1 as pb;
use weir_proto::v1::coordinator_server::Coordinator;
use weir_proto::v1::exchange_client::ExchangeClient;

use super::artifacts::FetchStream;
use super::deployer::carry_out_all;
use super::{Shared, now_ms};
use crate::cluster::{Command, Job, JobStatus, Joined};

/// How long the processes of a deployment wait for each other to join.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) struct Service {
    shared: Arc<Shared>,
}

impl Service {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Persists the cluster's new state, then carries out its commands.
    fn apply(&self, commands: Vec<Command>) {
        self.shared.persist();
        carry_out_all(&self.shared, commands);
    }

    /// A finished job's checkpoints go once its end is on disk (Flink's job
    /// result store): deleted earlier, a coordinator that crashed before
    /// recording the end would deploy the job again from nothing. Its
    /// savepoints stay: they belong to the user (and are self-contained).
    fn clean_up_if_finished(&self, job: &str) {
        let finished = self.shared.cluster().job(job).is_some_and(|entry| entry.state == JobStatus::Finished);
        if !finished {
            return;
        }
        self.shared.persist();
        let dir = self.shared.checkpoint_dir(job);
        let runs = std::fs::read_dir(&dir).into_iter().flatten().flatten();
        let entries = runs.flat_map(|run| std::fs::read_dir(run.path()).into_iter().flatten().flatten());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            if matches!(layout::parse_checkpoint_dir_name(&name), Some((_, true))) {
                continue;
            }
            let path = entry.path();
            let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            if let Err(error) = removed {
                tracing::warn!(path = %path.display(), %error, "cannot delete a finished job's checkpoint files");
            }
        }
        // Runs left empty go too; a run holding a savepoint stays.
        for run in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let _ = std::fs::remove_dir(run.path());
        }
        let _ = std::fs::remove_dir(&dir);
    }
}

/// The most slots one worker may offer: a slot runs a slice of a job (a
/// thread per vertex), so more than this is a mistake or a worker that
/// wants to attract every job.
const MAX_SLOTS_PER_WORKER: u32 = 1024;

#[tonic::async_trait]
impl Coordinator for Service {
    async fn register_worker(
        &self,
        request: Request<pb::RegisterWorkerRequest>,
    ) -> Result<Response<pb::RegisterWorkerResponse>, Status> {
        let request = request.into_inner();
        if !(1..=MAX_SLOTS_PER_WORKER).contains(&request.slots) {
            return Err(Status::invalid_argument(format!(
                "a worker offers 1 to {MAX_SLOTS_PER_WORKER} slots, not {}",
                request.slots
            )));
        }
        let worker_id = self.shared.cluster().register(request.address.clone(), request.slots, Instant::now());
        tracing::info!(%worker_id, address = %request.address, slots = request.slots, "worker registered");
        let heartbeat_interval_ms = self.shared.config.heartbeat_interval.as_millis() as u64;
        Ok(Response::new(pb::RegisterWorkerResponse { worker_id, heartbeat_interval_ms }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let known = self.shared.cluster().heartbeat(&request.into_inner().worker_id, Instant::now());
        Ok(Response::new(pb::HeartbeatResponse { known }))
    }

    async fn upload_artifact(
        &self,
        request: Request<Streaming<pb::UploadArtifactRequest>>,
    ) -> Result<Response<pb::UploadArtifactResponse>, Status> {
        let sha256 = self.shared.artifacts.store(request.into_inner()).await?;
        Ok(Response::new(pb::UploadArtifactResponse { sha256 }))
    }

    type FetchArtifactStream = FetchStream;

    async fn fetch_artifact(
        &self,
        request: Request<pb::FetchArtifactRequest>,
    ) -> Result<Response<Self::FetchArtifactStream>, Status> {
        let chunks = self.shared.artifacts.fetch(&request.into_inner().sha256).await?;
        Ok(Response::new(chunks))
    }

    async fn submit_job(
        &self,
        request: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        let request = request.into_inner();
        if !self.shared.artifacts.contains(&request.artifact_sha256) {
            return Err(Status::failed_precondition(format!(
                "artifact '{}' was not uploaded to this coordinator",
                request.artifact_sha256
            )));
        }
        let job = submitted_job(request)?;
        let job_id = job.id.clone();
        tracing::info!(job = %job_id, name = %job.name, slots = job.slots, "job submitted");
        self.shared.cluster().submit(job);
        self.shared.persist();
        Ok(Response::new(pb::SubmitJobResponse { job_id }))
    }

    async fn job_status(
        &self,
        request: Request<pb::JobStatusRequest>,
    ) -> Result<Response<pb::JobStatusResponse>, Status> {
        let id = request.into_inner().job_id;
        let job = self.shared.cluster().job(&id).map(job_info);
        let job = job.ok_or_else(|| Status::not_found(format!("no job {id}")))?;
        Ok(Response::new(pb::JobStatusResponse { job: Some(job) }))
    }

    async fn list_jobs(&self, _: Request<pb::ListJobsRequest>) -> Result<Response<pb::ListJobsResponse>, Status> {
        let jobs = self.shared.cluster().jobs().map(job_info).collect();
        Ok(Response::new(pb::ListJobsResponse { jobs }))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::CancelJobResponse>, Status> {
        let id = request.into_inner().job_id;
        if self.shared.cluster().job(&id).is_none() {
            return Err(Status::not_found(format!("no job {id}")));
        }
        let commands = self.shared.cluster().cancel(&id);
        self.apply(commands);
        Ok(Response::new(pb::CancelJobResponse {}))
    }

    async fn report_job_process(
        &self,
        request: Request<pb::ReportJobProcessRequest>,
    ) -> Result<Response<pb::ReportJobProcessResponse>, Status> {
        let report = request.into_inner();
        let (job, attempt, process, code) = (&report.job_id, report.attempt, report.process_index, report.exit_code);
        // Checked and applied under one lock: a deployment started in
        // between could otherwise take a report meant for none.
        let commands = {
            let mut cluster = self.shared.cluster();
            cluster.check_reporter(job, attempt, process, &report.worker_id).map_err(Status::permission_denied)?;
            match pb::ProcessState::try_from(report.state) {
                Ok(pb::ProcessState::Started) => {
                    cluster.process_started(job, attempt, now_ms());
                    Vec::new()
                }
                Ok(pb::ProcessState::Exited) => {
                    tracing::info!(%job, attempt, process, code, "job process exited");
                    cluster.process_exited(job, attempt, process, code, &report.message, now_ms())
                }
                Ok(pb::ProcessState::Unspecified) | Err(_) => {
                    return Err(Status::invalid_argument(format!("unknown process state {}", report.state)));
                }
            }
        };
        if report.state == pb::ProcessState::Exited as i32 {
            self.clean_up_if_finished(job);
        }
        self.apply(commands);
        Ok(Response::new(pb::ReportJobProcessResponse {}))
    }

    async fn join_job(&self, request: Request<pb::JoinJobRequest>) -> Result<Response<pb::JoinJobResponse>, Status> {
        let request = request.into_inner();
        let (job, attempt, process) = (request.job_id, request.attempt, request.process_index);
        let joined = self
            .shared
            .cluster()
            .join(&job, attempt, process, request.exchange_address)
            .map_err(Status::failed_precondition)?;
        let joined = match joined {
            Some(joined) => joined,
            None => self.wait_for_the_others(&job, attempt).await?,
        };
        tracing::info!(%job, attempt, process, "job process joined its deployment");
        let Joined { addresses, slice_process, run_id } = joined;
        Ok(Response::new(pb::JoinJobResponse { addresses, slice_process, run_id }))
    }

    async fn trigger_savepoint(
        &self,
        request: Request<pb::TriggerSavepointRequest>,
    ) -> Result<Response<pb::TriggerSavepointResponse>, Status> {
        let request = request.into_inner();
        let leader = self.running_leader(&request.job_id)?;
        // No deadline: a savepoint of large state takes as long as it takes.
        let channel = weir_proto::rpc::connect(&format!("http://{leader}")).await.map_err(|error| {
            Status::unavailable(format!("cannot reach the job's leader process at {leader}: {error}"))
        })?;
        ExchangeClient::new(channel).trigger_savepoint(request).await
    }
}

impl Service {
    /// Waits until every process of deployment `attempt` of `job` joined,
    /// while it is still the job's deployment and for [`JOIN_TIMEOUT`] at most.
    async fn wait_for_the_others(&self, job: &str, attempt: u32) -> Result<Joined, Status> {
        let deadline = Instant::now() + JOIN_TIMEOUT;
        loop {
            if Instant::now() > deadline {
                return Err(Status::deadline_exceeded(format!(
                    "the other processes of job {job} (deployment {attempt}) did not join within {JOIN_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            let cluster = self.shared.cluster();
            if cluster.job(job).is_none_or(|entry| entry.attempts != attempt || entry.is_terminal()) {
                return Err(Status::failed_precondition(format!("deployment {attempt} of job {job} was replaced")));
            }
            if let Some(joined) = cluster.joined(job, attempt) {
                return Ok(joined);
            }
        }
    }

    /// The exchange address of the leader process of `job`, which must run.
    fn running_leader(&self, job: &str) -> Result<String, Status> {
        let cluster = self.shared.cluster();
        let entry = cluster.job(job).ok_or_else(|| Status::not_found(format!("no job {job}")))?;
        if entry.state != JobStatus::Running {
            return Err(Status::failed_precondition(format!(
                "job {job} is {:?}, not running: savepoints are taken of running jobs",
                pb::JobState::from(entry.state)
            )));
        }
        cluster
            .leader_address(job)
            .ok_or_else(|| Status::unavailable("the job's processes have not joined yet; try again"))
    }
}

/// The job a submission asks for, with a fresh id; its graph must be valid.
fn submitted_job(request: pb::SubmitJobRequest) -> Result<Job, Status> {
    check_engine_flags(&request.args)?;
    let graph = request.graph.ok_or_else(|| Status::invalid_argument("a submission needs the job graph"))?;
    let domain = weir_common::JobGraph::try_from(graph.clone())
        .map_err(|error| Status::invalid_argument(format!("the job graph is invalid: {error}")))?;
    Ok(Job {
        id: new_job_id(&request.artifact_sha256),
        name: domain.name.clone(),
        graph_hash: weir_common::job_graph::fingerprint(&graph),
        slots: domain.vertices.iter().map(|vertex| vertex.parallelism as u32).max().unwrap_or(1),
        artifact: request.artifact_sha256,
        args: request.args,
        restore_from: Some(request.from_savepoint).filter(|path| !path.is_empty()),
        submitted_at_ms: now_ms(),
        ..Job::default()
    })
}

/// The flags the coordinator sets for every job process; the engine takes the
/// last of a repeated flag, so a user's copy would win and point a job's
/// recovery at checkpoints other than those it writes (issue: a restarted
/// job replayed its whole input next to committed output).
const COORDINATOR_FLAGS: [&str; 2] = ["--checkpoint-dir", "--from-checkpoint"];

/// Refuses job arguments that set a flag the coordinator owns (engine flags
/// end at a `--`; what follows is the job's own).
fn check_engine_flags(args: &[String]) -> Result<(), Status> {
    let engine = args.iter().take_while(|arg| *arg != "--");
    let owned = engine.map(|arg| arg.split('=').next().unwrap_or(arg)).find(|flag| COORDINATOR_FLAGS.contains(flag));
    match owned {
        Some(flag) => Err(Status::invalid_argument(format!(
            "the job's arguments set {flag}, which the cluster sets itself: it keeps each job's checkpoints \
             and restores from them on failover; drop the flag (start from a savepoint with \
             `weir submit --from-savepoint PATH`)"
        ))),
        None => Ok(()),
    }
}

/// A job id (`job-` and 16 hex digits) from the artifact, the clock and a
/// counter: unique per submission.
fn new_job_id(artifact: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seed = format!("{artifact}:{}:{}", now_ms(), COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let digest = Sha256::digest(seed.as_bytes());
    format!("job-{:016x}", u64::from_be_bytes(digest[..8].try_into().unwrap_or_default()))
}

/// The job as the API reports it.
fn job_info(job: &Job) -> pb::JobInfo {
    pb::JobInfo {
        job_id: job.id.clone(),
        name: job.name.clone(),
        state: pb::JobState::from(job.state) as i32,
        message: job.message.clone(),
        worker_id: job.workers.join(","),
        slots: job.slots,
        attempts: job.attempts,
        submitted_at_ms: job.submitted_at_ms,
        running_since_ms: job.running_since_ms,
    }
}
