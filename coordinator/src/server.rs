//! The coordinator process: the gRPC `Coordinator` service, the artifact
//! store, the durable job table, and the loop that detects silent workers
//! and deploys waiting jobs.
//!
//! Data directory layout: `artifacts/<sha256>` (job binaries, content
//! addressed), `jobs.json` (the job table, rewritten atomically on every
//! change), `checkpoints/<job-id>/` (handed to each job process as its
//! checkpoint directory, so a redeployed job resumes from its latest
//! completed checkpoint).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio_stream::Stream;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};
use weir_proto::v1 as pb;
use weir_proto::v1::coordinator_server::{Coordinator, CoordinatorServer};
use weir_proto::v1::worker_client::WorkerClient;

use crate::cluster::{Cluster, Command, Job};

/// How the coordinator runs.
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    /// Where the gRPC service listens (port 0: any free port).
    pub bind: SocketAddr,
    /// Where artifacts, the job table and checkpoints live.
    pub data_dir: PathBuf,
    /// How often workers are asked to heartbeat.
    pub heartbeat_interval: Duration,
    /// A worker silent this long is lost.
    pub heartbeat_timeout: Duration,
}

impl CoordinatorConfig {
    /// Defaults that notice a silent worker within 3 seconds.
    pub fn new(bind: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            bind,
            data_dir,
            heartbeat_interval: Duration::from_millis(500),
            heartbeat_timeout: Duration::from_secs(3),
        }
    }
}

/// Why the coordinator could not start.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// The data directory is unusable.
    #[error("data directory '{path}': {source}")]
    DataDir {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The job table does not parse.
    #[error("job table '{path}' is corrupt: {message}; move it away to start with no jobs")]
    JobTable {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The address cannot be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The gRPC server stopped with an error.
    #[error("the coordinator's server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

struct Shared {
    cluster: Mutex<Cluster>,
    config: CoordinatorConfig,
}

impl Shared {
    fn cluster(&self) -> std::sync::MutexGuard<'_, Cluster> {
        self.cluster.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn artifact_path(&self, sha256: &str) -> PathBuf {
        self.config.data_dir.join("artifacts").join(sha256)
    }

    fn checkpoint_dir(&self, job: &str) -> PathBuf {
        self.config.data_dir.join("checkpoints").join(job)
    }

    /// Rewrites the job table atomically; a failure is logged (the cluster
    /// goes on, but would forget jobs on a restart).
    fn persist(&self) {
        let jobs: Vec<Job> = self.cluster().jobs().cloned().collect();
        let path = self.config.data_dir.join("jobs.json");
        let temporary = self.config.data_dir.join("jobs.json.tmp");
        let written = serde_json::to_vec_pretty(&jobs)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&temporary, bytes))
            .and_then(|()| std::fs::rename(&temporary, &path));
        if let Err(error) = written {
            tracing::error!(path = %path.display(), %error, "cannot save the job table");
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// The newest completed checkpoint (`chk-<n>` holding `_metadata`) below `dir`.
pub fn latest_checkpoint(dir: &Path) -> Option<PathBuf> {
    let mut newest: Option<(u64, PathBuf)> = None;
    for run in std::fs::read_dir(dir).ok()?.flatten() {
        for checkpoint in std::fs::read_dir(run.path()).into_iter().flatten().flatten() {
            let name = checkpoint.file_name().to_string_lossy().into_owned();
            let Some(number) = name.strip_prefix("chk-").and_then(|n| n.parse::<u64>().ok()) else { continue };
            if checkpoint.path().join("_metadata").exists() && newest.as_ref().is_none_or(|(best, _)| number > *best) {
                newest = Some((number, checkpoint.path()));
            }
        }
    }
    newest.map(|(_, path)| path)
}

/// Runs the coordinator until the process ends; `ready` receives the bound address.
pub async fn serve(
    config: CoordinatorConfig,
    ready: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<(), CoordinatorError> {
    let data_dir = config.data_dir.clone();
    let data_error = |source| CoordinatorError::DataDir { path: data_dir.clone(), source };
    std::fs::create_dir_all(data_dir.join("artifacts")).map_err(data_error)?;
    std::fs::create_dir_all(data_dir.join("checkpoints")).map_err(data_error)?;
    let table = data_dir.join("jobs.json");
    let jobs: Vec<Job> = match std::fs::read(&table) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|error| CoordinatorError::JobTable { path: table.clone(), message: error.to_string() })?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(data_error(error)),
    };
    if !jobs.is_empty() {
        tracing::info!(jobs = jobs.len(), "recovered the job table");
    }
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|source| CoordinatorError::Bind { address: config.bind, source })?;
    let address = listener.local_addr().map_err(|source| CoordinatorError::Bind { address: config.bind, source })?;
    let shared = Arc::new(Shared { cluster: Mutex::new(Cluster::recovered(jobs)), config });
    tokio::spawn(control_loop(shared.clone()));
    tracing::info!(%address, data_dir = %shared.config.data_dir.display(), "coordinator listening");
    if let Some(ready) = ready {
        let _ = ready.send(address);
    }
    tonic::transport::Server::builder()
        .add_service(CoordinatorServer::new(Service { shared }))
        .serve_with_incoming(TcpListenerStream::new(listener))
        .await?;
    Ok(())
}

/// Detects silent workers and deploys waiting jobs, a few times a second.
async fn control_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let commands = {
            let mut cluster = shared.cluster();
            let (lost, mut commands) = cluster.expire_workers(Instant::now(), shared.config.heartbeat_timeout);
            for worker in lost {
                tracing::warn!(%worker, "worker lost: no heartbeat within the timeout");
            }
            cluster.requeue_restarting();
            commands.extend(cluster.schedule());
            commands
        };
        if commands.is_empty() {
            continue;
        }
        shared.persist();
        for command in commands {
            tokio::spawn(carry_out(shared.clone(), command));
        }
    }
}

