//! The runtime side of checkpoints: what tasks snapshot and report, the
//! metadata file of a completed checkpoint, and how a restored checkpoint's
//! state is handed out to the tasks of a job that may run at another
//! parallelism.
//!
//! Layout in checkpoint storage (Flink's):
//! `<job-id>/chk-<n>/_metadata`, each task's private files under
//! `<job-id>/chk-<n>/<vertex>-<subtask>/`, RocksDB SST files shared between
//! checkpoints under `<job-id>/shared/`; savepoints under
//! `<job-id>/savepoint-<n>/`, self-contained.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use weir_common::{CheckpointId, OperatorId, SubtaskIndex, VertexId};
use weir_state::keyed::KeyedSnapshot;
use weir_state::storage::{CheckpointStorage, FileHandle, StorageError, StoragePath};

/// Name of the metadata file in a checkpoint's directory.
pub const METADATA_FILE: &str = "_metadata";

/// Magic number and version of the metadata format.
const METADATA_MAGIC: &[u8; 8] = b"WEIRMD01";

/// One operator's part of a task snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorSnapshot {
    /// Its keyed state, for keyed operators.
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

/// Identifies a task within a job run: its vertex and subtask index.
pub type TaskKey = (VertexId, usize);

/// What a task tells the checkpoint driver.
pub enum TaskReport {
    /// The task finished its input; what it left behind.
    Finished {
        /// The task.
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
        /// The checkpoint.
        id: CheckpointId,
        /// The task.
        task: TaskKey,
        /// Its state handles.
        snapshot: TaskSnapshot,
    },
    /// The task could not take its snapshot.
    Decline {
        /// The checkpoint.
        id: CheckpointId,
        /// The task.
        task: TaskKey,
        /// Why.
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
        /// The checkpoint.
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
    /// The checkpoint.
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

/// The directory of checkpoint `id` (or savepoint) of job `job_id`.
pub fn checkpoint_dir(job_id: &str, id: CheckpointId, savepoint: bool) -> Result<StoragePath, StorageError> {
    let name = if savepoint { format!("savepoint-{}", id.0) } else { format!("chk-{}", id.0) };
    StoragePath::new(format!("{job_id}/{name}"))
}

/// One task's entry in the metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskEntry {
    /// The vertex.
    pub vertex: VertexId,
    /// Which subtask, out of how many.
    pub subtask: SubtaskIndex,
    /// What it took.
    pub snapshot: TaskSnapshot,
}

/// The metadata of a completed checkpoint or savepoint: everything a restore needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    /// The job's name.
    pub job_name: String,
    /// The job run's id (its directory in storage).
    pub job_id: String,
    /// The checkpoint.
    pub id: CheckpointId,
    /// Whether it is a savepoint.
    pub savepoint: bool,
    /// The job's number of key groups.
    pub max_parallelism: u32,
    /// Every task's snapshot.
    pub tasks: Vec<TaskEntry>,
}

impl CheckpointMetadata {
    /// Serializes and writes the metadata atomically to `<dir>/_metadata`.
    pub fn write(&self, storage: &dyn CheckpointStorage, dir: &StoragePath) -> Result<FileHandle, StorageError> {
        let mut bytes = METADATA_MAGIC.to_vec();
        bytes.extend(postcard::to_allocvec(self).map_err(|error| StorageError::Corrupt {
            path: dir.as_str().to_owned(),
            reason: format!("metadata does not serialize: {error}"),
        })?);
        storage.write(&dir.join(METADATA_FILE)?, &bytes)
    }

    /// Reads and verifies the metadata at `<dir>/_metadata`.
    pub fn read(storage: &dyn CheckpointStorage, dir: &StoragePath) -> Result<Self, StorageError> {
        let path = dir.join(METADATA_FILE)?;
        let bytes = storage.read(&storage.handle(&path)?)?;
        let corrupt = |reason: String| StorageError::Corrupt { path: path.as_str().to_owned(), reason };
        let body =
            bytes.strip_prefix(METADATA_MAGIC).ok_or_else(|| corrupt("not a Weir checkpoint metadata file".into()))?;
        postcard::from_bytes(body).map_err(|error| corrupt(format!("does not decode: {error}")))
    }

    /// Every file the checkpoint refers to (the metadata file not included).
    pub fn files(&self) -> Vec<FileHandle> {
        self.tasks.iter().flat_map(|task| task.snapshot.files()).collect()
    }
}

/// The state of one operator gathered from a checkpoint, for handing out.
#[derive(Clone, Debug, Default)]
struct OperatorRestore {
    keyed: Vec<KeyedSnapshot>,
    entries: Vec<Vec<u8>>,
}

/// A completed checkpoint or savepoint being restored, at any parallelism.
pub struct RestoredCheckpoint {
    /// Its metadata.
    pub metadata: CheckpointMetadata,
    /// The storage holding its files.
    pub storage: Arc<dyn CheckpointStorage>,
    by_operator: HashMap<OperatorId, OperatorRestore>,
}

impl std::fmt::Debug for RestoredCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoredCheckpoint").field("id", &self.metadata.id).finish()
    }
}

