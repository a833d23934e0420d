//! Bounded in-process channels between tasks.
//!
//! The bound (in batches) is the backpressure: a producer that outruns its
//! consumer blocks on `send`. Blocking waits wake up periodically to check the
//! job's [`CancelToken`], so a failure elsewhere always ends them.

use std::time::Duration;

use crossbeam_channel::{Receiver, SendTimeoutError, Sender};

use crate::{CancelToken, Event, TaskError};

/// How often a blocked sender or receiver looks at the cancel token.
pub(crate) const CANCEL_POLL: Duration = Duration::from_millis(50);

/// The sending end of one channel.
#[derive(Debug)]
pub struct OutputChannel {
    sender: Sender<Event>,
    cancel: CancelToken,
}

/// The receiving end of one channel.
#[derive(Debug)]
pub struct InputChannel {
    pub(crate) receiver: Receiver<Event>,
}

/// A channel holding at most `capacity` events.
pub fn bounded(capacity: usize, cancel: CancelToken) -> (OutputChannel, InputChannel) {
    let (sender, receiver) = crossbeam_channel::bounded(capacity);
    (OutputChannel { sender, cancel }, InputChannel { receiver })
}

impl OutputChannel {
    /// Sends one event, blocking while the channel is full.
    ///
    /// Fails with [`TaskError::Cancelled`] when the job is cancelled or the
    /// receiver is gone (it only goes away when its task failed).
    pub fn send(&self, event: Event) -> Result<(), TaskError> {
        let mut event = event;
        loop {
            match self.sender.send_timeout(event, CANCEL_POLL) {
                Ok(()) => return Ok(()),
                Err(SendTimeoutError::Disconnected(_)) => return Err(TaskError::Cancelled),
                Err(SendTimeoutError::Timeout(unsent)) => {
                    if self.cancel.is_cancelled() {
                        return Err(TaskError::Cancelled);
                    }
                    event = unsent;
                }
            }
        }
    }
}
