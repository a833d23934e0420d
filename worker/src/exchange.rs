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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tokio_stream::{Stream, StreamExt};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};
use weir_common::CheckpointId;
use weir_proto::v1 as pb;
use weir_proto::v1::exchange_client::ExchangeClient;
use weir_proto::v1::exchange_server::{Exchange, ExchangeServer};

use crate::channel::{CANCEL_POLL, InputChannel};
use crate::checkpoint::{CheckpointReport, TaskControl, TaskKey, TaskSnapshot};
use crate::executor::JobCommand;
use crate::{Barrier, Batch, CancelToken, Event, OutputChannel, TaskError, Watermark};

/// Exit code of a job process whose run failed and should be deployed again
/// (from the latest checkpoint): the job's restart strategy allows it, or
/// this process is a follower (the leader decides).
pub const EXIT_RESTART: i32 = 75;

/// Exit code of a follower whose run the leader ended (it failed elsewhere):
/// the leader's own exit tells the coordinator what to do.
pub const EXIT_ENDED_BY_LEADER: i32 = 76;

/// How long processes wait for each other (joining, registering channels,
/// followers connecting) before the run fails.
const PEER_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest frame accepted: a batch of 1,024 large records.
const MAX_FRAME: usize = 256 * 1024 * 1024;

/// Where this process stands in a job spread over several processes.
pub struct Placement {
    /// Names this run's channels and checkpoint directory in every process.
    pub run_id: String,
    /// This process's index; 0 is the leader.
    pub process: usize,
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

    /// The other processes of the job (the leader's followers).
    pub fn followers(&self) -> std::collections::BTreeSet<usize> {
        self.slice_process.iter().copied().filter(|process| *process != 0).collect()
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

/// Identifies a channel within a run: edge index, upstream and downstream subtask.
pub type ChannelKey = (u32, u32, u32);

/// What a follower tells the leader.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToLeader {
    /// The first message of a control stream.
    Hello {
        /// The run the follower belongs to.
        run: String,
        /// The follower's process index.
        process: usize,
    },
    /// A task's answer to a checkpoint.
    Checkpoint(CheckpointReport),
    /// A task finished its input; its commits wait in the follower until the
    /// leader asks for them.
    Finished {
        /// The task.
        task: TaskKey,
        /// Its final state.
        snapshot: TaskSnapshot,
    },
    /// A task returned.
    Done {
        /// The task.
        task: TaskKey,
        /// How it ended.
        outcome: Result<(), TaskError>,
    },
    /// Running the commits of a finished task failed.
    CommitFailed {
        /// Why.
        message: String,
    },
}

/// What the leader tells a follower.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToFollower {
    /// A checkpoint command for one task.
    Task {
        /// The task.
        task: TaskKey,
        /// The command.
        command: TaskControl,
    },
    /// A checkpoint recorded the final state of `task`: run its commits.
    CommitFinished {
        /// The task.
        task: TaskKey,
    },
    /// The run fails: stop every task.
    Cancel,
    /// The job ended; with `success`, every finished task's commits run.
    JobEnd {
        /// Whether the job finished (or stopped with a savepoint).
        success: bool,
    },
}

/// An item of the leader's inbox.
#[derive(Debug)]
pub enum FromFollower {
    /// A message.
    Message(ToLeader),
    /// The follower's control stream ended or broke.
    Lost(String),
}

/// An item of a follower's inbox.
#[derive(Debug)]
pub enum FromLeader {
    /// A message.
    Message(ToFollower),
    /// The control stream to the leader ended or broke.
    Lost(String),
}

/// One process's end of the exchange: its server, its connections to the
/// other processes, and the run's control lines.
pub struct Network {
    runtime: tokio::runtime::Runtime,
    address: SocketAddr,
    state: Arc<NetState>,
}