impl RestoredCheckpoint {
    /// Gathers the state in `metadata` by operator.
    pub fn new(metadata: CheckpointMetadata, storage: Arc<dyn CheckpointStorage>) -> Self {
        let mut by_operator: HashMap<OperatorId, OperatorRestore> = HashMap::new();
        let mut tasks: Vec<&TaskEntry> = metadata.tasks.iter().collect();
        tasks.sort_by_key(|task| (task.vertex, task.subtask.index));
        for task in tasks {
            for (operator, snapshot) in &task.snapshot.operators {
                let restore = by_operator.entry(*operator).or_default();
                restore.keyed.extend(snapshot.keyed.iter().cloned());
                restore.entries.extend(snapshot.entries.iter().cloned());
            }
        }
        Self { metadata, storage, by_operator }
    }

    /// The operators that have state in the checkpoint.
    pub fn operators(&self) -> impl Iterator<Item = &OperatorId> {
        self.by_operator.keys()
    }

    /// Every keyed snapshot of `operator` (the backend reads the key groups it owns).
    pub fn keyed(&self, operator: OperatorId) -> &[KeyedSnapshot] {
        self.by_operator.get(&operator).map_or(&[], |restore| &restore.keyed)
    }

    /// The entries of `operator` that go to `subtask`: every entry of every
    /// former subtask, dealt round robin, so each lands at exactly one new subtask.
    pub fn entries(&self, operator: OperatorId, subtask: SubtaskIndex) -> Vec<Vec<u8>> {
        let Some(restore) = self.by_operator.get(&operator) else { return Vec::new() };
        restore
            .entries
            .iter()
            .enumerate()
            .filter(|(position, _)| position % subtask.parallelism.max(1) == subtask.index)
            .map(|(_, entry)| entry.clone())
            .collect()
    }

    /// Every entry of `operator`, whichever subtask it goes to.
    pub fn all_entries(&self, operator: OperatorId) -> &[Vec<u8>] {
        self.by_operator.get(&operator).map_or(&[], |restore| &restore.entries)
    }

    /// Whether `operator` has state in the checkpoint.
    pub fn has(&self, operator: OperatorId) -> bool {
        self.by_operator.contains_key(&operator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(vertex: u32, index: usize, parallelism: usize, entries: &[&str]) -> TaskEntry {
        let operator =
            OperatorSnapshot { keyed: None, entries: entries.iter().map(|e| e.as_bytes().to_vec()).collect() };
        TaskEntry {
            vertex: VertexId(vertex),
            subtask: SubtaskIndex { index, parallelism },
            snapshot: TaskSnapshot { operators: vec![(OperatorId::from_uid("source"), operator)] },
        }
    }

    #[test]
    fn metadata_round_trips_and_corruption_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = weir_state::storage::LocalDirStorage::new(dir.path());
        let metadata = CheckpointMetadata {
            job_name: "job".into(),
            job_id: "j1".into(),
            id: CheckpointId(3),
            savepoint: false,
            max_parallelism: 128,
            tasks: vec![task(0, 0, 1, &["split-a"])],
        };
        let chk = checkpoint_dir("j1", CheckpointId(3), false).expect("path");
        metadata.write(&storage, &chk).expect("written");
        assert_eq!(CheckpointMetadata::read(&storage, &chk).expect("read"), metadata);
        let file = dir.path().join("j1/chk-3/_metadata");
        let mut bytes = std::fs::read(&file).expect("file");
        bytes[10] ^= 0xFF;
        std::fs::write(&file, bytes).expect("write");
        let error = CheckpointMetadata::read(&storage, &chk).expect_err("corrupt").to_string();
        assert!(error.contains("j1/chk-3/_metadata"), "{error}");
        let missing = checkpoint_dir("j1", CheckpointId(4), false).expect("path");
        let error = CheckpointMetadata::read(&storage, &missing).expect_err("missing").to_string();
        assert!(error.contains("missing") && error.contains("chk-4"), "{error}");
    }

    #[test]
    fn entries_of_every_former_subtask_are_dealt_once_at_any_parallelism() {
        let metadata = CheckpointMetadata {
            job_name: "job".into(),
            job_id: "j".into(),
            id: CheckpointId(1),
            savepoint: false,
            max_parallelism: 128,
            tasks: vec![task(0, 1, 2, &["c", "d"]), task(0, 0, 2, &["a", "b", "e"])],
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let restored =
            RestoredCheckpoint::new(metadata, Arc::new(weir_state::storage::LocalDirStorage::new(dir.path())));
        let operator = OperatorId::from_uid("source");
        for parallelism in 1..=6 {
            let mut dealt: Vec<Vec<u8>> = (0..parallelism)
                .flat_map(|index| restored.entries(operator, SubtaskIndex { index, parallelism }))
                .collect();
            dealt.sort();
            let expected: Vec<Vec<u8>> = ["a", "b", "c", "d", "e"].iter().map(|e| e.as_bytes().to_vec()).collect();
            assert_eq!(dealt, expected, "parallelism {parallelism}");
        }
        assert!(restored.entries(OperatorId::from_uid("other"), SubtaskIndex { index: 0, parallelism: 1 }).is_empty());
    }
}
