//! The worker daemon: registers with the coordinator, heartbeats, and runs
//! the job processes the coordinator deploys onto it.
//!
//! A deployment names a job binary by SHA-256: the worker downloads it from
//! the coordinator once (verifying the hash) into `<data-dir>/artifacts/`,
//! then starts it with the job's arguments in task mode (the environment of
//! `weir_common::launch::JobProcessEnv`: the binary refuses to run a graph
//! other than the submitted one) and reports when it started and how it
//! ended. A job process watches its worker and ends when the worker dies, so
//! a lost worker leaves no job running behind the coordinator's back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Request, Response, Status};
use weir_common::ids::{is_sha256_hex, is_valid_job_id};
use weir_common::launch::JobProcessEnv;
use weir_proto::rpc::{self, CONTROL_CALL_DEADLINE};
use weir_proto::v1 as pb;
use weir_proto::v1::coordinator_client::CoordinatorClient;
use weir_proto::v1::worker_server::{Worker, WorkerServer};

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The coordinator's URL, e.g. `http://127.0.0.1:6123`.
    pub coordinator: String,
    /// Slots offered.
    pub slots: u32,
    /// Where artifacts and job logs go.
    pub data_dir: PathBuf,
    /// Where the Worker service listens (port 0: any free port).
    pub bind: SocketAddr,
}

