//! The coordinator process: the gRPC `Coordinator` service (`service`), the
//! artifact store (`artifacts`), the durable job table (`job_table`), and
//! the loop that detects silent workers, deploys waiting jobs and carries
//! out what the cluster decides (`deployer`).
//!
//! Data directory layout: `artifacts/<sha256>` (job binaries, content
//! addressed), `jobs.json` (the job table, rewritten atomically and durably
//! on every change), `coordinator.lock` (held by the one coordinator that
//! owns the directory), `checkpoints/<job-id>/` (handed to each job process as its
//! checkpoint directory, so a redeployed job resumes from its latest
//! completed checkpoint).

mod artifacts;
mod deployer;
mod job_table;
mod service;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio_stream::wrappers::TcpListenerStream;
use weir_proto::v1::coordinator_server::CoordinatorServer;

pub use deployer::latest_checkpoint;

use crate::cluster::Cluster;
use artifacts::ArtifactStore;

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
        /// The data directory.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The job table does not parse.
    #[error("job table '{path}' is corrupt: {message}; move it away to start with no jobs")]
    JobTable {
        /// The job table's file.
        path: PathBuf,
        /// What is wrong, and where in the file.
        message: String,
    },
    /// The address cannot be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// Another coordinator holds the data directory's lock.
    #[error(
        "another coordinator uses this data directory (it holds the lock on '{path}'); \
         stop it, or give this coordinator its own --data-dir"
    )]
    DataDirInUse {
        /// The lock file.
        path: PathBuf,
    },
    /// The gRPC server stopped with an error.
    #[error("the coordinator's server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// What the service handlers and the control loop share.
struct Shared {
    cluster: Mutex<Cluster>,
    jobs: job_table::JobTable,
    artifacts: ArtifactStore,
    config: CoordinatorConfig,
}

impl Shared {
    fn cluster(&self) -> MutexGuard<'_, Cluster> {
        self.cluster.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn checkpoint_dir(&self, job: &str) -> PathBuf {
        self.config.data_dir.join("checkpoints").join(job)
    }

    /// Rewrites the job table; a failure is logged (the cluster goes on, but
    /// would forget jobs on a restart).
    fn persist(&self) {
        self.jobs.save(|| self.cluster().jobs().cloned().collect());
    }
}

fn now_ms() -> u64 {
    weir_common::launch::epoch_ms()
}

/// Runs the coordinator until the process ends; `ready` receives the bound address.
pub async fn serve(
    config: CoordinatorConfig,
    ready: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<(), CoordinatorError> {
    let artifacts = prepare_data_dir(&config.data_dir)?;
    let table = job_table::JobTable::open(&config.data_dir)?;
    let jobs = table.load()?;
    if !jobs.is_empty() {
        tracing::info!(jobs = jobs.len(), "recovered the job table");
    }
    let (listener, address) = listen(config.bind).await?;
    // Workers notice a restarted coordinator within a heartbeat and report
    // what ended meanwhile; twice the heartbeat timeout leaves them room.
    let hold_until = std::time::Instant::now() + 2 * config.heartbeat_timeout;
    let cluster = Mutex::new(Cluster::recovered(jobs, hold_until));
    let shared = Arc::new(Shared { cluster, jobs: table, artifacts, config });
    tokio::spawn(deployer::control_loop(shared.clone()));
    tracing::info!(%address, data_dir = %shared.config.data_dir.display(), "coordinator listening");
    if let Some(ready) = ready {
        let _ = ready.send(address);
    }
    tonic::transport::Server::builder()
        .add_service(CoordinatorServer::new(service::Service::new(shared)))
        .serve_with_incoming(TcpListenerStream::new(listener))
        .await?;
    Ok(())
}

/// Creates the directories of the artifacts and the checkpoints.
fn prepare_data_dir(data_dir: &Path) -> Result<ArtifactStore, CoordinatorError> {
    let data_error = |source| CoordinatorError::DataDir { path: data_dir.to_path_buf(), source };
    let artifacts = ArtifactStore::new(data_dir);
    std::fs::create_dir_all(artifacts.dir()).map_err(data_error)?;
    std::fs::create_dir_all(data_dir.join("checkpoints")).map_err(data_error)?;
    Ok(artifacts)
}

/// Binds the service's address; returns the listener and the bound address
/// (the port chosen when `bind` asked for port 0).
async fn listen(bind: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), CoordinatorError> {
    let bind_error = |source| CoordinatorError::Bind { address: bind, source };
    let listener = tokio::net::TcpListener::bind(bind).await.map_err(bind_error)?;
    let address = listener.local_addr().map_err(bind_error)?;
    Ok((listener, address))
}
