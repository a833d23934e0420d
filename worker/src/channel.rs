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
    line: Line,
}

/// Where an output channel leads.
#[derive(Debug)]
enum Line {
    /// A task of this process.
    Local { sender: Sender<Event>, cancel: CancelToken },
    /// A task of another process of the job, over the exchange.
    Remote(Box<dyn RemoteSender>),
}

/// The sending end of a channel to a task of another process. The exchange
/// implements it; channels need not know how events cross processes.
pub trait RemoteSender: Send + std::fmt::Debug {
    /// Sends one event, blocking while the consumer has granted no room for
    /// it; fails with [`TaskError::Cancelled`] when the run is ending.
    fn send(&self, event: Event) -> Result<(), TaskError>;
}

/// The receiving end of one channel.
pub struct InputChannel {
    pub(crate) receiver: Receiver<Event>,
    /// Channels from another process: frees a buffer for the producer (a
    /// credit) once the task took an event.
    on_take: Option<Box<dyn Fn() + Send>>,
}

impl std::fmt::Debug for InputChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputChannel").field("remote", &self.on_take.is_some()).finish()
    }
}

impl InputChannel {
    /// The receiving end of a channel fed from another process.
    pub(crate) fn remote(receiver: Receiver<Event>, on_take: Box<dyn Fn() + Send>) -> Self {
        Self { receiver, on_take: Some(on_take) }
    }

    /// The task took one event from this channel.
    pub(crate) fn took(&self) {
        if let Some(on_take) = &self.on_take {
            on_take();
        }
    }
}

/// A channel holding at most `capacity` events.
pub fn bounded(capacity: usize, cancel: CancelToken) -> (OutputChannel, InputChannel) {
    let (sender, receiver) = crossbeam_channel::bounded(capacity);
    (OutputChannel { line: Line::Local { sender, cancel } }, InputChannel { receiver, on_take: None })
}

impl OutputChannel {
    /// Sends one event, blocking while the channel is full.
    ///
    /// Fails with [`TaskError::Cancelled`] when the job is cancelled or the
    /// receiver is gone (it only goes away when its task failed).
    pub fn send(&self, event: Event) -> Result<(), TaskError> {
        let (sender, cancel) = match &self.line {
            Line::Local { sender, cancel } => (sender, cancel),
            Line::Remote(remote) => return remote.send(event),
        };
        let mut event = event;
        loop {
            match sender.send_timeout(event, CANCEL_POLL) {
                Ok(()) => return Ok(()),
                Err(SendTimeoutError::Disconnected(_)) => return Err(TaskError::Cancelled),
                Err(SendTimeoutError::Timeout(unsent)) => {
                    if cancel.is_cancelled() {
                        return Err(TaskError::Cancelled);
                    }
                    event = unsent;
                }
            }
        }
    }

    /// A channel to a task of another process.
    pub(crate) fn remote(remote: Box<dyn RemoteSender>) -> Self {
        Self { line: Line::Remote(remote) }
    }
}
