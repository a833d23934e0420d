//! The control streams of a job run: each follower opens one to the leader
//! and sends [`ToLeader`] messages; the leader answers on it with
//! [`ToFollower`] messages. Payloads are postcard-encoded control messages.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use weir_proto::v1 as pb;
use weir_proto::v1::exchange_client::ExchangeClient;

use super::{MAX_FRAME, Network, PEER_TIMEOUT, Placement, lock};
use crate::control::{FollowerLines, FromFollower, FromLeader, JobCommand, LeaderLine, ToFollower, ToLeader};

impl Network {
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

impl FollowerLines for Placement {
    fn send(&self, process: usize, message: &ToFollower) {
        self.network.to_follower(process, message);
    }

    fn close(&self) {
        self.network.close_followers();
    }

    fn transport_failure(&self) -> Option<String> {
        self.network.failure()
    }
}

impl LeaderLine for Placement {
    fn send(&self, message: &ToLeader) {
        self.network.to_leader(message);
    }

    fn close(&self) {
        self.network.close_leader();
    }
}