/// Deploys a job onto a worker, or stops it there.
async fn carry_out(shared: Arc<Shared>, command: Command) {
    match command {
        Command::Deploy { job, process, worker, attempt } => {
            let (address, request) = {
                let cluster = shared.cluster();
                let (Some(address), Some(entry)) = (cluster.worker_address(&worker), cluster.job(&job)) else { return };
                let mut args =
                    vec!["--checkpoint-dir".to_owned(), shared.checkpoint_dir(&job).to_string_lossy().into_owned()];
                // Looked up now, not when the job was requeued: a process the
                // coordinator lost track of may have checkpointed meanwhile.
                let latest =
                    latest_checkpoint(&shared.checkpoint_dir(&job)).map(|path| path.to_string_lossy().into_owned());
                if let Some(restore) = latest.or_else(|| entry.restore_from.clone()) {
                    args.extend(["--from-checkpoint".to_owned(), restore]);
                }
                args.extend(entry.args.iter().cloned());
                let request = pb::DeployJobRequest {
                    job_id: job.clone(),
                    attempt,
                    artifact_sha256: entry.artifact.clone(),
                    args,
                    graph_hash: entry.graph_hash.clone(),
                    process_index: process,
                };
                (address.to_owned(), request)
            };
            let deployed = async {
                let mut client =
                    WorkerClient::connect(address.clone()).await.map_err(|error| (true, error.to_string()))?;
                client.deploy_job(request).await.map_err(|status| (false, status.message().to_owned()))
            };
            if let Err((unreachable, message)) = deployed.await {
                tracing::warn!(%job, %worker, %message, "deployment failed");
                let message = format!("deployment on {worker} failed: {message}");
                let cancels = shared.cluster().deploy_failed(&job, attempt, &worker, unreachable, message);
                shared.persist();
                for cancel in cancels {
                    Box::pin(carry_out(shared.clone(), cancel)).await;
                }
            } else {
                tracing::info!(%job, %worker, attempt, process, "job process deployed");
            }
        }
        Command::Cancel { job, worker, attempt } => {
            let address = shared.cluster().worker_address(&worker).map(str::to_owned);
            if let Some(address) = address
                && let Ok(mut client) = WorkerClient::connect(address).await
            {
                let _ = client.cancel_job_process(pb::CancelJobProcessRequest { job_id: job, attempt }).await;
            }
        }
    }
}

struct Service {
    shared: Arc<Shared>,
}

type FetchStream = Pin<Box<dyn Stream<Item = Result<pb::FetchArtifactResponse, Status>> + Send>>;

/// Artifacts are stored and fetched in chunks of this size.
const CHUNK: usize = 256 * 1024;

fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|byte| byte.is_ascii_hexdigit() && !byte.is_ascii_uppercase())
}

