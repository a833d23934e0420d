//! The exchange between the processes of one job, over gRPC
//! (`proto/exchange.proto`).
//!
//! A job in the cluster runs as one process per worker that hosts some of its
//! slices (slice `i` is subtask `i` of every vertex). Every process serves
//! the `Exchange` service on an ephemeral port and announces it to the
//! coordinator, which answers once every process of the deployment has
//! (`JoinJob`), so each process knows where every slice runs.
//!
//! - **Data.** A channel between subtasks of different processes is one
//!   gRPC stream, opened by the producer with the channel's key. Events
//!   travel as frames in the order they were sent (records stay serialized
//!   until the consuming task decodes them; watermarks, barriers and the end
//!   of partition are in-band). Flow control is by credit: the consumer
//!   grants the channel's capacity at the start and one credit each time its
//!   task takes an event, and the producer sends only against credit, so a
//!   slow consumer holds at most the channel's capacity of a producer's
//!   batches and stalls no other channel. Channels inside a process never
//!   come here.
//! - **Control.** Process 0 (the *leader*, host of slice 0) runs the
//!   checkpoint driver for the whole job, as Flink's JobMaster does. The other
//!   processes (*followers*) open a control stream to it: they send their
//!   tasks' checkpoint reports and ends, it sends checkpoint commands, commits
//!   of finished tasks' final state, cancellation and the job's end.
//!
//! This module knows nothing of record types: batches arrive serialized
//! ([`Batch::encoded`]) and leave through [`Batch::encode_records`].
//!
//! Its parts: [`Network`] and [`Placement`] here; the data channels in
//! `data`; the control streams in `control_stream`; the gRPC service that
//! accepts both in `service`. The messages themselves live in
//! [`crate::control`].

mod control_stream;
mod data;
mod service;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use dashmap::DashMap;
use tokio::sync::mpsc;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Status;
use tonic::transport::Channel;
use weir_common::ChannelKey;
use weir_proto::v1 as pb;
use weir_proto::v1::exchange_server::ExchangeServer;

use crate::CancelToken;
use crate::control::{FromFollower, JobCommand};
use data::RemoteInput;

pub use data::RemoteOutput;

/// How long processes wait for each other (joining, registering channels,
/// followers connecting) before the run fails.
const PEER_TIMEOUT: Duration = Duration::from_secs(30);

/// What a follower sent (or its loss), by the follower's process index.
type FollowerItem = (usize, FromFollower);

/// Largest frame accepted, either way: a batch of 1,024 records of 64 KiB.
/// A larger frame is refused by the transport and fails its channel (it
/// would otherwise make the receiver allocate whatever a peer claims).
const MAX_FRAME: usize = 64 * 1024 * 1024;

/// Where this process stands in a job spread over several processes.
pub struct Placement {
    /// Names this run's channels and checkpoint directory in every process.
    pub run_id: String,
    /// This process's index; 0 is the leader.
    pub process: usize,
    /// When earlier runs of the job failed (epoch ms, oldest first): the
    /// leader's restart strategy decides with them.
    pub failure_times_ms: Vec<u64>,
    /// The process hosting each slice.
    pub slice_process: Vec<usize>,
    /// The exchange of this process.
    pub network: Network,
}

impl Placement {
    /// Whether this process runs the job's checkpoint driver.
    pub fn is_leader(&self) -> bool {
        self.process == 0
    }

    /// The process that runs subtask `index` of any vertex.
    pub fn process_of(&self, index: usize) -> usize {
        self.slice_process.get(index).copied().unwrap_or(0)
    }

    /// Whether subtask `index` of any vertex runs in this process.
    pub fn is_local(&self, index: usize) -> bool {
        self.process_of(index) == self.process
    }
}

impl std::fmt::Debug for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Placement")
            .field("run_id", &self.run_id)
            .field("process", &self.process)
            .field("slice_process", &self.slice_process)
            .finish()
    }
}

/// One process's end of the exchange: its server, its connections to the
/// other processes, and the run's control lines.
pub struct Network {
    runtime: tokio::runtime::Runtime,
    address: SocketAddr,
    state: Arc<NetState>,
}

