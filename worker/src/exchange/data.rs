//! Data channels between processes: a producer sends a local task's events
//! as frames of one gRPC stream, against credits the consumer grants as its
//! task takes events (see the module above for the protocol).

use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Status;
use weir_common::{ChannelKey, CheckpointId};
use weir_proto::v1 as pb;
use weir_proto::v1::exchange_client::ExchangeClient;

use super::{MAX_FRAME, NetState, Network, lock};
use crate::channel::{CANCEL_POLL, InputChannel, RemoteSender};
use crate::{Barrier, Batch, CancelToken, Event, OutputChannel, TaskError, Watermark};

impl Network {
    /// A channel whose events go to a task of process `peer`.
    pub fn remote_output(&self, key: ChannelKey, peer: usize, cancel: CancelToken) -> Result<OutputChannel, String> {
        let run = self.state.run.get().cloned().ok_or("the job has not joined its cluster")?;
        let (credit_tx, credits) = crossbeam_channel::bounded(MAX_CREDITS as usize);
        let (frames, frame_rx) = mpsc::unbounded_channel();
        let state = self.state.clone();
        self.runtime.spawn(async move {
            if let Err(reason) = run_output(&state, run, key, peer, frame_rx, credit_tx).await {
                state.fail(reason);
            }
        });
        Ok(OutputChannel::remote(Box::new(RemoteOutput { credits, frames, cancel })))
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
}

/// Where a consumer's credits go: the response stream of the channel.
pub(super) type Grants = mpsc::UnboundedSender<Result<pb::ChannelResponse, Status>>;

/// A local task's input from another process, waiting for its producer.
pub(super) struct RemoteInput {
    pub(super) events: Sender<Event>,
    pub(super) capacity: usize,
    /// Set while the producer's stream is open; taken when it ends, which
    /// ends the producer's side too.
    pub(super) grants: Arc<Mutex<Option<Grants>>>,
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

impl RemoteSender for RemoteOutput {
    /// Sends one event once the consumer granted credit for it.
    fn send(&self, event: Event) -> Result<(), TaskError> {
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

pub(super) fn decode_event(request: pb::ChannelRequest) -> Result<Event, String> {
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

/// The most credits a producer holds, in one grant or in all not yet used:
/// a consumer grants its channel's capacity once and one credit per event it
/// takes, so more is a broken or hostile peer (each credit is a token held
/// in memory).
pub(super) const MAX_CREDITS: u32 = 65_536;

/// Producer side of one channel: opens the stream, turns credits into tokens.
async fn run_output(
    state: &NetState,
    run: String,
    ChannelKey { edge, upstream, downstream }: ChannelKey,
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
            Ok(Some(grant)) if grant.credits > MAX_CREDITS => {
                return Err(format!(
                    "{what}: the consumer granted {} credits at once, more than a channel holds",
                    grant.credits
                ));
            }
            Ok(Some(grant)) => {
                // After its task ended the channel, nobody takes credits any
                // more; the stream is still read to its end, since dropping
                // it would reset it and lose frames not yet delivered.
                for _ in 0..grant.credits {
                    if let Err(crossbeam_channel::TrySendError::Full(())) = credits.try_send(()) {
                        return Err(format!("{what}: the consumer granted more than {MAX_CREDITS} credits in all"));
                    }
                }
            }
            Ok(None) => return Ok(()),
            Err(status) => return Err(format!("{what} broke: {}", status.message())),
        }
    }
}
