//! The `Exchange` gRPC service of a job process: it accepts data channels
//! from producers in other processes, control streams from followers (on the
//! leader), and savepoint requests from the coordinator (on the leader).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use weir_common::ChannelKey;
use weir_proto::v1 as pb;
use weir_proto::v1::exchange_server::Exchange;

use super::data::{RemoteInput, decode_event};
use super::{NetState, PEER_TIMEOUT, lock};
use crate::Event;
use crate::control::{FromFollower, JobCommand, ToLeader};

pub(super) struct Service {
    pub(super) state: Arc<NetState>,
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
        let channel_key = ChannelKey { edge: key.edge, upstream: key.upstream, downstream: key.downstream };
        // The consumer registers its inputs when it plans its tasks, which
        // may be after a quick producer connects.
        let deadline = Instant::now() + PEER_TIMEOUT;
        let input = loop {
            if let Some((_, input)) = self.state.inputs.remove(&channel_key) {
                break input;
            }
            if Instant::now() > deadline {
                return Err(Status::not_found(format!("no task here consumes channel {channel_key}")));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let (grants, grant_rx) = mpsc::unbounded_channel();
        let _ = grants.send(Ok(pb::ChannelResponse { credits: input.capacity as u32 }));
        *lock(&input.grants) = Some(grants);
        tokio::spawn(receive_frames(inbound, input, channel_key, self.state.clone()));
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

/// Consumer side of one channel: hands the producer's events to the local
/// task's input. Credits bound what the producer sends to what the task's
/// channel holds, so handing an event over never waits.
async fn receive_frames(
    mut inbound: Streaming<pb::ChannelRequest>,
    input: RemoteInput,
    key: ChannelKey,
    state: Arc<NetState>,
) {
    let what = format!("channel {key}");
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
}