#[tonic::async_trait]
impl Coordinator for Service {
    async fn register_worker(
        &self,
        request: Request<pb::RegisterWorkerRequest>,
    ) -> Result<Response<pb::RegisterWorkerResponse>, Status> {
        let request = request.into_inner();
        if request.slots == 0 {
            return Err(Status::invalid_argument("a worker needs at least one slot"));
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
        let mut parts = request.into_inner();
        let header = match parts.message().await? {
            Some(pb::UploadArtifactRequest { part: Some(pb::upload_artifact_request::Part::Header(header)) }) => header,
            _ => return Err(Status::invalid_argument("an upload starts with a header (SHA-256 and size)")),
        };
        if !is_sha256(&header.sha256) {
            return Err(Status::invalid_argument(format!("'{}' is not a lowercase hex SHA-256", header.sha256)));
        }
        let target = self.shared.artifact_path(&header.sha256);
        if target.exists() {
            return Ok(Response::new(pb::UploadArtifactResponse { sha256: header.sha256 }));
        }
        let temporary = target.with_extension(format!("upload-{}", now_ms()));
        let io = |error: std::io::Error| Status::internal(format!("cannot store the artifact: {error}"));
        let mut file = tokio::fs::File::create(&temporary).await.map_err(io)?;
        let (mut hasher, mut received) = (Sha256::new(), 0u64);
        let outcome = async {
            while let Some(part) = parts.message().await? {
                let Some(pb::upload_artifact_request::Part::Chunk(chunk)) = part.part else {
                    return Err(Status::invalid_argument("a second header in one upload"));
                };
                hasher.update(&chunk);
                received += chunk.len() as u64;
                file.write_all(&chunk).await.map_err(io)?;
            }
            file.flush().await.map_err(io)?;
            let digest: String = hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect();
            if received != header.size || digest != header.sha256 {
                return Err(Status::data_loss(format!(
                    "the uploaded artifact does not match its header: {received} of {} bytes, SHA-256 {digest} \
                     instead of {}; upload it again",
                    header.size, header.sha256
                )));
            }
            std::fs::rename(&temporary, &target).map_err(io)
        }
        .await;
        if let Err(status) = outcome {
            let _ = std::fs::remove_file(&temporary);
            return Err(status);
        }
        tracing::info!(sha256 = %header.sha256, bytes = received, "artifact stored");
        Ok(Response::new(pb::UploadArtifactResponse { sha256: header.sha256 }))
    }

    type FetchArtifactStream = FetchStream;

    async fn fetch_artifact(
        &self,
        request: Request<pb::FetchArtifactRequest>,
    ) -> Result<Response<Self::FetchArtifactStream>, Status> {
        let sha256 = request.into_inner().sha256;
        if !is_sha256(&sha256) {
            return Err(Status::invalid_argument(format!("'{sha256}' is not a lowercase hex SHA-256")));
        }
        let path = self.shared.artifact_path(&sha256);
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|_| Status::not_found(format!("no artifact {sha256} on the coordinator")))?;
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buffer = vec![0u8; CHUNK];
            loop {
                match file.read(&mut buffer).await {
                    Ok(0) => break,
                    Ok(read) => {
                        let chunk = pb::FetchArtifactResponse { chunk: buffer[..read].to_vec() };
                        if sender.send(Ok(chunk)).await.is_err() {
                            break;
                        }
                    }
                    Err(error) => {
                        let _ = sender.send(Err(Status::internal(format!("cannot read the artifact: {error}")))).await;
                        break;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn submit_job(
        &self,
        request: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        let request = request.into_inner();
        if !is_sha256(&request.artifact_sha256) || !self.shared.artifact_path(&request.artifact_sha256).exists() {
            return Err(Status::failed_precondition(format!(
                "artifact '{}' was not uploaded to this coordinator",
                request.artifact_sha256
            )));
        }
        let graph = request.graph.ok_or_else(|| Status::invalid_argument("a submission needs the job graph"))?;
        let domain = weir_common::JobGraph::try_from(graph.clone())
            .map_err(|error| Status::invalid_argument(format!("the job graph is invalid: {error}")))?;
        let slots = domain.vertices.iter().map(|vertex| vertex.parallelism as u32).max().unwrap_or(1);
        let id = format!("job-{:016x}", xxhash_id(&request.artifact_sha256));
        let job = Job {
            id: id.clone(),
            name: domain.name.clone(),
            artifact: request.artifact_sha256,
            args: request.args,
            graph_hash: weir_common::job_graph::fingerprint(&graph),
            slots,
            restore_from: Some(request.from_savepoint).filter(|path| !path.is_empty()),
            state: 0,
            message: String::new(),
            workers: Vec::new(),
            slice_process: Vec::new(),
            joined: Vec::new(),
            started: 0,
            attempts: 0,
            losses: 0,
            submitted_at_ms: now_ms(),
            running_since_ms: 0,
        };
        tracing::info!(job = %id, name = %job.name, slots, "job submitted");
        self.shared.cluster().submit(job);
        self.shared.persist();
        Ok(Response::new(pb::SubmitJobResponse { job_id: id }))
    }

    async fn job_status(
        &self,
        request: Request<pb::JobStatusRequest>,
    ) -> Result<Response<pb::JobStatusResponse>, Status> {
        let id = request.into_inner().job_id;
        let job = self.shared.cluster().job(&id).map(Job::info);
        let job = job.ok_or_else(|| Status::not_found(format!("no job {id}")))?;
        Ok(Response::new(pb::JobStatusResponse { job: Some(job) }))
    }

    async fn list_jobs(&self, _: Request<pb::ListJobsRequest>) -> Result<Response<pb::ListJobsResponse>, Status> {
        let jobs = self.shared.cluster().jobs().map(Job::info).collect();
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
        self.shared.persist();
        for command in commands {
            tokio::spawn(carry_out(self.shared.clone(), command));
        }
        Ok(Response::new(pb::CancelJobResponse {}))
    }

    async fn report_job_process(
        &self,
        request: Request<pb::ReportJobProcessRequest>,
    ) -> Result<Response<pb::ReportJobProcessResponse>, Status> {
        let report = request.into_inner();
        let commands = {
            let mut cluster = self.shared.cluster();
            match pb::ProcessState::try_from(report.state) {
                Ok(pb::ProcessState::Started) => {
                    cluster.process_started(&report.job_id, report.attempt, now_ms());
                    Vec::new()
                }
                Ok(pb::ProcessState::Exited) => {
                    tracing::info!(job = %report.job_id, attempt = report.attempt, process = report.process_index, code = report.exit_code, "job process exited");
                    cluster.process_exited(
                        &report.job_id,
                        report.attempt,
                        report.process_index,
                        report.exit_code,
                        &report.message,
                    )
                }
                _ => return Err(Status::invalid_argument("unknown process state")),
            }
        };
        self.shared.persist();
        for command in commands {
            tokio::spawn(carry_out(self.shared.clone(), command));
        }
        Ok(Response::new(pb::ReportJobProcessResponse {}))
    }

    async fn join_job(&self, request: Request<pb::JoinJobRequest>) -> Result<Response<pb::JoinJobResponse>, Status> {
        let request = request.into_inner();
        let (job, attempt) = (request.job_id, request.attempt);
        let mut joined = self
            .shared
            .cluster()
            .join(&job, attempt, request.process_index, request.exchange_address)
            .map_err(Status::failed_precondition)?;
        let deadline = Instant::now() + JOIN_TIMEOUT;
        while joined.is_none() {
            if Instant::now() > deadline {
                return Err(Status::deadline_exceeded(format!(
                    "the other processes of job {job} (deployment {attempt}) did not join within {JOIN_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            let cluster = self.shared.cluster();
            if cluster.job(&job).is_none_or(|entry| entry.attempts != attempt || entry.is_terminal()) {
                return Err(Status::failed_precondition(format!("deployment {attempt} of job {job} was replaced")));
            }
            joined = cluster.joined(&job, attempt);
        }
        let joined = joined.expect("loop ends when joined");
        tracing::info!(%job, attempt, process = request.process_index, "job process joined its deployment");
        Ok(Response::new(pb::JoinJobResponse {
            addresses: joined.addresses,
            slice_process: joined.slice_process,
            run_id: joined.run_id,
        }))
    }

    async fn trigger_savepoint(
        &self,
        request: Request<pb::TriggerSavepointRequest>,
    ) -> Result<Response<pb::TriggerSavepointResponse>, Status> {
        let request = request.into_inner();
        let leader = {
            let cluster = self.shared.cluster();
            let job =
                cluster.job(&request.job_id).ok_or_else(|| Status::not_found(format!("no job {}", request.job_id)))?;
            if job.state() != pb::JobState::Running {
                return Err(Status::failed_precondition(format!(
                    "job {} is {:?}, not running: savepoints are taken of running jobs",
                    request.job_id,
                    job.state()
                )));
            }
            cluster.leader_address(&request.job_id)
        };
        let leader = leader.ok_or_else(|| Status::unavailable("the job's processes have not joined yet; try again"))?;
        let mut client =
            weir_proto::v1::exchange_client::ExchangeClient::connect(format!("http://{leader}")).await.map_err(
                |error| Status::unavailable(format!("cannot reach the job's leader process at {leader}: {error}")),
            )?;
        let response = client.trigger_savepoint(request).await?;
        Ok(response)
    }
}

/// How long the processes of a deployment wait for each other to join.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// A job id from the artifact and the clock: unique per submission.
fn xxhash_id(artifact: &str) -> u64 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seed = format!("{artifact}:{}:{}", now_ms(), COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let digest = Sha256::digest(seed.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::latest_checkpoint;

    #[test]
    fn the_latest_checkpoint_is_the_highest_completed_one_of_any_run() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (run, checkpoint, complete) in [("run-a", 3, true), ("run-b", 7, true), ("run-b", 9, false)] {
            let path = dir.path().join(run).join(format!("chk-{checkpoint}"));
            std::fs::create_dir_all(&path).expect("dir");
            if complete {
                std::fs::write(path.join("_metadata"), b"metadata").expect("file");
            }
        }
        assert_eq!(latest_checkpoint(dir.path()), Some(dir.path().join("run-b").join("chk-7")));
        assert_eq!(latest_checkpoint(&dir.path().join("missing")), None);
    }
}