/// What the server's handlers and the connection tasks share.
struct NetState {
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
    inbox: (Sender<(usize, FromFollower)>, Receiver<(usize, FromFollower)>),
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
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|error| format!("bad exchange address {address}: {error}"))?
            .tcp_nodelay(true);
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
        let service = ExchangeServer::new(Service { state: state.clone() })
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
            let mut client = weir_proto::v1::coordinator_client::CoordinatorClient::connect(coordinator.to_owned())
                .await
                .map_err(|error| format!("cannot reach the coordinator at {coordinator}: {error}"))?;
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

    /// A channel whose events go to a task of process `peer`.
    pub fn remote_output(&self, key: ChannelKey, peer: usize, cancel: CancelToken) -> Result<OutputChannel, String> {
        let run = self.state.run.get().cloned().ok_or("the job has not joined its cluster")?;
        let (credit_tx, credits) = crossbeam_channel::unbounded();
        let (frames, frame_rx) = mpsc::unbounded_channel();
        let state = self.state.clone();
        self.runtime.spawn(async move {
            if let Err(reason) = run_output(&state, run, key, peer, frame_rx, credit_tx).await {
                state.fail(reason);
            }
        });
        Ok(OutputChannel::remote(RemoteOutput { credits, frames, cancel }))
    }

    /// The input of a local task fed from another process over channel
    /// `key`: it holds `capacity` events, and each one the task takes grants
    /// the producer a credit for one more.
    pub fn remote_input(&self, key: ChannelKey, capacity: usize) -> InputChannel {
        let (events, receiver) = crossbeam_channel::bounded(capacity);
        let grants: Arc<Mutex<Option<Grants>>> = Arc::default();
        let line = grants.clone();
        let on_take = Box::new(move || {
            if let Some(grants) = lock(&line).as_ref() {
                // The producer may be gone (it ended the channel); that is fine.
                let _ = grants.send(Ok(pb::ChannelResponse { credits: 1 }));
            }
        });
        self.state.inputs.insert(key, RemoteInput { events, capacity, grants });
        InputChannel::remote(receiver, on_take)
    }

    /// Leader: what followers send.
    pub fn inbox(&self) -> Receiver<(usize, FromFollower)> {
        self.state.inbox.1.clone()
    }

    /// Leader: waits until every process of `followers` opened its control stream.
    pub fn await_followers(&self, followers: &std::collections::BTreeSet<usize>) -> Result<(), String> {
        let deadline = Instant::now() + PEER_TIMEOUT;
        while !followers.iter().all(|process| self.state.followers.contains_key(process)) {
            if Instant::now() > deadline {
                let missing: Vec<_> =
                    followers.iter().filter(|process| !self.state.followers.contains_key(process)).collect();
                return Err(format!("processes {missing:?} of the job did not connect within {PEER_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Leader: the followers whose control stream is open.
    pub fn connected(&self) -> std::collections::BTreeSet<usize> {
        self.state.followers.iter().map(|entry| *entry.key()).collect()
    }

    /// Leader: sends `message` to follower `process` (a follower that is gone
    /// is noticed on the inbox).
    pub fn to_follower(&self, process: usize, message: &ToFollower) {
        if let Some(line) = self.state.followers.get(&process)
            && let Ok(payload) = postcard::to_stdvec(message)
        {
            let _ = line.send(Ok(pb::ControlFrame { payload }));
        }
    }

    /// Leader: ends the followers' control streams.
    pub fn close_followers(&self) {
        self.state.followers.clear();
    }

    /// Leader: savepoint requests from the coordinator go to `commands`.
    pub fn accept_commands(&self, commands: Sender<JobCommand>) {
        *lock(&self.state.commands) = Some(commands);
    }

    /// Follower: opens the control stream to the leader.
    pub fn connect_leader(&self, process: usize) -> Result<Receiver<FromLeader>, String> {
        let run = self.state.run.get().cloned().ok_or("the job has not joined its cluster")?;
        let (up, up_rx) = mpsc::unbounded_channel();
        let hello = postcard::to_stdvec(&ToLeader::Hello { run, process }).map_err(|error| error.to_string())?;
        let _ = up.send(pb::ControlFrame { payload: hello });
        *lock(&self.state.leader) = Some(up);
        let (down_tx, down) = crossbeam_channel::unbounded();
        let state = self.state.clone();
        let mut inbound = self.runtime.block_on(async move {
            let channel = state.peer(0).await?;
            let mut client = ExchangeClient::new(channel).max_decoding_message_size(MAX_FRAME);
            let response = client
                .control(UnboundedReceiverStream::new(up_rx))
                .await
                .map_err(|status| format!("the job's leader refused the control stream: {}", status.message()))?;
            Ok::<_, String>(response.into_inner())
        })?;
        let state = self.state.clone();
        self.runtime.spawn(async move {
            let mut ended = false;
            let lost = loop {
                match inbound.message().await {
                    Ok(Some(frame)) => match postcard::from_bytes::<ToFollower>(&frame.payload) {
                        Ok(message) => {
                            ended |= matches!(message, ToFollower::JobEnd { .. });
                            let _ = down_tx.send(FromLeader::Message(message));
                        }
                        Err(error) => break format!("an unreadable control message from the leader: {error}"),
                    },
                    Ok(None) => break "the leader closed the control stream".to_owned(),
                    Err(status) => break format!("lost the job's leader: {}", status.message()),
                }
            };
            if !ended {
                state.leader_lost.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            let _ = down_tx.send(FromLeader::Lost(lost));
        });
        Ok(down)
    }

    /// Follower: whether the leader vanished before it said how the job ended.
    pub fn leader_lost(&self) -> bool {
        self.state.leader_lost.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Follower: sends `message` to the leader.
    pub fn to_leader(&self, message: &ToLeader) {
        if let Some(line) = lock(&self.state.leader).as_ref()
            && let Ok(payload) = postcard::to_stdvec(message)
        {
            let _ = line.send(pb::ControlFrame { payload });
        }
    }

    /// Follower: ends the control stream to the leader.
    pub fn close_leader(&self) {
        lock(&self.state.leader).take();
    }
}

/// Where a consumer's credits go: the response stream of the channel.
type Grants = mpsc::UnboundedSender<Result<pb::ChannelResponse, Status>>;

/// A local task's input from another process, waiting for its producer.
struct RemoteInput {
    events: Sender<Event>,
    capacity: usize,
    /// Set while the producer's stream is open; taken when it ends, which
    /// ends the producer's side too.
    grants: Arc<Mutex<Option<Grants>>>,
}

/// The sending end of a channel to another process.
pub struct RemoteOutput {
    /// One token per frame the consumer can take.
    credits: Receiver<()>,
    frames: mpsc::UnboundedSender<pb::ChannelRequest>,
    cancel: CancelToken,
}

impl std::fmt::Debug for RemoteOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RemoteOutput")
    }
}

impl RemoteOutput {
    /// Sends one event once the consumer granted credit for it.
    pub(crate) fn send(&self, event: Event) -> Result<(), TaskError> {
        loop {
            match self.credits.recv_timeout(CANCEL_POLL) {
                Ok(()) => break,
                Err(RecvTimeoutError::Timeout) if !self.cancel.is_cancelled() => {}
                // The stream ended: the run is failing (the exchange recorded why).
                Err(_) => return Err(TaskError::Cancelled),
            }
        }
        let frame =
            encode_event(event).map_err(|message| TaskError::Operator { operator: "exchange".into(), message })?;
        self.frames.send(frame).map_err(|_| TaskError::Cancelled)
    }
}

fn encode_event(event: Event) -> Result<pb::ChannelRequest, String> {
    use pb::channel_request::Frame;
    let frame = match event {
        Event::Records(batch) => {
            let mut records = Vec::new();
            batch.encode_records(&mut records)?;
            Frame::Records(pb::RecordBatch {
                records: records.into(),
                len: batch.len() as u32,
                timestamps: batch.timestamps().map(<[i64]>::to_vec).unwrap_or_default(),
            })
        }
        Event::Watermark(Watermark::At(time)) => Frame::Watermark(time),
        Event::Watermark(Watermark::Idle) => Frame::Idle(true),
        Event::Barrier(barrier) => Frame::Barrier(pb::BarrierFrame { id: barrier.id.0, savepoint: barrier.savepoint }),
        Event::EndOfPartition => Frame::EndOfPartition(true),
    };
    Ok(pb::ChannelRequest { frame: Some(frame) })
}

fn decode_event(request: pb::ChannelRequest) -> Result<Event, String> {
    use pb::channel_request::Frame;
    Ok(match request.frame {
        Some(Frame::Records(batch)) => {
            let timestamps = (!batch.timestamps.is_empty()).then_some(batch.timestamps);
            if timestamps.as_ref().is_some_and(|timestamps| timestamps.len() != batch.len as usize) {
                return Err("a batch whose timestamps do not match its records".into());
            }
            Event::Records(Batch::encoded(batch.records, batch.len as usize, timestamps))
        }
        Some(Frame::Watermark(time)) => Event::Watermark(Watermark::At(time)),
        Some(Frame::Idle(_)) => Event::Watermark(Watermark::Idle),
        Some(Frame::Barrier(barrier)) => {
            Event::Barrier(Barrier { id: CheckpointId(barrier.id), savepoint: barrier.savepoint })
        }
        Some(Frame::EndOfPartition(_)) => Event::EndOfPartition,
        Some(Frame::Open(_)) | None => return Err("a channel frame without an event".into()),
    })
}

/// Producer side of one channel: opens the stream, turns credits into tokens.
async fn run_output(
    state: &NetState,
    run: String,
    (edge, upstream, downstream): ChannelKey,
    peer: usize,
    frames: mpsc::UnboundedReceiver<pb::ChannelRequest>,
    credits: Sender<()>,
) -> Result<(), String> {
    let channel = state.peer(peer).await?;
    let mut client = ExchangeClient::new(channel).max_encoding_message_size(MAX_FRAME);
    let open = pb::ChannelRequest {
        frame: Some(pb::channel_request::Frame::Open(pb::ChannelKey { run, edge, upstream, downstream })),
    };
    let outbound = tokio_stream::once(open).chain(UnboundedReceiverStream::new(frames));
    let what = format!("channel {edge}/{upstream}->{downstream} to process {peer}");
    let mut grants = client
        .channel(outbound)
        .await
        .map_err(|status| format!("{what} was refused: {}", status.message()))?
        .into_inner();
    loop {
        match grants.message().await {
            Ok(Some(grant)) => {
                // After its task ended the channel, nobody takes credits any
                // more; the stream is still read to its end, since dropping
                // it would reset it and lose frames not yet delivered.
                for _ in 0..grant.credits {
                    let _ = credits.send(());
                }
            }
            Ok(None) => return Ok(()),
            Err(status) => return Err(format!("{what} broke: {}", status.message())),
        }
    }
}

struct Service {
    state: Arc<NetState>,
}

type ResponseStream<T> = std::pin::Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Exchange for Service {
    type ChannelStream = ResponseStream<pb::ChannelResponse>;
    type ControlStream = ResponseStream<pb::ControlFrame>;

    async fn channel(
        &self,
        request: Request<Streaming<pb::ChannelRequest>>,
    ) -> Result<Response<Self::ChannelStream>, Status> {
        let mut inbound = request.into_inner();
        let key = match inbound.message().await? {
            Some(pb::ChannelRequest { frame: Some(pb::channel_request::Frame::Open(key)) }) => key,
            _ => return Err(Status::invalid_argument("a channel stream starts with its key")),
        };
        if self.state.run_id().await.as_deref() != Some(&key.run) {
            return Err(Status::failed_precondition(format!("this process does not run {}", key.run)));
        }
        let channel_key = (key.edge, key.upstream, key.downstream);
        // The consumer registers its inputs when it plans its tasks, which
        // may be after a quick producer connects.
        let deadline = Instant::now() + PEER_TIMEOUT;
        let input = loop {
            if let Some((_, input)) = self.state.inputs.remove(&channel_key) {
                break input;
            }
            if Instant::now() > deadline {
                return Err(Status::not_found(format!("no task here consumes channel {channel_key:?}")));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let (grants, grant_rx) = mpsc::unbounded_channel();
        let _ = grants.send(Ok(pb::ChannelResponse { credits: input.capacity as u32 }));
        *lock(&input.grants) = Some(grants);
        let state = self.state.clone();
        // Credits bound what the producer sends to what the task's channel
        // holds, so handing an event over never waits.
        tokio::spawn(async move {
            let what = format!("channel {}/{}->{}", key.edge, key.upstream, key.downstream);
            let mut ended = false;
            loop {
                match inbound.message().await {
                    Ok(Some(frame)) => {
                        let event = match decode_event(frame) {
                            Ok(event) => event,
                            Err(reason) => break state.fail(format!("{what}: {reason}")),
                        };
                        ended = matches!(event, Event::EndOfPartition);
                        match input.events.try_send(event) {
                            Ok(()) => {}
                            Err(crossbeam_channel::TrySendError::Full(_)) => {
                                break state.fail(format!("{what}: the producer sent beyond its credit"));
                            }
                            // The task ended or failed; its process reports why.
                            Err(crossbeam_channel::TrySendError::Disconnected(_)) => break,
                        }
                    }
                    Ok(None) if ended => break,
                    Ok(None) => break state.fail(format!("{what} ended before the end of its partition")),
                    Err(status) => break state.fail(format!("{what} broke: {}", status.message())),
                }
            }
            // Ends the credit stream, so the producer's side ends too.
            lock(&input.grants).take();
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(grant_rx))))
    }

    async fn control(
        &self,
        request: Request<Streaming<pb::ControlFrame>>,
    ) -> Result<Response<Self::ControlStream>, Status> {
        let mut inbound = request.into_inner();
        let first = inbound.message().await?.ok_or_else(|| Status::invalid_argument("an empty control stream"))?;
        let run_id = self.state.run_id().await;
        let process = match postcard::from_bytes::<ToLeader>(&first.payload) {
            Ok(ToLeader::Hello { run, process }) if run_id.as_ref() == Some(&run) => process,
            Ok(ToLeader::Hello { run, .. }) => {
                return Err(Status::failed_precondition(format!("this process does not lead {run}")));
            }
            _ => return Err(Status::invalid_argument("a control stream starts with a hello")),
        };
        let (down, down_rx) = mpsc::unbounded_channel();
        self.state.followers.insert(process, down);
        let inbox = self.state.inbox.0.clone();
        tokio::spawn(async move {
            let lost = loop {
                match inbound.message().await {
                    Ok(Some(frame)) => match postcard::from_bytes::<ToLeader>(&frame.payload) {
                        Ok(message) => {
                            let _ = inbox.send((process, FromFollower::Message(message)));
                        }
                        Err(error) => break format!("an unreadable control message: {error}"),
                    },
                    Ok(None) => break format!("process {process} closed its control stream"),
                    Err(status) => break format!("lost process {process} of the job: {}", status.message()),
                }
            };
            let _ = inbox.send((process, FromFollower::Lost(lost)));
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(down_rx))))
    }

    async fn trigger_savepoint(
        &self,
        request: Request<pb::TriggerSavepointRequest>,
    ) -> Result<Response<pb::TriggerSavepointResponse>, Status> {
        let stop = request.into_inner().stop;
        let commands = lock(&self.state.commands)
            .clone()
            .ok_or_else(|| Status::failed_precondition("this process does not lead a running job"))?;
        let (reply, answer) = crossbeam_channel::bounded(1);
        commands
            .send(JobCommand::Savepoint { stop, reply })
            .map_err(|_| Status::failed_precondition("the job is no longer running"))?;
        let outcome = tokio::task::spawn_blocking(move || answer.recv())
            .await
            .map_err(|error| Status::internal(error.to_string()))?
            .map_err(|_| Status::aborted("the job ended before the savepoint completed"))?;
        match outcome {
            Ok(path) => Ok(Response::new(pb::TriggerSavepointResponse { path: path.to_string_lossy().into_owned() })),
            Err(message) => Err(Status::aborted(message)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two processes' exchanges on loopback, joined by hand.
    fn pair() -> (Network, Network) {
        let (a, b) = (Network::bind("127.0.0.1").expect("binds"), Network::bind("127.0.0.1").expect("binds"));
        let addresses = vec![a.address().to_string(), b.address().to_string()];
        for network in [&a, &b] {
            network.state.run.set("run-1".into()).expect("unset");
            network.state.addresses.set(addresses.clone()).expect("unset");
        }
        (a, b)
    }

    #[test]
    fn a_producer_sends_only_against_credit_and_events_arrive_in_order() {
        let (a, b) = pair();
        let input = b.remote_input((0, 0, 1), 2);
        let cancel = CancelToken::new();
        let output = a.remote_output((0, 0, 1), 1, cancel.clone()).expect("joined");
        let batch = |n: u64| Event::Records(Batch::serializable(vec![n, n + 1], Some(vec![10, 11])));
        output.send(batch(0)).expect("credit 1 of 2");
        output.send(Event::Watermark(Watermark::At(7))).expect("credit 2 of 2");
        // The consumer's channel is full and nothing was taken: no credit.
        let (sent_tx, sent_rx) = crossbeam_channel::bounded(1);
        let producer = std::thread::spawn(move || {
            output.send(batch(2)).expect("sent once credit came");
            sent_tx.send(()).expect("test waits");
            output.send(Event::EndOfPartition).expect("sent");
        });
        assert!(sent_rx.recv_timeout(Duration::from_millis(300)).is_err(), "sent without credit");
        let take = || {
            let event = input.receiver.recv_timeout(Duration::from_secs(5)).expect("arrives");
            input.took();
            event
        };
        let Event::Records(first) = take() else { panic!("records first") };
        assert_eq!(first.timestamps(), Some(&[10, 11][..]));
        assert_eq!(first.into_data::<u64>().expect("decodes"), vec![0, 1]);
        sent_rx.recv_timeout(Duration::from_secs(5)).expect("taking one event granted one credit");
        assert!(matches!(take(), Event::Watermark(Watermark::At(7))));
        let Event::Records(third) = take() else { panic!("records third") };
        assert_eq!(third.into_data::<u64>().expect("decodes"), vec![2, 3]);
        assert!(matches!(take(), Event::EndOfPartition));
        producer.join().expect("producer");
        assert_eq!(b.failure(), None, "a channel that ended its partition is no failure");
    }

    #[test]
    fn a_channel_that_breaks_off_fails_the_consuming_run() {
        let (a, b) = pair();
        let run = CancelToken::new();
        b.attach_run(&run);
        let input = b.remote_input((3, 1, 0), 4);
        let output = a.remote_output((3, 1, 0), 1, CancelToken::new()).expect("joined");
        output.send(Event::Watermark(Watermark::At(1))).expect("credit");
        drop(output); // The producer vanishes without ending its partition.
        assert!(matches!(input.receiver.recv_timeout(Duration::from_secs(5)), Ok(Event::Watermark(_))));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !run.is_cancelled() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(run.is_cancelled(), "the run is cancelled");
        assert!(b.failure().is_some_and(|reason| reason.contains("ended before the end of its partition")));
    }
}
