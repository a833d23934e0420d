//! The input gate: all input channels of one task, merged into one sequence of
//! events for the task loop.
//!
//! It tracks which channels have ended, so the task learns that its input is
//! complete exactly once, after the last channel's end of partition.

use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Select, TryRecvError};

use crate::{Batch, CancelToken, Event, InputChannel, TaskError};

/// What the task loop gets from its gate.
#[derive(Debug)]
pub enum GateEvent {
    /// Records from input channel `channel`.
    Records {
        /// Index of the channel in the gate.
        channel: usize,
        /// The records.
        batch: Batch,
    },
    /// A control event from input channel `channel` (watermark or barrier).
    Control {
        /// Index of the channel in the gate.
        channel: usize,
        /// The event.
        event: Event,
    },
    /// Input channel `channel` ended (others are still open).
    ChannelEnded {
        /// Index of the channel in the gate.
        channel: usize,
    },
    /// Nothing arrived within the wait; a chance to flush output buffers.
    Idle,
    /// Every channel has ended.
    Finished,
}

/// The merged input channels of one task.
#[derive(Debug)]
pub struct InputGate {
    channels: Vec<InputChannel>,
    ended: Vec<bool>,
    /// Channels held back during barrier alignment: not read until released.
    blocked: Vec<bool>,
    open: usize,
    /// Where the next non-blocking poll starts, so ready channels take turns.
    next_poll: usize,
    cancel: CancelToken,
}

impl InputGate {
    /// A gate over `channels`; channel indexes are positions in this vector.
    pub fn new(channels: Vec<InputChannel>, cancel: CancelToken) -> Self {
        let open = channels.len();
        Self { ended: vec![false; open], blocked: vec![false; open], channels, open, next_poll: 0, cancel }
    }

    /// Holds `channel` back: its events wait until [`InputGate::unblock_all`].
    pub fn block(&mut self, channel: usize) {
        if let Some(blocked) = self.blocked.get_mut(channel) {
            *blocked = true;
        }
    }

    /// Releases every held-back channel.
    pub fn unblock_all(&mut self) {
        self.blocked.iter_mut().for_each(|blocked| *blocked = false);
    }

    /// Whether `channel` has ended.
    pub fn is_ended(&self, channel: usize) -> bool {
        self.ended.get(channel).copied().unwrap_or(true)
    }

    /// Number of input channels, ended ones included.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// The next event, waiting at most `wait` for one.
    pub fn next(&mut self, wait: Duration) -> Result<GateEvent, TaskError> {
        loop {
            if self.open == 0 {
                return Ok(GateEvent::Finished);
            }
            if self.cancel.is_cancelled() {
                return Err(TaskError::Cancelled);
            }
            let Some((channel, received)) = self.receive(wait.min(crate::channel::CANCEL_POLL)) else {
                return Ok(GateEvent::Idle);
            };
            if received.is_ok() {
                self.channels[channel].took();
            }
            match received {
                // A sender vanished without ending its partition: its task failed.
                Err(RecvTimeoutError::Disconnected) => return Err(TaskError::Cancelled),
                Err(RecvTimeoutError::Timeout) => return Ok(GateEvent::Idle),
                Ok(Event::Records(batch)) => return Ok(GateEvent::Records { channel, batch }),
                Ok(Event::EndOfPartition) => {
                    self.ended[channel] = true;
                    self.open -= 1;
                    if self.open > 0 {
                        return Ok(GateEvent::ChannelEnded { channel });
                    }
                }
                Ok(event) => return Ok(GateEvent::Control { channel, event }),
            }
        }
    }

    fn receive(&mut self, wait: Duration) -> Option<(usize, Result<Event, RecvTimeoutError>)> {
        let count = self.channels.len();
        if count == 1 {
            return Some((0, self.channels[0].receiver.recv_timeout(wait)));
        }
        // Fast path while data flows: poll the open channels round robin.
        for step in 0..count {
            let index = (self.next_poll + step) % count;
            if self.ended[index] || self.blocked[index] {
                continue;
            }
            match self.channels[index].receiver.try_recv() {
                Ok(event) => {
                    self.next_poll = index + 1;
                    return Some((index, Ok(event)));
                }
                Err(TryRecvError::Disconnected) => return Some((index, Err(RecvTimeoutError::Disconnected))),
                Err(TryRecvError::Empty) => {}
            }
        }
        // Nothing ready: block on all open channels at once.
        let mut select = Select::new();
        let mut indexes = Vec::with_capacity(self.open);
        for (index, channel) in self.channels.iter().enumerate() {
            if !self.ended[index] && !self.blocked[index] {
                select.recv(&channel.receiver);
                indexes.push(index);
            }
        }
        if indexes.is_empty() {
            std::thread::sleep(wait);
            return None;
        }
        let operation = select.select_timeout(wait).ok()?;
        let channel = indexes[operation.index()];
        let received = operation.recv(&self.channels[channel].receiver).map_err(|_| RecvTimeoutError::Disconnected);
        Some((channel, received))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::bounded;

    #[test]
    fn finishes_after_the_last_end_of_partition_only() {
        let cancel = CancelToken::new();
        let (tx_a, rx_a) = bounded(4, cancel.clone());
        let (tx_b, rx_b) = bounded(4, cancel.clone());
        let mut gate = InputGate::new(vec![rx_a, rx_b], cancel);
        tx_a.send(Event::Records(Batch::new(vec![1u8]))).expect("send");
        tx_a.send(Event::EndOfPartition).expect("send");
        let wait = Duration::from_millis(10);
        assert!(matches!(gate.next(wait).expect("event"), GateEvent::Records { channel: 0, .. }));
        assert!(matches!(gate.next(wait).expect("event"), GateEvent::ChannelEnded { channel: 0 }));
        assert!(matches!(gate.next(wait).expect("event"), GateEvent::Idle));
        tx_b.send(Event::Records(Batch::new(vec![2u8]))).expect("send");
        tx_b.send(Event::EndOfPartition).expect("send");
        assert!(matches!(gate.next(wait).expect("event"), GateEvent::Records { channel: 1, .. }));
        assert!(matches!(gate.next(wait).expect("event"), GateEvent::Finished));
    }

    #[test]
    fn a_vanished_sender_is_not_a_normal_end() {
        let cancel = CancelToken::new();
        let (tx, rx) = bounded(4, cancel.clone());
        let mut gate = InputGate::new(vec![rx], cancel);
        drop(tx);
        assert!(matches!(gate.next(Duration::from_millis(10)), Err(TaskError::Cancelled)));
    }
}
