//! The control messages of a job run: what a follower process and the leader
//! tell each other, what can be asked of a running job, and the lines they
//! travel on. Both the exchange (which carries them between processes) and
//! the job run (which acts on them) build on this module; it knows neither.

use crossbeam_channel::Sender;
use serde::{Deserialize, Serialize};
use weir_common::TaskKey;

use crate::TaskError;
use crate::checkpoint::{CheckpointReport, RemoteTaskLine, TaskControl, TaskSnapshot};

/// What a running job can be asked from outside.
pub enum JobCommand {
    /// Take a savepoint; with `stop`, end the job once it completed (its
    /// sinks commit what it covers). The reply is the savepoint's directory.
    Savepoint {
        /// End the job after the savepoint (Flink's stop-with-savepoint).
        stop: bool,
        /// Receives the savepoint's directory, or why it failed.
        reply: Sender<Result<std::path::PathBuf, String>>,
    },
}

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
        /// The follower's task that finished.
        task: TaskKey,
        /// Its final state, which every later checkpoint records in its place.
        snapshot: TaskSnapshot,
    },
    /// A task returned.
    Done {
        /// The follower's task that returned.
        task: TaskKey,
        /// How it ended; a failure is the run's root cause unless one came first.
        outcome: Result<(), TaskError>,
    },
    /// Running the commits of a finished task failed.
    CommitFailed {
        /// The commit's error, which fails the job.
        message: String,
    },
}

/// What the leader tells a follower.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToFollower {
    /// A checkpoint command for one task.
    Task {
        /// A task of the follower's.
        task: TaskKey,
        /// Trigger (sources only), checkpoint complete, or stop.
        command: TaskControl,
    },
    /// A checkpoint recorded the final state of `task`: run its commits.
    CommitFinished {
        /// The finished task whose held commits now run.
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
    /// A message, in the order the follower sent it.
    Message(ToLeader),
    /// The follower's control stream ended or broke.
    Lost(String),
}

/// An item of a follower's inbox.
#[derive(Debug)]
pub enum FromLeader {
    /// A message, in the order the leader sent it.
    Message(ToFollower),
    /// The control stream to the leader ended or broke.
    Lost(String),
}

/// How the leader reaches its followers: the exchange's control streams, or
/// memory in tests. A follower that is gone is noticed on the leader's inbox,
/// so sending never fails.
pub trait FollowerLines: Send + Sync {
    /// Sends `message` to follower `process`.
    fn send(&self, process: usize, message: &ToFollower);
    /// Ends every follower's control stream.
    fn close(&self);
    /// The first failure of the transport in this run (a data channel broke), if any.
    fn transport_failure(&self) -> Option<String>;
}

/// How a follower reaches its leader.
pub trait LeaderLine: Send + Sync {
    /// Sends `message` to the leader.
    fn send(&self, message: &ToLeader);
    /// Ends the control stream to the leader.
    fn close(&self);
}

/// The leader's checkpoint driver reaches a follower's tasks through its control stream.
impl<L: FollowerLines + ?Sized> RemoteTaskLine for L {
    fn send_command(&self, process: usize, task: TaskKey, command: TaskControl) {
        self.send(process, &ToFollower::Task { task, command });
    }
}
