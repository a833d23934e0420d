//! What tasks take and tell for a checkpoint: their snapshots, their
//! reports to the checkpoint driver, what a finishing task leaves behind,
//! and the commands the driver sends them.

use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use weir_common::{CheckpointId, OperatorId, TaskKey};
use weir_state::keyed::KeyedSnapshot;
use weir_state::storage::{CheckpointStorage, FileHandle, StoragePath};

/// One operator's part of a task snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorSnapshot {
    /// Handles of the keyed state's files, for keyed operators; `None` for the others.
    pub keyed: Option<KeyedSnapshot>,
    /// Entries that are redistributed over the subtasks on restore (Flink's
    /// operator list state): source splits with their positions, sink
    /// transactions waiting for their commit.
    pub entries: Vec<Vec<u8>>,
}

/// What one task took for one checkpoint, by operator.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSnapshot {
    /// The operators of the task's chain that have state.
    pub operators: Vec<(OperatorId, OperatorSnapshot)>,
}

impl TaskSnapshot {
    /// Every file the snapshot refers to.
    pub fn files(&self) -> Vec<FileHandle> {
        let mut files = Vec::new();
        for (_, operator) in &self.operators {
            match &operator.keyed {
                Some(KeyedSnapshot::Full { file, .. }) => files.push(file.clone()),
                Some(KeyedSnapshot::Incremental(snapshot)) => {
                    files.extend(snapshot.shared.iter().map(|(_, file)| file.clone()));
                    files.extend(snapshot.private.iter().map(|(_, file)| file.clone()));
                    files.extend(snapshot.timers.iter().cloned());
                }
                None => {}
            }
        }
        files
    }
}

/// What a task tells the checkpoint driver.
pub enum TaskReport {
    /// The task finished its input; what it left behind.
    Finished {
        /// The task that finished.
        task: TaskKey,
        /// Its final state, recorded by every later checkpoint.
        snapshot: TaskSnapshot,
        /// Commits to run once a checkpoint records the final state.
        commits: Vec<FinalCommit>,
    },
    /// The task's answer to a checkpoint.
    Checkpoint(CheckpointReport),
}

/// A task's answer to a checkpoint; it may travel to another process (the
/// job's leader).
#[derive(Debug, Serialize, Deserialize)]
pub enum CheckpointReport {
    /// The task took its snapshot of checkpoint `id`.
    Ack {
        /// The checkpoint acknowledged.
        id: CheckpointId,
        /// The acknowledging task.
        task: TaskKey,
        /// Handles of the files the task wrote (and shared files it reuses).
        snapshot: TaskSnapshot,
    },
    /// The task could not take its snapshot.
    Decline {
        /// The checkpoint declined; it is aborted.
        id: CheckpointId,
        /// The declining task.
        task: TaskKey,
        /// The snapshot's error, logged with the abort.
        message: String,
    },
}

/// A commit a finished task leaves for later: run once the task's final
/// state is part of a completed checkpoint, or when the job succeeds.
pub type FinalCommit = Box<dyn FnOnce() -> Result<(), String> + Send>;

/// What the operators of a finishing task leave behind when checkpointing is
/// on: entries that later checkpoints record for them (a sink's pre-committed
/// files) and the commits that make them visible.
#[derive(Default)]
pub struct FinishedState {
    entries: Mutex<Vec<(OperatorId, OperatorSnapshot)>>,
    commits: Mutex<Vec<FinalCommit>>,
}

impl std::fmt::Debug for FinishedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FinishedState")
    }
}

impl FinishedState {
    /// Leaves `state` of `operator` for later checkpoints and `commit` for later.
    pub fn leave(&self, operator: OperatorId, state: OperatorSnapshot, commit: FinalCommit) {
        self.record(operator, state);
        self.commits.lock().unwrap_or_else(PoisonError::into_inner).push(commit);
    }

    /// Leaves `state` of `operator` for later checkpoints (a finished source:
    /// no splits left, so a restore does not read its input again).
    pub fn record(&self, operator: OperatorId, state: OperatorSnapshot) {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).push((operator, state));
    }

    /// Takes what was left: the final snapshot and the commits.
    pub fn take(&self) -> (TaskSnapshot, Vec<FinalCommit>) {
        let operators = std::mem::take(&mut *self.entries.lock().unwrap_or_else(PoisonError::into_inner));
        let commits = std::mem::take(&mut *self.commits.lock().unwrap_or_else(PoisonError::into_inner));
        (TaskSnapshot { operators }, commits)
    }
}

/// What the driver tells a task, between its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskControl {
    /// Sources only: take checkpoint `id` now and send its barrier.
    Trigger {
        /// The checkpoint to take; its barrier carries the id downstream.
        id: CheckpointId,
        /// Savepoints are self-contained (full snapshots, their own directory).
        savepoint: bool,
    },
    /// Checkpoint `id` completed: commit what it covers.
    Complete(CheckpointId),
    /// Stop now (after a stop-with-savepoint): the task ends as cancelled.
    Stop,
}

/// Where a task writes the files of one checkpoint.
#[derive(Clone)]
pub struct SnapshotTarget {
    /// The checkpoint being taken.
    pub id: CheckpointId,
    /// Whether it is a savepoint.
    pub savepoint: bool,
    /// The job's checkpoint storage.
    pub storage: Arc<dyn CheckpointStorage>,
    /// This task's private directory in the checkpoint.
    pub private_dir: StoragePath,
    /// The job's directory of files shared between checkpoints.
    pub shared_dir: StoragePath,
}

impl std::fmt::Debug for SnapshotTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotTarget").field("id", &self.id).field("private_dir", &self.private_dir).finish()
    }
}