/// What the server's handlers and the connection tasks share.
pub(crate) struct NetState {
    run: OnceLock<String>,
    addresses: OnceLock<Vec<String>>,
    /// Input channels of local tasks fed by other processes, by key; taken
    /// when the producer connects.
    inputs: DashMap<ChannelKey, RemoteInput>,
    /// One HTTP/2 connection per peer process, shared by its channels.
    peers: tokio::sync::Mutex<HashMap<usize, Channel>>,
    /// The first failure of the exchange in this run, and the run to cancel.
    failure: Mutex<Option<String>>,
    cancel: Mutex<Option<CancelToken>>,
    /// Leader: what followers sent, by process index.
    inbox: (Sender<FollowerItem>, Receiver<FollowerItem>),
    /// Leader: the control stream to each follower.
    followers: DashMap<usize, mpsc::UnboundedSender<Result<pb::ControlFrame, Status>>>,
    /// Follower: the control stream to the leader.
    leader: Mutex<Option<mpsc::UnboundedSender<pb::ControlFrame>>>,
    /// Follower: the leader vanished before it said how the job ended.
    leader_lost: std::sync::atomic::AtomicBool,
    /// Leader: where savepoint requests of the coordinator go.
    commands: Mutex<Option<Sender<JobCommand>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl NetState {
    /// Records the first failure of the exchange and cancels the run.
    fn fail(&self, reason: String) {
        let mut failure = lock(&self.failure);
        if failure.is_none() {
            tracing::warn!(%reason, "exchange failed");
            *failure = Some(reason);
        }
        drop(failure);
        if let Some(cancel) = lock(&self.cancel).as_ref() {
            cancel.cancel();
        }
    }

    /// This process's run, once the coordinator answered its join (a peer
    /// that got its answer first may connect before that).
    async fn run_id(&self) -> Option<String> {
        let deadline = Instant::now() + PEER_TIMEOUT;
        loop {
            if let Some(run) = self.run.get() {
                return Some(run.clone());
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn address_of(&self, process: usize) -> Result<String, String> {
        self.addresses
            .get()
            .and_then(|addresses| addresses.get(process).cloned())
            .ok_or_else(|| format!("no address for process {process}: the job has not joined its cluster"))
    }

    /// The connection to process `peer`, opened on first use (retried while
    /// the peer starts).
    async fn peer(&self, peer: usize) -> Result<Channel, String> {
        let mut peers = self.peers.lock().await;
        if let Some(channel) = peers.get(&peer) {
            return Ok(channel.clone());
        }
        let address = self.address_of(peer)?;
        let endpoint = weir_proto::rpc::endpoint(&format!("http://{address}"))?;
        let deadline = Instant::now() + PEER_TIMEOUT;
        let channel = loop {
            match endpoint.connect().await {
                Ok(channel) => break channel,
                Err(error) if Instant::now() > deadline => {
                    return Err(format!("cannot reach process {peer} of the job at {address}: {error}"));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        peers.insert(peer, channel.clone());
        Ok(channel)
    }
}

impl Network {
    /// Starts this process's exchange server on an ephemeral port of `host`.
    pub fn bind(host: &str) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("weir-exchange")
            .enable_all()
            .build()
            .map_err(|error| format!("cannot start the exchange runtime: {error}"))?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind((host, 0)))
            .map_err(|error| format!("cannot listen for the exchange on {host}: {error}"))?;
        let address = listener.local_addr().map_err(|error| format!("cannot listen on {host}: {error}"))?;
        let state = Arc::new(NetState {
            run: OnceLock::new(),
            addresses: OnceLock::new(),
            inputs: DashMap::new(),
            peers: tokio::sync::Mutex::new(HashMap::new()),
            failure: Mutex::new(None),
            cancel: Mutex::new(None),
            inbox: crossbeam_channel::unbounded(),
            followers: DashMap::new(),
            leader: Mutex::new(None),
            leader_lost: std::sync::atomic::AtomicBool::new(false),
            commands: Mutex::new(None),
        });
        let service = ExchangeServer::new(service::Service { state: state.clone() })
            .max_decoding_message_size(MAX_FRAME)
            .max_encoding_message_size(MAX_FRAME);
        let server = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener));
        runtime.spawn(async move {
            if let Err(error) = server.await {
                tracing::error!(%error, "the exchange server stopped");
            }
        });
        Ok(Self { runtime, address, state })
    }

    /// Where the exchange server listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Announces this process to the coordinator and waits for the rest of
    /// the deployment; returns the run id and the process of each slice.
    pub fn join(
        &self,
        coordinator: &str,
        job_id: &str,
        attempt: u32,
        process: usize,
    ) -> Result<(String, Vec<usize>), String> {
        let request = pb::JoinJobRequest {
            job_id: job_id.to_owned(),
            attempt,
            process_index: process as u32,
            exchange_address: self.address.to_string(),
        };
        let response = self.runtime.block_on(async {
            let channel = weir_proto::rpc::connect(coordinator)
                .await
                .map_err(|error| format!("cannot reach the coordinator at {coordinator}: {error}"))?;
            let mut client = weir_proto::v1::coordinator_client::CoordinatorClient::new(channel);
            // The coordinator answers once every process joined, or gives up.
            let request = weir_proto::rpc::with_deadline(request, 2 * PEER_TIMEOUT);
            client.join_job(request).await.map_err(|status| format!("joining the job failed: {}", status.message()))
        })?;
        let response = response.into_inner();
        let _ = self.state.run.set(response.run_id.clone());
        let _ = self.state.addresses.set(response.addresses);
        Ok((response.run_id, response.slice_process.into_iter().map(|process| process as usize).collect()))
    }

    /// Makes `cancel` the run that a failure of the exchange cancels.
    pub fn attach_run(&self, cancel: &CancelToken) {
        *lock(&self.state.cancel) = Some(cancel.clone());
    }

    /// The first failure of the exchange in this run, if any.
    pub fn failure(&self) -> Option<String> {
        lock(&self.state.failure).clone()
    }
}

#[cfg(test)]
mod tests;