/// Why the worker could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The coordinator does not answer.
    #[error("cannot reach the coordinator at {url}: {message}; is it running, and is the URL right?")]
    Unreachable {
        /// The coordinator URL the worker was given.
        url: String,
        /// The cause.
        message: String,
    },
    /// The coordinator refused the registration.
    #[error("the coordinator refused to register this worker: {0}")]
    Refused(String),
    /// Local I/O failed.
    #[error("{what} '{path}': {source}")]
    Io {
        /// What was attempted.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("the worker's server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

struct Running {
    attempt: u32,
    child: tokio::process::Child,
}

struct Shared {
    config: WorkerConfig,
    /// Where this worker serves; job processes renew their leases there.
    url: String,
    worker_id: Mutex<String>,
    processes: Mutex<HashMap<String, Running>>,
    /// One download at a time per artifact.
    downloads: tokio::sync::Mutex<()>,
}

impl Shared {
    fn worker_id(&self) -> String {
        self.worker_id.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn processes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.processes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn coordinator(&self) -> Result<CoordinatorClient<tonic::transport::Channel>, Status> {
        let channel = rpc::connect(&self.config.coordinator).await.map_err(|error| {
            Status::unavailable(format!("cannot reach the coordinator at {}: {error}", self.config.coordinator))
        })?;
        Ok(CoordinatorClient::new(channel))
    }

    /// The local path of an artifact, downloaded and verified if needed.
    async fn artifact(&self, sha256: &str) -> Result<PathBuf, Status> {
        let path = self.config.data_dir.join("artifacts").join(sha256);
        let _one_at_a_time = self.downloads.lock().await;
        if path.exists() {
            return Ok(path);
        }
        let io = |error: std::io::Error| Status::internal(format!("cannot store artifact {sha256}: {error}"));
        let mut stream = self
            .coordinator()
            .await?
            .fetch_artifact(pb::FetchArtifactRequest { sha256: sha256.to_owned() })
            .await?
            .into_inner();
        let temporary = path.with_extension("download");
        let mut file = tokio::fs::File::create(&temporary).await.map_err(io)?;
        let mut hasher = Sha256::new();
        while let Some(part) = stream.message().await? {
            hasher.update(&part.chunk);
            file.write_all(&part.chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        drop(file);
        let digest: String = hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect();
        if digest != sha256 {
            let _ = std::fs::remove_file(&temporary);
            return Err(Status::data_loss(format!("artifact {sha256} arrived with SHA-256 {digest}")));
        }
        make_executable(&temporary).map_err(io)?;
        std::fs::rename(&temporary, &path).map_err(io)?;
        tracing::info!(%sha256, "artifact downloaded");
        Ok(path)
    }

    async fn report(
        &self,
        (job, attempt, process_index): (&str, u32, u32),
        state: pb::ProcessState,
        exit_code: i32,
        message: String,
    ) {
        let request = pb::ReportJobProcessRequest {
            worker_id: self.worker_id(),
            job_id: job.to_owned(),
            attempt,
            process_index,
            state: state as i32,
            exit_code,
            message,
        };
        // Until the coordinator acknowledges: one that was away when the job
        // ended must still learn it ended, or it would run the job again.
        let mut wait = Duration::from_millis(100);
        let mut tries = 0u32;
        loop {
            let sent = match self.coordinator().await {
                Ok(mut client) => {
                    client.report_job_process(rpc::with_deadline(request.clone(), CONTROL_CALL_DEADLINE)).await
                }
                Err(status) => Err(status),
            };
            match sent {
                Ok(_) => return,
                // Refused, not lost: a report on a deployment this worker no
                // longer holds for the coordinator (it restarted meanwhile).
                Err(status) if !matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded | Code::Unknown) => {
                    tracing::warn!(%job, attempt, reason = %status.message(), "the coordinator refused the job process's report");
                    return;
                }
                Err(_) => {}
            }
            tries += 1;
            if tries == 10 {
                tracing::warn!(%job, attempt, "the coordinator does not take the job process's report; still trying");
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(REPORT_RETRY_MAX);
        }
    }

    /// Ends every job process this worker runs (when the coordinator forgot
    /// them: it redeploys the jobs from their checkpoints).
    fn kill_all(&self) {
        for (job, running) in self.processes().iter_mut() {
            tracing::warn!(%job, "stopping a job process the coordinator no longer knows");
            let _ = running.child.start_kill();
        }
    }
}

#[cfg(unix)]
fn make_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Runs the worker until the process ends; `ready` receives the bound address
/// once registered.
pub async fn run(
    config: WorkerConfig,
    ready: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<(), DaemonError> {
    for dir in ["artifacts", "logs"] {
        let path = config.data_dir.join(dir);
        std::fs::create_dir_all(&path).map_err(|source| DaemonError::Io { what: "cannot create", path, source })?;
    }
    let listener = tokio::net::TcpListener::bind(config.bind).await.map_err(|source| DaemonError::Io {
        what: "cannot listen on",
        path: config.bind.to_string().into(),
        source,
    })?;
    let address = listener.local_addr().map_err(|source| DaemonError::Io {
        what: "cannot listen on",
        path: config.bind.to_string().into(),
        source,
    })?;
    let url = format!("http://{address}");
    let shared = Arc::new(Shared {
        config: config.clone(),
        url: url.clone(),
        worker_id: Mutex::new(String::new()),
        processes: Mutex::new(HashMap::new()),
        downloads: tokio::sync::Mutex::new(()),
    });
    let server = tonic::transport::Server::builder()
        .add_service(WorkerServer::new(Service { shared: shared.clone() }))
        .serve_with_incoming(TcpListenerStream::new(listener));
    let server = tokio::spawn(server);
    let interval = register(&shared, &url).await?;
    tracing::info!(worker = %shared.worker_id(), %address, slots = config.slots, "worker registered");
    if let Some(ready) = ready {
        let _ = ready.send(address);
    }
    tokio::spawn(heartbeats(shared.clone(), url, interval));
    server.await.map_err(|error| DaemonError::Refused(error.to_string()))??;
    Ok(())
}

/// Registers with the coordinator (retrying for a few seconds); returns the heartbeat interval.
async fn register(shared: &Shared, url: &str) -> Result<Duration, DaemonError> {
    let mut last_error = String::new();
    for _ in 0..40 {
        match shared.coordinator().await {
            Ok(mut client) => {
                let request = pb::RegisterWorkerRequest { address: url.to_owned(), slots: shared.config.slots };
                let response = client
                    .register_worker(rpc::with_deadline(request, CONTROL_CALL_DEADLINE))
                    .await
                    .map_err(|status| DaemonError::Refused(status.message().to_owned()))?;
                let response = response.into_inner();
                *shared.worker_id.lock().unwrap_or_else(PoisonError::into_inner) = response.worker_id;
                return Ok(Duration::from_millis(response.heartbeat_interval_ms.max(50)));
            }
            Err(status) => last_error = status.message().to_owned(),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(DaemonError::Unreachable { url: shared.config.coordinator.clone(), message: last_error })
}

async fn heartbeats(shared: Arc<Shared>, url: String, mut interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let known = match shared.coordinator().await {
            Ok(mut client) => {
                let request = pb::HeartbeatRequest { worker_id: shared.worker_id() };
                let request = rpc::with_deadline(request, CONTROL_CALL_DEADLINE);
                client.heartbeat(request).await.map(|response| response.into_inner().known)
            }
            Err(status) => Err(status),
        };
        match known {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!("the coordinator does not know this worker; registering again");
                shared.kill_all();
                match register(&shared, &url).await {
                    Ok(new_interval) => interval = new_interval,
                    Err(error) => tracing::error!(%error, "registering again failed"),
                }
            }
            Err(status) => tracing::warn!(message = %status.message(), "heartbeat failed"),
        }
    }
}

struct Service {
    shared: Arc<Shared>,
}

/// The longest wait between two tries of a report the coordinator did not
/// take: well under the coordinator's recovery hold (twice the heartbeat
/// timeout), so a report is in before a restarted coordinator redeploys.
const REPORT_RETRY_MAX: Duration = Duration::from_secs(1);

/// How much of a failed job process's stderr goes into its report.
const STDERR_TAIL: usize = 2000;

#[tonic::async_trait]
impl Worker for Service {
    async fn deploy_job(
        &self,
        request: Request<pb::DeployJobRequest>,
    ) -> Result<Response<pb::DeployJobResponse>, Status> {
        let request = request.into_inner();
        check_deployment(&request)?;
        let binary = self.shared.artifact(&request.artifact_sha256).await?;
        let logs = self.shared.config.data_dir.join("logs");
        let stem = format!("{}-{}-{}", request.job_id, request.attempt, request.process_index);
        let io = |error: std::io::Error| Status::internal(format!("cannot start the job process: {error}"));
        let stdout = std::fs::File::create(logs.join(format!("{stem}.out"))).map_err(io)?;
        let stderr_path = logs.join(format!("{stem}.err"));
        let stderr = std::fs::File::create(&stderr_path).map_err(io)?;
        let launch = JobProcessEnv {
            graph_hash: request.graph_hash.clone(),
            worker_pid: std::process::id(),
            coordinator: self.shared.config.coordinator.clone(),
            job_id: request.job_id.clone(),
            attempt: request.attempt,
            process_index: request.process_index,
            exchange_host: self.shared.config.bind.ip().to_string(),
            failure_times_ms: request.failure_times_ms.clone(),
            worker_url: self.shared.url.clone(),
        };
        let child = tokio::process::Command::new(&binary)
            .args(&request.args)
            .envs(launch.to_vars())
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .spawn()
            .map_err(io)?;
        tracing::info!(job = %request.job_id, attempt = request.attempt, pid = ?child.id(), "job process started");
        let running = Running { attempt: request.attempt, child };
        self.shared.processes().insert(request.job_id.clone(), running);
        let shared = self.shared.clone();
        let (job, attempt, process) = (request.job_id, request.attempt, request.process_index);
        tokio::spawn(async move {
            shared.report((&job, attempt, process), pb::ProcessState::Started, 0, String::new()).await;
            let exit = watch(&shared, &job, attempt).await;
            let message = match exit {
                0 => String::new(),
                _ => {
                    let text = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                    let tail: String =
                        text.chars().rev().take(STDERR_TAIL).collect::<Vec<_>>().into_iter().rev().collect();
                    if tail.trim().is_empty() { format!("the job process ended with code {exit}") } else { tail }
                }
            };
            shared.report((&job, attempt, process), pb::ProcessState::Exited, exit, message).await;
        });
        Ok(Response::new(pb::DeployJobResponse {}))
    }

    async fn renew_lease(
        &self,
        request: Request<pb::RenewLeaseRequest>,
    ) -> Result<Response<pb::RenewLeaseResponse>, Status> {
        let request = request.into_inner();
        let processes = self.shared.processes();
        let current = processes.get(&request.job_id).is_some_and(|running| running.attempt == request.attempt);
        Ok(Response::new(pb::RenewLeaseResponse { current }))
    }

    async fn cancel_job_process(
        &self,
        request: Request<pb::CancelJobProcessRequest>,
    ) -> Result<Response<pb::CancelJobProcessResponse>, Status> {
        let request = request.into_inner();
        let job = request.job_id;
        if let Some(running) =
            self.shared.processes().get_mut(&job).filter(|running| running.attempt == request.attempt)
        {
            let _ = running.child.start_kill();
        }
        Ok(Response::new(pb::CancelJobProcessResponse {}))
    }
}

/// A deployment names a file (the artifact) and log files (the job id):
/// both must be plain names before they come near a path.
fn check_deployment(request: &pb::DeployJobRequest) -> Result<(), Status> {
    if !is_sha256_hex(&request.artifact_sha256) {
        return Err(Status::invalid_argument(format!(
            "refused a deployment: artifact {:?} is not a lowercase hex SHA-256",
            request.artifact_sha256
        )));
    }
    if !is_valid_job_id(&request.job_id) {
        return Err(Status::invalid_argument(format!(
            "refused a deployment: job id {:?} is not 1-64 letters, digits, '-' or '_'",
            request.job_id
        )));
    }
    Ok(())
}

/// Waits for a job process to end; its exit code, or -1 when a signal ended it.
async fn watch(shared: &Shared, job: &str, attempt: u32) -> i32 {
    loop {
        let status = {
            let mut processes = shared.processes();
            match processes.get_mut(job) {
                Some(running) if running.attempt == attempt => running.child.try_wait(),
                _ => return -1,
            }
        };
        match status {
            Ok(Some(status)) => {
                shared.processes().remove(job);
                return status.code().unwrap_or(-1);
            }
            Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(_) => return -1,
        }
    }
}
